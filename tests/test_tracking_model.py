"""The network as an MLflow pyfunc model, against a real SQLite tracking store.

The logged model must load, predict and serve where ``scratchlab`` is not importable: the slow
tests below build a virtual environment holding only the model's pinned requirements (uv, from
its cache when it has the wheels, else from the package registry) and run
``mlflow.pyfunc.load_model``, ``mlflow models predict`` and ``mlflow models serve`` there, from a
directory outside the repo. They fail, never skip, when that environment cannot be built: they
are the proof that the promise holds.
"""

import ast
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from scratchlab.nn.layers import BatchNorm
from scratchlab.nn.network import build_network
from scratchlab.nn.persistence import save_network
from scratchlab.spec.network import ACTIVATIONS, DTYPES, LOSSES, OUTPUTS, NetworkSpec
from scratchlab.tracking import pyfunc_model
from scratchlab.tracking.model import log_pyfunc_model
from servers import free_port, wait_for

# one xdist worker runs this whole module, so its module-scoped fixtures are built once
pytestmark = pytest.mark.xdist_group("test_tracking_model")

SUBPROCESS_TIMEOUT_S = 180
INSTALL_TIMEOUT_S = 900  # a fresh machine downloads mlflow and its dependencies


def _randomize(net, rng) -> None:
    """Give every parameter and BatchNorm statistic a non-trivial value (a trained net's)."""
    state = {}
    for key, value in net.state_dict().items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.2, 3.0, value.shape)
        elif key.endswith(".W"):
            state[key] = rng.standard_normal(value.shape) / np.sqrt(value.shape[0])
        else:
            state[key] = rng.standard_normal(value.shape)
    net.load_state_dict(state)


def _pixels(rows: int, columns: int, seed: int) -> np.ndarray:
    """Scaled pixel values k/16 (as for digits): exact in CSV and JSON, so no parsing noise."""
    return np.random.default_rng(seed).integers(0, 17, (rows, columns)) / 16.0


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One run holding a logged model: (tracking uri, run id, net, X, model info)."""
    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("nn", artifact_location=(tmp / "artifacts").as_uri())
        spec = NetworkSpec(4, 3, (5,), "relu", dropout=0.2, batchnorm=True)
        net = build_network(spec, np.random.default_rng(0))
        _randomize(net, np.random.default_rng(2))
        X = _pixels(6, 4, seed=1)
        with mlflow.start_run(experiment_id=experiment) as run:
            info = log_pyfunc_model(net, name="model", input_example=X[:2])
        yield uri, run.info.run_id, net, X, info
    finally:
        mlflow.set_tracking_uri(previous)


CONV_SPEC = NetworkSpec(
    2 * 6 * 5, 3, (4,), "relu", dropout=0.3, image_shape=(2, 6, 5),
    blocks=[{"type": "conv", "filters": 3, "kernel": 3, "padding": 1},
            {"type": "maxpool", "size": 2}, {"type": "conv", "filters": 2, "kernel": 2}])


@pytest.fixture(scope="module")
def logged_conv(logged):
    """A conv net logged to the same store: (run id, net, X)."""
    uri = logged[0]
    mlflow.set_tracking_uri(uri)
    net = build_network(CONV_SPEC, np.random.default_rng(3))
    _randomize(net, np.random.default_rng(4))
    X = _pixels(5, CONV_SPEC.input_dim, seed=5)
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("nn").experiment_id) as run:
        log_pyfunc_model(net, name="model", input_example=X[:1])
    return run.info.run_id, net, X


def test_load_back_and_predict_identically(logged):
    """The project's own arrays score: float32 (``data/processed`` holds float32) and float64
    rows, as arrays or DataFrames, all give ``Network.predict``'s values."""
    uri, run_id, net, X, info = logged
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    expected = net.predict(X)
    for rows in (X, X.astype(np.float32), pd.DataFrame(X), pd.DataFrame(X.astype(np.float32))):
        np.testing.assert_array_equal(model.predict(rows), expected)
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(info.model_uri).predict(X), expected)
    assert info.signature.inputs is None  # MLflow would refuse one of the two dtypes
    outputs = info.signature.outputs.to_dict()
    assert outputs[0]["tensor-spec"] == {"dtype": "float32", "shape": (-1, 3)}
    assert model.metadata.metadata["input_shape"] == [-1, 4]
    with pytest.raises(Exception, match="expected rows of 4 features, got shape"):
        model.predict(X[:, :3])


