"""A feed-forward network assembled from a ``NetworkSpec`` (``scratchlab.spec.network``): an
MLP, or a conv net (conv/pool blocks, then the MLP on the flattened feature maps).

Softmax + cross-entropy and sigmoid + cross-entropy are fused into one loss on the logits.
"""

import numpy

from scratchlab.core.errors import DataError
from scratchlab.nn.backend import xp
from scratchlab.nn.conv import AvgPool2D, Conv2D, MaxPool2D
from scratchlab.nn.initializers import get_initializer
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
from scratchlab.nn.losses import MeanSquaredError, SigmoidCrossEntropy, SoftmaxCrossEntropy
from scratchlab.spec.network import ConvBlock, NetworkSpec

ACTIVATIONS = {"sigmoid": Sigmoid, "relu": ReLU, "tanh": Tanh, "linear": Linear}
OUTPUTS = {"softmax": Softmax, "sigmoid": Sigmoid, "linear": Linear}
POOLS = {"maxpool": MaxPool2D, "avgpool": AvgPool2D}


class Network:
    """A sequence of layers, an output activation and a loss.

    ``params``/``grads`` are dicts keyed ``"dense1.W"``, ``"batchnorm1.gamma"``... holding the
    layers' own arrays, so ``optimizer.update(net.params, net.grads)`` trains in place.
    The L2 penalty ``0.5 * weight_decay * sum(W^2)`` over the Dense and Conv2D weights (not
    biases) lives only in ``loss`` and ``backward``, which therefore always agree.
    """

    def __init__(self, spec: NetworkSpec, named_layers: list[tuple[str, object]]) -> None:
        self.spec = spec
        self.dtype = xp.dtype(spec.dtype)
        self.named_layers = named_layers
        self.layers = [layer for _, layer in named_layers]
        self.output_layer = OUTPUTS[spec.output]()
        if spec.loss == "mse":
            self.loss_layer = MeanSquaredError()
            self.fused = False
        elif spec.output == "softmax":
            self.loss_layer = SoftmaxCrossEntropy()
            self.fused = True
        else:
            self.loss_layer = SigmoidCrossEntropy()
            self.fused = True
        # The network moves every layer's parameters into one vector, and their gradients
        # into another, leaving each layer a view of its part: ``fit`` then updates
        # ``[flat_params]`` with ``[flat_grads]``, the same step as per array but in ~12 whole-
        # vector NumPy calls instead of ~12 per array (a 2-layer net's 4 arrays: 48 calls).
        self.flat_params = _pack(named_layers, "params", self.dtype)
        self.flat_grads = _pack(named_layers, "grads", self.dtype)
        self.params = {
            f"{name}.{key}": value
            for name, layer in named_layers
            for key, value in layer.params.items()
        }
        self.grads = {
            f"{name}.{key}": value
            for name, layer in named_layers
            for key, value in layer.grads.items()
        }
        self.buffers = {
            f"{name}.{key}": value
            for name, layer in named_layers
            for key, value in getattr(layer, "buffers", {}).items()
        }
        weighted = [layer for layer in self.layers if isinstance(layer, Dense | Conv2D)]
        self._decayed = [layer.params["W"] for layer in weighted]
        self._decayed_grads = [layer.grads["W"] for layer in weighted]
        # Nobody reads the gradient with respect to the network's input: backward stops at the
        # first layer with weights (a conv net's reshape before it needs none), which skips
        # its own input gradient.
        self._first = next(i for i, layer in enumerate(self.layers) if layer.params)
        self.layers[self._first].input_grad = False
        self.output = None

    @property
    def classification(self) -> bool:
        return self.spec.classification

    def logits(self, x, train: bool = False):
        """Pre-activation output of the last Dense layer, for rows ``x`` of ``input_dim``."""
        for layer in self.layers:
            x = layer.forward(x, train)
        return x

    def forward(self, x, train: bool = False):
        """Network output: class probabilities (softmax/sigmoid) or regression values."""
        return self.output_layer.forward(self.logits(x, train), train)

    def l2_penalty(self) -> float:
        wd = self.spec.weight_decay
        if wd == 0.0:
            return 0.0
        return 0.5 * wd * sum(float(xp.vdot(W, W)) for W in self._decayed)

    def loss(self, x, t, train: bool = True) -> float:
        """Data loss (mean over the batch) plus the L2 penalty; leaves ``self.output`` set to
        this batch's probabilities/values for metrics."""
        z = self.logits(x, train)
        if self.fused:
            value = self.loss_layer.forward(z, t)
            self.output = self.loss_layer.y
        else:
            self.output = self.output_layer.forward(z, train)
            value = self.loss_layer.forward(self.output, t)
        return value + self.l2_penalty()

    def backward(self) -> None:
        """Fill ``grads`` for the batch of the last ``loss`` call, L2 gradient included."""
        dout = self.loss_layer.backward()
        if not self.fused:
            dout = self.output_layer.backward(dout)
        for layer in reversed(self.layers[self._first :]):
            dout = layer.backward(dout)
        wd = self.spec.weight_decay
        if wd != 0.0:
            for W, dW in zip(self._decayed, self._decayed_grads, strict=True):
                dW += wd * W

    def predict(self, x, batch_size: int = 1024):
        """Inference-mode outputs for ``x``, in batches to bound memory."""
        x = xp.asarray(x, dtype=self.dtype)
        out = xp.empty((x.shape[0], self.spec.output_dim), dtype=self.dtype)
        for start in range(0, x.shape[0], batch_size):
            out[start : start + batch_size] = self.forward(x[start : start + batch_size])
        return out

    def state_dict(self) -> dict:
        """Copies of all parameters and buffers (BatchNorm running statistics)."""
        return {key: value.copy() for key, value in {**self.params, **self.buffers}.items()}

    def load_state_dict(self, state) -> None:
        """Copy ``state`` into the existing arrays (optimizer references stay valid)."""
        own = {**self.params, **self.buffers}
        if set(state) != set(own):
            missing = sorted(set(own) - set(state))
            extra = sorted(set(state) - set(own))
            raise DataError(
                f"weights do not match the architecture: missing {missing}, unexpected {extra}"
            )
        for key, target in own.items():
            value = xp.asarray(state[key])
            if value.shape != target.shape:
                raise DataError(
                    f"weights {key!r}: shape {value.shape} does not match the architecture's "
                    f"{target.shape}"
                )
            xp.copyto(target, value, casting="same_kind")


