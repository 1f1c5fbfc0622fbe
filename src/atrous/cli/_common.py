"""Helpers several verbs share: opening DATA arguments and the compression comparison table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from atrous.cli._output import Output
from atrous.data import open_dataset
from atrous.sources import load_engine, source_card

if TYPE_CHECKING:
    from atrous.bench.compare import ComparisonRow
    from atrous.card import ModelCard
    from atrous.data import SegmentationDataset

# held-out images the compression tables score (quantize --limit, prune --limit, QAT)
COMPARE_LIMIT = 50

__all__ = [
    "COMPARE_LIMIT",
    "card_if_synthetic",
    "macs_of",
    "model_side",
    "open_data",
    "print_comparison",
]


def card_if_synthetic(model: str, *data: str | None) -> ModelCard | None:
    """``model``'s card when a DATA argument is 'synthetic', which then means the model's own
    synthetic set (``atrous.data.open_dataset``); None otherwise, without loading anything."""
    if "synthetic" not in data:
        return None
    return source_card(model)


def open_data(data: str, split: str, card: ModelCard | None = None) -> SegmentationDataset:
    """DATA as the evaluate command reads it: folder, experiment YAML or 'synthetic' (the
    model's own synthetic set when ``card`` records one)."""
    return open_dataset(data, split, card=card)


def model_side(model: str, size: int | None = None) -> int:
    """The square side compression tables measure at: ``size``, else the model's own input
    size (its card), else 513; quantize, prune and QAT use it, so their GMACs agree."""
    return size or source_card(model).preprocessing.size or 513


def macs_of(model: str, size: tuple[int, int]) -> int | None:
    """Multiply-adds of a checkpoint / zoo model (None for exported files)."""
    if Path(model).suffix == ".onnx":
        return None
    from atrous.cost import measure_cost

    engine, _ = load_engine(model, "torch")
    return measure_cost(engine.model, size).macs  # type: ignore[attr-defined]


def print_comparison(out: Output, rows: list[ComparisonRow], extra: dict | None = None) -> None:
    """The compression side-by-side table, or its JSON (variants plus ``extra``)."""
    from atrous.bench.compare import COLUMNS

    out.json({"variants": [r.to_dict() for r in rows], **(extra or {})})
    out.table("compression: side by side", COLUMNS, [r.cells() for r in rows])
    for row in rows:
        if row.note:
            out.note(f"[yellow]warning:[/yellow] {row.variant}: latency: {row.note}")
