"""Importers of foreign checkpoint layouts into atrous's own: torchvision and
segmentation_models_pytorch state_dicts (each recognised from its keys and mapped, with a card)
and TF DeepLab model-zoo .tflite files (MobileNetV2, float or int8)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from atrous.card import ModelCard
from atrous.models.foreign.smp import from_smp, is_smp
from atrous.models.foreign.tflite import TFLiteImport, from_tflite
from atrous.models.foreign.torchvision import (
    describe_layout,
    from_torchvision,
    is_torchvision,
    unwrap_state_dict,
)

__all__ = [
    "FOREIGN_LAYOUTS",
    "TFLiteImport",
    "describe_layout",
    "foreign_layout",
    "from_foreign",
    "from_smp",
    "from_tflite",
    "from_torchvision",
    "is_smp",
    "is_torchvision",
    "unwrap_state_dict",
]

Importer = Callable[[Mapping[str, Any], str], "tuple[dict[str, Any], ModelCard]"]
# layout name -> (recognises its keys, maps a state_dict to atrous's with a card)
FOREIGN_LAYOUTS: dict[str, tuple[Callable[[Mapping[str, Any]], bool], Importer]] = {
    "torchvision": (is_torchvision, from_torchvision),
    "smp": (is_smp, from_smp),
}


def foreign_layout(state: Mapping[str, Any]) -> str | None:
    """The name of the foreign layout ``state``'s keys are in (None: none known)."""
    return next((name for name, (match, _) in FOREIGN_LAYOUTS.items() if match(state)), None)


def from_foreign(state: Mapping[str, Any], source: str) -> tuple[dict[str, Any], ModelCard] | None:
    """The atrous state_dict and card of a state_dict in a foreign layout; None if it is in
    none (ModelError when it is in one atrous cannot map)."""
    layout = foreign_layout(state)
    return None if layout is None else FOREIGN_LAYOUTS[layout][1](state, source)
