"""The typed schema of every config group, and :func:`validate`, the one place it is checked.

Each group is a dataclass whose fields carry the rules the engine checks its arguments with
(``scratchlab.spec``: architecture, optimizers, training knobs) and those of the data layer's
datasets, so a rule is written once: the engine raises ``ValueError`` naming its argument, this
layer ``ConfigError`` naming the key. Nothing here imports the engine. DVC composes
``params.yaml`` in its own process (no Hydra ConfigStore there), so the schema is applied here,
after composition, by whichever entry point loaded the config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from scratchlab.core.errors import ConfigError
from scratchlab.core.rules import Flag, Maybe, Number, Text, build, nested, ruled, rules_of
from scratchlab.spec.data import FRACTION, DataConfig
from scratchlab.spec.network import NetworkSpec, check_output_loss
from scratchlab.spec.optim import check_optimizer, check_schedule
from scratchlab.spec.training import BATCH_SIZE, EPOCHS, DivergenceSpec, EarlyStoppingSpec

GROUPS = ("data", "model", "optimizer", "train", "tracking")


def _derived(name: str, engine: type, exclude: tuple[str, ...] = (), extra: tuple = ()) -> type:
    """A config schema with the engine dataclass's fields: same types, defaults and rules."""
    specs = [
        (f.name, f.type, field(default=f.default, metadata=f.metadata))
        for f in fields(engine) if f.init and f.name not in exclude
    ]
    return make_dataclass(name, [*extra, *specs], frozen=True, kw_only=True)


ModelConfig = _derived(
    "ModelConfig", NetworkSpec, exclude=("input_dim", "output_dim", "dtype", "image_shape"),
    extra=(("name", str, ruled(Text(), default="custom")),),
)
EarlyStoppingConfig = _derived(
    "EarlyStoppingConfig", EarlyStoppingSpec,
    extra=(("enabled", bool, ruled(Flag(), default=False)),),
)
_GUARD = rules_of(DivergenceSpec)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int = ruled(EPOCHS, default=40)
    batch_size: int = ruled(BATCH_SIZE, default=32)
    seed: int = ruled(Number(0, integer=True), default=0)
    val_fraction: float = ruled(FRACTION, default=0.1)
    early_stopping: Any = nested(EarlyStoppingConfig, default_factory=EarlyStoppingConfig)
    divergence_factor: float = ruled(_GUARD["factor"], default=DivergenceSpec.factor)
    divergence_patience: int = ruled(_GUARD["patience"], default=DivergenceSpec.patience)
    divergence_updates: int = ruled(_GUARD["updates"], default=DivergenceSpec.updates)
    progress: bool = ruled(Flag(), default=True)
    # one BLAS thread while training: the same weights on any core count (docs/reproducibility.md)
    deterministic: bool = ruled(Flag(), default=True)
    # k-fold cross-validation of each sweep point (0: off; docs/sweeps.md)
    cv_folds: int = ruled(Number(0, integer=True), default=0)


@dataclass(frozen=True, kw_only=True)
class TrackingConfig:
    uri: str | None = ruled(Maybe(Text()), default=None)
    experiment: str = ruled(Text(), default="scratchlab")
    run_name: str | None = ruled(Maybe(Text()), default=None)
    log_model: bool = ruled(Flag(), default=True)
    retry_window_s: float = ruled(Number(0), default=30.0)
    stale_after_s: float = ruled(Number(0, low_open=True), default=600.0)


@dataclass(frozen=True)
class OptimizerConfig:
    """``optimizer.name`` and the hyperparameters that optimizer takes (and no others), and its
    lr schedule: ``optimizer.schedule.name`` and that schedule's parameters (default constant)."""

    name: str
    hyper: dict[str, float]
    schedule: str = "constant"
    schedule_params: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(cls, values: Any, epochs: int) -> OptimizerConfig:
        if not isinstance(values, Mapping):
            raise TypeError(f"optimizer={values!r} must be a mapping")
        hyper = {k: v for k, v in values.items() if k not in ("name", "schedule")}
        check_optimizer(values.get("name"), hyper, "optimizer.")
        schedule = values.get("schedule", {"name": "constant"})
        if not isinstance(schedule, Mapping):
            raise TypeError(f"optimizer.schedule={schedule!r} must be a mapping")
        params = {k: v for k, v in schedule.items() if k != "name"}
        check_schedule(schedule.get("name"), params, hyper["lr"], epochs, "optimizer.schedule.")
        return cls(values["name"], hyper, schedule["name"], params)


