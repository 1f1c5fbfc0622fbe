"""TFLite converters for the operators of the mobile backbones (MobileNetV3, ShuffleNetV2) and
the block variants: HardSwish, HardSigmoid, Sigmoid, Slice, Reshape, Transpose (a channel
shuffle is Reshape -> Transpose -> Reshape) and a learned transposed-convolution upsampling.

They register in :data:`atrous.export.tflite_ops.CONVERTERS` when this module is imported
(``atrous.export.onnx_to_tflite`` does). Layout rule, as in the rest of the converter: a 4-D
ONNX tensor (NCHW) is NHWC in the .tflite; a tensor of any other rank keeps the ONNX order.
Reshapes that leave or enter rank 4 therefore pass through NCHW with a TRANSPOSE (none is
needed when the 4-D tensor is N x C x 1 x 1, whose two orders are the same bytes).
"""

from __future__ import annotations

import numpy as np
import onnx

from atrous.errors import ModelError
from atrous.export._tflite_writer import TFLiteWriter, litert_schema
from atrous.export.tflite_ops import _emit, converts

__all__ = ["nhwc_permutation"]

_TO_NCHW = (0, 3, 1, 2)  # NHWC tensor -> NCHW
_TO_NHWC = (0, 2, 3, 1)  # NCHW tensor -> NHWC
_FROM_GROUPED = (0, 3, 4, 1, 2)  # a grouped tensor (N, H, W, g, C/g) -> ONNX order


def nhwc_permutation(perm: list[int]) -> list[int]:
    """The TRANSPOSE permutation of NHWC tensors that an ONNX permutation of NCHW ones makes."""
    return [_TO_NCHW[perm[_TO_NHWC[i]]] for i in range(4)]


def _transpose(writer: TFLiteWriter, name: str, x: int, perm: tuple[int, ...]) -> int:
    """TRANSPOSE of tensor ``x`` into a new tensor ``name``."""
    schema = litert_schema()
    source = writer.tensors[x]
    out = writer.activation(name, tuple(source.shape[p] for p in perm), source.type)
    perm_t = writer.constant(f"{name}/perm", np.array(perm, np.int32))
    writer.op(
        schema.BuiltinOperator.TRANSPOSE,
        [x, perm_t],
        [out],
        schema.BuiltinOptions.TransposeOptions,
        schema.TransposeOptionsT(),
    )
    return out


def _reshape(writer: TFLiteWriter, x: int, out: int) -> None:
    """RESHAPE of tensor ``x`` into the existing tensor ``out`` (its shape)."""
    schema = litert_schema()
    options = schema.ReshapeOptionsT()
    options.newShape = list(writer.tensors[out].shape)
    shape_t = writer.constant(
        f"{writer.tensors[out].name}/shape", np.array(options.newShape, np.int32)
    )
    writer.op(
        schema.BuiltinOperator.RESHAPE,
        [x, shape_t],
        [out],
        schema.BuiltinOptions.ReshapeOptions,
        options,
    )


def _same_bytes(shape: tuple[int, ...]) -> bool:
    """A 4-D shape whose NCHW and NHWC layouts hold the same bytes (H = W = 1)."""
    return len(shape) == 4 and shape[2] == shape[3] == 1


@converts("HardSwish")
def _hard_swish(writer: TFLiteWriter, node: onnx.NodeProto, attrs, fused, out_name) -> None:
    """HARD_SWISH (x * relu6(x + 3) / 6)."""
    ops = litert_schema().BuiltinOperator
    _emit(writer, node, out_name, ops.HARD_SWISH, [writer.input_of(node, node.input[0])])


@converts("Sigmoid")
def _sigmoid(writer: TFLiteWriter, node: onnx.NodeProto, attrs, fused, out_name) -> None:
    """LOGISTIC."""
    ops = litert_schema().BuiltinOperator
    _emit(writer, node, out_name, ops.LOGISTIC, [writer.input_of(node, node.input[0])])


