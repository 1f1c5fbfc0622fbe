"""What ``atrous optimize`` searches and finds: the candidate configurations, their
measurements, the Pareto frontier of latency against mIoU and the recommendation under a budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from atrous.bench._variants import VARIANT_KEYS
from atrous.fastpath import DEFAULT_LABEL_STRIDE

__all__ = ["Candidate", "Measured", "OptimizeResult", "pareto_frontier", "recommend"]


@dataclass(frozen=True)
class Candidate:
    """One configuration to measure.

    ``engine``: 'fast' (the uint8-in, low-resolution-logits-out graph with the host's sparse
    upsample + argmax: fp32 on ONNX Runtime; int8 on OpenVINO when NNCF is installed, else on
    ONNX Runtime), 'onnxruntime' (plain export) or 'torch' (eager). ``precision`` 'int8'
    applies to the fast engine only. The block variants ('' keeps the model's own) rebuild a
    zoo model with those ModelConfig values.
    """

    model: str
    size: int = 513
    precision: str = "fp32"
    engine: str = "fast"
    threads: int = 2
    label_stride: int = DEFAULT_LABEL_STRIDE
    upsampling: str = ""
    activation: str = ""
    separable_aspp: str = ""

    @property
    def key(self) -> str:
        """A stable text key (cache and table label); unset variants are left out, so keys
        written before the variants existed still match."""
        pairs = ((f.name, getattr(self, f.name)) for f in fields(self))
        return ",".join(f"{k}={v}" for k, v in pairs if v != "")

    @property
    def variants(self) -> dict[str, str]:
        """The block variants this candidate sets."""
        return {k: getattr(self, k) for k in VARIANT_KEYS if getattr(self, k)}


@dataclass
class Measured:
    """A candidate with its measured mIoU (a fraction, 0-1) and end-to-end median latency (ms)."""

    candidate: Candidate
    miou: float
    latency_ms: float
    cached: bool = False

    def dominates(self, other: Measured) -> bool:
        """At least as fast and as accurate, and strictly better in one of the two."""
        no_worse = self.latency_ms <= other.latency_ms and self.miou >= other.miou
        better = self.latency_ms < other.latency_ms or self.miou > other.miou
        return no_worse and better


def pareto_frontier(points: Sequence[Measured]) -> list[Measured]:
    """The non-dominated points, fastest first."""
    front = [p for p in points if not any(q.dominates(p) for q in points)]
    return sorted(front, key=lambda p: (p.latency_ms, -p.miou))


def recommend(frontier: Sequence[Measured], budget_ms: float) -> Measured | None:
    """The most accurate frontier point within the latency budget (None if none fits)."""
    fitting = [p for p in frontier if p.latency_ms <= budget_ms]
    return max(fitting, key=lambda p: (p.miou, -p.latency_ms)) if fitting else None


@dataclass
class OptimizeResult:
    """All measured candidates, the Pareto frontier and the recommendation under the budget."""

    measured: list[Measured]
    frontier: list[Measured]
    recommended: Measured | None
    budget_ms: float
    notes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""

        def row(m: Measured) -> dict[str, Any]:
            return {**asdict(m.candidate), "miou": m.miou, "latency_ms": m.latency_ms}

        return {
            "budget_ms": self.budget_ms,
            "measured": [row(m) for m in self.measured],
            "frontier": [row(m) for m in self.frontier],
            "recommended": row(self.recommended) if self.recommended else None,
            "notes": self.notes,
        }

    def table_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Columns and rows (frontier marked, recommendation starred)."""
        cols = ["model", "size", "precision", "engine", "threads", "labels", "mIoU", "ms", ""]
        front = {id(m) for m in self.frontier}
        rows = []
        for m in sorted(self.measured, key=lambda m: m.latency_ms):
            c = m.candidate
            mark = "*" if m is self.recommended else ("frontier" if id(m) in front else "")
            rows.append(
                [Path(c.model).name, c.size, c.precision, c.engine, c.threads]
                + [f"1/{c.label_stride}", m.miou, m.latency_ms, mark]
            )
        return cols, rows

    def figure(self):
        """Latency against mIoU: all candidates, the frontier and the budget."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter(
            [m.latency_ms for m in self.measured],
            [m.miou for m in self.measured],
            color="#999999",
            label="candidates",
        )
        ax.plot(
            [m.latency_ms for m in self.frontier],
            [m.miou for m in self.frontier],
            "o-",
            color="#4477aa",
            label="Pareto frontier",
        )
        if self.recommended:
            ax.scatter(
                [self.recommended.latency_ms],
                [self.recommended.miou],
                s=160,
                marker="*",
                color="#ee6677",
                label="recommended",
                zorder=3,
            )
        ax.axvline(self.budget_ms, linestyle="--", color="k", label="latency budget")
        ax.set_xlabel("end-to-end median latency (ms)")
        ax.set_ylabel("mIoU")
        ax.legend(loc="lower right")
        return fig
