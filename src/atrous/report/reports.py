"""Report builders: turn a BenchResult, Profile, OptimizeResult or evaluation into HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from atrous.report.html import HtmlReport  # noqa: E402

__all__ = ["benchmark_report", "evaluation_report", "profile_report"]


def benchmark_report(result: Any, path: str | Path) -> Path:
    """HTML report of a :class:`atrous.bench.latency.BenchResult`: table and latency bars."""
    report = HtmlReport("atrous benchmark")
    report.paragraph(
        f"{result.runs} timed runs after {result.warmup} warm-up runs, interleaved across "
        f"configurations; peak RSS {result.peak_rss_mb:.0f} MB; "
        + ", ".join(f"{k} {v}" for k, v in result.machine.items())
    )
    columns, rows = result.table_rows()
    report.table(columns, rows)
    for mode in ("network", "end_to_end"):
        recs = [r for r in result.records if r.mode == mode]
        if not recs:
            continue
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(recs) + 1.2))
        names = [f"{r.label} @{r.size or '-'} t{r.threads}" for r in recs]
        ax.barh(names, [r.median_ms for r in recs], color="#4477aa")
        ax.errorbar(
            [r.median_ms for r in recs],
            range(len(recs)),
            xerr=[[0] * len(recs), [r.p90_ms - r.median_ms for r in recs]],
            fmt="none",
            ecolor="k",
        )
        ax.invert_yaxis()
        ax.set_xlabel("median latency, ms (whisker: p90)")
        ax.set_title(mode.replace("_", " "))
        report.figure(fig, f"{mode.replace('_', ' ')} latency")
    return report.write(path)


def evaluation_report(
    rows: list[list[Any]],
    columns: list[str],
    path: str | Path,
    title: str = "atrous evaluate",
    summary: dict[str, Any] | None = None,
) -> Path:
    """HTML report of an evaluation: summary, per-class IoU table and a per-class IoU bar chart.

    ``rows`` are per-class rows whose first column is the class name and second its IoU.
    """
    report = HtmlReport(title)
    if summary:
        report.table(["metric", "value"], [[k, v] for k, v in summary.items()])
    report.table(columns, rows)
    if rows:
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.2))
        ax.barh([str(r[0]) for r in rows], [float(r[1] or 0) for r in rows], color="#228833")
        ax.invert_yaxis()
        ax.set_xlabel(columns[1])
        report.figure(fig, "per-class IoU")
    return report.write(path)


def profile_report(result: Any, path: str | Path, top: int = 20) -> Path:
    """HTML report of a :class:`atrous.bench.profile.Profile`: blocks, bar chart, top ops."""
    report = HtmlReport("atrous profile")
    report.paragraph(
        f"{result.engine}, {result.size[0]}x{result.size[1]}, {result.threads} threads, "
        f"{result.runs} runs: measured total {result.total_ms:.2f} ms per run, "
        f"blocks sum {result.blocks_sum_ms:.2f} ms"
    )
    report.table(
        ["block", "ms", "share"],
        [[b, ms, f"{ms / result.total_ms:.1%}"] for b, ms in result.blocks.items()],
    )
    report.figure(result.figure(), "time per block")
    report.heading(f"top {top} ops")
    report.table(
        ["op", "type", "block", "ms"], [[o.name, o.op_type, o.block, o.ms] for o in result.top(top)]
    )
    report.heading("time per op type")
    report.table(["op type", "ms"], list(result.by_op_type().items()))
    return report.write(path)
