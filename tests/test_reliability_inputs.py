"""Issue 10, cases 5-8, as real processes: damaged project files, gradcheck at a ReLU kink and
with only the dimension flags, unknown keys in every config group, networks too big to fit;
issue 18, case 5: every config mistake is one line and exit 2 through every entry point, an
unknown key with or without ``+`` alike.

Each expected failure is one line naming the file or key, with its documented exit code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, copy_repo, project_env
from scratchlab.config import write_params

pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    return project_env(REPO, f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300):
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _one_error(done: subprocess.CompletedProcess[str]) -> str:
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines()
              if " ERROR " in line or "[ERROR]" in line or "[HYDRA] " in line
              and "unknown key" in line]
    assert len(errors) == 1, output
    return errors[0]


# -- case 5: damaged files the project wrote and reads again ---------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A workdir after fetch, preprocess and a 2-epoch train stage (the files DVC tracks)."""
    work = tmp_path_factory.mktemp("damaged")
    write_params(work / "params.yaml", ["train.epochs=2", "train.progress=false",
                                        "tracking.log_model=false"])
    env = _env(work)
    for stage in ("fetch", "preprocess", "train"):
        done = _run(["-m", f"scratchlab.stages.{stage}"], work, env)
        assert done.returncode == 0, done.stdout + done.stderr
    return work, env


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # inside an array: the zip member's CRC no longer matches
    path.write_bytes(bytes(blob))


def _garbage(path: Path) -> None:
    path.write_text('["not", "what was written"]')


@pytest.mark.xdist_group("damaged")
@pytest.mark.parametrize(("name", "damage", "stage"), [
    ("data/processed/train.npz", _truncate, "train"),
    ("data/processed/train.npz", _flip, "train"),
    ("data/processed/stats.json", _truncate, "train"),
    ("data/processed/manifest.json", _garbage, "train"),
    ("models/model.npz", _flip, "evaluate"),
    ("models/model.npz", Path.unlink, "evaluate"),
    ("models/model.json", _truncate, "evaluate"),
    ("models/run.json", _garbage, "evaluate"),
], ids=["train.npz-truncated", "train.npz-flipped", "stats.json-truncated",
        "manifest.json-garbage", "model.npz-flipped", "model.npz-missing",
        "model.json-truncated", "run.json-garbage"])
def test_damaged_file_is_one_line_naming_it_and_the_cure(trained, tmp_path, name, damage,
                                                         stage) -> None:
    work, env = trained
    path = work / name
    saved = tmp_path / "saved"
    shutil.copy2(path, saved)
    try:
        damage(path)
        done = _run(["-m", f"scratchlab.stages.{stage}"], work, env)
    finally:
        shutil.copy2(saved, path)
    assert done.returncode == 3, done.stdout + done.stderr
    line = _one_error(done)
    assert name in line and "dvc repro" in line, line


# -- case 6: gradcheck --------------------------------------------------------------------------


