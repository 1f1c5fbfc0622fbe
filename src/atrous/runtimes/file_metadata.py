"""The input normalisation a foreign model file states in its own metadata, when it states one.

TFLite files made with the TFLite Support metadata writer carry a ``TFLITE_METADATA`` buffer (a
``ModelMetadata`` flatbuffer, file identifier ``M001``) whose input tensor may hold
``NormalizationOptions`` (mean and std in pixel units: ``(x - mean) / std``). ONNX files may
carry ``mean`` / ``std`` entries in ``metadata_props`` (JSON lists or comma-separated numbers,
in [0, 1] or pixel units; ``mean_values`` / ``scale_values`` as OpenVINO names them). The
metadata schema is not shipped with ai-edge-litert (tflite-support, which has it, pins an old
protobuf), so the few tables needed are walked here by field index (metadata_schema.fbs), with
bounds: a buffer over 1 MiB, vectors longer than 64 entries and offsets outside the buffer are
no metadata, never a long walk.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from pathlib import Path

import flatbuffers
import onnx
from flatbuffers.table import Table

from atrous.card import read_tflite_metadata

__all__ = ["metadata_normalisation", "onnx_normalisation", "tflite_normalisation"]

Triple = tuple[float, float, float]
TFLITE_METADATA = "TFLITE_METADATA"
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union: NormalizationOptions = 1
_MEAN_KEYS = ("mean", "norm_mean", "mean_values", "image_mean")
_STD_KEYS = ("std", "norm_std", "scale_values", "image_std")
MAX_METADATA_BYTES = 1 << 20  # a ModelMetadata table is a few KB; associated files live outside
MAX_ENTRIES = 64  # subgraphs, tensors, process units or floats walked in one vector


def _triple(values: list[float]) -> Triple | None:
    """One value per channel (a single value stands for all three), else None."""
    if len(values) == 1:
        values = values * 3
    return (float(values[0]), float(values[1]), float(values[2])) if len(values) == 3 else None


def _in_unit_range(mean: Triple, std: Triple) -> tuple[Triple, Triple]:
    """Mean and std for inputs in [0, 1] (as the card holds them), from pixel units if needed."""
    if max(mean) > 1.0 or max(std) > 1.0:
        return tuple(m / 255 for m in mean), tuple(s / 255 for s in std)  # type: ignore[return-value]
    return mean, std


def _numbers(text: str) -> list[float]:
    """The numbers in a metadata value: a JSON list, or separated by commas or spaces."""
    with contextlib.suppress(ValueError):
        data = json.loads(text)
        return [float(v) for v in (data if isinstance(data, list) else [data])]
    return [float(v) for v in re.split(r"[,\s\[\]()]+", text) if v]


def onnx_normalisation(path: Path) -> tuple[Triple, Triple] | None:
    """Mean and std from an ONNX file's ``metadata_props``, if it names both."""
    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key.lower(): p.value for p in proto.metadata_props}
    try:
        mean = next((_numbers(props[k]) for k in _MEAN_KEYS if k in props), None)
        std = next((_numbers(props[k]) for k in _STD_KEYS if k in props), None)
    except ValueError:
        return None
    if mean is None or std is None or _triple(mean) is None or _triple(std) is None:
        return None
    return _in_unit_range(_triple(mean), _triple(std))  # type: ignore[arg-type]


def _field(table: Table, index: int) -> int:
    """The offset of field ``index`` in a flatbuffer table (0 when absent)."""
    return table.Offset(4 + 2 * index)


def _tables(table: Table, index: int) -> list[Table]:
    """The tables of vector field ``index``."""
    offset = _field(table, index)
    if not offset:
        return []
    start, count = table.Vector(offset), table.VectorLen(offset)
    if count > MAX_ENTRIES or start + 4 * count > len(table.Bytes):
        raise ValueError("metadata vector out of bounds")
    return [Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(count)]


def _floats(table: Table, index: int) -> list[float]:
    """The float vector field ``index``."""
    offset = _field(table, index)
    if not offset:
        return []
    if table.VectorLen(offset) > MAX_ENTRIES:
        raise ValueError("metadata vector out of bounds")
    return table.GetVectorAsNumpy(flatbuffers.number_types.Float32Flags, offset).tolist()


def _normalization_of(unit: Table) -> tuple[list[float], list[float]] | None:
    """Mean and std of a ProcessUnit holding NormalizationOptions (field 0 type, 1 value)."""
    kind = _field(unit, 0)
    if not kind or unit.Get(flatbuffers.number_types.Uint8Flags, kind + unit.Pos) != 1:
        return None
    options = Table(bytearray(), 0)
    unit.Union(options, _field(unit, 1))
    return _floats(options, 0), _floats(options, 1)


def tflite_normalisation(content: bytes) -> tuple[Triple, Triple] | None:
    """Mean and std from a .tflite file's TFLite Support metadata, if its input has them."""
    buffer = read_tflite_metadata(content).get(TFLITE_METADATA)
    if not buffer or len(buffer) > MAX_METADATA_BYTES:
        return None
    data = bytearray(buffer)
    root = Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    for subgraph in _tables(root, 3):  # ModelMetadata.subgraph_metadata
        for tensor in _tables(subgraph, 2)[:1]:  # SubGraphMetadata.input_tensor_metadata
            for unit in _tables(tensor, 4):  # TensorMetadata.process_units
                found = _normalization_of(unit)
                if found and _triple(found[0]) and _triple(found[1]):
                    return _in_unit_range(_triple(found[0]), _triple(found[1]))  # type: ignore[arg-type]
    return None


def metadata_normalisation(path: Path) -> tuple[Triple, Triple] | None:
    """The normalisation a foreign model file states (None when it does not, or cannot be
    read: the caller then guesses and says so)."""
    if not path.is_file():
        return None
    found = None
    try:
        if path.suffix == ".onnx":
            found = onnx_normalisation(path)
        elif path.suffix == ".tflite":
            found = tflite_normalisation(path.read_bytes())
    except Exception:  # noqa: BLE001 - unusual metadata is no metadata, never a failure
        return None
    if found is None or not all(math.isfinite(v) for v in (*found[0], *found[1])):
        return None
    return found if min(found[1]) > 0 else None  # a zero or negative std is no normalisation
