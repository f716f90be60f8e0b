"""Stage preprocess: scale, flatten, one-hot and split data/raw into data/processed."""

import json
import logging

from scratchlab.cli_support import run_main
from scratchlab.config import load_params, validate
from scratchlab.data.datasets import load_dataset
from scratchlab.io import write_json_atomic
from scratchlab.preprocess import preprocess, save_splits
from scratchlab.stages import PARAMS, PROCESSED_DIR, RAW_DIR

log = logging.getLogger(__name__)


def main() -> None:
    cfg = load_params(PARAMS)
    validate(cfg)
    splits = preprocess(load_dataset(cfg.data, RAW_DIR), cfg.data, cfg.train.val_fraction)
    save_splits(splits, PROCESSED_DIR)
    manifest = json.loads((RAW_DIR / "manifest.json").read_text())
    write_json_atomic(PROCESSED_DIR / "manifest.json", manifest)
    log.info("splits: train %d, val %d, test %d", len(splits.train), len(splits.val),
             len(splits.test))


if __name__ == "__main__":
    run_main(main)
