"""Learning-rate schedules (``optimizer.schedule``): the lr of every update and every logged
epoch against the closed-form formulas written out here, warm-up, one-cycle, resuming, the
gradient check untouched, and the rules shared by the engine and the config."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from scratchlab.api import config
from scratchlab.core.errors import ConfigError
from scratchlab.nn.loop import fit
from scratchlab.nn.network import NetworkSpec, build_network
from scratchlab.nn.optimizers import SGD, Momentum
from scratchlab.nn.schedules import (
    Constant,
    CosineAnnealing,
    ExponentialDecay,
    LearningRateScheduler,
    OneCycle,
    StepDecay,
    make_schedule,
    steps_per_epoch,
)
from scratchlab.pipeline.job import run_config
from scratchlab.pipeline.netcheck import gradcheck
from scratchlab.pipeline.prepare import prepare_data
from scratchlab.pipeline.training import train
from scratchlab.spec.optim import SCHEDULES
from scratchlab.sweeps.keys import check_keys

CONF = Path(__file__).resolve().parents[1] / "conf" / "optimizer" / "schedule"
LR, EPOCHS = 0.2, 6


def _cos_from_to(start: float, end: float, x: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * x)) / 2


# The formulas of docs/learning-rates.md, lr(t) with t in epochs, written out independently.
FORMULAS = {
    "constant": ({}, lambda t: LR),
    "step": ({"step_size": 2, "gamma": 0.5}, lambda t: LR * 0.5 ** math.floor(t / 2)),
    "exponential": ({"gamma": 0.7}, lambda t: LR * 0.7**t),
    "cosine": ({"min_lr": 0.01},
               lambda t: 0.01 + (LR - 0.01) * (1 + math.cos(math.pi * t / EPOCHS)) / 2),
    "cosine+warmup": ({"min_lr": 0.0, "warmup_epochs": 2},
                      lambda t: LR * t / 2 if t < 2
                      else LR * (1 + math.cos(math.pi * (t - 2) / (EPOCHS - 2))) / 2),
    "step+warmup": ({"step_size": 1, "gamma": 0.5, "warmup_epochs": 1.5},
                    lambda t: LR * t / 1.5 if t < 1.5 else LR * 0.5 ** math.floor(t - 1.5)),
    "onecycle": ({"pct_start": 0.5, "div_factor": 10, "final_div_factor": 100},
                 lambda t: _cos_from_to(LR / 10, LR, t / 3) if t < 3
                 else _cos_from_to(LR, LR / 1000, (t - 3) / 3)),
}


def _name(case: str) -> str:
    return case.split("+")[0]


@pytest.fixture(scope="module")
def digits():
    base = config("train.progress=false")
    return prepare_data(base)[0]


class RecordingSGD(SGD):
    """SGD that remembers the lr of every update."""

    def __init__(self, lr: float) -> None:
        super().__init__(lr)
        self.seen: list[float] = []

    def update(self, params, grads) -> None:
        self.seen.append(self.lr)
        super().update(params, grads)


def _problem(n: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4)).astype(np.float32)
    Y = np.eye(3, dtype=np.float32)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1)]
    return X, Y


@pytest.mark.parametrize("case", list(FORMULAS))
def test_every_update_gets_the_formulas_lr(case: str) -> None:
    """n=50, batch 16: 4 updates an epoch (the last one partial), so t = step / 4."""
    params, formula = FORMULAS[case]
    X, Y = _problem()
    net = build_network(NetworkSpec(4, 3, (5,)), np.random.default_rng(0))
    optimizer = RecordingSGD(LR)
    scheduler = LearningRateScheduler(optimizer, make_schedule(_name(case), LR, EPOCHS, **params),
                                      steps_per_epoch(len(X), 16))
    history = fit(net, optimizer, X, Y, epochs=EPOCHS, batch_size=16,
                  rng=np.random.default_rng(0), callbacks=[scheduler], progress=False)
    expected = [formula(step / 4) for step in range(EPOCHS * 4)]
    np.testing.assert_allclose(optimizer.seen, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(history.history["lr"], expected[::4], rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", list(FORMULAS))
def test_the_lr_logged_per_epoch_is_the_formula_at_the_epochs_start(case: str, digits) -> None:
    """The configured pipeline (``optimizer.schedule`` composed from conf/) logs ``lr``."""
    params, formula = FORMULAS[case]
    overrides = [f"optimizer.schedule.{k}={v}" for k, v in params.items()]
    cfg = config("optimizer=sgd", f"optimizer.lr={LR}", f"optimizer/schedule={_name(case)}",
                 *overrides, f"train.epochs={EPOCHS}", "train.progress=false")
    history = train(cfg, digits).history
    np.testing.assert_allclose(history.history["lr"], [formula(e) for e in range(EPOCHS)],
                               rtol=1e-12, atol=0)


def test_the_run_holds_the_lr_curve(tracking_uri: str, tmp_path: Path) -> None:
    """The MLflow run's ``lr`` metric, one value per epoch (step = epoch from 1)."""
    params, formula = FORMULAS["cosine+warmup"]
    cfg = config(f"optimizer.lr={LR}", "optimizer/schedule=cosine",
                 *(f"optimizer.schedule.{k}={v}" for k, v in params.items()),
                 f"train.epochs={EPOCHS}", "train.progress=false", "tracking.log_model=false")
    run_config(cfg, tmp_path / "job")
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("scratchlab").experiment_id])
    curve = sorted(client.get_metric_history(run.info.run_id, "lr"), key=lambda m: m.step)
    assert [m.step for m in curve] == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose([m.value for m in curve], [formula(e) for e in range(EPOCHS)])
    assert run.data.params["optimizer.schedule.name"] == "cosine"
    assert run.data.params["optimizer.schedule.warmup_epochs"] == "2"


