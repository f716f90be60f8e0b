"""DVC stages: each a short script reading ``params.yaml`` with explicit deps/params/outs.

Paths are relative to the working directory DVC runs them in (the repo, or an experiment's
temp copy of it).
"""

from pathlib import Path

PARAMS = Path("params.yaml")
RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
MODEL_DIR = Path("models")
REPORTS_DIR = Path("reports")
