"""Runtimes behind one Engine protocol; ``load_engine`` opens any model file or zoo name."""

from __future__ import annotations

from pathlib import Path

from atrous.card import ModelCard, card_from_json
from atrous.errors import ModelError
from atrous.runtimes.base import Engine
from atrous.runtimes.torch_engine import TorchEngine, default_threads

__all__ = ["Engine", "TorchEngine", "default_threads", "load_engine", "ENGINES", "CARD_KEY"]

ENGINES = ("auto", "torch", "onnxruntime", "openvino", "litert")
CARD_KEY = "atrous.card"


def load_engine(
    model: str | Path, engine: str = "auto", threads: int | None = None, zoo_name: str | None = None
) -> tuple[Engine, ModelCard]:
    """Open a checkpoint (.pt), exported model (.onnx) or zoo name on an engine.

    Returns the engine and the model card (read from the file's metadata).
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
        return TorchEngine(net, threads, source=text), card
    if not path.exists() and text in list_models():
        if engine not in ("auto", "torch"):
            raise ModelError(f"{text}: a zoo name runs on the torch engine; export it first")
        return TorchEngine(get_model(text), threads, source=text), default_card(text)
    if not path.exists():
        raise ModelError(f"{text}: no such file or zoo model; see 'atrous zoo'")
    if path.suffix == ".onnx":
        return _load_onnx(path, engine, threads)
    raise ModelError(f"{path}: unsupported model file type '{path.suffix}'")


def _load_onnx(path: Path, engine: str, threads: int | None) -> tuple[Engine, ModelCard]:
    from atrous.runtimes.onnxruntime_engine import OrtEngine

    if engine not in ("auto", "onnxruntime"):
        raise ModelError(f"{path}: an ONNX file runs on onnxruntime, not '{engine}'")
    ort_engine = OrtEngine(path, threads)
    text = ort_engine.metadata.get(CARD_KEY)
    if text is None:
        raise ModelError(f"{path}: no model card in the ONNX metadata")
    return ort_engine, card_from_json(text, str(path))
