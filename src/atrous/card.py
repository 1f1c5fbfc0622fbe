"""The model card: everything a consumer needs to use a model file, carried inside it.

Checkpoints, ONNX metadata, OpenVINO IR rt_info and TFLite metadata all store the same card as
JSON, so train, evaluate, export and the segmenter read one contract instead of re-deriving it.
This module alone reads and writes the card in those formats. Everything behaviour depends on
is a typed section (``fast_path``, ``export``, ``provenance.training_data``); ``notes`` is
free-form and read by nothing. Cards written before the sections existed carried them in
``provenance.notes``; they are migrated when read.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from pydantic import Field, ValidationError, model_validator

from atrous.config import DataConfig, ModelConfig, Preprocessing, StrictModel
from atrous.errors import ModelError

__all__ = [
    "CARD_KEY",
    "RT_INFO_CARD",
    "ExportFacts",
    "FastPathFacts",
    "ModelCard",
    "Normalisation",
    "Provenance",
    "WeightsFacts",
    "add_tflite_metadata",
    "card_from_json",
    "card_json_of",
    "onnx_card",
    "openvino_card_json",
    "read_card",
    "read_onnx_card",
    "read_tflite_metadata",
    "set_onnx_metadata",
    "tflite_card_json",
    "write_onnx_card",
    "write_openvino_card",
    "write_tflite_card",
]

CARD_KEY = "atrous.card"  # ONNX metadata_props / TFLite metadata name
RT_INFO_CARD = ["atrous", "card"]  # OpenVINO IR rt_info path


class Normalisation(StrictModel):
    """Mean, std and channel order of the network a fast graph was built from."""

    mean: list[float]
    std: list[float]
    channel_order: Literal["RGB", "BGR"] = "RGB"


class FastPathFacts(StrictModel):
    """The fast graph's contract: raw pixels in, logits at the network's resolution out, labels
    computed on the host at 1/``label_stride`` (see :mod:`atrous.fastpath`)."""

    label_stride: int = 1
    precision: Literal["fp32", "int8"] = "fp32"
    channel_multiple: int = 1
    engine: str | None = None  # the runtime an int8 graph is built for (openvino, or ONNX)
    tail: str = "host: sparse bilinear upsample + argmax (atrous.upsample)"
    input: str = "uint8 RGB planar (N, 3, H, W) pixels"
    normalisation: Normalisation | None = None
    # a graph written beside a checkpoint (``atrous train``, :mod:`atrous.fastpath.deploy`):
    # the SHA-256 of the checkpoint file it was built from, and its pixel agreement with the
    # float model on ``images_checked`` held-out images (labels at full resolution on both
    # sides: what the graph changes), and, when those images are labelled, the mIoU of the
    # float model and of the graph on them (the one evaluator); a graph whose checkpoint
    # changed since, or that loses too much mIoU (or, unlabelled, agrees too little), is not used
    source_sha256: str | None = None
    agreement: float | None = None
    images_checked: int | None = None
    float_miou: float | None = None
    fast_miou: float | None = None


class ExportFacts(StrictModel):
    """How an exported file was written: format and the settings that shaped the graph."""

    format: str
    opset: int | None = None
    dynamic: bool | None = None
    size: list[int] | None = None
    precision: str | None = None


class WeightsFacts(StrictModel):
    """Where a model's weights came from, so every consumer can tell trained from random.

    ``origin``: 'random' (a zoo architecture never trained), 'published' (a registry entry of
    :mod:`atrous.weights`), 'converted' (a file turned into a checkpoint by ``atrous convert``)
    or 'trained' (``atrous train``).
    """

    origin: Literal["random", "published", "converted", "trained"]
    name: str | None = None
    source: str | None = None
    url: str | None = None
    sha256: str | None = None
    licence: str | None = None
    published: dict[str, float | str] = Field(default_factory=dict)


class Provenance(StrictModel):
    """Where a model came from: zoo entry, data, training run, library version, time.

    ``training_data`` is the data section it was trained with (``atrous train`` records it), so
    that 'synthetic' scores a demo model on its own kind of scenes.
    """

    zoo_name: str | None = None
    dataset: str | None = None
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    atrous_version: str = "0.1.0"
    source: str | None = None
    training_data: DataConfig | None = None
    notes: dict[str, Any] = Field(default_factory=dict)


class ModelCard(StrictModel):
    """A model's architecture, classes, palette, input contract, output contract and provenance.

    ``output`` says what the network returns: 'logits' (N, C, H, W), 'labels' (N, H, W uint8,
    argmax inside the graph) or 'probability' (N, 1, H, W foreground probability).
    ``weights`` says where the weights came from (None: not recorded, cards before it existed).
    ``output_tensor`` picks the output a multi-output model is read from, by name or index
    (None: the first).
    """

    name: str
    model: ModelConfig | None = None
    classes: list[str]
    palette: list[tuple[int, int, int]]
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    output: Literal["logits", "labels", "probability"] = "logits"
    output_tensor: str | int | None = None
    ignore_index: int = 255
    metrics: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    fast_path: FastPathFacts | None = None
    export: ExportFacts | None = None
    weights: WeightsFacts | None = None
    # card fields guessed rather than read from the model (field -> what was assumed and why);
    # a ``--contract`` override or a sidecar card replaces the guess
    assumed: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _migrate_notes(cls, data: Any) -> Any:
        """Move facts older cards kept in ``provenance.notes`` into their typed sections."""
        return _migrated(data) if isinstance(data, dict) else data

    @property
    def num_classes(self) -> int:
        """Number of classes the model predicts."""
        return len(self.classes)

    def to_json(self) -> str:
        """Serialise to compact JSON (stored in checkpoints and model metadata)."""
        return self.model_dump_json()


def _known(section: type[StrictModel], value: Any) -> dict[str, Any] | None:
    """The keys of ``value`` that ``section`` knows (older cards may carry others)."""
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if k in section.model_fields}


def _migrated(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with notes['fast_path'], notes['export'] and notes['config']['data'] moved into
    the typed sections (a copy; a card already typed is returned as it is)."""
    provenance = data.get("provenance")
    notes = provenance.get("notes") if isinstance(provenance, dict) else None
    if not isinstance(notes, dict) or not notes.keys() & {"fast_path", "export", "config"}:
        return data
    data, notes = dict(data), dict(notes)
    provenance = {**provenance, "notes": notes}
    data["provenance"] = provenance
    for key, section in (("fast_path", FastPathFacts), ("export", ExportFacts)):
        facts = _known(section, notes.pop(key, None))
        if facts is not None and data.get(key) is None:
            data[key] = facts
    config = notes.get("config")
    trained_on = config.get("data") if isinstance(config, dict) else None
    if isinstance(trained_on, dict) and provenance.get("training_data") is None:
        # a data section another version wrote may not validate: then it is left out
        with contextlib.suppress(ValidationError):
            provenance["training_data"] = DataConfig.model_validate(trained_on)
    return data


