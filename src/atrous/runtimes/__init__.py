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
    "output_names",
    "read_card",
    "read_exported_card",
    "select_output",
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


def read_card(
    path: Path, engine: Engine, contract: list[str] | None = None
) -> tuple[ModelCard, str]:
    """The card of an exported file and where it came from (metadata, sidecar or inferred),
    with the ``key=value`` overrides in ``contract`` applied; the output the card names
    (``output_tensor``) is selected on ``engine``, and an inferred card is inferred from it."""
    text = getattr(engine, "card_json", None)
    side = None if text else sidecar_card(path)
    if text:
        card, origin = card_from_json(text, str(path)), "metadata"
    elif side is not None:
        card, origin = side, "sidecar"
    else:
        card, origin = infer_card(engine.signature(), str(path)), "inferred"
    card = override_card(card, contract or [], str(path))
    if card.output_tensor is not None:
        select_output(engine, card.output_tensor, path)
        if origin == "inferred":  # classes and output kind are those of the selected output
            card = override_card(
                infer_card(engine.signature(), str(path)), contract or [], str(path)
            )
    return card, origin


def select_output(engine: Engine, which: str | int | None, path: Path) -> Engine:
    """``engine`` reading the output ``which`` names (by name or index) of a multi-output file."""
    if which is None:
        return engine
    select = getattr(engine, "select_output", None)
    if select is None:
        raise ModelError(f"{path}: the '{engine.name}' engine cannot select an output")
    select(which)
    return engine


def output_names(path: str | Path) -> list[str]:
    """The names of an exported file's outputs, in order (on its first installed engine)."""
    path = Path(path)
    if path.suffix not in ENGINES_OF_SUFFIX:
        raise ModelError(unsupported_file(path))
    allowed = ENGINES_OF_SUFFIX[path.suffix]
    engine = open_engine(path, (available_engines(allowed) or list(allowed))[0], 1)
    return list(engine.outputs())  # type: ignore[attr-defined]


def read_exported_card(
    path: str | Path, contract: list[str] | None = None
) -> tuple[ModelCard, str]:
    """Card of an exported file and its origin, opening it on its first installed engine."""
    path = Path(path)
    if path.suffix not in ENGINES_OF_SUFFIX:
        raise ModelError(unsupported_file(path))
    allowed = ENGINES_OF_SUFFIX[path.suffix]
    engine = open_engine(path, (available_engines(allowed) or list(allowed))[0], 1)
    return read_card(path, engine, contract)


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
    card, origin = read_card(path, opened, contract)
    check_card(card, opened.signature(), str(path))
    chosen = opened

    def reopen(name: str) -> Engine:
        return select_output(open_engine(path, name, threads), card.output_tensor, path)

    if len(candidates) > 1:
        name, _ = choose_engine(
            path,
            candidates,
            threads,
            _typical_shape(card),
            lambda other: opened if other == opened.name else reopen(other),
        )
        if name != opened.name:
            chosen = reopen(name)
    if origin != "metadata" or card.preprocessing.layout == "NHWC":
        return StandardOutput(chosen, card.preprocessing.layout, card.output), card
    return chosen, card


def _typical_shape(card: ModelCard) -> tuple[int, ...]:
    """The batch shape the card's preprocessing produces for a square image of its size."""
    pre = card.preprocessing
    fixed = pre.network_input()
    if fixed is None:
        side = -(-(pre.size or 513) // pre.pad_multiple) * pre.pad_multiple
        fixed = (side, side)
    h, w = fixed[0] + 2 * pre.border, fixed[1] + 2 * pre.border
    return (1, 3, h, w) if pre.layout == "NCHW" else (1, h, w, 3)
