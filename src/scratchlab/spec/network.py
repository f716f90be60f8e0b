"""A network's architecture as data: the ``model.*`` config keys and ``build_network``'s input.

An MLP, per hidden layer ``i``: ``dense{i}`` [-> ``batchnorm{i}``] -> activation [-> dropout],
then a final ``dense{L}`` producing logits, an output activation and a loss.

A conv net (``blocks`` not empty) first reshapes each flat input row to its image, channels
first (``image_shape``: C, H, W), then runs its blocks in order: a ``conv`` block is
``conv{i}`` [-> ``batchnorm_conv{i}``] -> activation, a ``maxpool``/``avgpool`` block
``maxpool{i}``/``avgpool{i}`` (``i`` the block's place in the list, from 1); then ``flatten``
and the MLP above on the flattened features.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scratchlab.core.rules import (
    Choice,
    Flag,
    Maybe,
    Number,
    Sizes,
    build,
    check_fields,
    ruled,
)

ACTIVATIONS = ("sigmoid", "relu", "tanh", "linear")
OUTPUTS = ("softmax", "sigmoid", "linear")
LOSSES = ("cross_entropy", "mse")
DTYPES = ("float32", "float64")
INITIALIZERS = ("he", "xavier", "normal", "epsilon")
INIT_SCALE = Number(0, low_open=True)
_COUNT = Number(1, integer=True)


def check_output_loss(output: str, loss: str) -> None:
    """Cross-entropy needs probabilities: a linear output goes with the mse loss only."""
    if loss == "cross_entropy" and output == "linear":
        raise ValueError(
            "loss='cross_entropy' needs probabilities; use output 'softmax' or 'sigmoid', "
            "or loss 'mse' for a linear output"
        )


def output_size(size: int, window: int, stride: int, padding: int = 0) -> int:
    """Positions of a ``window`` slid by ``stride`` over ``size`` cells padded on both sides
    (the window must fit: ``window <= size + 2 padding``)."""
    return (size + 2 * padding - window) // stride + 1


@dataclass(frozen=True, kw_only=True)
class ConvBlock:
    """``filters`` kernels of ``kernel`` x ``kernel``, slid by ``stride`` over the input padded
    with ``padding`` zeros on each side; the network's activation follows."""

    type: str = ruled(Choice(("conv",)), default="conv")
    filters: int = ruled(_COUNT)
    kernel: int = ruled(_COUNT)
    stride: int = ruled(_COUNT, default=1)
    padding: int = ruled(Number(0, integer=True), default=0)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        _, h, w = shape
        return (self.filters, *(output_size(n, self.kernel, self.stride, self.padding)
                                for n in (h, w)))

    def window(self) -> tuple[int, int]:
        """(the window's size, the input padding around it)."""
        return self.kernel, self.padding


@dataclass(frozen=True, kw_only=True)
class PoolBlock:
    """The maximum (``maxpool``) or mean (``avgpool``) of each ``size`` x ``size`` window,
    slid by ``stride`` (default: ``size``, windows side by side), per channel."""

    type: str = ruled(Choice(("maxpool", "avgpool")))
    size: int = ruled(Number(1, 16, integer=True), default=2)  # a window's 256 pixels: a byte
    stride: int | None = ruled(Maybe(_COUNT), default=None)

    def __post_init__(self) -> None:
        if self.stride is None:
            object.__setattr__(self, "stride", self.size)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = shape
        return (c, *(output_size(n, self.size, self.stride) for n in (h, w)))

    def window(self) -> tuple[int, int]:
        return self.size, 0


BLOCKS = {"conv": ConvBlock, "maxpool": PoolBlock, "avgpool": PoolBlock}
Block = ConvBlock | PoolBlock


@dataclass(frozen=True)
class Blocks:
    """A list of conv/pool blocks, each a mapping with a ``type`` and that type's keys."""

    def check(self, name: str, value: Any) -> tuple[Block, ...]:
        if isinstance(value, str | bytes | Mapping) or not hasattr(value, "__iter__"):
            raise TypeError(f"{name}={value!r} must be a list of blocks, e.g. "
                            "[{type: conv, filters: 30, kernel: 5}, {type: maxpool, size: 2}]")
        blocks = []
        for i, block in enumerate(value):
            if isinstance(block, ConvBlock | PoolBlock):
                blocks.append(block)
                continue
            where = f"{name}[{i}]"
            if not isinstance(block, Mapping):
                raise TypeError(f"{where}={block!r} must be a mapping with a type "
                                f"({', '.join(BLOCKS)})")
            Choice(tuple(BLOCKS)).check(f"{where}.type", block.get("type"))
            blocks.append(build(BLOCKS[block["type"]], block, f"{where}."))
        return tuple(blocks)


