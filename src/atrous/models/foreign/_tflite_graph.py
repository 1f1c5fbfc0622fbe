"""Read a .tflite flatbuffer as a plain graph: tensors, constants (dequantized) and operators.

The schema is the one ``ai-edge-litert`` ships (``schema_py_generated``, imported on first use:
LiteRT is the optional ``[tflite]`` extra). Nothing in the file is executed: the flatbuffer is
read field by field, every vector length is checked against the file's size and the caps below
before it is walked, and every constant is bounded. Integer weights are dequantized with their
scales and zero points, per tensor or per channel (``quantized_dimension``); float16 weights are
widened. Any malformed input becomes one :class:`ModelError` line naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from atrous.errors import ModelError

__all__ = [
    "CONVS",
    "MAX_FILE_BYTES",
    "PASS_THROUGH",
    "GraphView",
    "Operator",
    "TFLiteGraph",
    "TensorInfo",
    "describe_tflite",
    "read_tflite_graph",
]

MAX_FILE_BYTES = 512 * 2**20  # the largest DeepLab .tflite is ~200 MB (Xception-65, float)
MAX_TENSORS = 20_000
MAX_OPERATORS = 20_000
MAX_TENSOR_ELEMENTS = 64 * 2**20
_IDENTIFIER = b"TFL3"
PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE")  # value-preserving for import
CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass
class TensorInfo:
    """One tensor of the subgraph: NHWC shape, type name, and its constant value if it has one
    (dequantized to float32 for integer / float16 weights)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    value: np.ndarray | None = None
    quantized: bool = False
    scale: float | None = None  # per-tensor quantization of an activation (its first scale)
    zero_point: int = 0


@dataclass
class Operator:
    """One operator: builtin name, input / output tensor indices (-1: optional input absent) and
    its options as a dict of the schema's field names (``padding``, ``strideH`` ...)."""

    index: int
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    """The first subgraph of a .tflite file."""

    path: Path
    tensors: list[TensorInfo]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]

    def producer(self) -> dict[int, Operator]:
        """Tensor index -> the operator writing it."""
        return {t: op for op in self.operators for t in op.outputs}

    def readers(self) -> dict[int, list[Operator]]:
        """Tensor index -> the operators reading it, in execution order."""
        out: dict[int, list[Operator]] = {}
        for op in self.operators:
            for t in op.inputs:
                if t >= 0:
                    out.setdefault(t, []).append(op)
        return out

    def op_counts(self) -> dict[str, int]:
        """How many operators of each kind the graph has."""
        counts: dict[str, int] = {}
        for op in self.operators:
            counts[op.kind] = counts.get(op.kind, 0) + 1
        return counts


class GraphView:
    """The graph with pass-through ops (quantize, dequantize, reshape) seen through."""

    def __init__(self, graph: TFLiteGraph) -> None:
        self.g = graph
        self.alias: dict[int, int] = {}
        self.pads: dict[int, tuple[int, list[list[int]]]] = {}
        for op in graph.operators:
            if op.kind in PASS_THROUGH and op.inputs:
                self.alias[op.outputs[0]] = self.source(op.inputs[0])
            elif op.kind == "PAD" and len(op.inputs) > 1:
                value = graph.tensors[op.inputs[1]].value
                if value is not None:
                    self.pads[op.outputs[0]] = (self.source(op.inputs[0]), value.tolist())
        self.ops = [op for op in graph.operators if op.kind not in PASS_THROUGH]
        self.producer = {self.source(t): op for op in self.ops for t in op.outputs}
        self.readers: dict[int, list[Operator]] = {}
        for op in self.ops:
            for t in op.inputs[:1] if op.kind in CONVS else op.inputs:
                if t >= 0:
                    self.readers.setdefault(self.source(t), []).append(op)

    def source(self, t: int) -> int:
        return self.alias.get(t, t)

    def name(self, op: Operator) -> str:
        return self.g.tensors[op.outputs[0]].name or f"operator {op.index}"

    def shape(self, t: int) -> tuple[int, ...]:
        return self.g.tensors[t].shape

    def reader(self, t: int, *kinds: str) -> Operator | None:
        found = [op for op in self.readers.get(self.source(t), []) if op.kind in kinds]
        return found[0] if len(found) == 1 else None


