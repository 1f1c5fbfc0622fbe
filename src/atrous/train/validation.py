"""Validation during training: score the model through the one evaluator, keep the best.

Validation runs on the run's device under its autocast, as training does; the logits are cast
to float32 before the evaluator's argmax and confusion matrix.

A result is *degenerate* when the model predicts a single class everywhere or scores no better
than predicting background everywhere: what a budget too short to learn anything leaves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from atrous.card import ModelCard
from atrous.checkpoint import save_checkpoint
from atrous.data import SegmentationDataset
from atrous.evaluate import EvalResult, evaluate
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter
from atrous.train.device import Placement
from atrous.train.distributed import unwrap
from atrous.train.run import Run

__all__ = ["DeviceEngine", "validate", "degenerate_reason", "validate_epoch"]


class DeviceEngine(TorchEngine):
    """The eager engine on a run's device and autocast: batches in from NumPy, float32 logits
    back on the host."""

    def __init__(self, model: nn.Module, placement: Placement, threads: int | None = None) -> None:
        super().__init__(model, threads=threads)
        self.placement = placement

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Float32 logits (N, C, H, W) for a float32 NCHW batch."""
        torch.set_num_threads(self.threads)
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self.placement.device)
        with torch.inference_mode(), self.placement.autocast():
            out = self.model(x)
        return out.float().cpu().contiguous().numpy()

    def describe(self) -> dict[str, Any]:
        """The eager engine's description plus device and precision."""
        return {
            **super().describe(),
            "device": str(self.placement.device),
            "amp": self.placement.amp,
        }


def validate(
    model: nn.Module,
    card: ModelCard,
    dataset: SegmentationDataset,
    *,
    limit: int | None = None,
    threads: int | None = None,
    placement: Placement | None = None,
) -> EvalResult:
    """Evaluate the model as it stands, through Segmenter + the one evaluator; on
    ``placement``'s device and autocast (default: CPU, float32)."""
    net = unwrap(model)
    was_training = net.training
    try:
        engine = DeviceEngine(net, placement or Placement(), threads=threads)
        return evaluate(Segmenter(engine, card), dataset, limit=limit, progress=False)
    finally:
        net.train(was_training)


def degenerate_reason(result: EvalResult) -> str | None:
    """Why a validation result is degenerate (one class predicted everywhere, or an mIoU no
    better than predicting background, class 0, everywhere); None when it is not."""
    matrix = np.asarray(result.confusion)
    predicted = int((matrix.sum(0) > 0).sum())
    if predicted <= 1:
        return "it predicts a single class everywhere"
    support = matrix.sum(1)
    present = int((support > 0).sum())
    background = float(support[0] / support.sum()) / present if present else 0.0
    if not result.miou > background + 1e-6:
        return f"its mIoU is no better than all-background ({background:.4f})"
    return None


def _card_with_metrics(card: ModelCard, result: EvalResult, epoch: int) -> ModelCard:
    metrics = {
        "miou": round(result.miou, 6),
        "pixel_accuracy": round(result.pixel_accuracy, 6),
        "protocol": result.protocol,
        "dataset": card.provenance.dataset,
        "epoch": epoch,
    }
    return card.model_copy(update={"metrics": {**card.metrics, **metrics}})


def validate_epoch(run: Run, epoch: int, row: dict[str, Any]) -> None:
    """Rank 0: score the model, add the scores to ``row``, save best.pt when it is the best."""
    cfg = run.config.train
    result = validate(
        run.net,
        run.card,
        run.val_data,
        limit=cfg.val_limit,
        threads=run.threads,
        placement=run.placement,
    )
    row.update(
        val_miou=round(result.miou, 6),
        val_pixel_accuracy=round(result.pixel_accuracy, 6),
        val_degenerate=degenerate_reason(result) is not None,
    )
    if result.miou > run.best_miou:
        run.best_miou, run.best_epoch = result.miou, epoch + 1
        save_checkpoint(run.best_path, run.net, _card_with_metrics(run.card, result, epoch + 1))
