"""TFLite export through litert-torch (optional extra ``[tflite]``), fixed input size.

litert-torch traces at one size, and the resulting .tflite runs only at that size; asking the
engine for another size raises a clear error. The card is stored in the flatbuffer metadata.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from atrous._atomic import atomic_write_bytes
from atrous.card import ModelCard
from atrous.errors import ModelError
from atrous.export.onnx import ArgmaxHead, exported_card
from atrous.runtimes import CARD_KEY
from atrous.runtimes.litert_engine import add_tflite_metadata

__all__ = ["export_tflite", "tflite_converter", "MISSING_CONVERTER"]

MISSING_CONVERTER = (
    "TFLite export needs litert-torch: pip install 'atrous[tflite]' "
    "(about 1.2 GB with jax; ONNX and OpenVINO export need nothing extra)"
)


def tflite_converter() -> ModuleType | None:
    """The installed PyTorch -> TFLite converter module (litert_torch or ai_edge_torch)."""
    for name in ("litert_torch", "ai_edge_torch"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def export_tflite(
    model: nn.Module,
    card: ModelCard,
    path: str | Path,
    *,
    with_argmax: bool = False,
    size: tuple[int, int] | None = None,
) -> Path:
    """Convert ``model`` to a fixed-size .tflite (NCHW float input) with the card in metadata.

    The card records the size: preprocessing becomes 'fixed' at that size (square only), so the
    Segmenter resizes every image to what the file accepts.
    """
    converter = tflite_converter()
    if converter is None:
        raise ModelError(f"{path}: {MISSING_CONVERTER}")
    path = Path(path)
    h, w = size or (card.preprocessing.size or 513,) * 2
    if h != w:
        raise ModelError(f"{path}: TFLite export needs a square size, got {h}x{w}")
    net = (ArgmaxHead(model) if with_argmax else model).eval()
    out_card = exported_card(card, "tflite", with_argmax, size=[h, w])
    out_card.preprocessing = out_card.preprocessing.model_copy(
        update={"resize": "fixed", "size": h, "pad_multiple": 1}
    )
    try:
        edge_model = converter.convert(net, (torch.zeros(1, 3, h, w),))
        with tempfile.TemporaryDirectory() as tmp:
            staged = Path(tmp) / "model.tflite"
            edge_model.export(str(staged))
            content = staged.read_bytes()
    except Exception as exc:  # converter errors come in many types; report one line
        raise ModelError(f"{path}: TFLite conversion failed: {str(exc).splitlines()[0]}") from exc
    content = add_tflite_metadata(content, {CARD_KEY: out_card.to_json().encode("utf-8")})
    atomic_write_bytes(path, content)
    return path