def describe_tflite(graph: TFLiteGraph) -> str:
    """What a .tflite looks like, in one line: input / output shapes and its commonest ops."""
    counts = sorted(graph.op_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    ops = ", ".join(f"{k} x{n}" for k, n in counts[:6]) or "no operators"
    shapes = [list(graph.tensors[t].shape) for t in graph.inputs]
    outs = [list(graph.tensors[t].shape) for t in graph.outputs]
    return f"input {shapes}, output {outs}, {len(graph.operators)} operators ({ops})"


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return None
    return schema


def _names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


class _Reader:
    """Bounded field-by-field access to a flatbuffer model."""

    def __init__(self, path: Path, data: bytes, schema: Any) -> None:
        self.path, self.data, self.schema = path, data, schema
        self.op_names = _names(schema.BuiltinOperator)
        self.type_names = _names(schema.TensorType)
        self.option_classes = _names(schema.BuiltinOptions)

    def fail(self, problem: str) -> ModelError:
        return ModelError(f"{self.path}: {problem}")

    def length(self, count: int, what: str, cap: int, item_bytes: int = 4) -> int:
        """``count`` if it is within ``cap`` and fits in the file, else a one-line error."""
        if count < 0 or count > cap or count * item_bytes > len(self.data):
            raise self.fail(f"{what}: {count} entries is more than the file can hold")
        return count

    def model(self) -> Any:
        if len(self.data) < 16 or self.data[4:8] != _IDENTIFIER:
            raise self.fail("not a TFLite flatbuffer (no 'TFL3' identifier)")
        return self.schema.Model.GetRootAs(self.data, 0)

    def buffer_bytes(self, model: Any, index: int) -> bytes:
        """The raw bytes of buffer ``index`` (inline, or at an offset past the flatbuffer)."""
        if index <= 0:
            return b""
        buffer = model.Buffers(index)
        if buffer.Offset() > 1:
            start, size = int(buffer.Offset()), int(buffer.Size())
            if start + size > len(self.data):
                raise self.fail(f"buffer {index} points past the end of the file")
            return self.data[start : start + size]
        n = self.length(buffer.DataLength(), f"buffer {index}", len(self.data), 1)
        return buffer.DataAsNumpy().tobytes() if n else b""

    def tensor(self, model: Any, graph: Any, index: int) -> TensorInfo:
        t = graph.Tensors(index)
        shape = tuple(
            int(t.Shape(i)) for i in range(self.length(t.ShapeLength(), "tensor shape", 8))
        )
        dtype = self.type_names.get(t.Type(), f"type {t.Type()}")
        name = (t.Name() or b"").decode("utf-8", "replace")
        info = TensorInfo(index, name, shape, dtype)
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            info.scale = float(q.Scale(0))
            info.zero_point = int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0
        if not 0 <= t.Buffer() < model.BuffersLength():
            raise self.fail(f"tensor '{name}': buffer {t.Buffer()} is not in the file")
        raw = self.buffer_bytes(model, t.Buffer())
        if raw:
            info.value, info.quantized = self.constant(t, shape, dtype, raw, name)
        return info

    def constant(
        self, t: Any, shape: tuple[int, ...], dtype: str, raw: bytes, name: str
    ) -> tuple[np.ndarray, bool]:
        """The constant's value, float32 when it is quantized or float16."""
        kinds = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8}
        kinds |= {"INT32": np.int32, "INT64": np.int64, "INT16": np.int16}
        if dtype not in kinds:
            raise self.fail(f"tensor '{name}': constants of type {dtype} are not read")
        elements = int(np.prod(shape)) if shape else 1
        if elements > MAX_TENSOR_ELEMENTS or any(d < 0 for d in shape):
            raise self.fail(f"tensor '{name}': shape {list(shape)} is too large")
        value = np.frombuffer(raw, dtype=kinds[dtype])
        if value.size != elements:
            raise self.fail(f"tensor '{name}': {value.size} values for shape {list(shape)}")
        value = value.reshape(shape)
        q = t.Quantization()
        scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
        if scales is None or dtype in ("FLOAT32", "FLOAT16"):
            return (value.astype(np.float32) if dtype == "FLOAT16" else value.copy()), False
        zero = q.ZeroPointAsNumpy() if q.ZeroPointLength() else np.zeros(1, np.int64)
        return self.dequantize(value, scales, zero, int(q.QuantizedDimension()), name), True

    def dequantize(
        self, value: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int, name: str
    ) -> np.ndarray:
        """(q - zero_point) * scale, per tensor or per channel along ``axis``."""
        if scale.size > 1:
            if axis >= value.ndim or value.shape[axis] != scale.size:
                raise self.fail(f"tensor '{name}': {scale.size} scales for shape {value.shape}")
            view = [1] * value.ndim
            view[axis] = scale.size
            scale = scale.reshape(view)
            zero = zero.reshape(view) if zero.size == scale.size else zero.reshape(-1)[:1]
        else:
            scale, zero = scale.reshape(()), zero.reshape(-1)[:1].reshape(())
        return ((value.astype(np.float64) - zero) * scale).astype(np.float32)

    def operator(self, model: Any, graph: Any, index: int) -> Operator:
        op = graph.Operators(index)
        n_codes = model.OperatorCodesLength()
        code_index = op.OpcodeIndex()
        if not 0 <= code_index < n_codes:
            raise self.fail(f"operator {index}: opcode {code_index} is not in the file")
        code = model.OperatorCodes(code_index)
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        kind = self.op_names.get(builtin, f"builtin {builtin}")
        if kind == "CUSTOM":
            kind = f"CUSTOM {(code.CustomCode() or b'').decode('utf-8', 'replace')}"
        n_in = self.length(op.InputsLength(), f"operator {index} inputs", 64)
        n_out = self.length(op.OutputsLength(), f"operator {index} outputs", 64)
        inputs = [int(op.Inputs(i)) for i in range(n_in)]
        outputs = [int(op.Outputs(i)) for i in range(n_out)]
        return Operator(index, kind, inputs, outputs, self.options(op))

    def options(self, op: Any) -> dict[str, Any]:
        """The operator's builtin options as {field: value} (scalars only)."""
        name = self.option_classes.get(op.BuiltinOptionsType())
        table = op.BuiltinOptions()
        if not name or name == "NONE" or table is None:
            return {}
        cls = getattr(self.schema, name, None)
        native = getattr(self.schema, f"{name}T", None)
        if cls is None or native is None:
            return {}
        options = cls()
        options.Init(table.Bytes, table.Pos)
        unpacked = native.InitFromObj(options)
        return {k: v for k, v in vars(unpacked).items() if isinstance(v, int | float | bool)}


