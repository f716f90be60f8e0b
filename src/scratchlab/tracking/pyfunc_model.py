"""The model-from-code file MLflow stores with every logged network and runs to load it.

MLflow copies the logged version of this file into the model directory and executes it on
load (instead of unpickling an object, which could run arbitrary code). That version is
self-contained: ``scratchlab.tracking.model`` replaces the one ``INLINED`` import below with the
source of ``scratchlab.nn.functional`` (the activations the layers compute with, written once),
so it imports only the standard library, NumPy and MLflow (the model's pinned requirements,
with pandas), never ``scratchlab``, and the logged model loads and serves in any Python that
has those, e.g. ``mlflow models serve --env-manager local`` far from this repository.

It reads the two files ``save_network`` writes, ``network.npz`` (weights, no pickle) and
``network.json`` (the ``NetworkSpec``), and runs the network in inference mode in the layout
``scratchlab.spec.network`` describes: a conv net's reshape to images, convolutions, BatchNorm
with its running statistics, activations and pools, the flattening; then Dense ``x W + b``,
BatchNorm, the hidden activation, dropout as the identity, and the output softmax/sigmoid/
linear. Every step is a call to the same ``functional`` function the layers make, in the same
order and on the same 1024-row batches as ``Network.predict``, so the predictions are
bit-identical to ``Network.predict`` for the same weights; ``tests/test_tracking_model.py``
checks that over every activation, output, loss, batchnorm, dropout and dtype choice of
``NetworkSpec``, and over conv nets.
"""

import json
from pathlib import Path

import mlflow
import numpy as np

from scratchlab.nn.functional import (  # INLINED: the logged copy embeds it
    avg_pool2d,
    batchnorm,
    conv2d,
    dense,
    max_pool2d,
    relu,
    sigmoid,
    softmax,
)

WEIGHTS = "network.npz"  # the spec is the sibling network.json
BATCHNORM_EPS = 1e-5  # scratchlab.nn.layers.BatchNorm's eps
BATCHNORM_KEYS = ("gamma", "beta", "running_mean", "running_var")
BATCH_SIZE = 1024  # Network.predict's batch size (BLAS may round differently per shape)


def identity(x):
    return x


ACTIVATIONS = {"sigmoid": sigmoid, "relu": relu, "tanh": np.tanh, "linear": identity}
OUTPUTS = {"softmax": softmax, "sigmoid": sigmoid, "linear": identity}


def expected_weights(spec: dict) -> set:
    """The arrays a network of ``spec`` has (``Network.state_dict``'s keys)."""
    bn = bool(spec["batchnorm"])
    keys = set()
    for i, block in enumerate(spec.get("blocks") or [], start=1):
        if block["type"] == "conv":
            keys.add(f"conv{i}.W")
            keys |= ({f"batchnorm_conv{i}.{key}" for key in BATCHNORM_KEYS} if bn
                     else {f"conv{i}.b"})
    depth = len(spec["hidden"]) + 1
    for i in range(1, depth + 1):
        keys.add(f"dense{i}.W")
        if i == depth or not bn:  # BatchNorm's beta replaces the bias
            keys.add(f"dense{i}.b")
        else:
            keys |= {f"batchnorm{i}.{key}" for key in BATCHNORM_KEYS}
    return keys


class StandaloneNetwork:
    """A saved network's inference pass: ``spec`` is the spec dict, ``weights`` the arrays
    keyed ``"dense1.W"``, ``"batchnorm1.running_mean"``... as in ``Network.state_dict``."""

    def __init__(self, spec: dict, weights: dict) -> None:
        self.spec = spec
        self.dtype = np.dtype(spec["dtype"])
        self.input_dim = int(spec["input_dim"])
        self.output_dim = int(spec["output_dim"])
        self.activation = ACTIVATIONS[spec["activation"]]
        self.output = OUTPUTS[spec["output"]]
        self.depth = len(spec["hidden"]) + 1  # Dense layers; a BatchNorm after each hidden one
        expected = expected_weights(spec)
        if set(weights) != expected:
            raise ValueError(
                f"weights do not match the spec: missing {sorted(expected - set(weights))}, "
                f"unexpected {sorted(set(weights) - expected)}"
            )
        self.weights = {key: np.asarray(value, dtype=self.dtype) for key, value in weights.items()}

    @classmethod
    def load(cls, path) -> "StandaloneNetwork":
        """The network whose weights are at ``path`` (.npz) and spec beside it (.json)."""
        path = Path(path)
        spec = json.loads(path.with_suffix(".json").read_text())
        with np.load(path, allow_pickle=False) as archive:
            weights = {name: archive[name] for name in archive.files}
        return cls(spec, weights)

    def _batchnorm(self, x, name: str):
        w = self.weights
        return batchnorm(x, w[name + "running_mean"], w[name + "running_var"],
                         w[name + "gamma"], w[name + "beta"], BATCHNORM_EPS)[0]

    def _features(self, x):
        """A conv net's blocks on the rows as images, flattened again."""
        x = x.reshape((x.shape[0], *self.spec["image_shape"]))
        for i, block in enumerate(self.spec["blocks"], start=1):
            if block["type"] == "maxpool":
                x = max_pool2d(x, block["size"], block["stride"])[0]
            elif block["type"] == "avgpool":
                x = avg_pool2d(x, block["size"], block["stride"])
            else:
                x = conv2d(x, self.weights[f"conv{i}.W"], self.weights.get(f"conv{i}.b"),
                           block["stride"], block["padding"])[0]
                if self.spec["batchnorm"]:
                    x = self._batchnorm(x, f"batchnorm_conv{i}.")
                x = self.activation(x)
        return x.reshape(x.shape[0], -1)

    def forward(self, x):
        """Outputs for one batch ``x`` (rows of ``input_dim`` features, in ``dtype``)."""
        if self.spec.get("blocks"):
            x = self._features(x)
        for i in range(1, self.depth + 1):
            x = dense(x, self.weights[f"dense{i}.W"], self.weights.get(f"dense{i}.b"))
            if i == self.depth:
                break
            if self.spec["batchnorm"]:
                x = self._batchnorm(x, f"batchnorm{i}.")
            x = self.activation(x)
        return self.output(x)

    def predict(self, x):
        """Outputs for every row of ``x``, one row each, computed in batches of 1024 rows."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"expected rows of {self.input_dim} features, got shape {x.shape}")
        out = np.empty((x.shape[0], self.output_dim), dtype=self.dtype)
        for start in range(0, x.shape[0], BATCH_SIZE):
            out[start : start + BATCH_SIZE] = self.forward(x[start : start + BATCH_SIZE])
        return out


class NetworkModel(mlflow.pyfunc.PythonModel):
    """Class probabilities (or regression values), one row per input row."""

    def load_context(self, context) -> None:
        self.net = StandaloneNetwork.load(Path(context.artifacts["network"]) / WEIGHTS)

    # The hint only tells MLflow not to infer a schema from it (DataFrames arrive too). The
    # signature declares the outputs only, so float32 and float64 rows both arrive here.
    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        return self.net.predict(model_input)


mlflow.models.set_model(NetworkModel())