def test_warmup_rises_linearly_from_zero_to_the_lr() -> None:
    schedule = make_schedule("constant", 0.4, 10, warmup_epochs=4)
    ts = np.linspace(0, 4, 41)
    lrs = np.array([schedule(t) for t in ts])
    np.testing.assert_allclose(lrs, 0.4 * ts / 4, atol=1e-15)
    assert schedule(0) == 0 and schedule(4) == 0.4 and schedule(9.9) == 0.4
    assert np.all(np.diff(lrs) > 0)
    # a decaying schedule starts its decay after the warm-up, from the full lr
    step = make_schedule("step", 0.4, 10, step_size=2, gamma=0.1, warmup_epochs=4)
    assert step(3.99) < step(4) == step(5.99) == 0.4 and step(6) == pytest.approx(0.04)


def test_one_cycle_goes_up_to_the_lr_then_down_below_its_start() -> None:
    schedule = make_schedule("onecycle", 1.0, 20, pct_start=0.25, div_factor=25,
                             final_div_factor=1e4)
    ts = np.linspace(0, 20, 2001)
    lrs = np.array([schedule(t) for t in ts])
    peak = int(np.argmax(lrs))
    assert ts[peak] == 5.0 and lrs[peak] == 1.0 and lrs[0] == pytest.approx(1 / 25)
    assert np.all(np.diff(lrs[: peak + 1]) > 0) and np.all(np.diff(lrs[peak:]) < 0)
    assert lrs[-1] == pytest.approx(1 / 25 / 1e4)


def test_a_constant_schedule_trains_exactly_as_without_one() -> None:
    """The hook only sets the lr: same weights, bit for bit, as ``fit`` with no callback."""
    X, Y = _problem()
    results = []
    for with_schedule in (False, True):
        net = build_network(NetworkSpec(4, 3, (5,)), np.random.default_rng(0))
        optimizer = Momentum(0.1, 0.9)
        callbacks = [LearningRateScheduler(optimizer, Constant(0.1), 4)] if with_schedule else []
        fit(net, optimizer, X, Y, epochs=3, batch_size=16, rng=np.random.default_rng(1),
            callbacks=callbacks, progress=False)
        results.append(net.flat_params.copy())
    np.testing.assert_array_equal(*results)


def _fit_in_parts(parts: list[int], restart: bool) -> tuple[np.ndarray, list[float]]:
    """Train 6 epochs in ``parts``; with ``restart`` each part gets a new scheduler that
    loads the last one's state (a resumed process), else one scheduler goes on."""
    X, Y = _problem()
    net = build_network(NetworkSpec(4, 3, (5,)), np.random.default_rng(0))
    optimizer, rng = RecordingSGD(0.3), np.random.default_rng(1)
    schedule = make_schedule("cosine", 0.3, 6, warmup_epochs=1)
    scheduler = LearningRateScheduler(optimizer, schedule, 4)
    for epochs in parts:
        if restart:
            state = scheduler.state_dict()
            scheduler = LearningRateScheduler(optimizer, schedule, 4)
            scheduler.load_state_dict(state)
        fit(net, optimizer, X, Y, epochs=epochs, batch_size=16, rng=rng, callbacks=[scheduler],
            progress=False)
    assert scheduler.state_dict() == {"step": 24}
    return net.flat_params.copy(), optimizer.seen


@pytest.mark.parametrize("restart", [False, True], ids=["same-scheduler", "state-restored"])
def test_training_resumed_goes_on_where_it_stopped(restart: bool) -> None:
    whole, lrs = _fit_in_parts([6], restart=False)
    resumed, resumed_lrs = _fit_in_parts([2, 3, 1], restart)
    assert resumed_lrs == lrs
    np.testing.assert_array_equal(resumed, whole)


def test_the_gradient_check_is_the_same_with_any_schedule() -> None:
    plain = gradcheck([], samples=4).result.errors
    for name in SCHEDULES:
        errors = gradcheck([f"optimizer/schedule={name}"], samples=4).result.errors
        assert errors == plain, name
        assert max(errors.values()) < 1e-6


