"""The configuration: composed by Hydra (``compose``) or read from ``params.yaml``
(``load_params``), then checked once against the typed schema (``validate`` -> ``Config``)."""

from scratchlab.config.compose import compose, conf_dir, load_params, write_params
from scratchlab.config.schema import Config, validate, validate_batch_size

__all__ = ["Config", "compose", "conf_dir", "load_params", "validate", "validate_batch_size",
           "write_params"]
