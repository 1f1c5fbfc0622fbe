"""ONNX -> TFLite: a fixed-size float ONNX graph rewritten as a TFLite flatbuffer, in NHWC.

No TensorFlow and no litert-torch: the flatbuffer is written with the schema that ships with
``ai-edge-litert``. It covers the operators DeepLab networks export to (Conv and depthwise Conv
with their ReLU / ReLU6 fused, Add, Mul, GlobalAveragePool / ReduceMean, Expand of a pooled
vector, Concat, Resize, MaxPool, Pad, ArgMax, Cast; for the mobile backbones HardSwish,
HardSigmoid, Sigmoid, Slice, Reshape, Transpose and ConvTranspose); any other operator is
refused, naming the node. Tensors that are 4-D in ONNX (NCHW) are NHWC here, as every TFLite
runtime and NPU delegate expects. Full-integer int8 comes from LiteRT's own calibrator
(``quantize_tflite``).

This module walks the graph (fusing activations, absorbing the Cast after ArgMax) and packs the
flatbuffer; the per-operator converters are the table in ``atrous.export.tflite_ops`` and the
subgraph being written is ``atrous.export._tflite_writer.TFLiteWriter``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from atrous.errors import ModelError
from atrous.export import tflite_ops_mobile  # noqa: F401  (registers the mobile converters)
from atrous.export._tflite_writer import TFLiteWriter, litert_schema, tensor_type
from atrous.export.tflite_ops import CONVERTERS, convert_node, relu_kind

__all__ = ["onnx_to_tflite", "quantize_tflite", "SUPPORTED_OPS"]

SUPPORTED_OPS: tuple[str, ...] = tuple(CONVERTERS)  # the table, the mobile converters included

_FUSES_ACTIVATION = ("Conv", "Add", "Mul", "MaxPool")  # ops whose ReLU / ReLU6 is folded in


def _activation_after(
    node: onnx.NodeProto,
    consumers: dict[str, list[onnx.NodeProto]],
    outputs: set[str],
    constants: dict[str, np.ndarray],
) -> tuple[int, onnx.NodeProto | None]:
    """A ReLU / ReLU6 that alone reads ``node``'s output, to fuse (activation code, the node)."""
    schema = litert_schema()
    readers = consumers.get(node.output[0], [])
    if len(readers) != 1 or node.output[0] in outputs:
        return schema.ActivationFunctionType.NONE, None
    nxt = readers[0]
    kind = relu_kind(nxt, constants)
    if kind is None:
        return schema.ActivationFunctionType.NONE, None
    return kind, nxt


def _cast_after(
    node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]
) -> onnx.NodeProto | None:
    """The Cast that alone reads an ArgMax's labels (int64 -> uint8 in atrous's exports)."""
    readers = consumers.get(node.output[0], [])
    return readers[0] if len(readers) == 1 and readers[0].op_type == "Cast" else None


def _static_shapes(graph: onnx.GraphProto) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """Shape and element type of every value of a shape-inferred graph; all must be static."""
    shapes: dict[str, tuple[int, ...]] = {}
    types: dict[str, int] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            raise ModelError(f"tensor '{value.name}' has a dynamic shape; export at a fixed size")
        shapes[value.name] = tuple(int(d.dim_value) for d in dims)
        types[value.name] = value.type.tensor_type.elem_type
    return shapes, types


def _constants_and_nodes(
    graph: onnx.GraphProto,
) -> tuple[dict[str, np.ndarray], list[onnx.NodeProto]]:
    """Initializers and Constant nodes' values by name, and the nodes left to convert."""
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        else:
            nodes.append(node)
    return constants, nodes


def _convert_graph(writer: TFLiteWriter, nodes: list[onnx.NodeProto], outputs: set[str]) -> None:
    """Convert the nodes in order, folding a lone ReLU / ReLU6 into the op before it and the
    Cast after an ArgMax into the ArgMax."""
    schema = litert_schema()
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    skipped: set[int] = set()  # ids of nodes folded into the one before them
    for node in nodes:
        if id(node) in skipped:
            continue
        fused, absorbed = schema.ActivationFunctionType.NONE, None
        if node.op_type in _FUSES_ACTIVATION:
            fused, absorbed = _activation_after(node, consumers, outputs, writer.constants)
        elif node.op_type == "ArgMax":
            absorbed = _cast_after(node, consumers)
            if absorbed is not None:  # ARG_MAX writes int32 labels itself (CAST is not int8)
                writer.types[absorbed.output[0]] = onnx.TensorProto.INT32
        out_name = absorbed.output[0] if absorbed is not None else node.output[0]
        if absorbed is not None:
            skipped.add(id(absorbed))
        convert_node(writer, node, fused, out_name)


def _flatbuffer(writer: TFLiteWriter, first: int, graph: onnx.GraphProto) -> bytes:
    """The finished .tflite: one subgraph ``main`` from ``first`` to the graph's outputs."""
    import flatbuffers

    schema = litert_schema()
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


def onnx_to_tflite(proto: onnx.ModelProto) -> bytes:
    """The TFLite flatbuffer of a fixed-size float ONNX model (one input, NCHW -> NHWC).

    Raises:
        ModelError: a dynamic shape, or an operator or setting without a conversion (named).
    """
    litert_schema()  # without LiteRT, fail here, before any work
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    graph = inferred.graph
    shapes, types = _static_shapes(graph)
    constants, nodes = _constants_and_nodes(graph)
    if len(graph.input) - len([i for i in graph.input if i.name in constants]) != 1:
        raise ModelError("TFLite export needs a model with exactly one input")
    writer = TFLiteWriter(shapes, types, constants)
    source = next(i for i in graph.input if i.name not in constants)
    shape = shapes[source.name]
    if len(shape) != 4 or shape[1] != 3:
        raise ModelError(f"input '{source.name}' must be N x 3 x H x W, got {list(shape)}")
    first = writer.activation(
        source.name, (shape[0], shape[2], shape[3], 3), tensor_type(types[source.name])
    )
    _convert_graph(writer, nodes, {o.name for o in graph.output})
    return _flatbuffer(writer, first, graph)


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
