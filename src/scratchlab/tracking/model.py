"""Log a network to MLflow as a generic ``python_function`` model.

The model directory holds the weights and spec written by ``save_network`` (artifact
``network/``) and the model-from-code file ``pyfunc_model.py``, which MLflow runs on load. That
file is self-contained (NumPy and MLflow only, no ``scratchlab`` import, nothing unpickled), so
the model loads, predicts and serves wherever its pinned requirements are installed, with
predictions bit-identical to ``Network.predict``. Requirements are pinned explicitly instead of
inferred, which would spawn a slow subprocess.

The signature declares the outputs only: MLflow checks a tensor input's dtype exactly (a
float64 spec refuses the float32 arrays of ``data/processed``, a float32 spec the float64
that CSV and JSON parse to), so the model takes any real dtype and checks the shape itself,
with a one-line error; the expected shape is in the model's metadata.
"""

import ast
import tempfile
from pathlib import Path

import mlflow
import numpy
import pandas
from mlflow.entities import LoggedModelStatus
from mlflow.models import Model, ModelSignature
from mlflow.types import Schema, TensorSpec

from scratchlab.nn import functional
from scratchlab.nn.network import Network
from scratchlab.nn.persistence import load_network, save_network

_MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
_FUNCTIONAL = Path(functional.__file__)
_WEIGHTS = "network.npz"  # pyfunc_model.WEIGHTS: the file name the model reads back


def model_code() -> str:
    """``pyfunc_model.py`` with its one scratchlab import (``scratchlab.nn.functional``)
    replaced by that module's source."""
    inlined = _FUNCTIONAL.read_text().replace(
        "from scratchlab.nn.backend import xp", "import numpy as xp")
    source = _MODEL_CODE.read_text()
    lines = source.splitlines()
    (node,) = [node for node in ast.parse(source).body if isinstance(node, ast.ImportFrom)
               and node.module == "scratchlab.nn.functional"]
    lines[node.lineno - 1 : node.end_lineno] = [
        "# --- scratchlab/nn/functional.py, inlined ---", inlined.strip(),
        "# --- end of scratchlab/nn/functional.py ---"]
    code = "\n".join(lines) + "\n"
    imported = {alias.name for node in ast.walk(ast.parse(code))
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(ast.parse(code))
                 if isinstance(node, ast.ImportFrom)}
    if any(name.split(".")[0] == "scratchlab" for name in imported):
        raise RuntimeError("the logged model code would import scratchlab")
    return code


def log_pyfunc_model(net: Network, name: str = "model", input_example=None, *,
                     run_id: str | None = None, model_id: str | None = None):
    """Log ``net`` to the active MLflow run (or ``run_id``) under ``name``, as a new model or
    into the pending ``model_id``; returns MLflow's ``ModelInfo``.

    ``input_example`` (rows of features) is stored with the model for its users and for
    ``mlflow models`` to show; any real dtype scores (module docstring).
    """
    outputs = Schema([TensorSpec(numpy.dtype(net.dtype), (-1, net.spec.output_dim))])
    metadata = {"input_shape": [-1, net.spec.input_dim], "input_dtypes": ["float32", "float64"],
                "dtype": str(net.dtype)}
    if net.spec.blocks:  # the rows are images, channels first, flattened
        metadata["image_shape"] = list(net.spec.image_shape)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "network"
        save_network(net, directory / _WEIGHTS)
        code = Path(tmp) / _MODEL_CODE.name
        code.write_text(model_code())
        return Model.log(  # mlflow.pyfunc.log_model's own call, which cannot name the run
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=model_id,
            python_model=str(code),
            artifacts={"network": str(directory)},
            signature=ModelSignature(outputs=outputs),
            input_example=None if input_example is None else numpy.asarray(input_example),
            metadata=metadata,
            pip_requirements=[
                f"numpy=={numpy.__version__}",
                f"pandas=={pandas.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
        )


def log_spooled_model(run_id: str, tracking_uri: str, files: Path, recover: str) -> None:
    """Log the network a run spooled during an outage (``files/network/network.npz`` and the
    input example) as that run's model, on the run's own store, as ``log_pyfunc_model`` does
    live; ``recover`` says what to do about a damaged spooled file.

    Safe to repeat after an interruption at any point: a READY model of the run means an
    earlier replay finished, and nothing is logged; one an interrupted replay (or a live
    attempt cut by the outage) left unfinished is deleted first, so the run ends with one
    model. The run is named, never resumed: its status stays the one the training process
    recorded (the spool's last operation)."""
    net = load_network(files / "network" / _WEIGHTS, recover=recover)
    example = files / "example.npy"
    example = numpy.load(example) if example.exists() else None
    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    experiment_id = run.info.experiment_id
    for model in client.search_logged_models(
            [experiment_id], f"source_run_id = '{run_id}' AND name = 'model'"):
        if model.status == LoggedModelStatus.READY:
            return
        client.delete_logged_model(model.model_id)
    model = client.create_logged_model(experiment_id, "model", source_run_id=run_id,
                                       params=run.data.params)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)  # Model.log's own client calls use the global URI
    try:
        log_pyfunc_model(net, "model", example, run_id=run_id, model_id=model.model_id)
    finally:
        mlflow.set_tracking_uri(previous)