def test_the_engines_schedules_take_the_keys_the_spec_lists() -> None:
    classes = {"constant": Constant, "step": StepDecay, "exponential": ExponentialDecay,
               "cosine": CosineAnnealing, "onecycle": OneCycle}
    assert set(classes) == set(SCHEDULES)
    for name, cls in classes.items():
        taken = set(inspect.signature(cls).parameters) - {"lr", "epochs"}
        assert taken == set(SCHEDULES[name]) - {"warmup_epochs"}, name


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_conf_schedule_files_compose_and_build(path: Path) -> None:
    values = yaml.safe_load(path.read_text())
    assert set(values) == {"name", *SCHEDULES[values["name"]]}, "every key, with its default"
    cfg = config(f"optimizer/schedule={path.stem}", "train.epochs=10")
    assert cfg.optimizer.schedule == values["name"]
    schedule = make_schedule(cfg.optimizer.schedule, 0.1, 10, **cfg.optimizer.schedule_params)
    assert 0 <= schedule(0.5) <= 0.1


def test_a_config_without_a_schedule_is_constant() -> None:
    """Runs logged before schedules existed still validate (``scratchlab reproduce``)."""
    from omegaconf import OmegaConf

    from scratchlab.config import compose, validate

    plain = OmegaConf.to_container(compose(["train.epochs=2"]))
    del plain["optimizer"]["schedule"]
    cfg = validate(plain)
    assert cfg.optimizer.schedule == "constant" and cfg.optimizer.schedule_params == {}


@pytest.mark.parametrize(("overrides", "message"), [
    (["optimizer.schedule.name=linear"],
     r"^optimizer.schedule.name='linear' is not allowed; expected one of constant, step"),
    (["optimizer/schedule=cosine", "+optimizer.schedule.gamma=0.5"],
     r"^optimizer.schedule.gamma: unknown key for schedule 'cosine'; allowed: name, min_lr, "
     r"warmup_epochs$"),
    (["optimizer/schedule=step", "optimizer.schedule.gamma=0"],
     r"^optimizer.schedule.gamma=0 is out of range; expected a number in \(0, 1\]"),
    (["optimizer/schedule=step", "optimizer.schedule.step_size=2.5"],
     r"^optimizer.schedule.step_size=2.5 is not an integer"),
    (["optimizer/schedule=cosine", "optimizer.schedule.warmup_epochs=40"],
     r"^optimizer.schedule.warmup_epochs=40 is out of range; expected a number in \[0, 40\)"),
    (["optimizer/schedule=cosine", "optimizer.schedule.min_lr=0.3"],
     r"^optimizer.schedule.min_lr=0.3 is out of range; expected a number in \[0, 0.3\)"),
    (["optimizer/schedule=onecycle", "+optimizer.schedule.warmup_epochs=2"],
     r"^optimizer.schedule.warmup_epochs: unknown key for schedule 'onecycle'"),
    (["optimizer/schedule=onecycle", "optimizer.schedule.pct_start=1"],
     r"^optimizer.schedule.pct_start=1 is out of range"),
], ids=["name", "key", "gamma", "step_size", "warmup", "min_lr", "onecycle-warmup", "pct"])
def test_bad_schedules_are_one_line_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(*overrides)


def test_the_engine_checks_with_the_same_rules() -> None:
    with pytest.raises(ValueError, match=r"^gamma=1.5 is out of range; expected a number in"):
        make_schedule("exponential", 0.1, 5, gamma=1.5)
    with pytest.raises(ValueError, match=r"^warmup_epochs=5 is out of range"):
        make_schedule("cosine", 0.1, 5, warmup_epochs=5)
    with pytest.raises(ValueError, match=r"^step_size: unknown key for schedule 'cosine'"):
        make_schedule("cosine", 0.1, 5, step_size=2)


def test_schedules_can_be_swept() -> None:
    check_keys(["optimizer/schedule", "optimizer.schedule.warmup_epochs",
                "optimizer.schedule.gamma"])
    with pytest.raises(ConfigError, match=r"optimizer.schedule.gama: unknown key"):
        check_keys(["optimizer.schedule.gama"])


def test_the_schedule_never_touches_parameters_or_gradients() -> None:
    X, Y = _problem()
    net = build_network(NetworkSpec(4, 3, (5,)), np.random.default_rng(0))
    net.loss(X, Y)
    net.backward()
    params, grads = net.flat_params.copy(), net.flat_grads.copy()
    scheduler = LearningRateScheduler(SGD(0.1), make_schedule("onecycle", 0.1, 3), 4)
    for step in range(12):
        scheduler.on_batch_begin(step // 4, step % 4)
    np.testing.assert_array_equal(net.flat_params, params)
    np.testing.assert_array_equal(net.flat_grads, grads)
