"""The side-by-side table every compression command ends with.

Each variant is opened on the same engine and scored by the one evaluator on the same data, so
float, int8, mixed, QAT and pruned models differ only in the model file: file size, multiply-adds
(measured on the torch graph the file came from), mIoU and network latency.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atrous.bench.isolate import run_isolated
from atrous.errors import InputError
from atrous.evaluate import evaluate
from atrous.runtimes import model_file_mb
from atrous.runtimes.auto import time_engine
from atrous.segmenter import Segmenter
from atrous.sources import load_engine

__all__ = [
    "Variant",
    "ComparisonRow",
    "network_latency_ms",
    "miou_scorer",
    "compare",
    "COLUMNS",
    "markdown_table",
]

COLUMNS = ["variant", "size MB", "GMACs", "mIoU", "latency ms"]


@dataclass
class Variant:
    """A model file to compare; ``macs`` from the torch model it was exported from."""

    name: str
    path: Path
    macs: int | None = None


@dataclass
class ComparisonRow:
    """One line of the table (mIoU a fraction 0-1 as ``evaluate`` gives it, latency in ms,
    size in MB)."""

    variant: str
    size_mb: float
    gmacs: float | None
    miou: float | None
    latency_ms: float | None
    note: str | None = None  # why a value is missing (a runtime that crashed timing it)

    def cells(self) -> list[Any]:
        """Values in COLUMNS order, '-' for what was not measured."""
        return [
            self.variant,
            round(self.size_mb, 2),
            "-" if self.gmacs is None else round(self.gmacs, 3),
            "-" if self.miou is None else round(self.miou, 4),
            "-" if self.latency_ms is None else round(self.latency_ms, 1),
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def network_latency_ms(
    engine: Any, size: tuple[int, int], runs: int = 20, warmup: int = 3, layout: str = "NCHW"
) -> float:
    """Median wall time (ms) of ``engine.run`` on one zero batch at ``size`` (network only),
    laid out as the model's card says (a .tflite takes NHWC)."""
    batch = np.zeros((1, 3, *size) if layout == "NCHW" else (1, *size, 3), np.float32)
    return time_engine(engine, batch, warmup=warmup, runs=runs)


def miou_scorer(
    dataset: Any,
    *,
    engine: str = "onnxruntime",
    threads: int = 2,
    limit: int | None = None,
    points: bool = False,
) -> Callable[[Path], float]:
    """A Scorer: mean IoU of a model file on ``dataset`` (the one evaluator), a fraction 0-1
    as everywhere atrous prints it; ``points`` gives percentage points (the unit of the
    mixed-precision budget, ``--max-drop``)."""

    def score(path: Path) -> float:
        segmenter = Segmenter.from_file(path, engine, threads)
        miou = evaluate(segmenter, dataset, limit=limit, progress=False).miou
        return round(float(miou), 4) if not points else 100.0 * float(miou)

    return score


def compare(
    variants: list[Variant],
    dataset: Any | None,
    *,
    engine: str = "onnxruntime",
    threads: int = 2,
    size: tuple[int, int] = (513, 513),
    runs: int = 20,
    limit: int | None = None,
    latency: bool = True,
) -> list[ComparisonRow]:
    """Measure every variant: size, multiply-adds, mIoU on ``dataset`` (if given), latency."""
    if not variants:
        raise InputError("compare: no variants")
    score = miou_scorer(dataset, engine=engine, threads=threads, limit=limit) if dataset else None
    rows = []
    for v in variants:
        miou = score(v.path) if score else None
        ms = None
        note = None
        if latency and engine == "openvino":  # native crashes seen there: time it in a child
            ms, note = run_isolated(_latency_of_file, v.path, engine, threads, size, runs)
        elif latency:
            ms = _latency_of_file(v.path, engine, threads, size, runs)
        gmacs = None if v.macs is None else v.macs / 1e9
        rows.append(ComparisonRow(v.name, model_file_mb(v.path), gmacs, miou, ms, note))
    return rows


def _latency_of_file(
    path: Path, engine: str, threads: int, size: tuple[int, int], runs: int
) -> float:
    """Network latency (ms) of the model file on ``engine`` at ``size``."""
    eng, card = load_engine(path, engine, threads)
    return network_latency_ms(eng, size, runs, layout=card.preprocessing.layout)


def markdown_table(rows: list[ComparisonRow]) -> str:
    """The rows as a GitHub markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(c) for c in r.cells()) + " |" for r in rows]
    return "\n".join(lines) + "\n"
