"""Checks that an imported TFLite graph is what the atrous model built from it computes: one
line naming the file and the layer when it is not."""

from __future__ import annotations

import numpy as np
from torch import nn

from atrous.errors import ModelError
from atrous.models.foreign._tflite_graph import (
    CONVS,
    PASS_THROUGH,
    GraphView,
    Operator,
    TFLiteGraph,
    describe_tflite,
)

__all__ = ["ACTIVATIONS", "check_conv", "check_graph", "check_pool", "check_resize", "refuse"]

ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6"}  # TFLite ActivationFunctionType
_KNOWN = {*PASS_THROUGH, *CONVS, "ADD", "MEAN", "AVERAGE_POOL_2D", "RESIZE_BILINEAR"}
_KNOWN |= {"RESIZE_NEAREST_NEIGHBOR", "BROADCAST_TO", "CONCATENATION", "ARG_MAX", "PAD"}


def refuse(graph: TFLiteGraph, why: str) -> ModelError:
    """The one-line error for a graph that is not the TF DeepLab zoo's, with what it looked like."""
    return ModelError(
        f"{graph.path}: not a TF DeepLab zoo layout ({why}); "
        f"it looks like: {describe_tflite(graph)}"
    )


def _padding_problem(gv: GraphView, op: Operator, conv: nn.Conv2d) -> str | None:
    """Why ``op``'s padding differs from atrous's symmetric ``conv.padding`` (None if equal)."""
    x = gv.source(op.inputs[0])
    k, s, d = conv.kernel_size[0], conv.stride[0], conv.dilation[0]
    if x in gv.pads and op.options.get("padding") == 1:  # explicit PAD + VALID
        _, pads = gv.pads[x]
        want = [[0, 0], [conv.padding[0]] * 2, [conv.padding[1]] * 2, [0, 0]]
        return None if pads == want else f"explicit padding {pads[1:3]}"
    if op.options.get("padding") == 1:  # VALID
        return None if conv.padding[0] == 0 else "VALID padding where atrous pads"
    size = gv.shape(x)[1]
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    if total // 2 == total - total // 2 == conv.padding[0]:
        return None
    return f"asymmetric SAME padding at input {size} (stride {s}); atrous pads symmetrically"


def check_conv(gv: GraphView, op: Operator, conv: nn.Conv2d, kernel: np.ndarray, act: str) -> None:
    """One-line error naming the file and layer when ``op`` is not ``conv`` with ``act``."""
    o = op.options
    problems = []
    if tuple(kernel.shape) != tuple(conv.weight.shape):
        problems.append(f"kernel {list(kernel.shape)} vs {list(conv.weight.shape)}")
    if (o.get("strideH", 1), o.get("strideW", 1)) != conv.stride:
        problems.append(f"stride {o.get('strideH', 1)} vs {conv.stride[0]}")
    if (o.get("dilationHFactor", 1), o.get("dilationWFactor", 1)) != conv.dilation:
        problems.append(f"dilation {o.get('dilationHFactor', 1)} vs {conv.dilation[0]}")
    if ACTIVATIONS.get(o.get("fusedActivationFunction", 0), "?") != act:
        problems.append(f"activation {ACTIVATIONS.get(o.get('fusedActivationFunction', 0), '?')}")
    padding = _padding_problem(gv, op, conv) if not problems else None
    if padding:
        problems.append(padding)
    if problems:
        raise ModelError(f"{gv.g.path}: layer '{gv.name(op)}': {'; '.join(problems)}")


def check_graph(gv: GraphView) -> tuple[int, int]:
    """The input's (height, width); unknown operators and odd inputs are refused."""
    unknown = sorted({op.kind for op in gv.ops} - _KNOWN)
    if unknown:
        raise refuse(gv.g, f"operators {', '.join(unknown)}")
    if len(gv.g.inputs) != 1 or len(gv.shape(gv.g.inputs[0])) != 4:
        raise refuse(gv.g, "not one NHWC image input")
    _, h, w, c = gv.shape(gv.g.inputs[0])
    if c != 3 or h != w:
        raise refuse(gv.g, f"input {h}x{w}x{c}; the importer reads square RGB inputs")
    return h, w


def check_pool(gv: GraphView, pool: Operator, trunk_out: int) -> None:
    """The image pooling must average the whole feature map."""
    _, h, w, _ = gv.shape(trunk_out)
    if pool.kind == "AVERAGE_POOL_2D":
        window = (pool.options.get("filterHeight"), pool.options.get("filterWidth"))
        if window != (h, w) or pool.options.get("padding") != 1:
            raise ModelError(
                f"{gv.g.path}: layer '{gv.name(pool)}': image pooling over {window}, not the "
                f"whole {h}x{w} feature map"
            )
    else:
        axes = gv.g.tensors[pool.inputs[1]].value
        if axes is None or sorted(int(a) for a in np.ravel(axes)) != [1, 2]:
            raise ModelError(f"{gv.g.path}: layer '{gv.name(pool)}': MEAN not over H and W")


def check_resize(gv: GraphView, head: dict, size: int) -> None:
    """The final resize must go to the input's size."""
    resize = head["resize"]
    if resize is None:
        return
    _, h, w, _ = gv.shape(resize.outputs[0])
    if (h, w) != (size, size):
        raise ModelError(
            f"{gv.g.path}: layer '{gv.name(resize)}': resizes to {h}x{w}, not the input's size"
        )
