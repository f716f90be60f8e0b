"""What a trial of ``scratchlab tune`` records about itself (Optuna user attributes), and the
study's one attribute: the names, in one place, that every part of a study reads."""

PARENT_RUN = "mlflow_parent_run_id"  # study attribute: the study's MLflow parent run

RUN_ID = "mlflow_run_id"  # the trial's MLflow child run
RUN_NAME = "mlflow_run_name"
WORKER = "worker"  # host:pid of the worker running it
OWNER = "owner"  # that worker's owner tags (core.owner), to hand the parent run over
DIVERGED = "diverged"  # its training diverged: value inf, never the best
PRUNED_EPOCH = "pruned_epoch"  # the epoch after which the pruner stopped it
SKIPPED = "skipped"  # created past the study's total: never run

# What one attempt at a trial recorded: not carried over when the trial is run again.
ATTEMPT = (RUN_ID, RUN_NAME, WORKER, OWNER, DIVERGED, PRUNED_EPOCH)
