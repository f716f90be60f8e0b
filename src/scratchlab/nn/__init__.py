"""The from-scratch NumPy engine: layers, losses, optimizers, networks and training.

The names a notebook needs are here (``from scratchlab.nn import Dense, fit``); all array math
goes through ``scratchlab.nn.backend.xp`` (NumPy, or a library with its API such as CuPy).
Gradient checking is ``scratchlab.nn.gradcheck``.
"""

from scratchlab.nn.callbacks import Callback, DivergenceGuard, EarlyStopping, EpochEnd, History
from scratchlab.nn.conv import AvgPool2D, Conv2D, MaxPool2D
from scratchlab.nn.layers import (
    BatchNorm,
    Dense,
    Dropout,
    Flatten,
    Linear,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
    Tanh,
)
from scratchlab.nn.loop import fit, measure
from scratchlab.nn.losses import (
    CrossEntropy,
    MeanSquaredError,
    SigmoidCrossEntropy,
    SoftmaxCrossEntropy,
)
from scratchlab.nn.network import Network, NetworkSpec, build_network
from scratchlab.nn.optimizers import (
    SGD,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    RMSprop,
    make_optimizer,
)
from scratchlab.nn.persistence import load_network, save_network

__all__ = [
    "SGD", "AdaGrad", "Adam", "AvgPool2D", "BatchNorm", "Callback", "Conv2D", "CrossEntropy",
    "Dense", "DivergenceGuard", "Dropout", "EarlyStopping", "EpochEnd", "Flatten", "History",
    "Linear", "MaxPool2D", "MeanSquaredError", "Momentum", "Nesterov", "Network", "NetworkSpec",
    "RMSprop", "ReLU", "Reshape", "Sigmoid", "SigmoidCrossEntropy", "Softmax",
    "SoftmaxCrossEntropy", "Tanh", "build_network", "fit", "load_network", "measure",
    "make_optimizer", "save_network",
]