def feature_shapes(blocks: tuple[Block, ...], image_shape: tuple[int, int, int],
                   prefix: str = "") -> list[tuple[int, int, int]]:
    """The (C, H, W) after each block; ValueError naming the first block whose window does not
    fit its input (``blocks[1].size=3: ...``)."""
    shapes = [image_shape]
    for i, block in enumerate(blocks):
        window, padding = block.window()
        _, h, w = shapes[-1]
        if window > min(h, w) + 2 * padding:
            key = "kernel" if isinstance(block, ConvBlock) else "size"
            after = f" (after blocks[{i - 1}])" if i else ""
            raise ValueError(f"{prefix}blocks[{i}].{key}={window}: larger than its {h}x{w} "
                             f"input{after}{f' padded by {padding}' if padding else ''}")
        shapes.append(block.output_shape(shapes[-1]))
    return shapes[1:]


@dataclass(frozen=True)
class NetworkSpec:
    """Architecture and regularization of a network; checked on construction.

    Its field rules are also the ``model.*`` config rules (``scratchlab.config.schema``);
    ``image_shape`` comes from the data (``Splits.image_shape``), not the config.
    """

    input_dim: int = ruled(_COUNT)
    output_dim: int = ruled(_COUNT)
    hidden: tuple[int, ...] = ruled(Sizes(), default=())
    activation: str = ruled(Choice(ACTIVATIONS), default="sigmoid")
    output: str = ruled(Choice(OUTPUTS), default="softmax")
    loss: str = ruled(Choice(LOSSES), default="cross_entropy")
    dropout: float = ruled(Number(0, 1, high_open=True), default=0.0)
    batchnorm: bool = ruled(Flag(), default=False)
    init: str = ruled(Choice(INITIALIZERS), default="xavier")
    init_scale: float = ruled(INIT_SCALE, default=0.01)
    weight_decay: float = ruled(Number(0), default=0.0)
    dtype: str = ruled(Choice(DTYPES), default="float32")
    blocks: tuple[Block, ...] = ruled(Blocks(), default=())
    image_shape: tuple[int, ...] | None = ruled(Maybe(Sizes()), default=None)

    def __post_init__(self) -> None:
        check_fields(self)
        object.__setattr__(self, "hidden", Sizes().check("hidden", self.hidden))
        object.__setattr__(self, "blocks", Blocks().check("blocks", self.blocks))
        for key in ("input_dim", "output_dim"):
            object.__setattr__(self, key, int(getattr(self, key)))
        for key in ("dropout", "init_scale", "weight_decay"):
            object.__setattr__(self, key, float(getattr(self, key)))
        check_output_loss(self.output, self.loss)
        if self.image_shape is not None:
            shape = Sizes().check("image_shape", self.image_shape)
            if len(shape) == 2:  # (H, W): one channel
                shape = (1, *shape)
            if len(shape) != 3 or shape[0] * shape[1] * shape[2] != self.input_dim:
                raise ValueError(f"image_shape={list(self.image_shape)}: expected (C, H, W) or "
                                 f"(H, W) holding the {self.input_dim} inputs")
            object.__setattr__(self, "image_shape", shape)
        if self.blocks:
            if self.image_shape is None:
                raise ValueError("blocks: a conv net needs images, and these inputs are rows of "
                                 f"{self.input_dim} features with no image shape")
            feature_shapes(self.blocks, self.image_shape)

    @property
    def classification(self) -> bool:
        return self.loss == "cross_entropy"

    @property
    def flat_dim(self) -> int:
        """Inputs of the first Dense layer: the flattened last feature map, or ``input_dim``."""
        if not self.blocks:
            return self.input_dim
        c, h, w = feature_shapes(self.blocks, self.image_shape)[-1]
        return c * h * w

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples as lists, blocks as mappings)."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["image_shape"] = None if self.image_shape is None else list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: Any, **overrides: Any) -> NetworkSpec:
        """Build from a mapping (e.g. a saved ``model.json``) plus ``overrides``; an unknown key
        is a ValueError, so typos do not pass silently."""
        merged = {**dict(d), **overrides}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown key; allowed: {', '.join(sorted(known))}")
        return cls(**merged)