def _pack(named_layers, attribute: str, dtype):
    """Move every array of ``layer.<attribute>`` into one new vector, and put a view of its
    part in the layer's dict in its place (the layers fill and read them in place)."""
    arrays = [getattr(layer, attribute) for _, layer in named_layers]
    flat = xp.empty(sum(a.size for d in arrays for a in d.values()), dtype=dtype)
    offset = 0
    for d in arrays:
        for key, value in d.items():
            view = flat[offset : offset + value.size].reshape(value.shape)
            view[...] = value
            d[key] = view
            offset += value.size
    return flat


def build_network(spec: NetworkSpec, rng: numpy.random.Generator) -> Network:
    """A freshly initialized network; ``rng`` draws the weights and later the dropout masks."""
    init = get_initializer(spec.init, spec.init_scale)
    named: list[tuple[str, object]] = []
    if spec.blocks:
        named.append(("reshape", Reshape(spec.image_shape)))
        channels = spec.image_shape[0]
        for i, block in enumerate(spec.blocks, start=1):
            if not isinstance(block, ConvBlock):
                named.append((f"{block.type}{i}", POOLS[block.type](block.size, block.stride)))
                continue
            conv = Conv2D.initialized(channels, block.filters, block.kernel, init, rng,
                                      spec.dtype, bias=not spec.batchnorm, stride=block.stride,
                                      padding=block.padding)
            named.append((f"conv{i}", conv))
            if spec.batchnorm:
                named.append((f"batchnorm_conv{i}", BatchNorm(block.filters, dtype=spec.dtype)))
            named.append((f"{spec.activation}_conv{i}", ACTIVATIONS[spec.activation]()))
            channels = block.filters
        named.append(("flatten", Flatten()))
    fan_in = spec.flat_dim
    for i, width in enumerate(spec.hidden, start=1):
        dense = Dense.initialized(fan_in, width, init, rng, spec.dtype, bias=not spec.batchnorm)
        named.append((f"dense{i}", dense))
        if spec.batchnorm:
            named.append((f"batchnorm{i}", BatchNorm(width, dtype=spec.dtype)))
        named.append((f"{spec.activation}{i}", ACTIVATIONS[spec.activation]()))
        if spec.dropout > 0.0:
            named.append((f"dropout{i}", Dropout(spec.dropout, rng)))
        fan_in = width
    last = len(spec.hidden) + 1
    named.append(
        (f"dense{last}", Dense.initialized(fan_in, spec.output_dim, init, rng, spec.dtype))
    )
    return Network(spec, named)
