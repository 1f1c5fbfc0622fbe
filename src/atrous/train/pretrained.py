"""Backbone initialisation from a local ImageNet state_dict (e.g. torchvision's).

Backbone module names mirror torchvision's mobilenet_v2 / resnet, so their keys map by adding the
``backbone.`` prefix; keys that do not exist or do not fit are reported, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from atrous.checkpoint import read_checkpoint
from atrous.errors import ModelError

__all__ = ["BackboneInitReport", "load_backbone_weights"]


@dataclass
class BackboneInitReport:
    """Which file keys were loaded, which were skipped (and why), which backbone keys stay new."""

    source: str
    mapped: list[str] = field(default_factory=list)
    unmapped: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts and the first skipped keys."""
        text = (
            f"{self.source}: mapped {len(self.mapped)} tensors, skipped {len(self.unmapped)}, "
            f"{len(self.missing)} backbone tensors left at their initialisation"
        )
        if self.unmapped:
            text += " (skipped: " + ", ".join(f"{k} [{r}]" for k, r in self.unmapped[:3])
            text += ", ...)" if len(self.unmapped) > 3 else ")"
        return text


def load_backbone_weights(model: nn.Module, path: str | Path) -> BackboneInitReport:
    """Copy matching tensors of an ImageNet state_dict into ``model.backbone``; report the rest."""
    data = read_checkpoint(path)
    state = data.get("state_dict", data.get("model", data))
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: not a state_dict of tensors")
    own = model.state_dict()
    report = BackboneInitReport(source=str(path))
    update = {}
    for key, tensor in state.items():
        key = key.removeprefix("module.")
        target = key if key.startswith("backbone.") else f"backbone.{key}"
        if target not in own:
            report.unmapped.append((key, "not in backbone"))
        elif own[target].shape != tensor.shape:
            report.unmapped.append(
                (key, f"shape {tuple(tensor.shape)} vs {tuple(own[target].shape)}")
            )
        else:
            update[target] = tensor
            report.mapped.append(key)
    if not update:
        raise ModelError(f"{path}: no tensor matches the backbone (is it for another network?)")
    report.missing = [k for k in own if k.startswith("backbone.") and k not in update]
    model.load_state_dict(update, strict=False)
    return report
