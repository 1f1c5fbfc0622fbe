"""Recover a model's architecture from its weights alone (for files without a model card).

Output stride cannot be read from weights (dilation has no parameters); it is reported as unknown.
"""

from __future__ import annotations

import re

import torch

from atrous.config import ModelConfig
from atrous.errors import ModelError
from atrous.models.backbones._base import make_divisible

__all__ = ["config_from_state_dict"]


def _count(keys: list[str], pattern: str) -> int:
    """Number of distinct integer indices matched by ``pattern``'s group."""
    return len({m.group(1) for k in keys if (m := re.match(pattern, k))})


def config_from_state_dict(
    state_dict: dict[str, torch.Tensor], source: str = "weights"
) -> ModelConfig:
    """Infer backbone, width, head, rates count, decoder and classes from state_dict keys/shapes."""
    keys = list(state_dict)
    if "classifier.weight" not in state_dict:
        raise ModelError(f"{source}: not a DeepLab state_dict (no 'classifier.weight')")
    fields: dict[str, object] = {"num_classes": int(state_dict["classifier.weight"].shape[0])}
    if any(k.startswith("backbone.features.") for k in keys):
        last = max(
            int(re.match(r"backbone\.features\.(\d+)\.", k).group(1))
            for k in keys
            if k.startswith("backbone.features.")
        )
        out = int(state_dict[f"backbone.features.{last}.conv.2.weight"].shape[0])
        width = round(out / 320 * 20) / 20
        low = int(state_dict["backbone.features.3.conv.2.weight"].shape[0])
        divisor = 8 if low == make_divisible(24 * width, 8) else 1
        fields.update(backbone="mobilenet_v2", width_mult=width, channel_divisor=divisor)
    elif any(k.startswith("backbone.layer4.") for k in keys):
        blocks = _count(keys, r"backbone\.layer3\.(\d+)\.")
        fields["backbone"] = {6: "resnet50", 23: "resnet101"}.get(blocks)
        fields["deep_stem"] = "backbone.conv1.0.weight" in state_dict
        if fields["backbone"] is None:
            raise ModelError(f"{source}: ResNet with {blocks} units in layer3 is not 50 or 101")
    elif any(k.startswith("backbone.entry_flow.") for k in keys):
        units = _count(keys, r"backbone\.entry_flow\.(\d+)\.")
        fields["backbone"] = {3: "xception65", 5: "xception71"}.get(units)
        if fields["backbone"] is None:
            raise ModelError(f"{source}: Xception with {units} entry units is not 65 or 71")
    else:
        raise ModelError(f"{source}: unrecognised backbone in state_dict")
    branches = _count(keys, r"head\.branches\.(\d+)\.")
    if branches == 0:
        fields["head"] = "none"
    elif branches == 1:
        fields["head"] = "pooling"
    else:
        w = state_dict["head.branches.1.0.weight"]
        fields["separable_aspp"] = w.shape[1] == 1
        fields["atrous_rates"] = tuple(6 * (i + 1) for i in range(branches - 1))
        fields["head_channels"] = int(state_dict["head.branches.0.0.weight"].shape[0])
    if any(k.startswith("decoder.") for k in keys):
        fields["decoder"] = True
        fields["separable_decoder"] = state_dict["decoder.refine.0.0.weight"].shape[1] == 1
        fields["low_level_channels"] = int(state_dict["decoder.reduce.0.weight"].shape[0])
    fields["aux_loss"] = any(k.startswith("aux_classifier.") for k in keys)
    return ModelConfig.model_validate(fields)
