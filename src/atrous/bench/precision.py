"""The numeric precision a benchmarked model runs in (fp32, fp16, int8), read from its card and,
for files whose card does not say, from the graph itself (quantize nodes, weight types)."""

from __future__ import annotations

from pathlib import Path

import onnx

from atrous.card import ModelCard

__all__ = ["model_precision"]

_ONNX_INT8_OPS = {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul"}


def model_precision(card: ModelCard, file: Path | None) -> str:
    """'int8', 'fp16' or 'fp32': the card's fast-path or export facts, else the file's graph
    (an eager PyTorch model, no file, is fp32)."""
    if card.fast_path is not None:
        return card.fast_path.precision
    if card.export is not None and card.export.precision:
        return card.export.precision
    if file is None or not file.is_file():
        return "fp32"
    if file.suffix == ".onnx":
        return _onnx_precision(file)
    if file.suffix == ".xml":
        return _openvino_precision(file)
    return "fp32"


def _onnx_precision(file: Path) -> str:
    """int8 when the graph quantizes, fp16 when its weights are half floats."""
    proto = onnx.load(str(file), load_external_data=False)
    if any(node.op_type in _ONNX_INT8_OPS for node in proto.graph.node):
        return "int8"
    half = onnx.TensorProto.FLOAT16
    return "fp16" if any(t.data_type == half for t in proto.graph.initializer) else "fp32"


def _openvino_precision(file: Path) -> str:
    """int8 when the IR holds FakeQuantize or 8-bit constants, fp16 for half-float constants."""
    text = file.read_text(errors="replace")
    if "FakeQuantize" in text or 'element_type="i8"' in text or 'element_type="u8"' in text:
        return "int8"
    return "fp16" if 'element_type="f16"' in text else "fp32"
