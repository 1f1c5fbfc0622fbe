"""Export to deployment formats (ONNX, OpenVINO IR, TFLite, ncnn), each checked against PyTorch."""

from atrous.export.onnx import export_onnx
from atrous.export.parity import ParityReport, ParityRow, check_parity
from atrous.export.pipeline import FORMATS, ExportResult, export_model, parity_sizes

__all__ = [
    "FORMATS",
    "ExportResult",
    "ParityReport",
    "ParityRow",
    "check_parity",
    "export_model",
    "export_onnx",
    "parity_sizes",
]
