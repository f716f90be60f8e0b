"""Stage fetch: download (or copy) the configured dataset's raw files into data/raw."""

from scratchlab.cli_support import run_main
from scratchlab.config import load_params, validate
from scratchlab.data.datasets import fetch_dataset
from scratchlab.stages import PARAMS, RAW_DIR


def main() -> None:
    cfg = load_params(PARAMS)
    validate(cfg)
    fetch_dataset(cfg.data, RAW_DIR, progress=cfg.train.progress)


if __name__ == "__main__":
    run_main(main)
