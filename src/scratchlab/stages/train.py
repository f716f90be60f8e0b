"""Stage train: fit the configured network on data/processed; weights and run id to models/."""

from scratchlab.config import load_params, validate
from scratchlab.core.errors import ConfigError
from scratchlab.pipeline.record import record_training, tracked_run
from scratchlab.pipeline.training import preflight, train
from scratchlab.spec.splits import load_manifest, load_splits
from scratchlab.stages import MODEL_DIR, PARAMS, PROCESSED_DIR, run_stage
from scratchlab.tracking.recorder import EpochMetrics


def main() -> None:
    config = validate(load_params(PARAMS))
    if config.train.cv_folds:
        raise ConfigError(f"train.cv_folds={config.train.cv_folds}: cross-validation scores "
                          "sweep points (python -m scratchlab.train -m ...); the pipeline trains "
                          "once, set it to 0")
    splits = load_splits(PROCESSED_DIR)
    manifest = load_manifest(PROCESSED_DIR)
    preflight(config, splits)  # before a run is started for nothing
    with tracked_run(config, manifest, MODEL_DIR, splits=splits,
                     tags={"entry_point": "dvc"}) as recorder:
        trained = train(config, splits, [EpochMetrics(recorder)])
        record_training(recorder, config, trained.net, trained.history, MODEL_DIR)


if __name__ == "__main__":
    run_stage(main)
