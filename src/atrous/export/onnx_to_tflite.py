"""ONNX -> TFLite: a fixed-size float ONNX graph rewritten as a TFLite flatbuffer, in NHWC.

No TensorFlow and no litert-torch: the flatbuffer is written with the schema that ships with
``ai-edge-litert``. It covers the operators DeepLab networks export to (Conv and depthwise Conv
with their ReLU / ReLU6 fused, Add, Mul, GlobalAveragePool / ReduceMean, Expand of a pooled
vector, Concat, Resize, MaxPool, Pad, ArgMax, Cast); any other operator is refused, naming the
node. Tensors that are 4-D in ONNX (NCHW) are NHWC here, as every TFLite runtime and NPU
delegate expects. Full-integer int8 comes from LiteRT's own calibrator (``quantize_tflite``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from atrous.errors import ModelError

__all__ = ["onnx_to_tflite", "quantize_tflite", "SUPPORTED_OPS"]

SUPPORTED_OPS = (
    "Conv",
    "Relu",
    "Clip",
    "Add",
    "Mul",
    "GlobalAveragePool",
    "ReduceMean",
    "Expand",
    "Concat",
    "Resize",
    "MaxPool",
    "Pad",
    "ArgMax",
    "Cast",
    "Identity",
)
_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}  # an NCHW axis -> the same axis of the NHWC tensor


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _tensor_type(elem_type: int) -> int:
    """The TFLite TensorType of an ONNX element type."""
    t = _schema().TensorType
    table = {
        onnx.TensorProto.FLOAT: t.FLOAT32,
        onnx.TensorProto.INT32: t.INT32,
        onnx.TensorProto.INT64: t.INT64,
        onnx.TensorProto.UINT8: t.UINT8,
        onnx.TensorProto.INT8: t.INT8,
    }
    if elem_type not in table:
        raise ModelError(
            f"tensor type {onnx.TensorProto.DataType.Name(elem_type)} has no TFLite twin"
        )
    return table[elem_type]


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite's SAME padding (before, after) along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


@dataclass
class _Writer:
    """Collects tensors, buffers, operator codes and operators of one subgraph."""

    shapes: dict[str, tuple[int, ...]]
    types: dict[str, int]
    constants: dict[str, np.ndarray]
    tensors: list[Any] = field(default_factory=list)
    buffers: list[Any] = field(default_factory=list)
    opcodes: list[Any] = field(default_factory=list)
    operators: list[Any] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.buffers.append(_schema().BufferT())  # buffer 0: the empty sentinel

    # -- tensors -------------------------------------------------------------------------------
    def activation(self, name: str, shape: tuple[int, ...], ttype: int) -> int:
        """A tensor computed at run time (NHWC shape given)."""
        tensor = _schema().TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = list(shape), ttype, 0, name
        self.tensors.append(tensor)
        self.index[name] = len(self.tensors) - 1
        return self.index[name]

    def constant(self, name: str, value: np.ndarray) -> int:
        """A constant tensor with its own buffer."""
        schema = _schema()
        kinds = {
            np.dtype(np.float32): schema.TensorType.FLOAT32,
            np.dtype(np.int32): schema.TensorType.INT32,
            np.dtype(np.int64): schema.TensorType.INT64,
        }
        value = np.ascontiguousarray(value)
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.tobytes(), dtype=np.uint8)
        self.buffers.append(buffer)
        tensor = schema.TensorT()
        tensor.shape, tensor.type = list(value.shape), kinds[value.dtype]
        tensor.buffer, tensor.name = len(self.buffers) - 1, name
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def output_of(self, node: onnx.NodeProto, name: str | None = None) -> int:
        """The TFLite tensor for a node's (first) output, NHWC if it is 4-D."""
        name = name or node.output[0]
        shape = self.shapes[name]
        nhwc = (shape[0], shape[2], shape[3], shape[1]) if len(shape) == 4 else shape
        return self.activation(name, nhwc, _tensor_type(self.types[name]))

    def input_of(self, node: onnx.NodeProto, name: str) -> int:
        """The TFLite tensor holding ``name``: computed before, or a constant laid out NHWC (its
        first reader writes it)."""
        if name in self.index:
            return self.index[name]
        if name in self.constants:
            value = self.constants[name]
            if value.dtype == np.float64:
                value = value.astype(np.float32)
            if value.ndim and value.size > 1 and value.ndim <= 4:
                value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(0, 2, 3, 1)
            self.index[name] = self.constant(name, value)  # written once, however many readers
            return self.index[name]
        raise ModelError(f"node {node.name or node.op_type}: input '{name}' is not available")

    # -- operators -----------------------------------------------------------------------------
    def op(
        self,
        code: int,
        inputs: list[int],
        outputs: list[int],
        options_type: int = 0,
        options: Any = None,
        version: int = 1,
    ) -> None:
        """Append one builtin operator."""
        schema = _schema()
        key = (code, version)
        keys = [(c.builtinCode, c.version) for c in self.opcodes]
        if key not in keys:
            opcode = schema.OperatorCodeT()
            opcode.builtinCode, opcode.version = code, version
            opcode.deprecatedBuiltinCode = min(code, 127)
            self.opcodes.append(opcode)
            keys.append(key)
        operator = schema.OperatorT()
        operator.opcodeIndex = keys.index(key)
        operator.inputs, operator.outputs = inputs, outputs
        operator.builtinOptionsType, operator.builtinOptions = options_type, options
        self.operators.append(operator)

    def pad(self, node: onnx.NodeProto, x: int, pads: list[int], value: float | None) -> int:
        """Explicit spatial padding of an NHWC tensor (ONNX pads [top, left, bottom, right])."""
        schema = _schema()
        t, l, b, r = pads
        source = self.tensors[x]
        n, h, w, c = source.shape
        out = self.activation(f"{node.output[0]}/pad", (n, h + t + b, w + l + r, c), source.type)
        paddings = np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32)
        inputs = [x, self.constant(f"{node.output[0]}/paddings", paddings)]
        if value is None:
            self.op(
                schema.BuiltinOperator.PAD,
                inputs,
                [out],
                schema.BuiltinOptions.PadOptions,
                schema.PadOptionsT(),
            )
        else:
            inputs.append(self.constant(f"{node.output[0]}/pad_value", np.array(value, np.float32)))
            self.op(
                schema.BuiltinOperator.PADV2,
                inputs,
                [out],
                schema.BuiltinOptions.PadV2Options,
                schema.PadV2OptionsT(),
            )
        return out


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _window(
    writer: _Writer,
    node: onnx.NodeProto,
    x: int,
    kernel: list[int],
    strides: list[int],
    dilations: list[int],
    pads: list[int],
    pad_value: float | None,
) -> tuple[int, int]:
    """(input tensor, TFLite padding): SAME or VALID when ONNX's pads are one of them, else an
    explicit Pad in front and VALID."""
    padding = _schema().Padding
    _, h, w, _ = writer.tensors[x].shape
    same = [
        *_same_pads(h, kernel[0], strides[0], dilations[0]),
        *_same_pads(w, kernel[1], strides[1], dilations[1]),
    ]
    onnx_pads = [pads[0], pads[2], pads[1], pads[3]]  # top, bottom, left, right
    if not any(pads):
        return x, padding.VALID
    if onnx_pads == same:
        return x, padding.SAME
    return writer.pad(node, x, pads, pad_value), padding.VALID


