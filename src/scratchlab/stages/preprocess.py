"""Stage preprocess: scale, flatten, one-hot and split data/raw into data/processed."""

import logging

from scratchlab.config import load_params, validate
from scratchlab.core.files import read_json, write_json_atomic
from scratchlab.data.preprocess import preprocess
from scratchlab.data.registry import data_config, load_dataset
from scratchlab.spec.splits import save_splits
from scratchlab.stages import PARAMS, PROCESSED_DIR, RAW_DIR, run_stage

log = logging.getLogger(__name__)


def main() -> None:
    config = validate(load_params(PARAMS), data=data_config)
    data = config.data
    splits = preprocess(load_dataset(data, RAW_DIR), test_fraction=data.test_fraction,
                        split_seed=data.split_seed, val_fraction=config.train.val_fraction)
    save_splits(splits, PROCESSED_DIR)
    write_json_atomic(PROCESSED_DIR / "manifest.json", read_json(RAW_DIR / "manifest.json"))
    log.info("splits: train %d, val %d, test %d", len(splits.train), len(splits.val),
             len(splits.test))


if __name__ == "__main__":
    run_stage(main)
