"""torchvision segmentation state_dicts -> atrous DeepLab state_dicts, with their config.

torchvision's ``deeplabv3_resnet50/101``, ``deeplabv3_mobilenet_v3_large`` and
``lraspp_mobilenet_v3_large`` share atrous's backbone names (``backbone.``; torchvision drops
MobileNetV3's ``features.`` level); the heads are renamed (DeepLabHead -> ``head`` + ``head_conv``
+ ``classifier``, FCNHead aux -> ``aux_classifier``, LRASPPHead -> ``head`` with its high
classifier as ``classifier``). The file is recognised from its keys, also wrapped as
``{'model': sd}`` (torchvision's reference scripts), ``{'state_dict': sd}`` or with ``module.``
(DDP) / ``model.`` (Lightning) prefixes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from atrous.card import ModelCard
from atrous.errors import ModelError
from atrous.models.introspect import config_from_state_dict
from atrous.models.zoo import default_card

__all__ = ["describe_layout", "from_torchvision", "is_torchvision", "unwrap_state_dict"]

# (torchvision key pattern, atrous replacement), first match wins
_RENAMES = [
    (r"^backbone\.(\d+)\.", r"backbone.features.\1."),  # MobileNetV3's features, unwrapped
    (r"^classifier\.0\.convs\.4\.1\.", "head.pooling.conv."),
    (r"^classifier\.0\.convs\.4\.2\.", "head.pooling.bn."),
    (r"^classifier\.0\.convs\.(\d)\.", r"head.branches.\1."),
    (r"^classifier\.0\.project\.", "head.project."),
    (r"^classifier\.1\.", "head_conv.0."),
    (r"^classifier\.2\.", "head_conv.1."),
    (r"^classifier\.4\.", "classifier."),
    (r"^classifier\.high_classifier\.", "classifier."),
    (r"^classifier\.(cbr|scale|low_classifier)\.", r"head.\1."),
    (r"^aux_classifier\.([01])\.", r"aux_classifier.0.\1."),
    (r"^aux_classifier\.4\.", "aux_classifier.2."),
]
# the zoo entry whose card (preprocessing, classes) a torchvision file gets, by (backbone, head)
_ENTRIES = {
    ("resnet50", "aspp"): "deeplabv3_resnet50_tv",
    ("resnet101", "aspp"): "deeplabv3_resnet101_tv",
    ("mobilenet_v3_large", "aspp"): "deeplabv3_mobilenet_v3_large_tv",
    ("mobilenet_v3_large", "lraspp"): "lraspp_mobilenet_v3_large_tv",
}
_CONTAINERS = ("state_dict", "model", "model_state_dict")
_PREFIXES = ("module.", "model.")


def unwrap_state_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """The state_dict inside a checkpoint dict: its ``state_dict`` / ``model`` entry if it holds
    one, with a ``module.`` or ``model.`` prefix shared by every key removed."""
    state: Mapping[str, Any] = data
    for key in _CONTAINERS:
        inner = data.get(key)
        if isinstance(inner, Mapping) and inner:
            state = inner
            break
    for prefix in _PREFIXES:
        while state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def is_torchvision(state: Mapping[str, Any]) -> bool:
    """True for the key layout of torchvision's DeepLabV3 or LR-ASPP models."""
    heads = ("classifier.0.convs.0.0.weight", "classifier.high_classifier.weight")
    return any(h in state for h in heads) and any(k.startswith("backbone.") for k in state)


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    return key


def from_torchvision(state: Mapping[str, Any], source: str) -> tuple[dict[str, Any], ModelCard]:
    """The atrous state_dict and card of a torchvision segmentation state_dict; ModelError (one
    line naming ``source``) for a torchvision architecture atrous has no equivalent of."""
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{source}: not a state_dict (values are not all tensors)")
    mapped = {_rename(k): v for k, v in state.items()}
    found = config_from_state_dict(mapped, source)
    name = _ENTRIES.get((found.backbone, found.head))
    if name is None:
        raise ModelError(
            f"{source}: torchvision {found.head} head on {found.backbone} has no atrous "
            f"equivalent; known: {', '.join(_ENTRIES.values())}"
        )
    card = default_card(name, num_classes=found.num_classes, aux_loss=found.aux_loss)
    return mapped, card


def describe_layout(data: Mapping[str, Any]) -> str:
    """What a checkpoint that fits no known layout looked like: top-level keys and the most
    common key prefixes, for a one-line error."""
    top = ", ".join(sorted(map(str, data))[:6]) + (" ..." if len(data) > 6 else "")
    state = unwrap_state_dict(data)
    counts: dict[str, int] = {}
    for key in state:
        head = str(key).split(".", 1)[0] + "."
        counts[head] = counts.get(head, 0) + 1
    common = sorted(counts, key=lambda p: -counts[p])[:4]
    return f"top-level keys: {top}; key prefixes: {', '.join(common) or 'none'}"
