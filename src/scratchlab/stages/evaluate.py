"""Stage evaluate: score the test split into reports/ and the SAME MLflow run as training."""

from scratchlab.config import load_params, validate
from scratchlab.nn.persistence import load_network
from scratchlab.pipeline.evaluation import evaluate, record_evaluation, write_reports
from scratchlab.pipeline.record import RUN_FILE, load_run_id, resumed_run, title
from scratchlab.spec.splits import load_splits
from scratchlab.stages import MODEL_DIR, PARAMS, PROCESSED_DIR, REPORTS_DIR, run_stage


def main() -> None:
    config = validate(load_params(PARAMS))
    run_id = load_run_id(MODEL_DIR / RUN_FILE)
    net = load_network(MODEL_DIR / "model.npz")
    splits = load_splits(PROCESSED_DIR)
    evaluation = evaluate(net, splits, title(config), config.train.deterministic)
    files = write_reports(evaluation, REPORTS_DIR / "eval", REPORTS_DIR / "metrics.json")
    with resumed_run(config, run_id) as recorder:
        example = splits.test.X[:5] if config.tracking.log_model else None
        record_evaluation(recorder, evaluation, files, net, example)


if __name__ == "__main__":
    run_stage(main)