@dataclass(frozen=True)
class Config:
    """A validated configuration: one typed object per group, and the plain dict it came from
    (what MLflow records as params and ``config.yaml``)."""

    data: DataConfig
    model: Any
    optimizer: OptimizerConfig
    train: TrainConfig
    tracking: TrackingConfig
    plain: dict[str, Any]

    def network_spec(self, input_dim: int, output_dim: int, dtype: str = "float32",
                     image_shape: tuple[int, ...] | None = None) -> NetworkSpec:
        """The engine's spec of the configured model for data of this shape; a model that
        cannot take it (a kernel larger than its input) is a ConfigError naming the key."""
        model = {f.name: getattr(self.model, f.name) for f in fields(self.model)}
        model.pop("name")
        try:
            return NetworkSpec(input_dim=input_dim, output_dim=output_dim, dtype=dtype,
                               image_shape=image_shape if model["blocks"] else None, **model)
        except ValueError as exc:
            raise ConfigError(f"model.{exc}") from None


def validate(cfg: Mapping[str, Any] | Config,
             data: Callable[[Any], DataConfig] | None = None) -> Config:
    """Build the typed config; any unknown key, missing or invalid value is one ConfigError line
    naming the key and what was expected (raised before any data is read or run started).

    ``data`` builds the data group. By default only the keys every dataset has are checked
    here (name, task, test_fraction, split_seed): a dataset's own keys are checked by the data
    layer when the data is fetched or loaded (``scratchlab.data.registry.data_config``), so
    code that never reads raw data (the DVC train and evaluate stages) need not import it.
    """
    if isinstance(cfg, Config):
        return cfg
    plain = _plain(cfg)
    unknown = [key for key in plain if key not in GROUPS]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown config group; allowed: {', '.join(GROUPS)}")
    missing = [group for group in GROUPS if group not in plain]
    if missing:
        raise ConfigError(f"{missing[0]}: missing config group (expected {', '.join(GROUPS)})")
    try:
        train = build(TrainConfig, plain["train"], "train.")
        config = Config(
            data=(data or common_data)(plain["data"]),
            model=build(ModelConfig, plain["model"], "model."),
            optimizer=OptimizerConfig.build(plain["optimizer"], train.epochs),
            train=train,
            tracking=build(TrackingConfig, plain["tracking"], "tracking."),
            plain=plain,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    _check_task(config)
    return config


def common_data(values: Any) -> DataConfig:
    """The data group's keys every dataset has, checked; the dataset's own keys are left."""
    if not isinstance(values, Mapping):
        raise TypeError(f"data={values!r} must be a mapping")
    common = {f.name for f in fields(DataConfig)}
    return build(DataConfig, {k: v for k, v in values.items() if k in common}, "data.")


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        # unset ``???`` values stay as the string "???" and are reported by name by ``build``
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return dict(cfg)


def _check_task(config: Config) -> None:
    if config.train.cv_folds == 1:
        raise ConfigError("train.cv_folds=1 is not a cross-validation; expected 0 (off) or an "
                          "integer >= 2")
    model = config.model
    try:
        check_output_loss(model.output, model.loss)
    except ValueError as exc:
        raise ConfigError(f"model.{exc}") from None
    if config.data.task == "regression" and (model.output != "linear" or model.loss != "mse"):
        raise ConfigError(
            "model.output/model.loss: regression needs output 'linear' and loss 'mse'"
        )


def validate_batch_size(config: Config, n_train: int) -> None:
    """The one check that needs the data: a batch cannot exceed the training set."""
    batch = config.train.batch_size
    if batch > n_train:
        raise ConfigError(
            f"train.batch_size={batch} exceeds the {n_train} training samples; "
            f"expected an integer in [1, {n_train}]"
        )
