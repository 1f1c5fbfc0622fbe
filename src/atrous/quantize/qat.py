"""Quantization-aware fine-tuning: train through int8 rounding, then export int8 for ONNX Runtime.

BatchNorm is folded first, so the weights that see fake quantization are the ones ONNX Runtime
will quantize (per-channel symmetric int8, as in :mod:`atrous.quantize.ptq`). Every convolution's
output passes through an activation fake-quantizer (uint8, moving-average min/max). After
fine-tuning the fake quantizers are removed and the adapted float weights go through the same
static QDQ quantization as post-training quantization, so QAT and PTQ files are comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver
from torch.nn.utils import parametrize

from atrous._atomic import scratch_directory
from atrous.checkpoint import load_checkpoint
from atrous.data import build_dataset
from atrous.export.onnx import export_onnx
from atrous.quantize.bias_correction import fake_quantize_weight
from atrous.quantize.finetune import dataset_batches, finetune
from atrous.quantize.fold import fold_batchnorm
from atrous.quantize.ptq import calibration_batches, quantize_onnx

__all__ = [
    "WeightFakeQuant",
    "insert_fake_quant",
    "remove_fake_quant",
    "qat_finetune",
    "qat_export",
]


class WeightFakeQuant(nn.Module):
    """Parametrization: int8 symmetric rounding of a weight, straight-through gradient."""

    def __init__(self, granularity: str = "per-channel") -> None:
        super().__init__()
        self.granularity = granularity

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        rounded = fake_quantize_weight(weight.detach(), self.granularity)  # type: ignore[arg-type]
        return weight + (rounded - weight).detach()


def _activation_quantizer() -> FakeQuantize:
    return FakeQuantize(
        observer=MovingAverageMinMaxObserver,
        quant_min=0,
        quant_max=255,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )


def insert_fake_quant(model: nn.Module, granularity: str = "per-channel") -> nn.Module:
    """Fold BN and add weight and output fake quantization to every Conv2d, in place."""
    fold_batchnorm(model)
    for conv in [m for m in model.modules() if isinstance(m, nn.Conv2d)]:
        parametrize.register_parametrization(conv, "weight", WeightFakeQuant(granularity))
        conv.act_fake_quant = _activation_quantizer()
        conv._atrous_qat_hook = conv.register_forward_hook(
            lambda module, inputs, output: module.act_fake_quant(output)
        )
    return model


def remove_fake_quant(model: nn.Module) -> nn.Module:
    """Drop the fake quantizers, keeping the fine-tuned float weights; in place."""
    for conv in [m for m in model.modules() if isinstance(m, nn.Conv2d)]:
        if parametrize.is_parametrized(conv, "weight"):
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=False)
        if hasattr(conv, "_atrous_qat_hook"):
            conv._atrous_qat_hook.remove()
            del conv._atrous_qat_hook
            del conv.act_fake_quant
    return model


def qat_finetune(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int = 200,
    lr: float = 1e-4,
    granularity: str = "per-channel",
    ignore_index: int = 255,
    progress: Callable[[int, float], None] | None = None,
) -> nn.Module:
    """Fine-tune with fake quantization at a small learning rate; returns the float model
    (BN folded, fake quantizers removed) ready for export and static quantization."""
    insert_fake_quant(model, granularity)
    try:
        finetune(model, batches, steps=steps, lr=lr, ignore_index=ignore_index, progress=progress)
    finally:
        remove_fake_quant(model)
    return model.eval()


def qat_export(
    model: nn.Module,
    card: Any,
    calib: Any,
    out: str | Path,
    *,
    num: int = 100,
    granularity: str = "per-channel",
) -> Path:
    """Export a QAT-fine-tuned model and quantize it statically for ONNX Runtime."""
    batches = calibration_batches(calib, card, num)
    with scratch_directory("qat") as tmp:
        float_path = export_onnx(model, card, Path(tmp) / "qat_float.onnx")
        return quantize_onnx(float_path, batches, out, granularity=granularity)  # type: ignore[arg-type]


def qat_train(
    experiment: Any,
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    steps: int | None = None,
    lr_scale: float = 0.01,
    num: int = 100,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[Path, Path]:
    """``atrous train --qat --from CHECKPOINT``: QAT fine-tuning, then an int8 ONNX file.

    Uses the experiment's data (train split), crop and batch size; the learning rate is the
    experiment's ``train.lr`` times ``lr_scale``. ``steps`` defaults to one epoch. Writes
    ``qat_float.onnx`` (the fine-tuned float network, BN folded) and ``model.int8.onnx`` into
    ``out_dir``; returns both paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, card = load_checkpoint(checkpoint)
    train_set = build_dataset(experiment.data, "train")
    cfg = experiment.train
    batches = dataset_batches(
        train_set,
        card,
        batch_size=cfg.batch_size,
        crop=experiment.data.crop_size,
        seed=cfg.seed,
        scale_range=experiment.data.scale_range,
    )
    steps = steps or max(1, len(train_set) // cfg.batch_size)
    qat_finetune(model, batches, steps=steps, lr=cfg.lr * lr_scale, progress=progress)
    float_path = export_onnx(model, card, out / "qat_float.onnx")
    calib = calibration_batches(train_set, card, num)
    int8_path = quantize_onnx(float_path, calib, out / "model.int8.onnx", num=num)
    return float_path, int8_path
