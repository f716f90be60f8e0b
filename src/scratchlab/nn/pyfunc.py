"""Log a network to MLflow as a generic ``python_function`` model.

The model directory holds the weights and spec written by ``save_network`` (artifact
``network/``) and the model-from-code file ``pyfunc_model.py``, which MLflow runs on load to
get a ``NetworkModel`` that reloads the weights with ``load_network``; nothing is pickled.
Serving needs ``scratchlab`` importable (it is wherever the project is installed, e.g.
``mlflow models predict ... --env-manager local``). We do not ship the package via
``code_paths``: on load MLflow would evict the already-imported ``scratchlab`` modules from
``sys.modules``, splitting class identities (``ConfigError``...) inside a running process.
Requirements are pinned explicitly instead of inferred, which would spawn a slow subprocess.
"""

import tempfile
from pathlib import Path

import mlflow
import numpy
import pandas
from mlflow.models import infer_signature

from scratchlab.nn.network import Network
from scratchlab.nn.persistence import load_network, save_network

_WEIGHTS = "network.npz"
_MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")


class NetworkModel(mlflow.pyfunc.PythonModel):
    """Predicts class probabilities (or regression values), one row per input row."""

    def load_context(self, context) -> None:
        self.net = load_network(Path(context.artifacts["network"]) / _WEIGHTS)

    # The hint only tells MLflow not to infer a schema from it (DataFrames arrive too); the
    # signature comes from the input example instead.
    def predict(self, context, model_input: numpy.ndarray, params=None) -> numpy.ndarray:
        if isinstance(model_input, pandas.DataFrame):
            model_input = model_input.to_numpy()
        return self.net.predict(numpy.asarray(model_input, dtype=self.net.dtype))


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
