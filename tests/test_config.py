"""Hydra composition, params.yaml drift, and validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from scratchlab.config import compose, load_params, validate, validate_batch_size, write_params
from scratchlab.config.schema import TrackingConfig, TrainConfig
from scratchlab.core.errors import ConfigError
from scratchlab.core.rules import to_plain
from scratchlab.data.registry import data_config

REPO = Path(__file__).resolve().parents[1]


def test_committed_params_yaml_is_the_composed_default(tmp_path: Path) -> None:
    generated = write_params(tmp_path / "params.yaml")
    committed = yaml.safe_load((REPO / "params.yaml").read_text())
    assert committed == yaml.safe_load(generated.read_text()), (
        "params.yaml drifted from conf/: run `scratchlab params` and commit it"
    )


def test_dvc_uses_hydra_composition() -> None:
    text = (REPO / ".dvc" / "config").read_text()
    assert "[hydra]" in text and "enabled = true" in text and "config_dir = conf" in text


def check(cfg):
    """Every key, the dataset's own included (what the entry points that read data run)."""
    return validate(cfg, data=data_config)


@pytest.mark.parametrize("dataset", ["digits", "mnist", "fashion_mnist", "ex3d1", "csv"])
def test_every_dataset_config_composes_and_validates(dataset: str) -> None:
    cfg = compose([f"data={dataset}"])
    assert check(cfg).data.name == cfg.data.name == dataset


def test_idx_dataset_needs_its_files() -> None:
    with pytest.raises(ConfigError, match="data.images"):
        check(compose(["data=idx"]))
    check(compose(["data=idx", "data.images=a.gz", "data.labels=b.gz"]))


def test_conf_defaults_are_the_schemas_defaults() -> None:
    """One source of truth: conf/train and conf/tracking say what the schema's defaults say."""
    cfg = validate(compose([]))
    assert to_plain(cfg.train) == to_plain(TrainConfig())
    assert to_plain(cfg.tracking) == to_plain(TrackingConfig())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+optimizer.lrr=0.1", r"^optimizer.lrr: unknown key for optimizer 'momentum'; allowed: "
                               r"name, lr, momentum$"),
        ("+model.hiden=[3]", r"^model.hiden: unknown key; allowed: name, hidden, activation"),
        ("+train.epoch=3", r"^train.epoch: unknown key; allowed: epochs, batch_size"),
        ("+train.early_stopping.patiense=3", r"^train.early_stopping.patiense: unknown key"),
        ("+data.split_sed=1", r"^data.split_sed: unknown key; allowed: name, task"),
        ("+tracking.experment=x", r"^tracking.experment: unknown key; allowed: uri, experiment"),
        ("+sweep.foo=1", r"^sweep: unknown config group; allowed: data, model, optimizer"),
        ("optimizer=adam +optimizer.momentum=0.9",
         r"^optimizer.momentum: unknown key for optimizer 'adam'; allowed: name, lr, beta1"),
    ],
)
def test_unknown_keys_are_rejected_in_every_group(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        check(compose(override.split()))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=0", r"optimizer.lr=0 is out of range"),
        ("optimizer.lr=-1", r"optimizer.lr=-1 is out of range"),
        ("optimizer.name=adamw", r"optimizer.name='adamw' is not allowed; expected one of sgd"),
        ("model.activation=gelu", r"model.activation='gelu' is not allowed; expected one of"),
        ("train.batch_size=0", r"train.batch_size=0 is out of range"),
        ("model.hidden=[100,0]", r"model.hidden\[1\]=0 must be a positive integer"),
        ("train.val_fraction=1.0", r"train.val_fraction=1.0 is out of range; .* in \(0, 1\)"),
        ("train.val_fraction=0", r"train.val_fraction=0 is out of range"),
        ("data.name=mnits", r"data.name='mnits' is not allowed; expected one of digits"),
        ("train.epochs=2.5", r"train.epochs=2.5 is not an integer"),
        ("model.dropout=1.0", r"model.dropout=1.0 is out of range"),
    ],
)
def test_invalid_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        check(compose([override]))
    assert "\n" not in str(err.value)


def test_batch_size_larger_than_the_data_is_rejected() -> None:
    cfg = validate(compose(["train.batch_size=5000"]))
    with pytest.raises(ConfigError, match=r"train.batch_size=5000 exceeds the 1293"):
        validate_batch_size(cfg, 1293)


def test_load_params_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not a valid YAML config"):
        load_params(bad)


def test_params_round_trip(tmp_path: Path) -> None:
    path = write_params(tmp_path / "p.yaml", ["optimizer=adam", "optimizer.lr=0.05"])
    cfg = load_params(path)
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == 0.05
    assert OmegaConf.select(cfg, "hydra") is None


@pytest.mark.parametrize(
    ("override", "message"),
    [  # without `+` Hydra refuses the key before the schema sees it: the same words as the
       # schema's for the `+` variant, not Hydra's advice to add `+` (issue 18)
        ("train.epoch=3", r"^train.epoch: unknown key; allowed: epochs, batch_size"),
        ("model.hiden=[3]", r"^model.hiden: unknown key; allowed: name, hidden, activation"),
        ("optimizer.lrr=0.1", r"^optimizer.lrr: unknown key; allowed: name, lr, momentum, "
                                  r"schedule$"),
        ("train.early_stopping.patiense=3",
         r"^train.early_stopping.patiense: unknown key; allowed: enabled, monitor, patience"),
        ("tracking.experment=x", r"^tracking.experment: unknown key; allowed: uri, experiment"),
        ("trian.epochs=3", r"^trian: unknown key; allowed: data, model, optimizer, train, "
                           r"tracking$"),
        ("optimizer=adamz", r"^In 'config': Could not find 'optimizer/adamz' Available options "
                            r"in 'optimizer': adagrad adam momentum nesterov rmsprop sgd$"),
        ("train.epochs=[1,", r"^train.epochs=\[1,: no viable alternative at input"),
        ("model.hidden.x=3", r"^cannot apply the overrides \(invalid literal for int\(\)"),
        ("~train.foo", r"^Could not delete from config. 'train.foo' does not exist.$"),
    ],
)
def test_an_override_hydra_refuses_is_one_config_error_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        compose([override])
    assert "\n" not in str(err.value)


def test_params_yaml_is_left_as_it_was_when_an_override_is_refused(tmp_path: Path) -> None:
    path = write_params(tmp_path / "params.yaml", ["optimizer=adam"])
    before = path.read_bytes()
    with pytest.raises(ConfigError, match=r"^train.epochz: unknown key; allowed: epochs"):
        write_params(path, ["train.epochz=3"])
    assert path.read_bytes() == before


def test_every_config_group_is_a_key_a_sweep_may_fix() -> None:
    """A multirun checks its fixed overrides too: each group of conf/ (``+sweep=lr``,
    ``hydra/launcher=slurm``, ``optimizer/schedule=cosine``) must pass that check."""
    from scratchlab.sweeps.keys import check_keys

    conf = Path(__file__).resolve().parents[1] / "conf"
    groups = sorted({str(p.parent.relative_to(conf)) for p in conf.rglob("*.yaml")} - {"."})
    assert {"sweep", "hydra/launcher", "optimizer/schedule"} <= set(groups)
    check_keys(groups)
