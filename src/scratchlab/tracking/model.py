"""Log a network to MLflow as a generic ``python_function`` model.

The model directory holds the weights and spec written by ``save_network`` (artifact
``network/``) and the model-from-code file ``pyfunc_model.py``, which MLflow runs on load. That
file is self-contained (NumPy and MLflow only, no ``scratchlab`` import, nothing unpickled), so
the model loads, predicts and serves wherever its pinned requirements are installed, with
predictions bit-identical to ``Network.predict``. Requirements are pinned explicitly instead of
inferred, which would spawn a slow subprocess.
"""

import tempfile
from pathlib import Path

import mlflow
import numpy
import pandas
from mlflow.models import infer_signature

from scratchlab.nn.network import Network
from scratchlab.nn.persistence import save_network

_MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
_WEIGHTS = "network.npz"  # pyfunc_model.WEIGHTS: the file name the model reads back


def log_pyfunc_model(net: Network, name: str = "model", input_example=None):
    """Log ``net`` to the active MLflow run under ``name``; returns MLflow's ``ModelInfo``.

    With ``input_example`` (rows of features) the signature is inferred from it and the
    network's predictions: a float64 tensor of shape (-1, input_dim), so CSV/JSON inputs of
    ints or floats are accepted.
    """
    signature = None
    if input_example is not None:
        input_example = numpy.asarray(input_example, dtype=numpy.float64)
        signature = infer_signature(input_example, net.predict(input_example))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "network"
        save_network(net, directory / _WEIGHTS)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(_MODEL_CODE),
            artifacts={"network": str(directory)},
            signature=signature,
            input_example=input_example,
            pip_requirements=[
                f"numpy=={numpy.__version__}",
                f"pandas=={pandas.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
        )