def card_from_json(text: str | bytes | dict[str, Any], source: str = "model") -> ModelCard:
    """Parse a card, raising ModelError naming ``source`` when it is malformed."""
    try:
        data = json.loads(text) if isinstance(text, str | bytes) else text
        return ModelCard.model_validate(data)
    except (ValueError, ValidationError) as exc:
        first = str(exc)
        if isinstance(exc, ValidationError):
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            first = f"{where}: {error['msg']}" if where else error["msg"]
        raise ModelError(f"{source}: malformed model card: {first}") from None


# -- ONNX: metadata_props ------------------------------------------------------------------------
def set_onnx_metadata(proto: onnx.ModelProto, items: Mapping[str, str]) -> None:
    """Set (replace) string entries in an ONNX model's ``metadata_props``."""
    keep = [p for p in proto.metadata_props if p.key not in items]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in items.items():
        proto.metadata_props.add(key=key, value=value)


def write_onnx_card(proto: onnx.ModelProto, card: ModelCard) -> None:
    """Store ``card`` in a loaded ONNX model's metadata (replacing any card it had)."""
    set_onnx_metadata(proto, {CARD_KEY: card.to_json()})


def card_json_of(metadata: Mapping[str, str]) -> str | None:
    """The card's JSON in a runtime's view of ONNX metadata (e.g. ONNX Runtime's map)."""
    return metadata.get(CARD_KEY)


def onnx_card(proto: onnx.ModelProto, source: str = "model") -> ModelCard | None:
    """The card in a loaded ONNX model's metadata, or None when it has none."""
    text = card_json_of({p.key: p.value for p in proto.metadata_props})
    return card_from_json(text, source) if text is not None else None


def read_onnx_card(path: str | Path) -> ModelCard | None:
    """The card stored in an ONNX file's metadata, or None when it has none."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    return onnx_card(proto, str(path))


# -- OpenVINO IR: rt_info ------------------------------------------------------------------------
def openvino_card_json(model: Any) -> str | None:
    """The card's JSON in an ``openvino.Model``'s rt_info (an IR's, or an ONNX file's metadata
    as OpenVINO exposes it), if any."""
    for key in (RT_INFO_CARD, ["framework", CARD_KEY]):
        if model.has_rt_info(key):
            return model.get_rt_info(key).astype(str)
    return None


def write_openvino_card(model: Any, card: ModelCard) -> None:
    """Store ``card`` in an ``openvino.Model``'s rt_info (saved with the IR)."""
    model.set_rt_info(card.to_json(), RT_INFO_CARD)


# -- TFLite: flatbuffer metadata (needs the optional ai-edge-litert) ------------------------------
def read_tflite_metadata(content: bytes) -> dict[str, bytes]:
    """Named metadata buffers of a .tflite flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    found = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buffer = model.Buffers(entry.Buffer())
        if buffer is not None and buffer.DataLength():
            found[entry.Name().decode()] = buffer.DataAsNumpy().tobytes()
    return found


def add_tflite_metadata(content: bytes, items: dict[str, bytes]) -> bytes:
    """A copy of a .tflite flatbuffer with named metadata buffers added (or replaced)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() not in items]
    for name, data in items.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name.encode()
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tflite_card_json(content: bytes) -> str | None:
    """The card's JSON in a .tflite flatbuffer's metadata (None for a file without one, or
    with metadata this reader cannot walk)."""
    try:
        data = read_tflite_metadata(content).get(CARD_KEY)
    except Exception:  # a foreign file with unusual metadata: treat as no card
        return None
    return data.decode("utf-8") if data else None


def write_tflite_card(content: bytes, card: ModelCard) -> bytes:
    """A copy of a .tflite flatbuffer carrying ``card``."""
    return add_tflite_metadata(content, {CARD_KEY: card.to_json().encode("utf-8")})


# -- any exported file ---------------------------------------------------------------------------
def read_card(path: str | Path) -> ModelCard | None:
    """The card embedded in an exported file (.onnx, .xml, .tflite), or None when it carries
    none (checkpoints: ``atrous.checkpoint``; sidecars and inferred cards: ``atrous.sources``)."""
    path = Path(path)
    if path.suffix == ".onnx":
        return read_onnx_card(path)
    if path.suffix == ".tflite":
        text = tflite_card_json(path.read_bytes())
    elif path.suffix == ".xml":
        import openvino as ov

        text = openvino_card_json(ov.Core().read_model(str(path)))
    else:
        raise ModelError(f"{path}: not an exported model file (.onnx, .xml or .tflite)")
    return card_from_json(text, str(path)) if text else None
