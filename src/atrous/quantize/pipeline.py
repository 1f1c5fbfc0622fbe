"""The int8 route from any model the project reads to a quantized file.

Checkpoints and zoo names go through the torch-side preparation first (BN folding, cross-layer
equalisation, bias correction), then ONNX export with the card, then static quantization; ONNX
files are quantized as they are (ONNX Runtime folds BN in its own pre-pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from atrous._atomic import scratch_directory
from atrous.card import ModelCard
from atrous.errors import InputError
from atrous.export.onnx import export_onnx
from atrous.quantize.bias_correction import bias_correct
from atrous.quantize.channel_padding import CHANNEL_MULTIPLE, pad_channels
from atrous.quantize.equalize import equalize as equalize_model
from atrous.quantize.fold import fold_batchnorm
from atrous.quantize.ptq import (
    CALIBRATION_METHODS,
    calibration_batches,
    check_settings,
    quantize_onnx,
)
from atrous.quantize.sensitivity import MixedResult, Scorer, auto_mixed
from atrous.sources import load_source

__all__ = [
    "QuantizeResult",
    "prepare_for_int8",
    "export_float",
    "choose_calibration",
    "quantize_model",
]


@dataclass
class QuantizeResult:
    """What ``quantize_model`` wrote and how: the int8 file, the float ONNX it came from."""

    path: Path
    float_path: Path
    settings: dict[str, Any] = field(default_factory=dict)
    mixed: MixedResult | None = None


def prepare_for_int8(
    model: nn.Module,
    batches: list[np.ndarray],
    *,
    granularity: str = "per-channel",
    equalize: bool = True,
    bias_correction: bool = True,
    relu6: str = "cap",
) -> nn.Module:
    """Fold BN, equalise depthwise chains and correct biases, in place (float output unchanged
    except for the bias correction, which anticipates int8 weight rounding)."""
    fold_batchnorm(model)
    if equalize:
        equalize_model(model, relu6=relu6)  # type: ignore[arg-type]
    if bias_correction:
        bias_correct(model, batches, granularity)  # type: ignore[arg-type]
    return model


def export_float(model: nn.Module, card: ModelCard, path: Path) -> Path:
    """Export the prepared float model to ONNX with its card (dynamic H/W)."""
    return export_onnx(model, card, path, opset=17, dynamic=True)


def choose_calibration(
    float_path: Path, calib: Any, score: Scorer, workdir: Path, **quant: Any
) -> str:
    """The calibration method (minmax, entropy, percentile) whose int8 model scores best."""
    scores = {}
    for method in CALIBRATION_METHODS:
        candidate = quantize_onnx(
            float_path, calib, workdir / f"calib_{method}.onnx", method=method, **quant
        )
        scores[method] = score(candidate)
    return max(scores, key=lambda m: scores[m])


def _prepare_float(
    model: str | Path,
    calib: Any,
    float_path: Path,
    settings: dict[str, Any],
    num: int,
    equalize: bool,
    bias_correction: bool,
    relu6: str,
    channel_multiple: int,
) -> list:
    """Prepare the checkpoint or zoo model for int8 (``prepare_for_int8``, channel padding),
    export it as float ONNX to ``float_path``, record what was done in ``settings``; return
    the preprocessed calibration batches."""
    net, card = load_source(model)
    batches = calibration_batches(calib, card, num)
    prepare_for_int8(
        net,
        batches,
        granularity=settings["granularity"],
        equalize=equalize,
        bias_correction=bias_correction,
        relu6=relu6,
    )
    if channel_multiple > 1:
        pad_channels(net, channel_multiple)
        settings["channel_multiple"] = channel_multiple
    export_float(net, card, float_path)
    settings.update(equalize=equalize, bias_correction=bias_correction)
    if equalize:
        settings["relu6"] = relu6
    return batches


def _checked_settings(
    granularity: str,
    activations: str,
    method: str,
    engine: str,
    mixed: bool,
    score: Callable[[Path], Scorer] | None,
) -> dict[str, Any]:
    """Check the requested settings (InputError when invalid or when 'auto' or ``mixed`` lack
    held-out data); return the settings record ``quantize_model`` starts from."""
    check_settings(granularity, activations, "minmax" if method == "auto" else method, engine)
    if (mixed or method == "auto") and score is None:
        raise InputError("automatic calibration choice and mixed precision need held-out data")
    return {
        "granularity": granularity,
        "activations": activations,
        "calibration": method,
        "engine": engine,
    }


def _keep_float(float_path: Path, src: Path, keep_float: Path | None) -> Path:
    """The float ONNX path to report: ``float_path`` copied to ``keep_float`` when one is asked
    for and the float model was made here (an ONNX source is reported as itself)."""
    kept = float_path if keep_float is None or float_path == src else Path(keep_float)
    if kept != float_path:
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_bytes(float_path.read_bytes())
    return kept


def quantize_model(
    model: str | Path,
    calib: Any,
    out: str | Path,
    *,
    num: int = 100,
    granularity: str = "per-channel",
    activations: str = "uint8",
    method: str = "minmax",
    engine: str = "onnxruntime",
    equalize: bool | None = None,
    bias_correction: bool = True,
    relu6: str = "cap",
    score: Callable[[Path], Scorer] | None = None,
    mixed: bool = False,
    max_drop: float = 0.5,
    keep_float: Path | None = None,
    channel_multiple: int = CHANNEL_MULTIPLE,
    progress: Callable[[str], None] | None = None,
) -> QuantizeResult:
    """Quantize a checkpoint, zoo name or float ONNX file to int8 at ``out``.

    Args:
        model: .pt checkpoint, zoo name or .onnx file.
        calib: calibration dataset / images (preprocessed with the model's card).
        equalize: cross-layer equalisation; default on for per-tensor weights (pitfall 1).
        bias_correction: correct biases for int8 weight rounding (checkpoints only).
        relu6: with equalisation, keep ReLU6 exact as per-channel caps ('cap') or turn it
            into ReLU ('relu': faster int8, changes outputs only above 6).
        method: minmax, entropy, percentile, or 'auto': try all three and keep the one that
            scores best on held-out data (needs ``score``).
        score: given the float ONNX path, returns the Scorer for held-out data (mIoU with
            labels, or agreement with float); used by method 'auto' and ``mixed``.
        mixed: automatic mixed precision (needs ``score``).
        max_drop: mixed-precision budget in score points.
        keep_float: also keep the prepared float ONNX at this path (for comparisons).
        channel_multiple: pad internal channel groups of a checkpoint with zero channels to
            multiples of this (exact; faster CPU kernels, atrous.quantize.channel_padding);
            1 leaves them as they are.
        progress: called with the name of each step as it starts (the CLI prints them).
    """
    step = progress or (lambda _: None)
    out = Path(out)
    settings = _checked_settings(granularity, activations, method, engine, mixed, score)
    equalize = granularity == "per-tensor" if equalize is None else equalize
    with scratch_directory("quant") as tmp:
        src = Path(str(model))
        float_path = src
        if src.suffix != ".onnx":
            float_path = Path(tmp) / "float.onnx"
            step("preparing the float model (fold BN, equalise, export)")
            prepare = (num, equalize, bias_correction, relu6, channel_multiple)
            calib = _prepare_float(model, calib, float_path, settings, *prepare)
        elif not src.is_file():
            raise InputError(f"{src}: file not found")
        scorer = score(float_path) if score is not None else None
        if method == "auto":
            step("choosing the calibration method on held-out data")
            method = choose_calibration(
                float_path,
                calib,
                scorer,
                Path(tmp),
                num=num,
                granularity=granularity,
                activations=activations,
            )
            settings["calibration"] = f"{method} (auto)"
        quant = dict(num=num, granularity=granularity, activations=activations, method=method)
        mixed_result = None
        step(f"calibrating and writing the int8 model ({engine})")
        if mixed:
            mixed_result = auto_mixed(float_path, calib, out, scorer, max_drop=max_drop, **quant)
        else:
            quantize_onnx(float_path, calib, out, engine=engine, **quant)
        kept = _keep_float(float_path, src, keep_float)
        return QuantizeResult(out, kept, settings, mixed_result)
