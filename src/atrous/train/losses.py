"""Segmentation losses: cross-entropy with ignore index, class weights, OHEM, a Lovasz-softmax
term and an aux term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SegmentationLoss", "lovasz_softmax", "ohem_cross_entropy"]


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


_LOVASZ_STRIDE = 4


def _jaccard_gradient(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss at a sorted 0/1 truth vector
    (Berman et al., 2018, Algorithm 1): the IoU loss added by each error, largest first.
    """
    total = sorted_truth.sum()
    intersection = total - sorted_truth.cumsum(0)
    union = total + (1.0 - sorted_truth).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = 255
) -> torch.Tensor:
    """Lovasz-softmax loss (Berman et al., 2018): a convex surrogate of 1 - IoU, averaged over
    the classes present in the batch; it optimises the IoU of each class directly, so thin
    parts and boundaries weigh by their share of the class rather than of all pixels.
    """
    probs = logits.float().softmax(1).movedim(1, -1).reshape(-1, logits.shape[1])
    labels = target.reshape(-1)
    valid = labels != ignore_index
    probs, labels = probs[valid], labels[valid]
    losses = []
    for c in labels.unique().tolist():
        truth = (labels == c).float()
        errors = (truth - probs[:, c]).abs()
        errors, order = errors.sort(descending=True)
        losses.append(errors @ _jaccard_gradient(truth[order]))
    if not losses:
        return logits.sum() * 0.0
    return torch.stack(losses).mean()


class SegmentationLoss(nn.Module):
    """Cross-entropy (optionally OHEM, class-weighted) plus ``lovasz_weight`` x Lovasz-softmax on
    ``out``, plus ``aux_weight`` x the same on ``aux`` when the model returns ``{"out", "aux"}``.
    """

    def __init__(
        self,
        *,
        ignore_index: int = 255,
        class_weights: list[float] | None = None,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100_000,
        aux_weight: float = 0.4,
        lovasz_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept
        self.aux_weight = aux_weight
        self.lovasz_weight = lovasz_weight
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("weight", weight, persistent=False)

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of one output map."""
        loss = self._cross_entropy(logits, target)
        if self.lovasz_weight:
            # on every 4th pixel each way: the per-class sort costs ~0.8x a training step at full
            # resolution, ~5% on this 1/16 sample, which still sees every object
            step = _LOVASZ_STRIDE
            loss = loss + self.lovasz_weight * lovasz_softmax(
                logits[..., 1::step, 1::step],
                target[..., 1::step, 1::step],
                ignore_index=self.ignore_index,
            )
        return loss

    def _cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
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