def test_conv_net_loads_back_and_predicts_identically(logged, logged_conv):
    run_id, net, X = logged_conv
    mlflow.set_tracking_uri(logged[0])
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    for rows in (X, X.astype(np.float32)):
        np.testing.assert_array_equal(model.predict(rows), net.predict(X))


def test_logged_from_code_not_pickled_and_self_contained(logged):
    """No pickle in the model, and its code imports nothing but the stdlib, NumPy and MLflow."""
    uri, run_id, *_ = logged
    mlflow.set_tracking_uri(uri)
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model"))
    files = {p.name for p in local.rglob("*")}
    assert "pyfunc_model.py" in files and not [f for f in files if f.endswith(".pkl")]
    tree = ast.parse((local / "pyfunc_model.py").read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= {
        "json",
        "math",
        "pathlib",
        "mlflow",
        "numpy",
    }, imported
    requirements = (local / "requirements.txt").read_text().split()
    assert sorted(r.split("==")[0] for r in requirements) == ["mlflow", "numpy", "pandas"]


def _spec_space():
    """Every valid combination of the spec's categorical choices, at depths 0, 1 and 2."""
    for activation, output, loss, dtype, batchnorm, dropout, hidden in itertools.product(
        ACTIVATIONS, OUTPUTS, LOSSES, DTYPES, (False, True), (0.0, 0.5), ((), (7,), (6, 5))
    ):
        try:
            yield NetworkSpec(
                9, 4, hidden, activation, output, loss, dropout, batchnorm, dtype=dtype
            )
        except ValueError:  # cross_entropy with a linear output
            continue


def test_standalone_forward_equals_network_predict():
    """The model file's NumPy forward pass is bit-identical to ``Network.predict`` for every
    activation, output, loss, dtype, batchnorm and dropout choice (1100 rows: two batches;
    rows of +-300 push sigmoid into its clipped range and softmax into large logits)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1100, 9)) * 3.0
    X[:20] = rng.choice([-300.0, 300.0], size=(20, 9))
    specs = list(_spec_space())
    assert len(specs) == 4 * 5 * 2 * 2 * 2 * 3  # (softmax|sigmoid) x CE + 3 outputs x MSE
    for spec in specs:
        net = build_network(spec, np.random.default_rng(1))
        _randomize(net, rng)
        standalone = pyfunc_model.StandaloneNetwork(spec.to_dict(), net.state_dict())
        expected = net.predict(X)
        got = standalone.predict(X)
        assert got.dtype == expected.dtype, spec
        np.testing.assert_array_equal(got, expected, err_msg=str(spec))


def test_standalone_reads_what_save_network_writes(tmp_path):
    spec = NetworkSpec(9, 3, (8, 6), "tanh", "sigmoid", batchnorm=True)
    net = build_network(spec, np.random.default_rng(0))
    _randomize(net, np.random.default_rng(1))
    save_network(net, tmp_path / pyfunc_model.WEIGHTS)
    X = np.random.default_rng(2).standard_normal((5, 9))
    standalone = pyfunc_model.StandaloneNetwork.load(tmp_path / pyfunc_model.WEIGHTS)
    np.testing.assert_array_equal(standalone.predict(X), net.predict(X))
    assert pyfunc_model.BATCHNORM_EPS == BatchNorm(1).eps
    with pytest.raises(ValueError, match="rows of 9 features"):
        standalone.predict(X[:, :8])
    state = net.state_dict()
    del state["batchnorm2.running_var"]
    with pytest.raises(ValueError, match=r"missing \['batchnorm2.running_var'\]"):
        pyfunc_model.StandaloneNetwork(spec.to_dict(), state)


def _conv_specs():
    """Conv nets over every block type and option, with and without BatchNorm, both dtypes."""
    blocks = [
        [{"type": "conv", "filters": 3, "kernel": 3}, {"type": "maxpool", "size": 2}],
        [{"type": "conv", "filters": 2, "kernel": 3, "stride": 2, "padding": 1},
         {"type": "avgpool", "size": 2, "stride": 1}, {"type": "conv", "filters": 3, "kernel": 2}],
        [{"type": "maxpool", "size": 3, "stride": 1}, {"type": "conv", "filters": 2, "kernel": 1}],
    ]
    for block, batchnorm, dtype, activation, hidden in itertools.product(
        blocks, (False, True), DTYPES, ("relu", "tanh"), ((), (5,))
    ):
        yield NetworkSpec(2 * 7 * 7, 4, hidden, activation, batchnorm=batchnorm, dropout=0.2,
                          dtype=dtype, blocks=block, image_shape=(2, 7, 7))


def test_standalone_conv_forward_equals_network_predict():
    """The model file's conv, pool and BatchNorm inference, through the same ``functional``
    calls, is bit-identical to ``Network.predict`` (1100 rows: two batches)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1100, 98)) * 2.0
    for spec in _conv_specs():
        net = build_network(spec, np.random.default_rng(1))
        _randomize(net, rng)
        got = pyfunc_model.StandaloneNetwork(spec.to_dict(), net.state_dict()).predict(X)
        expected = net.predict(X)
        assert got.dtype == expected.dtype, spec
        np.testing.assert_array_equal(got, expected, err_msg=str(spec))


