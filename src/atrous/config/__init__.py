"""Typed configuration: pydantic schemas for every section; YAML in, one-line errors out.

Every schema forbids unknown keys, so a typo is reported as ``file: unknown key 'x.y'`` instead of
being silently ignored. ``_base``: the strict base and YAML/override parsing; ``model``: the
architecture and the input contract; ``experiment``: a training run's sections.
"""

from atrous.config._base import (
    MAX_CONFIG_BYTES,
    StrictModel,
    apply_overrides,
    format_validation_error,
    load_yaml,
    parse_config,
)
from atrous.config.experiment import (
    DataConfig,
    ExperimentConfig,
    ModelSection,
    TrainConfig,
    load_experiment,
)
from atrous.config.model import ModelConfig, Preprocessing

__all__ = [
    "MAX_CONFIG_BYTES",
    "StrictModel",
    "ModelConfig",
    "Preprocessing",
    "load_yaml",
    "parse_config",
    "apply_overrides",
    "format_validation_error",
    "DataConfig",
    "TrainConfig",
    "ModelSection",
    "ExperimentConfig",
    "load_experiment",
]
