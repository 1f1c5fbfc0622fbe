"""Recover a model's architecture from its weights alone (for files without a model card).

The backbone is recognised by the state-dict signatures the registered backbones declare; the
head, decoder and classes from the DeepLab keys. Output stride cannot be read from weights
(dilation has no parameters); it is reported as unknown, and so is the activation (nor can
the ASPP rates, ``uniform_dilation`` or ``align_corners`` be read: foreign importers take them
from the zoo entry of the layout's defaults).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from atrous.config import ModelConfig
from atrous.errors import ModelError
from atrous.models.backbones._base import unit_indices
from atrous.models.deeplab import build_backbone
from atrous.registry import get_backbone, list_backbones

__all__ = ["config_from_state_dict", "backbone_from_state_dict"]

_PREFIX = "backbone."


def backbone_from_state_dict(state_dict: Mapping[str, Any], source: str = "weights") -> dict:
    """The config fields the backbone keys imply (``backbone`` included), from the first
    registered signature that claims them; ModelError naming ``source`` if none does."""
    own = {k[len(_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(_PREFIX)}
    signatures = list(dict.fromkeys(get_backbone(n).signature for n in list_backbones()))
    for signature in signatures:
        try:
            fields = signature(own)
        except ValueError as exc:  # its own keys, but none of its variants
            raise ModelError(f"{source}: {exc}") from None
        if fields is not None:
            return fields
    raise ModelError(f"{source}: unrecognised backbone in state_dict")


def config_from_state_dict(
    state_dict: dict[str, torch.Tensor], source: str = "weights"
) -> ModelConfig:
    """Infer backbone, width, head, rates count, decoder and classes from state_dict keys/shapes."""
    keys = list(state_dict)
    if "classifier.weight" not in state_dict:
        raise ModelError(f"{source}: not a DeepLab state_dict (no 'classifier.weight')")
    fields: dict[str, object] = {"num_classes": int(state_dict["classifier.weight"].shape[0])}
    fields.update(backbone_from_state_dict(state_dict, source))
    branches = len(unit_indices(keys, r"head\.branches\.(\d+)\."))
    if "head.cbr.0.weight" in state_dict:
        fields["head"] = "lraspp"
        fields["head_channels"] = int(state_dict["head.cbr.0.weight"].shape[0])
    elif branches == 0:
        fields["head"] = "none"
    else:
        fields["head_channels"] = int(state_dict["head.branches.0.0.weight"].shape[0])
    if branches == 1:
        fields["head"] = "pooling"
    elif branches > 1:
        w = state_dict["head.branches.1.0.weight"]
        fields["separable_aspp"] = w.shape[1] == 1
        if w.shape[1] == 1:  # a pointwise conv right after the depthwise one: no BN between
            fields["depthwise_bn"] = state_dict["head.branches.1.1.weight"].ndim != 4
        fields["atrous_rates"] = tuple(6 * (i + 1) for i in range(branches - 1))
    if any(k.startswith("decoder.") for k in keys):
        fields["decoder"] = True
        fields["separable_decoder"] = state_dict["decoder.refine.0.0.weight"].shape[1] == 1
        fields["low_level_channels"] = int(state_dict["decoder.reduce.0.weight"].shape[0])
        fields["decoder_channels"] = int(state_dict["classifier.weight"].shape[1])
        fields["decoder_convs"] = len(unit_indices(keys, r"decoder\.refine\.(\d+)\."))
        if fields["separable_decoder"]:
            fields["depthwise_bn"] = state_dict["decoder.refine.0.1.weight"].ndim != 4
    fields["aux_loss"] = any(k.startswith("aux_classifier.") for k in keys)
    fields["head_conv"] = "head_conv.0.weight" in state_dict
    fields.update(_aux_fields(state_dict, fields))
    if "upsample.deconv.weight" in state_dict:  # bilinear and nearest have no weights
        fields["upsampling"] = "transposed"
    return ModelConfig.model_validate(fields)


def _aux_fields(state_dict: dict[str, torch.Tensor], fields: dict[str, object]) -> dict:
    """``aux_channels`` when the aux head is not max(in / 4, 32) wide, and ``aux_stride`` 8 when
    the heads reading the aux features (aux head, LR-ASPP) take the stride-8 ones' channels."""
    found: dict[str, object] = {}
    aux = state_dict.get("aux_classifier.0.0.weight")
    low = state_dict.get("head.low_classifier.weight")
    reader = aux if aux is not None else low
    if aux is not None and aux.shape[0] != max(aux.shape[1] // 4, 32):
        found["aux_channels"] = int(aux.shape[0])
    if reader is not None and "aux_stride" in get_backbone(str(fields["backbone"])).fields:
        own = {k: v for k, v in fields.items() if k in ("backbone", "width_mult")}
        with torch.device("meta"):
            net = build_backbone(ModelConfig.model_validate(own))
        if net.feature_info[1].channels != reader.shape[1]:
            found["aux_stride"] = 8
    return found
