"""Segmentation losses: cross-entropy with ignore index, class weights, OHEM and an aux term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SegmentationLoss", "ohem_cross_entropy"]


def ohem_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    ignore_index: int = 255,
    thresh: float = 0.7,
    min_kept: int = 100_000,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over hard pixels only: those whose true-class probability is below
    ``thresh``, or the ``min_kept`` hardest if fewer are (online hard example mining).
    """
    losses = F.cross_entropy(logits, target, weight, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    if not valid.any():
        return logits.sum() * 0.0
    with torch.no_grad():
        raw = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
        prob = torch.exp(-raw[valid])
        kept = prob < thresh
        if int(kept.sum()) < min_kept:
            k = min(min_kept, prob.numel())
            cutoff = prob.kthvalue(k).values
            kept = prob <= cutoff
    pixel_loss = losses[valid][kept]
    if weight is None:
        return pixel_loss.mean()
    pixel_weight = weight[target[valid][kept]]
    return pixel_loss.sum() / pixel_weight.sum().clamp_min(1e-12)


class SegmentationLoss(nn.Module):
    """Cross-entropy (optionally OHEM, class-weighted) on ``out`` plus ``aux_weight`` x the same
    on ``aux`` when the model returns ``{"out", "aux"}``.
    """

    def __init__(
        self,
        *,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100_000,
        aux_weight: float = 0.4,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept
        self.aux_weight = aux_weight
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("weight", weight, persistent=False)

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of one output map."""
        if self.ohem_thresh is not None:
            return ohem_cross_entropy(
                logits,
                target,
                ignore_index=self.ignore_index,
                thresh=self.ohem_thresh,
                min_kept=self.ohem_min_kept,
                weight=self.weight,
            )
        return F.cross_entropy(logits, target, self.weight, ignore_index=self.ignore_index)

    def forward(self, output: torch.Tensor | dict[str, torch.Tensor], target: torch.Tensor):
        if isinstance(output, dict):
            loss = self.single(output["out"], target)
            if "aux" in output and self.aux_weight:
                loss = loss + self.aux_weight * self.single(output["aux"], target)
            return loss
        return self.single(output, target)
