"""Runtimes behind one Engine protocol; ``load_engine`` opens any model file or zoo name."""

from __future__ import annotations

from pathlib import Path

from atrous.card import ModelCard, card_from_json
from atrous.errors import ModelError
from atrous.runtimes._common import CARD_KEY, cast_input
from atrous.runtimes.base import Engine
from atrous.runtimes.torch_engine import TorchEngine, default_threads

__all__ = [
    "CARD_KEY",
    "ENGINES",
    "ENGINES_OF_SUFFIX",
    "Engine",
    "TorchEngine",
    "cast_input",
    "default_threads",
    "load_engine",
    "model_file_mb",
    "open_engine",
    "read_card",
    "read_exported_card",
]

ENGINES = ("auto", "torch", "onnxruntime", "openvino", "litert")
ENGINES_OF_SUFFIX = {
    ".onnx": ("onnxruntime", "openvino"),
    ".xml": ("openvino",),
    ".tflite": ("litert",),
}


def _unsupported(path: Path) -> str:
    """Why ``path`` is not a model file, in one line."""
    if path.is_dir():
        return f"{path}: a folder, not a model file (.pt, .onnx, .xml or .tflite)"
    kinds = ", ".join([".pt", *ENGINES_OF_SUFFIX])
    return f"{path}: unsupported model file type '{path.suffix}' (expected {kinds})"


def model_file_mb(path: str | Path) -> float:
    """A model file's size on disk in MB (10^6 bytes), an OpenVINO .xml with its .bin weights."""
    path = Path(path)
    total = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        total += path.with_suffix(".bin").stat().st_size
    return total / 1e6


def load_engine(
    model: str | Path,
    engine: str = "auto",
    threads: int | None = None,
    zoo_name: str | None = None,
    contract: list[str] | None = None,
) -> tuple[Engine, ModelCard]:
    """Open a checkpoint (.pt), exported model (.onnx, .xml, .tflite) or zoo name on an engine.

    Returns the engine and the model card: from the file's metadata, else a ``.card.json``
    sidecar, else inferred from the file's signature (foreign models). ``contract`` holds
    ``key=value`` overrides of that card (e.g. ``output=probability``). ``engine='auto'`` picks
    the fastest installed engine for the file, measured once and cached.
    """
    from atrous.checkpoint import load_checkpoint
    from atrous.models.zoo import default_card, get_model, list_models

    if engine not in ENGINES:
        raise ModelError(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    text = str(model)
    path = Path(text)
    if path.suffix in (".pt", ".pth", ".ckpt"):
        if engine not in ("auto", "torch"):
            raise ModelError(f"{path}: a checkpoint runs on the torch engine; export it first")
        net, card = load_checkpoint(path, zoo_name=zoo_name)
        return TorchEngine(net, threads, source=text), _overridden(card, contract, text)
    if not path.exists() and text in list_models():
        if engine not in ("auto", "torch"):
            raise ModelError(f"{text}: a zoo name runs on the torch engine; export it first")
        card = _overridden(default_card(text), contract, text)
        return TorchEngine(get_model(text), threads, source=text), card
    if not path.exists():
        raise ModelError(f"{text}: no such file or zoo model; see 'atrous zoo'")
    if path.suffix not in ENGINES_OF_SUFFIX:
        raise ModelError(_unsupported(path))
    return _load_exported(path, engine, threads or default_threads(), contract)


def open_engine(path: Path, engine: str, threads: int | None = None) -> Engine:
    """The raw engine for an exported file (no card handling, no output standardisation)."""
    if engine == "onnxruntime":
        from atrous.runtimes.onnxruntime_engine import OrtEngine

        return OrtEngine(path, threads)
    if engine == "openvino":
        from atrous.runtimes.openvino_engine import OpenVinoEngine

        return OpenVinoEngine(path, threads)
    if engine == "litert":
        from atrous.runtimes.litert_engine import LiteRtEngine

        return LiteRtEngine(path, threads)
    raise ModelError(f"{path}: the '{engine}' engine does not open {path.suffix} files")


def read_card(path: Path, engine: Engine) -> tuple[ModelCard, str]:
    """The card of an exported file and where it came from: metadata, sidecar or inferred."""
    from atrous.runtimes.contract import infer_card, sidecar_card

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
    from atrous.runtimes.auto import available_engines

    path = Path(path)
    if path.suffix not in ENGINES_OF_SUFFIX:
        raise ModelError(_unsupported(path))
    allowed = ENGINES_OF_SUFFIX[path.suffix]
    engine = open_engine(path, (available_engines(allowed) or list(allowed))[0], 1)
    card, origin = read_card(path, engine)
    return _overridden(card, contract, str(path)), origin


def _overridden(card: ModelCard, contract: list[str] | None, source: str) -> ModelCard:
    from atrous.runtimes.contract import override_card

    return override_card(card, contract or [], source)


def _load_exported(
    path: Path, engine: str, threads: int, contract: list[str] | None
) -> tuple[Engine, ModelCard]:
    from atrous.runtimes.auto import available_engines, choose_engine
    from atrous.runtimes.contract import StandardOutput, check_card

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
