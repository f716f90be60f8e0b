"""Stage train: fit the configured network on data/processed; weights and run id to models/."""

import json

from scratchlab.cli_support import run_main
from scratchlab.config import load_params, validate
from scratchlab.experiment import train
from scratchlab.preprocess import load_splits
from scratchlab.stages import MODEL_DIR, PARAMS, PROCESSED_DIR


def main() -> None:
    cfg = load_params(PARAMS)
    validate(cfg)
    manifest = json.loads((PROCESSED_DIR / "manifest.json").read_text())
    train(cfg, load_splits(PROCESSED_DIR), manifest, MODEL_DIR, tags={"entry_point": "dvc"})


if __name__ == "__main__":
    run_main(main)
