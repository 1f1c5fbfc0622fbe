"""One converter per ONNX operator, in a table filled by ``@converts``: the TFLite operator(s)
each ONNX node becomes, NHWC. The supported set is the table's keys; supporting a new operator
is one decorated function here.

A converter takes (writer, node, attrs, fused, out_name): the subgraph being written, the ONNX
node with its attributes, the activation fused into it (a ReLU / ReLU6 that alone read its
output) and the name its output goes by (that of an absorbed follower, when there is one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from atrous.errors import ModelError
from atrous.export._tflite_writer import TFLiteWriter, litert_schema, tensor_type

__all__ = ["CONVERTERS", "Converter", "convert_node", "converts", "relu_kind"]

Converter = Callable[[TFLiteWriter, onnx.NodeProto, dict[str, Any], int, str], None]

CONVERTERS: dict[str, Converter] = {}
_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}  # an NCHW axis -> the same axis of the NHWC tensor


def converts(*op_types: str) -> Callable[[Converter], Converter]:
    """Register the decorated function as the converter of ``op_types``; a twin is a bug."""

    def register(fn: Converter) -> Converter:
        for op_type in op_types:
            if op_type in CONVERTERS:
                raise ValueError(f"ONNX operator {op_type} already has a TFLite converter")
            CONVERTERS[op_type] = fn
        return fn

    return register


def convert_node(writer: TFLiteWriter, node: onnx.NodeProto, fused: int, out_name: str) -> None:
    """Append the TFLite operator(s) for one ONNX node whose output is named ``out_name``."""
    converter = CONVERTERS.get(node.op_type)
    if converter is None:
        raise ModelError(
            f"node {node.name or node.op_type}: ONNX operator {node.op_type} has no TFLite "
            f"conversion here (supported: {', '.join(CONVERTERS)})"
        )
    converter(writer, node, _attrs(node), fused, out_name)


# -- helpers shared by converters ----------------------------------------------------------------
def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def relu_kind(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> int | None:
    """The TFLite activation a Relu or a Clip(0, 6) / Clip(0, inf) node computes, else None."""
    act = litert_schema().ActivationFunctionType
    if node.op_type == "Relu":
        return act.RELU
    if node.op_type != "Clip":
        return None
    attrs = _attrs(node)
    low, high = attrs.get("min"), attrs.get("max")
    if len(node.input) > 1 and node.input[1]:
        low = float(constants[node.input[1]]) if node.input[1] in constants else None
    if len(node.input) > 2 and node.input[2]:
        high = float(constants[node.input[2]]) if node.input[2] in constants else None
    if low == 0.0 and high == 6.0:
        return act.RELU6
    if low == 0.0 and (high is None or np.isinf(high)):
        return act.RELU
    return None


def _nhwc_axis(axis: int, rank: int) -> int:
    """The axis of the TFLite tensor that an ONNX axis (negative allowed) names: NHWC at rank 4."""
    axis %= rank
    return _NHWC_AXIS[axis] if rank == 4 else axis


def _emit(
    writer: TFLiteWriter,
    node: onnx.NodeProto,
    out_name: str,
    code: int,
    inputs: list[int],
    options_type: int = 0,
    options: Any = None,
    version: int = 1,
) -> None:
    """One operator from ``inputs`` (written first) to the tensor of ``out_name``."""
    writer.op(code, inputs, [writer.output_of(node, out_name)], options_type, options, version)


def _mean(writer: TFLiteWriter, node: onnx.NodeProto, axes: list[int], out_name: str) -> None:
    """MEAN over the NHWC twins of the NCHW ``axes``, dimensions kept."""
    schema = litert_schema()
    ops, opts = schema.BuiltinOperator, schema.BuiltinOptions
    axis = np.array(sorted(_NHWC_AXIS[a % 4] for a in axes), np.int32)
    options = schema.ReducerOptionsT()
    options.keepDims = True
    inputs = [writer.input_of(node, node.input[0]), writer.constant(f"{out_name}/axes", axis)]
    _emit(writer, node, out_name, ops.MEAN, inputs, opts.ReducerOptions, options)


def _resize(
    writer: TFLiteWriter,
    node: onnx.NodeProto,
    out_name: str,
    mode: bytes | str,
    coordinates: bytes | str,
    nearest_mode: bytes | str = b"floor",
) -> None:
    """RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR to the output's (static) size."""
    schema = litert_schema()
    mode, coordinates = _text(mode), _text(coordinates)
    _, _, h, w = writer.shapes[out_name]
    size = writer.constant(f"{out_name}/size", np.array([h, w], np.int32))
    x = writer.input_of(node, node.input[0])
    out = writer.output_of(node, out_name)
    if mode == "linear":
        options = schema.ResizeBilinearOptionsT()
        code, otype = (
            schema.BuiltinOperator.RESIZE_BILINEAR,
            schema.BuiltinOptions.ResizeBilinearOptions,
        )
    elif mode == "nearest" and coordinates == "asymmetric" and _text(nearest_mode) == "floor":
        options = schema.ResizeNearestNeighborOptionsT()
        code = schema.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR
        otype = schema.BuiltinOptions.ResizeNearestNeighborOptions
    else:
        raise ModelError(f"node {node.name}: Resize mode {mode} ({coordinates}) is not supported")
    if coordinates in ("half_pixel", "pytorch_half_pixel"):
        options.halfPixelCenters = True
    elif coordinates == "align_corners":
        options.alignCorners = True
    elif coordinates != "asymmetric":
        raise ModelError(f"node {node.name}: Resize coordinates '{coordinates}' are not supported")
    writer.op(code, [x, size], [out], otype, options, version=3 if options.halfPixelCenters else 1)


