"""Optimizers: descent on a quadratic, hand-computed first steps, config handling."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from scratchlab.nn.optimizers import (
    SGD,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    RMSprop,
    make_optimizer,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "optimizer"
ALL = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adagrad": 0.5, "rmsprop": 0.05,
      "adam": 0.1}  # fmt: skip


def quadratic(params):
    """f = 0.5 * sum(a * x^2) per array, with its gradient a * x."""
    a = {"w": np.array([[1.0, 3.0], [0.5, 2.0]], dtype=np.float32), "b": np.float32(4.0)}
    loss = sum(0.5 * float(np.sum(a[k] * p**2)) for k, p in params.items())
    return loss, {k: (a[k] * p).astype(p.dtype) for k, p in params.items()}


@pytest.mark.parametrize("name", ALL)
def test_decreases_a_quadratic_in_place(name):
    params = {
        "w": np.array([[1.0, -2.0], [3.0, 0.5]], dtype=np.float32),
        "b": np.array([1.5], dtype=np.float32),
    }
    w = params["w"]
    opt = make_optimizer(name, LR[name])
    start, _ = quadratic(params)
    for _ in range(100):
        _, grads = quadratic(params)
        opt.update(params, grads)
    end, _ = quadratic(params)
    assert params["w"] is w and w.dtype == np.float32  # updated in place, dtype kept
    assert end < 0.05 * start
    states = [buf for buf in opt._buffers.values()]
    assert states and all(buf.dtype == np.float32 for buf in states)


def first_step(opt):
    p = np.array([1.0, 1.0])
    opt.update([p], [np.array([0.5, -2.0])])
    return p


def test_first_steps_by_hand():
    g, lr, m = np.array([0.5, -2.0]), 0.1, 0.9
    np.testing.assert_allclose(first_step(SGD(lr)), 1 - lr * g)
    np.testing.assert_allclose(first_step(Momentum(lr, m)), 1 - lr * g)
    np.testing.assert_allclose(first_step(Nesterov(lr, m)), 1 - (1 + m) * lr * g)
    np.testing.assert_allclose(first_step(AdaGrad(lr, 1e-7)), 1 - lr * g / (np.abs(g) + 1e-7))
    rms = 1 - lr * g / (np.sqrt(0.1 * g**2) + 1e-7)
    np.testing.assert_allclose(first_step(RMSprop(lr, 0.9, 1e-7)), rms)
    # Adam: m1 = 0.1 g and v1 = 0.001 g^2, so m_hat = g and v_hat = g^2
    adam = 1 - lr * g / (np.abs(g) + 1e-7)
    np.testing.assert_allclose(first_step(Adam(lr, 0.9, 0.999, 1e-7)), adam)
    np.testing.assert_allclose(adam, 1 - lr * np.sign(g), rtol=1e-5)


def test_adam_follows_the_paper_over_many_steps():
    """Algorithm 1 of Kingma & Ba, written plainly in float64, against our in-place float64 Adam
    on a sequence of random gradients."""
    rng = np.random.default_rng(0)
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-6
    p = rng.standard_normal(7)
    ours, reference = p.copy(), p.copy()
    m, v = np.zeros(7), np.zeros(7)
    adam = Adam(lr, b1, b2, eps)
    for t in range(1, 21):
        g = rng.standard_normal(7)
        adam.update([ours], [g])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        reference = reference - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(ours, reference, rtol=1e-13)


def test_learning_rate_is_read_at_every_step():
    """A schedule changes ``opt.lr`` between batches; the next update uses the new value."""
    opt, p = SGD(0.1), np.array([1.0])
    opt.update([p], [np.array([1.0])])
    opt.lr = 0.5
    opt.update([p], [np.array([1.0])])
    np.testing.assert_allclose(p, [1.0 - 0.1 - 0.5])


def test_second_momentum_step_by_hand():
    opt, p = Momentum(0.1, 0.9), np.array([1.0])
    opt.update([p], [np.array([1.0])])  # v = -0.1, p = 0.9
    opt.update([p], [np.array([2.0])])  # v = -0.09 - 0.2 = -0.29, p = 0.61
    np.testing.assert_allclose(p, [0.61])


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_conf_optimizer_files_build(path):
    cfg = yaml.safe_load(path.read_text())
    opt = make_optimizer(**cfg)
    assert opt.lr == cfg["lr"]
    for key in ("momentum", "beta1", "beta2", "eps", "rho"):
        if key in cfg:
            assert getattr(opt, key) == cfg[key]


def test_rejects_keys_the_optimizer_does_not_take():
    unknown = r"^momentum: unknown key for optimizer 'sgd'; allowed: lr$"
    with pytest.raises(ValueError, match=unknown):
        make_optimizer("sgd", 0.1, momentum=0.9)
    assert type(make_optimizer("sgd", 0.1)) is SGD


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^name='lbfgs' .*sgd, momentum, nesterov"):
        make_optimizer("lbfgs", 0.1)
    with pytest.raises(ValueError, match=r"^lr=0.0 is out of range"):
        make_optimizer("sgd", 0.0)
    with pytest.raises(ValueError, match=r"^momentum=1.0 is out of range"):
        make_optimizer("momentum", 0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"^eps=0 is out of range"):
        make_optimizer("adam", 0.1, eps=0)


def test_each_optimizer_takes_the_hyperparameters_its_spec_lists():
    """``scratchlab.spec.optim`` says what each optimizer takes; the classes must agree."""
    import inspect

    from scratchlab.nn.optimizers import OPTIMIZERS
    from scratchlab.spec import optim

    assert set(OPTIMIZERS) == set(optim.OPTIMIZERS)
    for name, cls in OPTIMIZERS.items():
        taken = tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")
        assert taken == optim.OPTIMIZERS[name], name
