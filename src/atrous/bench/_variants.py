"""Block variants as search axes of ``atrous optimize``: ModelConfig values (upsampling,
activation, separable ASPP) applied to a zoo model, whose weights are random, so a variant is
measured for latency; a trained checkpoint keeps the blocks it was trained with."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from torch import nn

from atrous.card import ModelCard
from atrous.config import ModelConfig, format_validation_error
from atrous.errors import InputError
from atrous.models.zoo import default_card, get_model, list_models
from atrous.sources import load_source

__all__ = ["VARIANT_KEYS", "VARIANT_VALUES", "check_variants", "load_variant"]

VARIANT_KEYS = ("upsampling", "activation", "separable_aspp")
VARIANT_VALUES: dict[str, list[str]] = {
    "upsampling": ["bilinear", "nearest", "transposed"],
    "activation": ["relu", "relu6", "hardswish"],
    "separable_aspp": ["false", "true"],
}


def check_variants(model: str, variants: dict[str, str]) -> None:
    """InputError unless ``variants`` are valid ModelConfig values and ``model`` a zoo name."""
    if not variants:
        return
    if model not in list_models():
        raise InputError(f"{model}: block variants ({', '.join(variants)}) apply to zoo names only")
    try:
        ModelConfig.model_validate({"backbone": "mobilenet_v2", **variants})
    except ValidationError as exc:
        raise InputError(format_validation_error(exc, "--search")) from None


def load_variant(model: str, variants: dict[str, str]) -> tuple[nn.Module, ModelCard, str]:
    """Model (eval), card and a file stem: the source as it is, or the zoo model rebuilt with
    ``variants``."""
    stem = "-".join([Path(model).stem, *variants.values()])
    if not variants:
        return (*load_source(model), stem)
    config = ModelConfig.model_validate({"backbone": "mobilenet_v2", **variants})
    typed = {k: getattr(config, k) for k in variants}  # 'true' -> True
    return get_model(model, **typed).eval(), default_card(model, **typed), stem
