"""What a value must be, said once and checked in two places.

The engine checks its arguments with these rules and raises a plain ``ValueError``/``TypeError``
naming the argument (``dropout=1.5 is out of range; ...``); the config layer checks the same
rule objects under the config key (``model.dropout=1.5 is out of range; ...``) and turns the
error into a ``ConfigError``. A rule is written once: the engine's in ``scratchlab.spec``, the
datasets' in ``scratchlab.data``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any


@dataclass(frozen=True)
class Number:
    """A finite int/float in a range; ``integer`` also rejects floats."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def check(self, name: str, value: Any) -> Any:
        kind = "an integer" if self.integer else "a number"
        wanted = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, wanted):
            raise TypeError(f"{name}={value!r} is not {kind}")
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r} must be finite")
        low, high = self.low, self.high
        too_low = low is not None and (value <= low if self.low_open else value < low)
        too_high = high is not None and (value >= high if self.high_open else value > high)
        if too_low or too_high:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            lo, hi = "-inf" if low is None else low, "inf" if high is None else high
            span = f"{left}{lo}, {hi}{right}"
            raise ValueError(f"{name}={value!r} is out of range; expected {kind} in {span}")
        return value


@dataclass(frozen=True)
class Choice:
    """One of a fixed list of names."""

    options: tuple[str, ...]

    def check(self, name: str, value: Any) -> Any:
        if value not in self.options:
            raise ValueError(
                f"{name}={value!r} is not allowed; expected one of {', '.join(self.options)}"
            )
        return value


@dataclass(frozen=True)
class Flag:
    """true or false (not 0/1, not "yes")."""

    def check(self, name: str, value: Any) -> Any:
        if not isinstance(value, bool):
            raise TypeError(f"{name}={value!r} must be true or false")
        return value


@dataclass(frozen=True)
class Sizes:
    """A list of positive integers (layer widths); may be empty."""

    def check(self, name: str, value: Any) -> tuple[int, ...]:
        if not isinstance(value, Iterable) or isinstance(value, str | bytes | Mapping):
            raise TypeError(f"{name}={value!r} must be a list of layer sizes")
        sizes = list(value)
        for i, size in enumerate(sizes):
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
                raise ValueError(f"{name}[{i}]={size!r} must be a positive integer")
        return tuple(int(size) for size in sizes)


@dataclass(frozen=True)
class Text:
    """A non-empty string (a path, URL or name); ``Maybe(Text())`` also accepts None."""

    def check(self, name: str, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name}={value!r} must be a non-empty string")
        return value


@dataclass(frozen=True)
class Maybe:
    """``rule``, or None (null in YAML)."""

    rule: Number | Choice | Flag | Sizes | Text

    def check(self, name: str, value: Any) -> Any:
        return None if value is None else self.rule.check(name, value)


@dataclass(frozen=True)
class TextMap:
    """A mapping of names to strings (checksums keyed by file name)."""

    def check(self, name: str, value: Any) -> dict[str, str]:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise TypeError(f"{name}={value!r} must be a mapping of file names to strings")
        return dict(value)


@dataclass(frozen=True)
class Texts:
    """A list of non-empty strings (URLs)."""

    def check(self, name: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, Iterable) or isinstance(value, str | bytes | Mapping) or not all(
            isinstance(v, str) and v for v in value
        ):
            raise TypeError(f"{name}={value!r} must be a list of strings")
        return tuple(value)


Rule = Number | Choice | Flag | Sizes | Text | Maybe | TextMap | Texts


def ruled(rule: Rule, **kwargs: Any) -> Any:
    """A dataclass field carrying its rule: ``x: float = ruled(Number(0, 1), default=0.0)``."""
    return field(metadata={"rule": rule}, **kwargs)


def rules_of(cls: type) -> dict[str, Rule]:
    """``{field name: rule}`` of a dataclass whose fields were declared with :func:`ruled`."""
    return {f.name: f.metadata["rule"] for f in fields(cls) if "rule" in f.metadata}


def build(cls: type, values: Any, prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from a mapping, every value checked by its field's rule.

    Unknown keys, values left as ``???`` (Hydra's "you must set this") and rule violations
    raise ValueError/TypeError naming ``prefix + key``; a key absent from ``values`` takes the
    field's default. A field with ``metadata["schema"]`` (a dataclass) is built recursively.
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"{prefix.rstrip('.') or 'config'}={values!r} must be a mapping")
    known = {f.name: f for f in fields(cls)}
    unknown = [key for key in values if key not in known]
    if unknown:
        raise ValueError(
            f"{prefix}{unknown[0]}: unknown key; allowed: {', '.join(known)}"
        )
    kwargs = {}
    for name, f in known.items():
        required = f"(it is required; set {prefix}{name}=...)"
        if name not in values:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{prefix}{name}: missing {required}")
            continue
        value = values[name]
        if isinstance(value, str) and value == "???":
            raise ValueError(f"{prefix}{name}: no value given {required}")
        if "schema" in f.metadata:
            value = build(f.metadata["schema"], value, f"{prefix}{name}.")
        elif "rule" in f.metadata:
            value = f.metadata["rule"].check(prefix + name, value)
        kwargs[name] = value
    return cls(**kwargs)


def nested(schema: type, **kwargs: Any) -> Any:
    """A dataclass field holding another schema (``train.early_stopping``), for :func:`build`."""
    return field(metadata={"schema": schema}, **kwargs)


def to_plain(obj: Any) -> Any:
    """A built dataclass as plain dicts and lists (what YAML, JSON and MLflow params take)."""
    if is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj


def check_fields(obj: Any) -> None:
    """Check every ruled field of a dataclass instance, naming the field (engine-side use)."""
    for name, rule in rules_of(type(obj)).items():
        rule.check(name, getattr(obj, name))
