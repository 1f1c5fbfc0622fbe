"""Opening the model a verb works on: ``--weights``, ``--contract`` and the warnings they call for.

Random weights (a zoo name without ``--weights``) and guessed contracts (a foreign file's
normalisation) are said plainly on stderr, one line each, never silently; the facts come from
the card (``weights``, ``assumed``), so every verb says the same thing.
"""

from __future__ import annotations

from pathlib import Path

from atrous.card import ModelCard
from atrous.cli._output import err_console
from atrous.convert import pretrained_checkpoint
from atrous.errors import ConfigError
from atrous.models.zoo import list_models
from atrous.segmenter import Segmenter
from atrous.sources import classify, load_engine

__all__ = ["card_warnings", "open_segmenter", "path_line", "warn_card", "with_weights"]


def with_weights(model: str, weights: str | None) -> str:
    """``model`` as a verb opens it: with ``--weights``, the cached atrous checkpoint of the
    zoo name's weights (downloaded and converted on first use); without, ``model`` itself."""
    if weights is None:
        return model
    if Path(model).exists() or model not in list_models():
        raise ConfigError(f"--weights {weights}: applies to a zoo name, not '{model}'")
    return str(pretrained_checkpoint(model, weights))


def card_warnings(card: ModelCard, source: str) -> list[str]:
    """The warnings ``card`` calls for: random weights, guessed contract fields."""
    found = []
    if card.weights is not None and card.weights.origin == "random":
        found.append(
            f"{source}: random weights (a zoo architecture never trained); "
            "pass --weights NAME|FILE for trained ones"
        )
    for what, why in card.assumed.items():
        found.append(f"{source}: {what} guessed: {why}; set it with --contract or a sidecar card")
    return found


def warn_card(card: ModelCard, source: str) -> None:
    """Print :func:`card_warnings` on stderr, one line each."""
    for line in card_warnings(card, source):
        err_console.print(f"warning: {line}", markup=False, highlight=False, soft_wrap=True)


def open_segmenter(
    model: str,
    engine: str,
    threads: int | None,
    contract: list[str] | None = None,
    weights: str | None = None,
    warn: bool = True,
) -> Segmenter:
    """The Segmenter a verb runs, with ``--weights`` and ``--contract`` applied and (``warn``)
    the card's warnings printed. A checkpoint on ``--engine auto`` (without ``--contract``) or
    ``fast`` runs the fastest verified path (:meth:`Segmenter.from_file`)."""
    source = with_weights(model, weights)
    if engine == "fast" and contract:
        raise ConfigError("--contract applies to the model's own engines, not --engine fast")
    fastest = engine == "auto" and not contract and classify(source).kind == "checkpoint"
    if engine == "fast" or fastest:
        segmenter = Segmenter.from_file(source, engine=engine, threads=threads)
    else:
        segmenter = Segmenter(*load_engine(source, engine, threads, contract=contract))
    if warn:
        warn_card(segmenter.card, model)
    return segmenter


def path_line(segmenter: Segmenter) -> str:
    """The line every verb prints on the path it ran: short name, then the description."""
    return f"path: {segmenter.path_used} ({segmenter.path_description})"
