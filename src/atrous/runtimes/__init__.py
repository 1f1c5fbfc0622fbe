"""Runtimes behind one Engine protocol; ``load_engine`` opens any model file or zoo name."""

from __future__ import annotations

from pathlib import Path

from atrous.card import ModelCard
from atrous.errors import ModelError
from atrous.runtimes.base import Engine
from atrous.runtimes.torch_engine import TorchEngine, default_threads

__all__ = ["Engine", "TorchEngine", "default_threads", "load_engine", "ENGINES"]

ENGINES = ("auto", "torch", "onnxruntime", "openvino", "litert")


def load_engine(
    model: str | Path, engine: str = "auto", threads: int | None = None, zoo_name: str | None = None
) -> tuple[Engine, ModelCard]:
    """Open a checkpoint (.pt) or zoo name (random weights) on an engine; return it and its card.

    Exported formats (.onnx, .xml, .tflite) are opened by their runtimes.
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
    raise ModelError(f"{path}: unsupported model file type '{path.suffix}'")
