"""Runtimes behind one Engine protocol; ``load_exported`` opens an exported model file.

Zoo names and checkpoints are resolved by :mod:`atrous.sources` (``load_engine``).
"""

from __future__ import annotations

from pathlib import Path

from atrous.card import CARD_KEY, ModelCard, card_from_json
from atrous.errors import ModelError
from atrous.runtimes._common import cast_input
from atrous.runtimes.auto import available_engines, choose_engine
from atrous.runtimes.base import Engine
from atrous.runtimes.contract import (
    StandardOutput,
    check_card,
    infer_card,
    override_card,
    sidecar_card,
)
from atrous.runtimes.litert_engine import LiteRtEngine
from atrous.runtimes.ncnn_engine import NcnnEngine
from atrous.runtimes.onnxruntime_engine import OrtEngine
from atrous.runtimes.openvino_engine import OpenVinoEngine
from atrous.runtimes.torch_engine import TorchEngine, default_threads

__all__ = [
    "CARD_KEY",
    "ENGINES",
    "ENGINES_OF_SUFFIX",
    "Engine",
    "TorchEngine",
    "cast_input",
    "default_threads",
    "load_exported",
    "model_file_mb",
    "open_engine",
    "read_card",
    "read_exported_card",
    "unsupported_file",
]

ENGINES = ("auto", "torch", "onnxruntime", "openvino", "litert", "ncnn")
ENGINES_OF_SUFFIX = {
    ".onnx": ("onnxruntime", "openvino"),
    ".xml": ("openvino",),
    ".tflite": ("litert",),
    ".param": ("ncnn",),
}
# weights files written beside the model file (an OpenVINO IR's .bin, an ncnn graph's .bin)
WEIGHTS_BESIDE = {".xml": ".bin", ".param": ".bin"}


def unsupported_file(path: Path) -> str:
    """Why ``path`` is not a model file, in one line."""
    if path.is_dir():
        return f"{path}: a folder, not a model file (.pt, .onnx, .xml, .tflite or .param)"
    kinds = ", ".join([".pt", *ENGINES_OF_SUFFIX])
    return f"{path}: unsupported model file type '{path.suffix}' (expected {kinds})"


def model_file_mb(path: str | Path) -> float:
    """A model file's size on disk in MB (10^6 bytes), an OpenVINO .xml or ncnn .param with
    its .bin weights."""
    path = Path(path)
    total = path.stat().st_size
    weights = path.with_suffix(WEIGHTS_BESIDE.get(path.suffix, path.suffix))
    if weights != path and weights.exists():
        total += weights.stat().st_size
    return total / 1e6


def open_engine(path: Path, engine: str, threads: int | None = None) -> Engine:
    """The raw engine for an exported file (no card handling, no output standardisation)."""
    if engine == "onnxruntime":
        return OrtEngine(path, threads)
    if engine == "openvino":
        return OpenVinoEngine(path, threads)
    if engine == "litert":
        return LiteRtEngine(path, threads)
    if engine == "ncnn":
        return NcnnEngine(path, threads)
    raise ModelError(f"{path}: the '{engine}' engine does not open {path.suffix} files")


def read_card(path: Path, engine: Engine) -> tuple[ModelCard, str]:
    """The card of an exported file and where it came from: metadata, sidecar or inferred."""
    text = getattr(engine, "card_json", None)
    if text:
        return card_from_json(text, str(path)), "metadata"
    card = sidecar_card(path)
    if card is not None:
        return card, "sidecar"
    return infer_card(engine.signature(), str(path)), "inferred"


def read_exported_card(
    path: str | Path, contract: list[str] | None = None
) -> tuple[ModelCard, str]:
    """Card of an exported file and its origin, opening it on its first installed engine."""
    path = Path(path)
    if path.suffix not in ENGINES_OF_SUFFIX:
        raise ModelError(unsupported_file(path))
    allowed = ENGINES_OF_SUFFIX[path.suffix]
    engine = open_engine(path, (available_engines(allowed) or list(allowed))[0], 1)
    card, origin = read_card(path, engine)
    return _overridden(card, contract, str(path)), origin


def _overridden(card: ModelCard, contract: list[str] | None, source: str) -> ModelCard:
    """``card`` with the ``key=value`` overrides in ``contract`` applied."""
    return override_card(card, contract or [], source)


def load_exported(
    path: str | Path,
    engine: str = "auto",
    threads: int | None = None,
    contract: list[str] | None = None,
) -> tuple[Engine, ModelCard]:
    """Open an exported file (.onnx, .xml, .tflite, .param) on ``engine`` ('auto': the fastest
    installed one, measured once and cached) with its card: from its metadata, a sidecar, or
    inferred from its signature, then ``contract`` overrides (``key=value``)."""
    path = Path(path)
    if path.suffix not in ENGINES_OF_SUFFIX:
        raise ModelError(unsupported_file(path))
    threads = threads or default_threads()
    allowed = ENGINES_OF_SUFFIX[path.suffix]
    if engine != "auto" and engine not in allowed:
        raise ModelError(
            f"{path}: a {path.suffix} file runs on {' or '.join(allowed)}, not '{engine}'"
        )
    candidates = [engine] if engine != "auto" else available_engines(allowed) or list(allowed[:1])
    opened = open_engine(path, candidates[0], threads)
    card, origin = read_card(path, opened)
    card = _overridden(card, contract, str(path))
    check_card(card, opened.signature(), str(path))
    chosen = opened
    if len(candidates) > 1:
        name, _ = choose_engine(
            path,
            candidates,
            threads,
            _typical_shape(card),
            lambda other: opened if other == opened.name else open_engine(path, other, threads),
        )
        if name != opened.name:
            chosen = open_engine(path, name, threads)
    if origin != "metadata" or card.preprocessing.layout == "NHWC":
        return StandardOutput(chosen, card.preprocessing.layout, card.output), card
    return chosen, card


def _typical_shape(card: ModelCard) -> tuple[int, ...]:
    """The batch shape the card's preprocessing produces for a square image of its size."""
    pre = card.preprocessing
    side = pre.size or 513
    side = -(-side // pre.pad_multiple) * pre.pad_multiple if pre.resize != "fixed" else side
    side += 2 * pre.border
    return (1, 3, side, side) if pre.layout == "NCHW" else (1, side, side, 3)