@converts("HardSigmoid")
def _hard_sigmoid(writer: TFLiteWriter, node: onnx.NodeProto, attrs, fused, out_name) -> None:
    """clip(alpha x + beta, 0, 1) = alpha * relu6(x + beta / alpha) when alpha is 1/6 (PyTorch's
    Hardsigmoid): ADD with RELU6 fused, then MUL; other slopes: MUL, ADD, RELU_0_TO_1."""
    schema = litert_schema()
    ops, opts, act = schema.BuiltinOperator, schema.BuiltinOptions, schema.ActivationFunctionType
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    x = writer.input_of(node, node.input[0])
    shape = tuple(writer.tensors[x].shape)
    out = writer.output_of(node, out_name)

    def scalar(tag: str, value: float) -> int:
        return writer.constant(f"{out_name}/{tag}", np.array([value], np.float32))

    def binary(code: int, a: int, b: int, target: int | None, tag: str, relu6: bool) -> int:
        add = code == ops.ADD
        options = schema.AddOptionsT() if add else schema.MulOptionsT()
        options.fusedActivationFunction = act.RELU6 if relu6 else act.NONE
        target = (
            target
            if target is not None
            else writer.activation(f"{out_name}/{tag}", shape, writer.tensors[a].type)
        )
        otype = opts.AddOptions if add else opts.MulOptions
        writer.op(code, [a, b], [target], otype, options)
        return target

    if abs(alpha * 6 - 1) < 1e-6:
        shifted = binary(ops.ADD, x, scalar("shift", beta / alpha), None, "shifted", True)
        binary(ops.MUL, shifted, scalar("alpha", alpha), out, "", False)
        return
    scaled = binary(ops.MUL, x, scalar("alpha", alpha), None, "scaled", False)
    shifted = binary(ops.ADD, scaled, scalar("beta", beta), None, "shifted", False)
    writer.op(ops.RELU_0_TO_1, [shifted], [out])


@converts("Transpose")
def _transpose_node(writer: TFLiteWriter, node: onnx.NodeProto, attrs, fused, out_name) -> None:
    """TRANSPOSE; at rank 4 the permutation is rewritten for NHWC tensors, and a swap of the two
    channel groups of a grouped tensor (the shuffle) swaps its last two stored axes."""
    schema = litert_schema()
    x = writer.input_of(node, node.input[0])
    perm = [int(p) for p in attrs["perm"]]
    grouped = node.input[0] in writer.grouped
    if grouped and perm[0] == 0 and perm[3:] == [3, 4]:
        stored = [0, 1, 2, perm[1] + 2, perm[2] + 2]
        shape = tuple(writer.tensors[x].shape[p] for p in stored)
        out = writer.activation(out_name, shape, writer.tensors[x].type)
        writer.grouped.add(out_name)
        perm_t = writer.constant(f"{out_name}/perm", np.array(stored, np.int32))
        options = schema.TransposeOptionsT()
        writer.op(
            schema.BuiltinOperator.TRANSPOSE,
            [x, perm_t],
            [out],
            schema.BuiltinOptions.TransposeOptions,
            options,
        )
        return
    if grouped:
        x = _transpose(writer, f"{out_name}/ungrouped", x, _FROM_GROUPED)
    if len(perm) == 4:
        perm = nhwc_permutation(perm)
    perm_t = writer.constant(f"{out_name}/perm", np.array(perm, np.int32))
    _emit(
        writer,
        node,
        out_name,
        schema.BuiltinOperator.TRANSPOSE,
        [x, perm_t],
        schema.BuiltinOptions.TransposeOptions,
        schema.TransposeOptionsT(),
    )


def _splits_channels(before: tuple[int, ...], after: tuple[int, ...]) -> bool:
    """N x C x H x W -> N x g x C/g x H x W: the first reshape of a channel shuffle."""
    return (
        len(before) == 4
        and len(after) == 5
        and after[0] == before[0]
        and after[1] * after[2] == before[1]
        and after[3:] == before[2:]
    )


@converts("Reshape")
def _reshape_node(writer: TFLiteWriter, node: onnx.NodeProto, attrs, fused, out_name) -> None:
    """RESHAPE to the output's static shape, through NCHW when rank 4 is entered or left; a
    channel split and its merge back are plain reshapes of the NHWC tensor (see ``grouped``)."""
    x = writer.input_of(node, node.input[0])
    before, after = writer.shapes[node.input[0]], writer.shapes[out_name]
    if _splits_channels(before, after):
        n, g, c, h, w = after
        grouped = writer.activation(out_name, (n, h, w, g, c), writer.tensors[x].type)
        writer.grouped.add(out_name)
        _reshape(writer, x, grouped)
        return
    if node.input[0] in writer.grouped:
        n, a, b, h, w = before
        if len(after) == 4 and after == (n, a * b, h, w):
            _reshape(writer, x, writer.output_of(node, out_name))
            return
        x = _transpose(writer, f"{out_name}/ungrouped", x, _FROM_GROUPED)
    if len(before) == 4 and not _same_bytes(before):
        x = _transpose(writer, f"{out_name}/nchw_in", x, _TO_NCHW)
    if len(after) == 4 and not _same_bytes(after):
        source = writer.tensors[x]
        nchw = writer.activation(f"{out_name}/nchw", after, source.type)
        _reshape(writer, x, nchw)
        result = _transpose(writer, f"{out_name}/nhwc", nchw, _TO_NHWC)
        writer.index[out_name] = result
        return
    _reshape(writer, x, writer.output_of(node, out_name))


