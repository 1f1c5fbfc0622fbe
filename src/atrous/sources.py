"""One resolver for "zoo name, checkpoint, exported file or foreign file?", decided once.

Every command and API that takes a model argument goes through here: a zoo name builds the
architecture (random weights) with its default card; a checkpoint is read by
:mod:`atrous.checkpoint` (``torch.load(weights_only=True)``: nothing in it runs); an exported
file (.onnx, .xml, .tflite) opens on an engine with the card from its metadata, a sidecar, or
inferred from its signature (a foreign file). The result is (model or engine, card).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from atrous.card import ModelCard, WeightsFacts
from atrous.checkpoint import load_checkpoint
from atrous.convert import pretrained_checkpoint
from atrous.errors import ModelError
from atrous.models.zoo import default_card, get_model, list_models
from atrous.runtimes import (
    ENGINES,
    ENGINES_OF_SUFFIX,
    Engine,
    TorchEngine,
    load_exported,
    read_exported_card,
    unsupported_file,
)
from atrous.runtimes.contract import override_card

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "RANDOM_WEIGHTS",
    "Source",
    "classify",
    "load_engine",
    "load_source",
    "source_card",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
Kind = Literal["checkpoint", "zoo", "exported"]


@dataclass(frozen=True)
class Source:
    """What a model argument names: a checkpoint, a zoo entry or an exported (maybe foreign)
    file, with the argument as given and as a path."""

    kind: Kind
    text: str
    path: Path


def classify(source: str | Path) -> Source:
    """Decide what ``source`` is; ModelError (one line) when it is none of them."""
    text = str(source)
    path = Path(text)
    if path.suffix in CHECKPOINT_SUFFIXES:
        return Source("checkpoint", text, path)
    if not path.exists() and text in list_models():
        return Source("zoo", text, path)
    if not path.exists():
        raise ModelError(f"{text}: no such file or zoo model; see 'atrous zoo'")
    if path.suffix not in ENGINES_OF_SUFFIX:
        raise ModelError(unsupported_file(path))
    return Source("exported", text, path)


RANDOM_WEIGHTS = WeightsFacts(origin="random")


def load_source(
    source: str | Path, zoo_name: str | None = None, weights: str | None = None
) -> tuple[nn.Module, ModelCard]:
    """A PyTorch model (eval mode) and its card from a checkpoint or a zoo name (random
    weights, the card says so); ``zoo_name`` names the architecture of a plain state_dict
    checkpoint; ``weights`` (a zoo name only) names published weights or a weights file."""
    text = str(source)
    if weights is not None:
        if Path(text).exists() or text not in list_models():
            raise ModelError(f"{text}: --weights applies to a zoo name; see 'atrous zoo'")
        return load_checkpoint(pretrained_checkpoint(text, weights))
    if Path(text).suffix in CHECKPOINT_SUFFIXES:
        return load_checkpoint(text, zoo_name=zoo_name)
    if not Path(text).exists() and text in list_models():
        card = default_card(text).model_copy(update={"weights": RANDOM_WEIGHTS})
        return get_model(text).eval(), card
    raise ModelError(f"{text}: expected a checkpoint (.pt) or a zoo name to export")


def source_card(source: str | Path, contract: list[str] | None = None) -> ModelCard:
    """The card of a checkpoint, zoo name or exported file, without opening an engine for a
    checkpoint or zoo name (an exported file is opened on its first installed engine)."""
    found = classify(source)
    if found.kind == "exported":
        return read_exported_card(found.path, contract)[0]
    return override_card(load_source(found.text)[1], contract or [], found.text)


def load_engine(
    model: str | Path,
    engine: str = "auto",
    threads: int | None = None,
    zoo_name: str | None = None,
    contract: list[str] | None = None,
    weights: str | None = None,
) -> tuple[Engine, ModelCard]:
    """Open a checkpoint (.pt), exported model (.onnx, .xml, .tflite) or zoo name on an engine.

    Returns the engine and the model card: from the file's metadata, else a ``.card.json``
    sidecar, else inferred from the file's signature (foreign models). ``contract`` holds
    ``key=value`` overrides of that card (e.g. ``output=probability``). ``engine='auto'`` picks
    the fastest installed engine for the file, measured once and cached. ``weights``: published
    weights (or a weights file) for a zoo name (see :func:`load_source`).
    """
    if engine not in ENGINES:
        raise ModelError(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    found = classify(model)
    if weights is not None and found.kind != "zoo":
        raise ModelError(f"{found.text}: --weights applies to a zoo name; see 'atrous zoo'")
    if found.kind == "exported":
        return load_exported(found.path, engine, threads, contract)
    if engine not in ("auto", "torch"):
        what = "a checkpoint" if found.kind == "checkpoint" else "a zoo name"
        raise ModelError(f"{found.text}: {what} runs on the torch engine; export it first")
    net, card = load_source(found.text, zoo_name=zoo_name, weights=weights)
    card = override_card(card, contract or [], found.text)
    return TorchEngine(net, threads, source=found.text), card
