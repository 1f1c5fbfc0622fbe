"""Export lints: constructs deployment runtimes handle badly, named by the module they come from.

Convolutions are checked on the PyTorch modules (exact names); resizes on a quick ONNX trace,
whose node names carry the module scope (functional ``F.interpolate`` calls have no module).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import onnx
import torch
from torch import nn

from atrous.export.onnx import torch_to_onnx

__all__ = ["LintWarning", "lint_model", "lint_onnx"]


@dataclass(frozen=True)
class LintWarning:
    """One finding: which module, what, and why it matters for ``format``."""

    module: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.module}: {self.message} [{self.code}]"


def _dilated_convs(model: nn.Module) -> list[LintWarning]:
    """Dilated convolutions: TensorFlow's converters lower them to SpaceToBatchND -> Conv ->
    BatchToSpaceND (atrous's own .tflite writer keeps TFLite's dilation factors instead)."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and max(module.dilation) > 1:
            found.append(
                LintWarning(
                    name,
                    "tflite-dilated-conv",
                    f"dilation {tuple(module.dilation)}: atrous writes TFLite's dilation factors, "
                    "but TensorFlow-based converters emit SpaceToBatchND/BatchToSpaceND (extra "
                    "copies, often not delegated; a larger output_stride avoids both)",
                )
            )
    return found


def _scope(node: onnx.NodeProto) -> str:
    """The module path encoded in an exported node name ('/decoder/Resize' -> 'decoder')."""
    parts = [p for p in node.name.split("/") if p][:-1]
    return ".".join(parts) if parts else "<model forward>"


def lint_onnx(proto: onnx.ModelProto, format: str) -> list[LintWarning]:
    """Resize findings in an ONNX graph: unsupported modes and align_corners conflicts."""
    found: list[LintWarning] = []
    modes = {}
    for node in proto.graph.node:
        if node.op_type != "Resize":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("mode", b"nearest").decode()
        coords = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
        scope = _scope(node)
        if mode == "cubic":
            found.append(
                LintWarning(
                    scope,
                    "resize-cubic",
                    "bicubic resize is not a TFLite builtin and is slow or unsupported on "
                    "accelerators; use bilinear",
                )
            )
        if coords == "asymmetric" and mode == "linear":
            found.append(
                LintWarning(
                    scope,
                    "resize-asymmetric",
                    "linear resize with 'asymmetric' coordinates (TF1 legacy) differs from "
                    "PyTorch's half-pixel sampling at every pixel",
                )
            )
        if mode == "linear":
            modes.setdefault(coords, []).append(scope)
            if coords == "align_corners" and format == "tflite":
                found.append(
                    LintWarning(
                        scope,
                        "resize-align-corners",
                        "align_corners=True maps to TFLite RESIZE_BILINEAR(align_corners=True), "
                        "which cannot be combined with half_pixel_centers and is handled "
                        "differently by some delegates; prefer align_corners=False",
                    )
                )
    if "align_corners" in modes and len(modes) > 1:
        others = sorted({s for k, v in modes.items() if k != "align_corners" for s in v})
        found.append(
            LintWarning(
                ", ".join(sorted(set(modes["align_corners"]))),
                "resize-mixed-conventions",
                "mixes align_corners=True with half-pixel resizes (in "
                f"{', '.join(others)}); converters that set one global half_pixel_centers "
                "flag get one of them wrong",
            )
        )
    return found


def lint_model(
    model: nn.Module, format: str, size: tuple[int, int] = (65, 65)
) -> list[LintWarning]:
    """All lints for exporting ``model`` to ``format`` ('onnx', 'openvino' or 'tflite')."""
    found = _dilated_convs(model) if format == "tflite" else []
    with torch.no_grad():
        proto = torch_to_onnx(
            model.eval(), torch.zeros(1, 3, *size), io.BytesIO(), dynamo=False, what="lint export"
        )
    return found + lint_onnx(proto, format)
