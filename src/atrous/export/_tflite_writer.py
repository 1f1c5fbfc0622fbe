"""The TFLite flatbuffer side of the ONNX -> TFLite converter: tensors, buffers and operators of
one subgraph, built with the schema that ships with ``ai-edge-litert`` (imported on first use,
as LiteRT is an optional extra)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from atrous.errors import ModelError

__all__ = ["TFLiteWriter", "litert_schema", "tensor_type"]


def litert_schema() -> Any:
    """LiteRT's generated flatbuffer schema module (the optional ``ai-edge-litert`` extra)."""
    from ai_edge_litert import schema_py_generated as schema

    return schema


def tensor_type(elem_type: int) -> int:
    """The TFLite TensorType of an ONNX element type."""
    t = litert_schema().TensorType
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
class TFLiteWriter:
    """Collects tensors, buffers, operator codes and operators of one subgraph."""

    shapes: dict[str, tuple[int, ...]]
    types: dict[str, int]
    constants: dict[str, np.ndarray]
    tensors: list[Any] = field(default_factory=list)
    buffers: list[Any] = field(default_factory=list)
    opcodes: list[Any] = field(default_factory=list)
    operators: list[Any] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    # 5-D tensors that split the channel axis (a channel shuffle's N x g x C/g x H x W), stored
    # N x H x W x g x C/g so the shuffle costs one TRANSPOSE (``atrous.export.tflite_ops_mobile``)
    grouped: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.buffers.append(litert_schema().BufferT())  # buffer 0: the empty sentinel

    # -- tensors -------------------------------------------------------------------------------
    def activation(self, name: str, shape: tuple[int, ...], ttype: int) -> int:
        """A tensor computed at run time (NHWC shape given)."""
        tensor = litert_schema().TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = list(shape), ttype, 0, name
        self.tensors.append(tensor)
        self.index[name] = len(self.tensors) - 1
        return self.index[name]

    def constant(self, name: str, value: np.ndarray) -> int:
        """A constant tensor with its own buffer."""
        schema = litert_schema()
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
        return self.activation(name, nhwc, tensor_type(self.types[name]))

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
        schema = litert_schema()
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

    def nonnegative(self, x: int) -> bool:
        """Whether tensor ``x`` is the output of an operator with a fused ReLU / ReLU6 (or a
        RELU / RELU6 operator): no value below zero."""
        schema = litert_schema()
        relus = (schema.ActivationFunctionType.RELU, schema.ActivationFunctionType.RELU6)
        codes = (schema.BuiltinOperator.RELU, schema.BuiltinOperator.RELU6)
        for operator in reversed(self.operators):
            if x in operator.outputs:
                code = self.opcodes[operator.opcodeIndex].builtinCode
                fused = getattr(operator.builtinOptions, "fusedActivationFunction", None)
                return code in codes or fused in relus
        return False

    def pad(self, node: onnx.NodeProto, x: int, pads: list[int], value: float | None) -> int:
        """Explicit spatial padding of an NHWC tensor (ONNX pads [top, left, bottom, right])."""
        schema = litert_schema()
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

    def window(
        self,
        node: onnx.NodeProto,
        x: int,
        kernel: list[int],
        strides: list[int],
        dilations: list[int],
        pads: list[int],
        pad_value: float | None,
    ) -> tuple[int, int]:
        """(input tensor, TFLite padding) of a windowed op: SAME or VALID when ONNX's pads are
        one of them, else an explicit Pad in front and VALID."""
        padding = litert_schema().Padding
        _, h, w, _ = self.tensors[x].shape
        same = [
            *_same_pads(h, kernel[0], strides[0], dilations[0]),
            *_same_pads(w, kernel[1], strides[1], dilations[1]),
        ]
        onnx_pads = [pads[0], pads[2], pads[1], pads[3]]  # top, bottom, left, right
        if not any(pads):
            return x, padding.VALID
        if onnx_pads == same:
            return x, padding.SAME
        return self.pad(node, x, pads, pad_value), padding.VALID