def _activation_after(
    node: onnx.NodeProto,
    consumers: dict[str, list[onnx.NodeProto]],
    outputs: set[str],
    constants: dict[str, np.ndarray],
) -> tuple[int, onnx.NodeProto | None]:
    """A ReLU / ReLU6 that alone reads ``node``'s output, to fuse (activation code, the node)."""
    schema = _schema()
    readers = consumers.get(node.output[0], [])
    if len(readers) != 1 or node.output[0] in outputs:
        return schema.ActivationFunctionType.NONE, None
    nxt = readers[0]
    kind = _relu_kind(nxt, constants)
    if kind is None:
        return schema.ActivationFunctionType.NONE, None
    return kind, nxt


def _cast_after(
    node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]
) -> onnx.NodeProto | None:
    """The Cast that alone reads an ArgMax's labels (int64 -> uint8 in atrous's exports)."""
    readers = consumers.get(node.output[0], [])
    return readers[0] if len(readers) == 1 and readers[0].op_type == "Cast" else None


def _relu_kind(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> int | None:
    """The TFLite activation a Relu or a Clip(0, 6) / Clip(0, inf) node computes, else None."""
    act = _schema().ActivationFunctionType
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


def _convert_node(writer: _Writer, node: onnx.NodeProto, fused: int, out_name: str) -> None:
    """Append the TFLite operator(s) for one ONNX node whose output is named ``out_name``."""
    schema = _schema()
    ops, opts = schema.BuiltinOperator, schema.BuiltinOptions
    attrs = _attrs(node)
    kind = node.op_type
    if kind == "Conv":
        weight = writer.constants.get(node.input[1])
        if weight is None or weight.ndim != 4:
            raise ModelError(f"node {node.name}: Conv weights must be a constant 4-D tensor")
        o, i_per_group, kh, kw = weight.shape
        group = int(attrs.get("group", 1))
        strides = list(attrs.get("strides", [1, 1]))
        dilations = list(attrs.get("dilations", [1, 1]))
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        x = writer.input_of(node, node.input[0])
        x, padding = _window(writer, node, x, [kh, kw], strides, dilations, pads, None)
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
            raise ModelError(
                f"node {node.name}: grouped convolution ({group} groups) has no TFLite op"
            )
        options.padding, options.strideH, options.strideW = padding, strides[0], strides[1]
        options.dilationHFactor, options.dilationWFactor = dilations[0], dilations[1]
        options.fusedActivationFunction = fused
        inputs = [x, writer.constant(node.input[1], w), writer.constant(f"{out_name}/bias", bias)]
        version = 2 if code == ops.DEPTHWISE_CONV_2D and max(dilations) > 1 else 1
        writer.op(code, inputs, [writer.output_of(node, out_name)], otype, options, version)
    elif kind in ("Relu", "Clip"):
        act = _relu_kind(node, writer.constants)
        if act is None:
            raise ModelError(f"node {node.name}: only Clip(0, 6) and Clip(0, inf) are supported")
        code = ops.RELU6 if act == schema.ActivationFunctionType.RELU6 else ops.RELU
        writer.op(code, [writer.input_of(node, node.input[0])], [writer.output_of(node, out_name)])
    elif kind in ("Add", "Mul"):
        options = schema.AddOptionsT() if kind == "Add" else schema.MulOptionsT()
        options.fusedActivationFunction = fused
        inputs = [writer.input_of(node, name) for name in node.input]
        code, otype = (ops.ADD, opts.AddOptions) if kind == "Add" else (ops.MUL, opts.MulOptions)
        writer.op(code, inputs, [writer.output_of(node, out_name)], otype, options)
    elif kind in ("GlobalAveragePool", "ReduceMean"):
        axes = [2, 3]
        if kind == "ReduceMean":
            axes = list(attrs.get("axes", []))
            if len(node.input) > 1 and node.input[1]:
                axes = [int(a) for a in writer.constants[node.input[1]]]
            if not attrs.get("keepdims", 1):
                raise ModelError(f"node {node.name}: ReduceMean without keepdims is not supported")
        axis = np.array(sorted(_NHWC_AXIS[a % 4] for a in axes), np.int32)
        options = schema.ReducerOptionsT()
        options.keepDims = True
        inputs = [writer.input_of(node, node.input[0]), writer.constant(f"{out_name}/axes", axis)]
        writer.op(
            ops.MEAN, inputs, [writer.output_of(node, out_name)], opts.ReducerOptions, options
        )
    elif kind == "Expand":
        source = writer.shapes[node.input[0]]
        if len(source) != 4 or source[2:] != (1, 1):
            raise ModelError(f"node {node.name}: only a 1x1 map can be expanded (image pooling)")
        _resize(writer, node, out_name, "linear", "half_pixel")
    elif kind == "Resize":
        _resize(
            writer,
            node,
            out_name,
            attrs.get("mode", b"nearest"),
            attrs.get("coordinate_transformation_mode", b"half_pixel"),
            attrs.get("nearest_mode", b"round_prefer_floor"),
        )
    elif kind == "Concat":
        rank = len(writer.shapes[node.output[0]])
        axis = int(attrs["axis"]) % rank
        options = schema.ConcatenationOptionsT()
        options.axis = _NHWC_AXIS[axis] if rank == 4 else axis
        inputs = [writer.input_of(node, name) for name in node.input]
        writer.op(
            ops.CONCATENATION,
            inputs,
            [writer.output_of(node, out_name)],
            opts.ConcatenationOptions,
            options,
        )
    elif kind == "MaxPool":
        kernel = list(attrs["kernel_shape"])
        strides = list(attrs.get("strides", [1, 1]))
        if attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            raise ModelError(f"node {node.name}: MaxPool with ceil_mode or dilation")
        x = writer.input_of(node, node.input[0])
        x, padding = _window(
            writer,
            node,
            x,
            kernel,
            strides,
            [1, 1],
            list(attrs.get("pads", [0, 0, 0, 0])),
            float(np.finfo(np.float32).min),
        )
        options = schema.Pool2DOptionsT()
        options.padding, options.strideH, options.strideW = padding, strides[0], strides[1]
        options.filterHeight, options.filterWidth = kernel
        options.fusedActivationFunction = fused
        writer.op(
            ops.MAX_POOL_2D, [x], [writer.output_of(node, out_name)], opts.Pool2DOptions, options
        )
    elif kind == "Pad":
        pads = [int(p) for p in writer.constants[node.input[1]]] if len(node.input) > 1 else []
        pads = pads or list(attrs["pads"])
        if attrs.get("mode", b"constant") not in (b"constant", "constant") or any(
            pads[:2] + pads[4:6]
        ):
            raise ModelError(f"node {node.name}: only constant spatial padding is supported")
        value = None
        if len(node.input) > 2 and node.input[2] and float(writer.constants[node.input[2]]) != 0:
            value = float(writer.constants[node.input[2]])
        x = writer.input_of(node, node.input[0])
        padded = writer.pad(node, x, [pads[2], pads[3], pads[6], pads[7]], value)
        writer.index[out_name] = padded
    elif kind == "ArgMax":
        rank = len(writer.shapes[node.input[0]])
        axis = int(attrs.get("axis", 0)) % rank
        axis = _NHWC_AXIS[axis] if rank == 4 else axis
        options = schema.ArgMaxOptionsT()
        options.outputType = _tensor_type(writer.types[out_name])
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
        writer.op(
            ops.ARG_MAX,
            [x, writer.constant(f"{out_name}/axis", np.array([axis], np.int32))],
            [out],
            opts.ArgMaxOptions,
            options,
        )
        if keep:
            options = schema.ReshapeOptionsT()
            options.newShape = list(writer.tensors[target].shape)
            shape_t = writer.constant(f"{out_name}/shape", np.array(options.newShape, np.int32))
            writer.op(ops.RESHAPE, [out, shape_t], [target], opts.ReshapeOptions, options)
    elif kind == "Cast":
        options = schema.CastOptionsT()
        x = writer.input_of(node, node.input[0])
        options.inDataType = writer.tensors[x].type
        options.outDataType = _tensor_type(int(attrs["to"]))
        writer.op(ops.CAST, [x], [writer.output_of(node, out_name)], opts.CastOptions, options)
    elif kind == "Identity":
        writer.index[out_name] = writer.input_of(node, node.input[0])
    else:
        raise ModelError(
            f"node {node.name or kind}: ONNX operator {kind} has no TFLite conversion here "
            f"(supported: {', '.join(SUPPORTED_OPS)})"
        )


def _resize(
    writer: _Writer,
    node: onnx.NodeProto,
    out_name: str,
    mode: bytes | str,
    coordinates: bytes | str,
    nearest_mode: bytes | str = b"floor",
) -> None:
    """RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR to the output's (static) size."""
    schema = _schema()
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def onnx_to_tflite(proto: onnx.ModelProto) -> bytes:
    """The TFLite flatbuffer of a fixed-size float ONNX model (one input, NCHW -> NHWC).

    Raises:
        ModelError: a dynamic shape, or an operator or setting without a conversion (named).
    """
    import flatbuffers

    schema = _schema()
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    graph = inferred.graph
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, int] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            raise ModelError(f"tensor '{value.name}' has a dynamic shape; export at a fixed size")
        shapes[value.name] = tuple(int(d.dim_value) for d in dims)
        types[value.name] = value.type.tensor_type.elem_type
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        else:
            nodes.append(node)
    if len(graph.input) - len([i for i in graph.input if i.name in constants]) != 1:
        raise ModelError("TFLite export needs a model with exactly one input")
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    writer = _Writer(shapes, types, constants)
    source = next(i for i in graph.input if i.name not in constants)
    shape = shapes[source.name]
    if len(shape) != 4 or shape[1] != 3:
        raise ModelError(f"input '{source.name}' must be N x 3 x H x W, got {list(shape)}")
    first = writer.activation(
        source.name, (shape[0], shape[2], shape[3], 3), _tensor_type(types[source.name])
    )
    skipped: set[int] = set()  # ids of nodes folded into the one before them
    for node in nodes:
        if id(node) in skipped:
            continue
        fused, absorbed = schema.ActivationFunctionType.NONE, None
        if node.op_type in ("Conv", "Add", "Mul", "MaxPool"):
            fused, absorbed = _activation_after(node, consumers, outputs, constants)
        elif node.op_type == "ArgMax":
            absorbed = _cast_after(node, consumers)
            if absorbed is not None:  # ARG_MAX writes int32 labels itself (CAST is not int8)
                types[absorbed.output[0]] = onnx.TensorProto.INT32
        out_name = absorbed.output[0] if absorbed is not None else node.output[0]
        if absorbed is not None:
            skipped.add(id(absorbed))
        _convert_node(writer, node, fused, out_name)
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.operators = writer.tensors, writer.operators
    subgraph.inputs = [first]
    subgraph.outputs = [writer.index[o.name] for o in graph.output]
    subgraph.name = "main"
    model = schema.ModelT()
    model.version, model.description = 3, "atrous: ONNX -> TFLite"
    model.operatorCodes, model.subgraphs, model.buffers = writer.opcodes, [subgraph], writer.buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def quantize_tflite(
    content: bytes, samples: Iterable[np.ndarray], io_dtype: type = np.int8
) -> bytes:
    """Full-integer int8 of a float .tflite with LiteRT's calibrator: per-channel int8 weights,
    int8 activations calibrated on ``samples`` (NHWC float batches as the model takes them),
    ``io_dtype`` (int8, uint8 or float32) at the input and at the float outputs (the logits).
    Per-tensor weights are not offered: LiteRT's quantizer rejects them on depthwise layers.

    Raises:
        ModelError: no samples, or the quantizer refused the model.
    """
    from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as calibration

    calibrator = calibration.CalibrationWrapper(content, [], [])
    fed = 0
    for sample in samples:
        batch = np.ascontiguousarray(sample, dtype=np.float32)
        if not fed:
            calibrator.Prepare([list(batch.shape)])
        calibrator.FeedTensor([batch])
        fed += 1
    if not fed:
        raise ModelError("int8 TFLite export needs calibration images; none were given")
    io = np.dtype(io_dtype).num
    try:
        quantized = calibrator.QuantizeModel(
            io, io, False, np.dtype(np.int8).num, np.dtype(np.int32).num, False, False
        )
    except Exception as exc:  # the quantizer reports in its own exception types
        raise ModelError(
            f"the TFLite quantizer refused the model: {str(exc).splitlines()[0]}"
        ) from exc
    return bytes(quantized)