# --- where scratchlab is not importable --------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(logged, tmp_path_factory) -> Path:
    uri, run_id, *_ = logged
    return Path(
        mlflow.artifacts.download_artifacts(
            f"runs:/{run_id}/model",
            dst_path=str(tmp_path_factory.mktemp("model")),
            tracking_uri=uri,
        )
    )


@pytest.fixture(scope="module")
def bare_venv(model_dir, tmp_path_factory) -> Path:
    """A virtual environment with only the model's requirements.txt, no scratchlab.

    uv installs the pinned numpy/pandas/mlflow from its cache, or from the package registry on
    a fresh machine; a failure fails the tests that need it (a skip would hide a broken model).
    """
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv is not None, "needs uv (pip install uv) to build a venv without scratchlab"
    venv = tmp_path_factory.mktemp("bare") / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    subprocess.run(
        [uv, "venv", "-q", "--python", sys.executable, str(venv)],
        check=True,
        env=env,
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    # --compile-bytecode as pip does: without .pyc files (and with PYTHONDONTWRITEBYTECODE set,
    # as here) every start compiles MLflow's ~1800 modules again, 20-60 s on 2 busy cores
    done = subprocess.run(
        [uv, "pip", "install", "-q", "--compile-bytecode", "--python",
         str(venv / "bin" / "python"), "-r", str(model_dir / "requirements.txt")],
        env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, f"uv cannot install the model's requirements: {done.stderr[-800:]}"
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import scratchlab"],
        cwd=venv,
        env=_bare_env(venv),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert "No module named 'scratchlab'" in probe.stderr, probe.stderr
    return venv


def _bare_env(venv: Path, tracking_uri: str | None = None) -> dict[str, str]:
    """This process's environment with the bare venv in place of the project's."""
    project_bin = Path(sys.executable).parent
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p) != project_bin]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(VIRTUAL_ENV=str(venv), PATH=os.pathsep.join([str(venv / "bin"), *path]))
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


_LOAD_AND_PREDICT = """
import importlib.util, sys
import mlflow, numpy
assert importlib.util.find_spec("scratchlab") is None, "scratchlab is importable"
model = mlflow.pyfunc.load_model(sys.argv[1])
numpy.save(sys.argv[3], model.predict(numpy.load(sys.argv[2])))
"""


def _bare_predict(bare_venv: Path, uri: str, run_id: str, X: np.ndarray,
                  tmp_path: Path) -> np.ndarray:
    """The run's model loaded by ``mlflow.pyfunc.load_model`` in an isolated Python (``-I``)
    of the bare venv, scoring ``X`` as float32 rows (what data/processed/*.npz holds)."""
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    subprocess.run(
        [str(bare_venv / "bin" / "python"), "-I", "-c", _LOAD_AND_PREDICT,
         f"runs:/{run_id}/model", "x.npy", "out.npy"],
        cwd=tmp_path, env=_bare_env(bare_venv, uri), check=True, capture_output=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )  # fmt: skip
    return np.load(tmp_path / "out.npy")


@pytest.mark.slow
def test_load_model_without_scratchlab(logged, bare_venv, tmp_path):
    """``mlflow.pyfunc.load_model`` in an isolated Python (``-I``) of the bare venv, scoring
    float32 rows."""
    uri, run_id, net, X, _ = logged
    got = _bare_predict(bare_venv, uri, run_id, X, tmp_path)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, net.predict(X))