def read_tflite_graph(path: str | Path) -> TFLiteGraph:
    """The first subgraph of the .tflite at ``path``, constants dequantized.

    Raises:
        ModelError: LiteRT's schema is missing, the file is too large, not a TFLite flatbuffer,
            truncated or malformed (one line naming the file).
    """
    path = Path(path)
    schema = _schema()
    if schema is None:
        raise ModelError(
            f"{path}: reading a .tflite needs ai-edge-litert (pip install 'atrous[tflite]')"
        )
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ModelError(
            f"{path}: {size} bytes is larger than a DeepLab .tflite ({MAX_FILE_BYTES})"
        )
    reader = _Reader(path, path.read_bytes(), schema)
    try:
        return _read(reader)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed flatbuffer: one line, never a trace
        problem = f"{type(exc).__name__}: {exc}".splitlines()[0]
        problem = problem if len(problem) <= 100 else problem[:97] + "..."
        raise ModelError(f"{path}: truncated or malformed .tflite ({problem})") from None


def _read(reader: _Reader) -> TFLiteGraph:
    model = reader.model()
    if reader.length(model.SubgraphsLength(), "subgraphs", 64) < 1:
        raise reader.fail("the .tflite has no subgraph")
    reader.length(model.BuffersLength(), "buffers", MAX_TENSORS + 1)
    reader.length(model.OperatorCodesLength(), "operator codes", 1024)
    graph = model.Subgraphs(0)
    n_tensors = reader.length(graph.TensorsLength(), "tensors", MAX_TENSORS)
    n_ops = reader.length(graph.OperatorsLength(), "operators", MAX_OPERATORS)
    tensors = [reader.tensor(model, graph, i) for i in range(n_tensors)]
    operators = [reader.operator(model, graph, i) for i in range(n_ops)]
    for op in operators:
        if any(not -1 <= t < n_tensors for t in op.inputs + op.outputs):
            raise reader.fail(f"operator {op.index} ({op.kind}) names a tensor not in the file")
    inputs = [
        int(graph.Inputs(i)) for i in range(reader.length(graph.InputsLength(), "inputs", 64))
    ]
    outputs = [
        int(graph.Outputs(i)) for i in range(reader.length(graph.OutputsLength(), "outputs", 64))
    ]
    if any(not 0 <= t < n_tensors for t in inputs + outputs):
        raise reader.fail("the subgraph's inputs or outputs name a tensor not in the file")
    return TFLiteGraph(reader.path, tensors, operators, inputs, outputs)