@converts("Slice")
def _slice(writer: TFLiteWriter, node: onnx.NodeProto, attrs, fused, out_name) -> None:
    """STRIDED_SLICE with constant starts, ends, axes and steps (NHWC axes at rank 4)."""
    schema = litert_schema()
    shape = writer.shapes[node.input[0]]
    rank = len(shape)

    def const(i: int, default: list[int]) -> list[int]:
        if len(node.input) <= i or not node.input[i]:
            return default
        if node.input[i] not in writer.constants:
            raise ModelError(f"node {node.name}: Slice needs constant starts, ends, axes, steps")
        return [int(v) for v in writer.constants[node.input[i]]]

    starts, ends = const(1, []), const(2, [])
    axes = const(3, list(range(len(starts))))
    steps = const(4, [1] * len(starts))
    dims = list(shape)
    begin, end, stride = [0] * rank, list(dims), [1] * rank
    for axis, start, stop, step in zip(axes, starts, ends, steps, strict=True):
        axis %= rank
        size = dims[axis]
        if step < 1:
            raise ModelError(f"node {node.name}: Slice with a negative step is not supported")
        start = min(max(start + size if start < 0 else start, 0), size)
        stop = min(max(stop + size if stop < 0 else stop, 0), size)
        begin[axis], end[axis], stride[axis] = start, stop, step
    if rank == 4:
        begin, end, stride = ([v[a] for a in _TO_NHWC] for v in (begin, end, stride))
    inputs = [writer.input_of(node, node.input[0])]
    for tag, values in (("begin", begin), ("end", end), ("strides", stride)):
        inputs.append(writer.constant(f"{out_name}/{tag}", np.array(values, np.int32)))
    _emit(
        writer,
        node,
        out_name,
        schema.BuiltinOperator.STRIDED_SLICE,
        inputs,
        schema.BuiltinOptions.StridedSliceOptions,
        schema.StridedSliceOptionsT(),
    )


@converts("ConvTranspose")
def _conv_transpose(writer: TFLiteWriter, node: onnx.NodeProto, attrs, fused, out_name) -> None:
    """TRANSPOSE_CONV (VALID, the full (n - 1) * stride + kernel output), then a crop to ONNX's
    pads. TFLite has no grouped transposed convolution: a depthwise one (the learned
    upsampling) becomes the dense one with a diagonal weight (exact, ``channels`` x the work)."""
    schema = litert_schema()
    ops, opts = schema.BuiltinOperator, schema.BuiltinOptions
    weight = writer.constants.get(node.input[1])
    if weight is None or weight.ndim != 4 or any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise ModelError(f"node {node.name}: ConvTranspose needs constant 4-D weights, no dilation")
    group = int(attrs.get("group", 1))
    cin, per_group, kh, kw = weight.shape
    if group == 1:
        dense = weight
    elif per_group == 1 and group == cin:
        dense = np.zeros((cin, cin, kh, kw), np.float32)
        dense[np.arange(cin), np.arange(cin)] = weight[:, 0]
    else:
        raise ModelError(f"node {node.name}: ConvTranspose with {group} groups has no TFLite op")
    strides = [int(s) for s in attrs.get("strides", [1, 1])]
    x = writer.input_of(node, node.input[0])
    n, h, w, _ = writer.tensors[x].shape
    cout = dense.shape[1]
    full = (n, (h - 1) * strides[0] + kh, (w - 1) * strides[1] + kw, cout)
    target = writer.shapes[out_name]  # N, C, H, W
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    crop = full[1:3] != tuple(target[2:])
    out = writer.activation(f"{out_name}/full", full, writer.tensors[x].type) if crop else None
    out = out if out is not None else writer.output_of(node, out_name)
    options = schema.TransposeConvOptionsT()
    options.padding, options.strideH, options.strideW = schema.Padding.VALID, *strides
    inputs = [
        writer.constant(f"{out_name}/output_shape", np.array(full, np.int32)),
        writer.constant(node.input[1], dense.transpose(1, 2, 3, 0).astype(np.float32)),  # OHWI
        x,
    ]
    if len(node.input) > 2 and node.input[2]:
        bias = writer.constants[node.input[2]].astype(np.float32)
        inputs.append(writer.constant(f"{out_name}/bias", bias))
    writer.op(ops.TRANSPOSE_CONV, inputs, [out], opts.TransposeConvOptions, options, version=3)
    if crop:
        begin = np.array([0, pads[0], pads[1], 0], np.int32)
        size = np.array([n, target[2], target[3], cout], np.int32)
        writer.op(
            ops.SLICE,
            [
                out,
                writer.constant(f"{out_name}/begin", begin),
                writer.constant(f"{out_name}/size", size),
            ],
            [writer.output_of(node, out_name)],
            opts.SliceOptions,
            schema.SliceOptionsT(),
        )
