"""segmentation_models_pytorch (smp) DeepLab state_dicts -> atrous DeepLab state_dicts.

smp 0.6's ``DeepLabV3`` and ``DeepLabV3Plus`` keep their encoder under ``encoder.`` with
torchvision's module names (ResNet ``conv1`` ... ``layer4``, MobileNetV2 ``features.N``), so it
maps onto ``backbone.`` as it is; the decoder is renamed: ASPP -> ``head``, the 3x3 conv after it
(``decoder.conv``/``bn`` in V3, ``decoder.aspp.1``/``2`` in V3+) -> ``head_conv``, V3+'s
``block1`` -> ``decoder.reduce`` and ``block2`` -> ``decoder.refine.0``, ``segmentation_head.0``
-> ``classifier``. smp's separable convs (depthwise, pointwise, then one BN) become atrous's
with ``depthwise_bn=False``. The pre-0.3 V3 layout (``decoder.0/1/2``) is read too; the optional
image-classification head (``classification_head.``, ``aux_params``) has no atrous equivalent and
is left out.

What the weights cannot say (encoder output stride, ASPP rates, dilation scheme, upsampling)
comes from the zoo entry of smp's defaults (``atrous.models.zoo_smp``): a file trained with
another ``encoder_output_stride`` or ``decoder_atrous_rates`` loads, but computes something else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from atrous.card import ModelCard
from atrous.errors import ModelError
from atrous.models.introspect import config_from_state_dict
from atrous.models.zoo import default_card
from atrous.models.zoo_smp import SMP_ENTRIES

__all__ = ["from_smp", "is_smp"]

# a separable conv (SeparableConv2d = depthwise .0, pointwise .1) followed by its BN, or a dense
# conv followed by its BN -> atrous's numbering (SeparableConvBNReLU without depthwise BN)
_SEPARABLE = {"0.0.": "0.", "0.1.": "1.", "1.": "2."}
_DENSE = {"0.": "0.", "1.": "1."}
_BRANCH = re.compile(r"^decoder\.aspp\.(?:0\.)?convs\.([0-3])\.(.*)$")
# (smp key pattern, its atrous key from the match), first match wins; ASPP branches (dense or
# separable, by file) are renamed before these
_RENAMES: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"^encoder\.(.*)$"), lambda m: f"backbone.{m[1]}"),
    (
        re.compile(r"^decoder\.aspp\.(?:0\.)?convs\.4\.1\.(.*)$"),
        lambda m: f"head.pooling.conv.{m[1]}",
    ),
    (
        re.compile(r"^decoder\.aspp\.(?:0\.)?convs\.4\.2\.(.*)$"),
        lambda m: f"head.pooling.bn.{m[1]}",
    ),
    (re.compile(r"^decoder\.aspp\.(?:0\.)?project\.(.*)$"), lambda m: f"head.project.{m[1]}"),
    # the 3x3 conv after ASPP: dense in V3 (decoder.conv, .bn), separable in V3+ (aspp.1, .2)
    (re.compile(r"^decoder\.conv\.(.*)$"), lambda m: f"head_conv.0.{m[1]}"),
    (re.compile(r"^decoder\.bn\.(.*)$"), lambda m: f"head_conv.1.{m[1]}"),
    (re.compile(r"^decoder\.aspp\.1\.(.*)$"), lambda m: "head_conv." + _group(f"0.{m[1]}", True)),
    (re.compile(r"^decoder\.aspp\.2\.(.*)$"), lambda m: "head_conv." + _group(f"1.{m[1]}", True)),
    (re.compile(r"^decoder\.block1\.(.*)$"), lambda m: f"decoder.reduce.{m[1]}"),
    (re.compile(r"^decoder\.block2\.(.*)$"), lambda m: "decoder.refine.0." + _group(m[1], True)),
    (re.compile(r"^segmentation_head\.0\.(.*)$"), lambda m: f"classifier.{m[1]}"),
]
_LEGACY = [
    ("decoder.0.", "decoder.aspp."),
    ("decoder.1.", "decoder.conv."),
    ("decoder.2.", "decoder.bn."),
]
_DROPPED = "classification_head."


def is_smp(state: Mapping[str, Any]) -> bool:
    """True for the key layout of an smp segmentation model (encoder, decoder, head)."""
    heads = {str(k).split(".", 1)[0] for k in state}
    return {"encoder", "decoder", "segmentation_head"} <= heads


def _group(rest: str, separable: bool) -> str:
    """The tail ``rest`` of a conv + BN group's key in atrous's numbering."""
    for old, new in (_SEPARABLE if separable else _DENSE).items():
        if rest.startswith(old):
            return new + rest[len(old) :]
    return rest


def _rename(key: str, separable_branches: set[str]) -> str:
    """The atrous key of one smp key (legacy V3 names already updated)."""
    if branch := _BRANCH.match(key):
        index, rest = branch.groups()
        return f"head.branches.{index}." + _group(rest, index in separable_branches)
    for pattern, replace in _RENAMES:
        if found := pattern.match(key):
            return replace(found)
    return key


def smp_to_atrous(state: Mapping[str, Any]) -> dict[str, Any]:
    """smp keys renamed to atrous's (the classification head left out)."""
    legacy = {}
    for key, value in state.items():
        for old, new in _LEGACY:
            if key.startswith(old):
                key = new + key[len(old) :]
        legacy[key] = value
    separable = {
        m.group(1) for k in legacy if (m := _BRANCH.match(k)) and m.group(2).startswith("0.0.")
    }
    return {_rename(k, separable): v for k, v in legacy.items() if not k.startswith(_DROPPED)}


# what an smp state_dict does not record (the keys are those of ModelCard.assumed)
SMP_GUESSES = {
    "normalisation": "ImageNet mean/std, smp's encoders' default; a state_dict does not say",
    "architecture": "smp 0.6's defaults (output stride, atrous rates, upsampling); a state_dict "
    "does not record them",
}


def from_smp(state: Mapping[str, Any], source: str) -> tuple[dict[str, Any], ModelCard]:
    """The atrous state_dict and card of an smp DeepLab state_dict; ModelError (one line
    naming ``source``) for an smp model atrous has no equivalent of."""
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{source}: not a state_dict (values are not all tensors)")
    mapped = smp_to_atrous(state)
    entries = {(e.config.arch, e.config.backbone): e.name for e in SMP_ENTRIES}
    known = ", ".join(entries.values())
    try:
        found = config_from_state_dict(mapped, source)
    except ModelError as exc:
        reason = str(exc).removeprefix(f"{source}: ")
        raise ModelError(
            f"{source}: smp layout with no atrous equivalent ({reason}); known: {known}"
        ) from None
    name = entries.get((found.arch, found.backbone))
    if name is None:
        raise ModelError(
            f"{source}: smp {found.arch} on {found.backbone} has no atrous equivalent; "
            f"known: {known}"
        )
    overrides: dict[str, object] = {
        "num_classes": found.num_classes,
        "head_channels": found.head_channels,
    }
    if found.decoder:
        overrides["decoder_channels"] = found.decoder_channels
    card = default_card(name, **overrides)
    return mapped, card.model_copy(update={"assumed": SMP_GUESSES})
