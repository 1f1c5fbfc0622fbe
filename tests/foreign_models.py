"""Tiny foreign models built by hand (no atrous card): NHWC/uint8 ONNX and TFLite files.

Each is a 1x1 convolution (plus a sigmoid for one-channel outputs), so tests can compute the
exact expected output in NumPy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_params(channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Weights (C, 3) and bias (C,) of the 1x1 convolution."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(channels, 3)).astype(np.float32), rng.normal(size=channels).astype(
        np.float32
    )


def reference(
    x_nhwc: np.ndarray, weight: np.ndarray, bias: np.ndarray, sigmoid: bool
) -> np.ndarray:
    """The models' output in NHWC for a float NHWC input."""
    y = x_nhwc.astype(np.float32) @ weight.T + bias
    return 1 / (1 + np.exp(-y)) if sigmoid else y


def onnx_model(
    path: Path,
    *,
    layout: str,
    dtype: str,
    channels: int,
    size: int | None,
    sigmoid: bool = False,
    seed: int = 0,
) -> Path:
    """An ONNX file: [uint8|float] input in ``layout`` -> 1x1 conv -> output in ``layout``."""
    weight, bias = conv_params(channels, seed)
    h = w = size if size is not None else None
    hw = [h or "height", w or "width"]
    in_shape = [1, *hw, 3] if layout == "NHWC" else [1, 3, *hw]
    out_shape = [1, *hw, channels] if layout == "NHWC" else [1, channels, *hw]
    elem = TensorProto.UINT8 if dtype == "uint8" else TensorProto.FLOAT
    nodes = [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT)]
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]))
    conv_in = "x_nchw" if layout == "NHWC" else "x"
    nodes.append(helper.make_node("Conv", [conv_in, "w", "b"], ["y"]))
    last = "y"
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", ["y"], ["p"]))
        last = "p"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [last], ["out"], perm=[0, 2, 3, 1]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["out"]))
    graph = helper.make_graph(
        nodes,
        "foreign",
        [helper.make_tensor_value_info("image", elem, in_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)],
        [
            numpy_helper.from_array(weight.reshape(channels, 3, 1, 1), "w"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tflite_model(
    path: Path,
    *,
    size: int,
    channels: int,
    quantized_input: tuple[float, int] | None = None,
    sigmoid: bool = False,
    seed: int = 0,
) -> Path:
    """A .tflite file: NHWC [uint8 quantized | float] input -> 1x1 CONV_2D -> NHWC output."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    weight, bias = conv_params(channels, seed)
    buffers = [s.BufferT()]  # buffer 0 is the empty sentinel

    def buffer(data: np.ndarray | None) -> int:
        b = s.BufferT()
        if data is not None:
            b.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
        buffers.append(b)
        return len(buffers) - 1

    tensors = []

    def tensor(name, shape, ttype, data=None, quant=None) -> int:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), ttype, buffer(data)
        if quant is not None:
            q = s.QuantizationParametersT()
            q.scale, q.zeroPoint = [quant[0]], [quant[1]]
            t.quantization = q
        tensors.append(t)
        return len(tensors) - 1

    codes = []

    def opcode(builtin: int) -> int:
        c = s.OperatorCodeT()
        c.builtinCode = builtin
        c.deprecatedBuiltinCode = min(builtin, 127)
        c.version = 1
        codes.append(c)
        return len(codes) - 1

    ops = []
    shape_in = [1, size, size, 3]
    if quantized_input:
        image = tensor("image", shape_in, s.TensorType.UINT8, quant=quantized_input)
        x = tensor("x", shape_in, s.TensorType.FLOAT32)
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(s.BuiltinOperator.DEQUANTIZE), [image], [x]
        ops.append(op)
    else:
        image = x = tensor("image", shape_in, s.TensorType.FLOAT32)
    w = tensor("w", [channels, 1, 1, 3], s.TensorType.FLOAT32, weight.reshape(channels, 1, 1, 3))
    b = tensor("b", [channels], s.TensorType.FLOAT32, bias)
    y = tensor("y", [1, size, size, channels], s.TensorType.FLOAT32)
    conv = s.OperatorT()
    conv.opcodeIndex, conv.inputs, conv.outputs = opcode(s.BuiltinOperator.CONV_2D), [x, w, b], [y]
    options = s.Conv2DOptionsT()
    options.padding, options.strideW, options.strideH = s.Padding.SAME, 1, 1
    options.dilationWFactor = options.dilationHFactor = 1
    conv.builtinOptionsType, conv.builtinOptions = s.BuiltinOptions.Conv2DOptions, options
    ops.append(conv)
    out = y
    if sigmoid:
        out = tensor("p", [1, size, size, channels], s.TensorType.FLOAT32)
        op = s.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(s.BuiltinOperator.LOGISTIC), [y], [out]
        ops.append(op)
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [image], [out], ops
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, codes, [graph]
    model.buffers = buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def tflite_normalization_metadata(mean: list[float], std: list[float]) -> bytes:
    """A TFLite Support ModelMetadata flatbuffer (metadata_schema.fbs) whose input tensor holds
    NormalizationOptions(mean, std), built field by field."""
    import flatbuffers

    b = flatbuffers.Builder(0)

    def vector(items: list, prepend) -> int:
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            prepend(item)
        return b.EndVector()

    def table(fields: list[tuple[int, int]], count: int, kind: int | None = None) -> int:
        b.StartObject(count)
        if kind is not None:
            b.PrependUint8Slot(0, kind, 0)
        for slot, offset in fields:
            b.PrependUOffsetTRelativeSlot(slot, offset, 0)
        return b.EndObject()

    options = table([(0, vector(mean, b.PrependFloat32)), (1, vector(std, b.PrependFloat32))], 2)
    unit = table([(1, options)], 2, kind=1)  # ProcessUnitOptions.NormalizationOptions
    tensor = table([(4, vector([unit], b.PrependUOffsetTRelative))], 5)
    subgraph = table([(2, vector([tensor], b.PrependUOffsetTRelative))], 3)
    root = table([(3, vector([subgraph], b.PrependUOffsetTRelative))], 4)
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())
