"""TFLite export: a fixed-size NHWC .tflite, float32 or full-integer int8, with the card inside.

The model is exported to a fixed-size ONNX graph and rewritten as a TFLite flatbuffer by
``atrous.export.onnx_to_tflite`` (needs only ``ai-edge-litert``: no TensorFlow, no
litert-torch); int8 comes from LiteRT's calibrator on the caller's images, preprocessed as at
inference. The file runs only at its size: the card's preprocessing becomes 'fixed' (square),
so the Segmenter resizes every image to it, and the input layout is NHWC, as TFLite runtimes and
NPU delegates (i.MX, STM32MP) expect.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
from torch import nn

from atrous._atomic import atomic_write_bytes, scratch_directory
from atrous.card import ModelCard, write_tflite_card
from atrous.errors import ModelError
from atrous.export.onnx import export_onnx, exported_card
from atrous.preprocess import image_of, preprocess
from atrous.runtimes.litert_engine import MISSING, litert_available

__all__ = ["export_tflite", "tflite_card", "PRECISIONS"]

PRECISIONS = ("fp32", "int8")


def tflite_card(card: ModelCard, size: int, with_argmax: bool, precision: str) -> ModelCard:
    """The card of a .tflite export: NHWC input, resized to ``size`` x ``size``, no padding."""
    out = exported_card(card, "tflite", with_argmax, size=[size, size], precision=precision)
    out.preprocessing = out.preprocessing.model_copy(
        update={"resize": "fixed", "size": size, "pad_multiple": 1, "layout": "NHWC"}
    )
    return out


def export_tflite(
    model: nn.Module,
    card: ModelCard,
    path: str | Path,
    *,
    with_argmax: bool = False,
    size: tuple[int, int] | None = None,
    precision: str = "fp32",
    calibration: Sequence[Any] = (),
) -> Path:
    """Write ``model`` as a fixed-size .tflite (NHWC float input) with the card in metadata.

    ``precision='int8'``: full-integer (int8 input, logits, weights and activations; labels
    stay int32), calibrated on ``calibration`` (dataset samples or RGB arrays); weights per
    channel.

    Raises:
        ModelError: LiteRT missing, a non-square size, no calibration images for int8, or a
            graph the converter does not cover (the node is named).
    """
    path = Path(path)
    if not litert_available():
        raise ModelError(f"{path}: TFLite export needs {MISSING.split('; ', 1)[1]}")
    if precision not in PRECISIONS:
        raise ModelError(f"{path}: precision must be fp32 or int8, got '{precision}'")
    if precision == "int8" and not calibration:
        raise ModelError(f"{path}: an int8 .tflite needs calibration images (--calib DATA)")
    h, w = size or (card.preprocessing.size or 513,) * 2
    if h != w:
        raise ModelError(f"{path}: TFLite export needs a square size, got {h}x{w}")
    from atrous.export.onnx_to_tflite import onnx_to_tflite, quantize_tflite

    out_card = tflite_card(card, h, with_argmax, precision)
    with scratch_directory("tflite") as tmp:
        staged = export_onnx(
            model,
            card,
            Path(tmp) / "fixed.onnx",
            dynamic=False,
            sample_size=(h, w),
            with_argmax=with_argmax,
        )
        try:
            content = onnx_to_tflite(onnx.load(str(staged)))
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
    if precision == "int8":
        content = quantize_tflite(content, _calibration_batches(out_card, calibration))
    content = write_tflite_card(content, out_card)
    atomic_write_bytes(path, content)
    return path


def _calibration_batches(card: ModelCard, items: Sequence[Any]) -> list:
    """Calibration items preprocessed exactly as the .tflite's card will preprocess images."""
    return [preprocess(card, [image_of(item)])[0] for item in items]