# -- the converters, in the order the supported set lists them -----------------------------------
@converts("Conv")
def _conv(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """CONV_2D, or DEPTHWISE_CONV_2D for one group per input channel; the bias made explicit."""
    schema = litert_schema()
    ops, opts = schema.BuiltinOperator, schema.BuiltinOptions
    weight = writer.constants.get(node.input[1])
    if weight is None or weight.ndim != 4:
        raise ModelError(f"node {node.name}: Conv weights must be a constant 4-D tensor")
    o, i_per_group, kh, kw = weight.shape
    group = int(attrs.get("group", 1))
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    x = writer.input_of(node, node.input[0])
    x, padding = writer.window(node, x, [kh, kw], strides, dilations, pads, None)
    bias = writer.constants.get(node.input[2]) if len(node.input) > 2 else None
    bias = np.zeros(o, np.float32) if bias is None else bias.astype(np.float32)
    channels = writer.tensors[x].shape[3]
    if group == 1:
        w = weight.transpose(0, 2, 3, 1).astype(np.float32)  # OHWI
        code, otype, options = ops.CONV_2D, opts.Conv2DOptions, schema.Conv2DOptionsT()
    elif group == channels and i_per_group == 1:
        w = weight.reshape(o, kh, kw).transpose(1, 2, 0)[None].astype(np.float32)  # 1HWO
        code, otype = ops.DEPTHWISE_CONV_2D, opts.DepthwiseConv2DOptions
        options = schema.DepthwiseConv2DOptionsT()
        options.depthMultiplier = o // channels
    else:
        raise ModelError(f"node {node.name}: grouped convolution ({group} groups) has no TFLite op")
    options.padding, options.strideH, options.strideW = padding, strides[0], strides[1]
    options.dilationHFactor, options.dilationWFactor = dilations[0], dilations[1]
    options.fusedActivationFunction = fused
    inputs = [x, writer.constant(node.input[1], w), writer.constant(f"{out_name}/bias", bias)]
    version = 2 if code == ops.DEPTHWISE_CONV_2D and max(dilations) > 1 else 1
    _emit(writer, node, out_name, code, inputs, otype, options, version)


@converts("Relu", "Clip")
def _relu(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """RELU or RELU6 standing alone (not fused into the op before it)."""
    schema = litert_schema()
    act = relu_kind(node, writer.constants)
    if act is None:
        raise ModelError(f"node {node.name}: only Clip(0, 6) and Clip(0, inf) are supported")
    ops = schema.BuiltinOperator
    code = ops.RELU6 if act == schema.ActivationFunctionType.RELU6 else ops.RELU
    _emit(writer, node, out_name, code, [writer.input_of(node, node.input[0])])


@converts("Add", "Mul")
def _binary(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """ADD / MUL with the activation after it fused."""
    schema = litert_schema()
    ops, opts = schema.BuiltinOperator, schema.BuiltinOptions
    add = node.op_type == "Add"
    options = schema.AddOptionsT() if add else schema.MulOptionsT()
    options.fusedActivationFunction = fused
    inputs = [writer.input_of(node, name) for name in node.input]
    code, otype = (ops.ADD, opts.AddOptions) if add else (ops.MUL, opts.MulOptions)
    _emit(writer, node, out_name, code, inputs, otype, options)


@converts("GlobalAveragePool")
def _global_average_pool(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """MEAN over height and width."""
    _mean(writer, node, [2, 3], out_name)


@converts("ReduceMean")
def _reduce_mean(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """MEAN over the axes of the attribute or of the (constant) second input; keepdims only."""
    axes = list(attrs.get("axes", []))
    if len(node.input) > 1 and node.input[1]:
        axes = [int(a) for a in writer.constants[node.input[1]]]
    if not attrs.get("keepdims", 1):
        raise ModelError(f"node {node.name}: ReduceMean without keepdims is not supported")
    _mean(writer, node, axes, out_name)


@converts("Expand")
def _expand(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """A pooled 1x1 map broadcast to the feature size (image pooling), as a bilinear resize."""
    source = writer.shapes[node.input[0]]
    if len(source) != 4 or source[2:] != (1, 1):
        raise ModelError(f"node {node.name}: only a 1x1 map can be expanded (image pooling)")
    _resize(writer, node, out_name, "linear", "half_pixel")


@converts("Concat")
def _concat(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """CONCATENATION along the NHWC twin of the ONNX axis."""
    schema = litert_schema()
    ops, opts = schema.BuiltinOperator, schema.BuiltinOptions
    options = schema.ConcatenationOptionsT()
    options.axis = _nhwc_axis(int(attrs["axis"]), len(writer.shapes[node.output[0]]))
    inputs = [writer.input_of(node, name) for name in node.input]
    _emit(writer, node, out_name, ops.CONCATENATION, inputs, opts.ConcatenationOptions, options)


@converts("Resize")
def _resize_node(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """Bilinear, or nearest (asymmetric, floor), to the output's static size."""
    _resize(
        writer,
        node,
        out_name,
        attrs.get("mode", b"nearest"),
        attrs.get("coordinate_transformation_mode", b"half_pixel"),
        attrs.get("nearest_mode", b"round_prefer_floor"),
    )


@converts("MaxPool")
def _max_pool(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """MAX_POOL_2D; padding other than SAME becomes an explicit pad with the float minimum, or
    with zeros after a ReLU (the same maxima: every window holds a real value >= 0; and a
    plain PAD, which LiteRT's int8 quantizer handles, where PADV2 kept a float constant that
    the int8 kernel refuses: ResNet's stem)."""
    schema = litert_schema()
    ops, opts = schema.BuiltinOperator, schema.BuiltinOptions
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1, 1]))
    if attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise ModelError(f"node {node.name}: MaxPool with ceil_mode or dilation")
    x = writer.input_of(node, node.input[0])
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    lowest = None if writer.nonnegative(x) else float(np.finfo(np.float32).min)
    x, padding = writer.window(node, x, kernel, strides, [1, 1], pads, lowest)
    options = schema.Pool2DOptionsT()
    options.padding, options.strideH, options.strideW = padding, strides[0], strides[1]
    options.filterHeight, options.filterWidth = kernel
    options.fusedActivationFunction = fused
    _emit(writer, node, out_name, ops.MAX_POOL_2D, [x], opts.Pool2DOptions, options)


@converts("Pad")
def _pad(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """PAD (zeros) or PADV2 (another constant) of the spatial axes only."""
    pads = [int(p) for p in writer.constants[node.input[1]]] if len(node.input) > 1 else []
    pads = pads or list(attrs["pads"])
    if attrs.get("mode", b"constant") not in (b"constant", "constant") or any(pads[:2] + pads[4:6]):
        raise ModelError(f"node {node.name}: only constant spatial padding is supported")
    value = None
    if len(node.input) > 2 and node.input[2] and float(writer.constants[node.input[2]]) != 0:
        value = float(writer.constants[node.input[2]])
    x = writer.input_of(node, node.input[0])
    padded = writer.pad(node, x, [pads[2], pads[3], pads[6], pads[7]], value)
    writer.index[out_name] = padded


@converts("ArgMax")
def _arg_max(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """ARG_MAX along the NHWC twin of the axis; RESHAPE after it to keep the dimension."""
    schema = litert_schema()
    ops, opts = schema.BuiltinOperator, schema.BuiltinOptions
    axis = _nhwc_axis(int(attrs.get("axis", 0)), len(writer.shapes[node.input[0]]))
    options = schema.ArgMaxOptionsT()
    options.outputType = tensor_type(writer.types[out_name])
    x = writer.input_of(node, node.input[0])
    shape = list(writer.tensors[x].shape)
    reduced = shape[:axis] + shape[axis + 1 :]
    keep = bool(attrs.get("keepdims", 1))
    target = writer.output_of(node, out_name)
    out = (
        writer.activation(f"{out_name}/argmax", tuple(reduced), options.outputType)
        if keep
        else target
    )
    axis_t = writer.constant(f"{out_name}/axis", np.array([axis], np.int32))
    writer.op(ops.ARG_MAX, [x, axis_t], [out], opts.ArgMaxOptions, options)
    if keep:
        options = schema.ReshapeOptionsT()
        options.newShape = list(writer.tensors[target].shape)
        shape_t = writer.constant(f"{out_name}/shape", np.array(options.newShape, np.int32))
        writer.op(ops.RESHAPE, [out, shape_t], [target], opts.ReshapeOptions, options)


@converts("Cast")
def _cast(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """CAST to the ONNX target type."""
    schema = litert_schema()
    ops, opts = schema.BuiltinOperator, schema.BuiltinOptions
    options = schema.CastOptionsT()
    x = writer.input_of(node, node.input[0])
    options.inDataType = writer.tensors[x].type
    options.outDataType = tensor_type(int(attrs["to"]))
    _emit(writer, node, out_name, ops.CAST, [x], opts.CastOptions, options)


@converts("Identity")
def _identity(
    writer: TFLiteWriter, node: onnx.NodeProto, attrs: dict, fused: int, out_name: str
) -> None:
    """No operator: the output names the input's tensor."""
    writer.index[out_name] = writer.input_of(node, node.input[0])


def __getattr__(name: str) -> tuple[str, ...]:
    """``SUPPORTED_OPS``: the ONNX operators the table converts, read when asked, so the
    converters other modules register (``atrous.export.tflite_ops_mobile``) are in it."""
    if name == "SUPPORTED_OPS":
        return tuple(CONVERTERS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
