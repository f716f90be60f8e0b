"""Stage evaluate: score the test split into reports/ and the SAME MLflow run as training."""

import json

from scratchlab.cli_support import run_main
from scratchlab.config import load_params, validate
from scratchlab.experiment import evaluate
from scratchlab.nn.persistence import load_network
from scratchlab.preprocess import load_splits
from scratchlab.stages import MODEL_DIR, PARAMS, PROCESSED_DIR, REPORTS_DIR


def main() -> None:
    cfg = load_params(PARAMS)
    validate(cfg)
    run_id = json.loads((MODEL_DIR / "run.json").read_text())["run_id"]
    net = load_network(MODEL_DIR / "model.npz")
    evaluate(
        cfg, net, load_splits(PROCESSED_DIR), REPORTS_DIR / "eval", run_id,
        metrics_path=REPORTS_DIR / "metrics.json",
    )


if __name__ == "__main__":
    run_main(main)