@pytest.mark.slow
def test_conv_model_predicts_without_scratchlab(logged, logged_conv, bare_venv, tmp_path):
    """A conv net's model (im2col, conv and pooling inlined) in the bare venv: loaded by
    ``mlflow.pyfunc.load_model`` on float32 rows, and by ``mlflow models predict`` on JSON."""
    uri = logged[0]
    run_id, net, X = logged_conv
    np.testing.assert_array_equal(_bare_predict(bare_venv, uri, run_id, X, tmp_path),
                                  net.predict(X))
    _write_inputs(X, tmp_path)
    subprocess.run(
        [str(bare_venv / "bin" / "mlflow"), "models", "predict", "-m", f"runs:/{run_id}/model",
         "-i", "images.json", "-t", "json", "-o", "json.out", "--env-manager", "local"],
        cwd=tmp_path, env=_bare_env(bare_venv, uri), check=True, capture_output=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )  # fmt: skip
    predictions = json.loads((tmp_path / "json.out").read_text())["predictions"]
    np.testing.assert_array_equal(np.array(predictions, dtype=np.float32), net.predict(X))


def _write_inputs(rows: np.ndarray, directory: Path) -> None:
    """``images.csv`` (with a header row, as README shows) and ``images.json``."""
    columns = [f"pixel_{i}" for i in range(rows.shape[1])]
    pd.DataFrame(rows, columns=columns).to_csv(directory / "images.csv", index=False)
    (directory / "images.json").write_text(json.dumps({"inputs": rows.tolist()}))


@pytest.mark.slow
def test_mlflow_models_predict_without_scratchlab(logged, bare_venv, tmp_path):
    """README's recipe in the bare venv, from a directory outside the repo: 3 rows of a CSV
    with a header give 3 predictions, and so does the JSON alternative (~5 s each)."""
    uri, run_id, net, X, _ = logged
    _write_inputs(X[:3], tmp_path)
    for kind in ("csv", "json"):
        subprocess.run(
            [str(bare_venv / "bin" / "mlflow"), "models", "predict", "-m", f"runs:/{run_id}/model",
             "-i", f"images.{kind}", "-t", kind, "-o", f"{kind}.out", "--env-manager", "local"],
            cwd=tmp_path, env=_bare_env(bare_venv, uri), check=True, capture_output=True,
            timeout=SUBPROCESS_TIMEOUT_S,
        )  # fmt: skip
        predictions = json.loads((tmp_path / f"{kind}.out").read_text())["predictions"]
        assert len(predictions) == 3, kind
        np.testing.assert_array_equal(
            np.array(predictions, dtype=np.float32), net.predict(X[:3]), err_msg=kind
        )


def _post(url: str, body: str) -> list:
    request = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["predictions"]
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"HTTP {exc.code}: {exc.read()[:600]!r}") from exc


@pytest.mark.slow
def test_mlflow_models_serve_without_scratchlab(logged, bare_venv, tmp_path):
    """``mlflow models serve`` from the bare venv on a loopback port, queried on
    ``/invocations`` with ``inputs`` and ``dataframe_split`` JSON. (Not CSV: MLflow 3's server
    cannot parse a CSV body for a model with a tensor signature, see README.)"""
    uri, run_id, net, X, _ = logged
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(bare_venv / "bin" / "mlflow"), "models", "serve", "-m", f"runs:/{run_id}/model",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env=_bare_env(bare_venv, uri), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        def pong() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                    return response.status == 200
            except OSError:  # URLError too
                return False

        def serving() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"the model server exited:\n{(tmp_path / 'serve.log').read_text()}")
            return True

        wait_for(pong, 120, "the model server to answer /ping", alive=serving)
        rows = X[:3]
        bodies = {
            "inputs": {"inputs": rows.tolist()},
            "dataframe_split": {
                "dataframe_split": {
                    "columns": [f"pixel_{i}" for i in range(rows.shape[1])],
                    "data": rows.tolist(),
                }
            },
        }
        for kind, body in bodies.items():
            predictions = _post(f"{base}/invocations", json.dumps(body))
            assert len(predictions) == 3, kind
            np.testing.assert_array_equal(
                np.array(predictions, dtype=np.float32), net.predict(rows), err_msg=kind
            )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
