"""Stage fetch: download (or copy) the configured dataset's raw files into data/raw."""

from scratchlab.config import load_params, validate
from scratchlab.data.registry import data_config, fetch_dataset
from scratchlab.stages import PARAMS, RAW_DIR, run_stage


def main() -> None:
    config = validate(load_params(PARAMS), data=data_config)
    fetch_dataset(config.data, RAW_DIR, progress=config.train.progress)


if __name__ == "__main__":
    run_stage(main)