def test_gradcheck_passes_at_a_relu_kink_and_says_what_it_left_out(tmp_path: Path) -> None:
    """The issue's command failed with `batchnorm1.beta relative error 2.79e-02`."""
    done = _run(["-m", "scratchlab.cli", "gradcheck", "experiment=keras_mlp",
                 "model.batchnorm=true", "--samples", "16"], tmp_path, _env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: 8 parameters of 64-64-64-10" in done.stdout


@pytest.mark.parametrize(("data", "shape"), [("idx", "784-8-10"), ("csv", "13-8-3")])
def test_gradcheck_needs_only_the_dimension_flags(tmp_path: Path, data: str, shape: str) -> None:
    """idx exited 2 with `data.images: no value given` though README says the flags suffice."""
    n_in, _, n_out = shape.split("-")
    done = _run(["-m", "scratchlab.cli", "gradcheck", f"data={data}", "model.hidden=[8]",
                 "--input-dim", n_in, "--output-dim", n_out], tmp_path, _env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"parameters of {shape}," in done.stdout


# -- case 7: unknown keys in every group ---------------------------------------------------------


@pytest.mark.parametrize(("override", "allowed"), [
    ("+optimizer.lrr=0.1", "name, lr, momentum"),
    ("+model.hiden=[8]", "hidden"),
    ("+train.epoch=3", "epochs"),
    ("+train.early_stopping.patiense=2", "patience"),
    ("+data.pth=x.csv", "split_seed"),
    ("+tracking.urii=x", "uri"),
])
def test_unknown_key_is_rejected_naming_the_allowed_ones(tmp_path: Path, override: str,
                                                        allowed: str) -> None:
    """`+optimizer.lrr=0.1` (Hydra's own hint after a typo) trained with lr 0.3 and exited 0."""
    done = _run(["-m", "scratchlab.train", override, f"hydra.run.dir={tmp_path / 'out'}"],
                tmp_path, _env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    line = _one_error(done)
    key = override.lstrip("+").split("=")[0]
    assert f"{key}: unknown key" in line and allowed in line, line
    assert not (tmp_path / "store" / "mlflow.db").exists(), "a run was started"


ENTRY_POINTS = {
    "app": ["-m", "scratchlab.train"],
    "params": ["-m", "scratchlab.cli", "params"],
    "tune": ["-m", "scratchlab.cli", "tune", "--trials", "1", "--study", "s"],
    "gradcheck": ["-m", "scratchlab.cli", "gradcheck"],
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy: ``scratchlab params`` writes its params.yaml, never the checkout's."""
    return copy_repo(tmp_path_factory.mktemp("config-mistakes") / "project")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("override", ["train.epochz=3", "+train.epochz=3"])
def test_an_unknown_key_is_exit_2_in_one_line_through_every_entry_point(
        project: Path, tmp_path: Path, entry: str, override: str) -> None:
    """Without `+`: Hydra's 7 lines and exit 1 (the app), a 67-line traceback (`params`)."""
    env = project_env(project, f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    args = [*ENTRY_POINTS[entry], override]
    if entry == "app":
        args.append(f"hydra.run.dir={tmp_path / 'out'}")
    params = (project / "params.yaml").read_bytes()
    done = _run(args, tmp_path, env)
    assert done.returncode == 2, done.stdout + done.stderr
    line = _one_error(done)
    assert "train.epochz: unknown key; allowed: epochs, batch_size" in line, line
    assert (project / "params.yaml").read_bytes() == params
    assert not (tmp_path / "store" / "mlflow.db").exists(), "a run was started"


@pytest.mark.parametrize(("override", "message"), [
    ("optimizer=adamz", "Could not find 'optimizer/adamz' Available options in 'optimizer': "
                        "adagrad adam momentum nesterov rmsprop sgd"),
    ("train.epochs=[1,", "train.epochs=[1,: no viable alternative at input"),
])
def test_a_refused_override_is_exit_2_in_one_line_in_the_app(tmp_path: Path, override: str,
                                                             message: str) -> None:
    done = _run(["-m", "scratchlab.train", override, f"hydra.run.dir={tmp_path / 'out'}"],
                tmp_path, _env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in _one_error(done)


def test_an_unknown_fixed_key_fails_a_sweep_before_any_run(tmp_path: Path) -> None:
    """Swept keys were checked; a fixed `+train.epochz=3` failed every job, and the sweep
    exited 0."""
    done = _run(["-m", "scratchlab.train", "-m", "optimizer.lr=0.1,1", "+train.epochz=3",
                 f"hydra.sweep.dir={tmp_path / 'sw'}"], tmp_path, _env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "train.epochz: unknown key; allowed:" in _one_error(done)
    assert not (tmp_path / "store" / "mlflow.db").exists(), "a sweep parent run was started"


def test_dvc_exp_run_with_an_unknown_key(tmp_path: Path) -> None:
    """With `+`, DVC writes it into params.yaml and the first stage refuses it in one line,
    exit 2, and says how to restore params.yaml (DVC adds its own line and exit code). Without
    `+`, DVC's own Hydra composition refuses it before any stage runs: DVC's message, outside
    scratchlab's reach."""
    root = copy_repo(tmp_path / "project")
    env = project_env(root, f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    plus = subprocess.run(["dvc", "exp", "run", "-S", "+train.epochz=3"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    output = plus.stdout + plus.stderr
    assert plus.returncode != 0 and "Traceback" not in output, output
    ours = [line for line in output.splitlines() if "ERROR scratchlab:" in line]
    # the mistake in one line, then how to get params.yaml back (a failed workspace exp run)
    assert len(ours) == 2 and "train.epochz: unknown key; allowed: epochs" in ours[0], output
    assert "params.yaml still holds its overrides: `git checkout params.yaml`" in ours[1]
    assert "exited with 2" in output
    subprocess.run(["git", "checkout", "params.yaml"], cwd=root, check=True)
    bare = subprocess.run(["dvc", "exp", "run", "-S", "train.epochz=3"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert bare.returncode != 0 and "Could not override 'train.epochz'" in bare.stderr
    assert "Running stage" not in bare.stdout + bare.stderr


@pytest.mark.parametrize("sweep", [["+optimizer.lrr=0.1,0.2"], ["train.epoch=1,2"]])
def test_unknown_swept_key_fails_the_sweep_before_any_run(tmp_path: Path, sweep) -> None:
    done = _run(["-m", "scratchlab.train", "-m", *sweep, f"hydra.sweep.dir={tmp_path / 'sw'}"],
                tmp_path, _env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown key; allowed:" in _one_error(done)
    assert not (tmp_path / "store" / "mlflow.db").exists(), "a sweep parent run was started"


def test_unknown_key_in_an_optuna_space_fails_before_any_trial(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  optimizer.lrr: {type: float, low: 0.1, high: 1.0}\n")
    done = _run(["-m", "scratchlab.cli", "tune", "--trials", "1", "--study", "s",
                 "--space", str(space)], tmp_path, _env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "params.optimizer.lrr: unknown key" in _one_error(done)


# -- case 8: a network that cannot fit ----------------------------------------------------------


@pytest.mark.parametrize("command", [["-m", "scratchlab.train"],
                                     ["-m", "scratchlab.cli", "gradcheck"]])
def test_a_network_too_big_for_memory_is_a_config_error(tmp_path: Path, command) -> None:
    """`model.hidden=[1000000000000]` ended in a MemoryError traceback."""
    args = [*command, "model.hidden=[1000000000000]"]
    if command[-1] == "scratchlab.train":
        args.append(f"hydra.run.dir={tmp_path / 'out'}")
    done = _run(args, tmp_path, _env(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    line = _one_error(done)
    assert "model.hidden=[1000000000000]" in line and "PB" in line and "available" in line
    assert not (tmp_path / "store" / "mlflow.db").exists(), "a run was started"


@pytest.mark.parametrize("damaged", ["target.json", "000001.json"])
def test_damaged_spool_file_is_one_line_naming_it(tmp_path: Path, damaged: str) -> None:
    run = tmp_path / "spool" / "0123abcd"
    run.mkdir(parents=True)
    (run / "target.json").write_text('{"run_id": "0123abcd", "tracking_uri": "http://127.0.0.1:9"}')
    (run / "000001.json").write_text('{"kind": "batch", "metrics": []}')
    (run / damaged).write_text('{"kind": "bat')
    env = {**_env(tmp_path), "SCRATCHLAB_SPOOL": str(tmp_path / "spool")}
    done = _run(["-m", "scratchlab.cli", "sync"], tmp_path, env)
    assert done.returncode == 3, done.stdout + done.stderr
    line = _one_error(done)
    assert str(run / damaged) in line and "delete that file" in line, line
