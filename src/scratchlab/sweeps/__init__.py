"""Sweeps: Hydra multiruns and Optuna studies as one MLflow parent run with a child per job."""
