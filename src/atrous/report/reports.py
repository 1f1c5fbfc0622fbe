"""Report builders: turn a BenchResult, Profile, OptimizeResult or evaluation into HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from atrous.report.html import HtmlReport  # noqa: E402

__all__ = ["benchmark_report", "evaluation_report", "optimize_report", "profile_report"]


def benchmark_report(result: Any, path: str | Path) -> Path:
    """HTML report of a :class:`atrous.bench.records.BenchResult`: table and latency bars."""
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


def evaluation_report(result: Any, path: str | Path, title: str = "atrous evaluate") -> Path:
    """HTML report of an :class:`atrous.evaluate.EvalResult`: summary, per-class IoU, confusion.

    The evaluate CLI calls this for ``--report``.
    """
    report = HtmlReport(title)
    summary = {
        "protocol": getattr(result, "protocol_description", getattr(result, "protocol", "-")),
        "images": getattr(result, "images", "-"),
        "mIoU": round(result.miou, 4),
        "pixel accuracy %": 100 * getattr(result, "pixel_accuracy", float("nan")),
        "mean accuracy %": 100 * getattr(result, "mean_accuracy", float("nan")),
        "engine": getattr(result, "engine", {}) or "-",
    }
    report.table(["metric", "value"], [[k, v] for k, v in summary.items()])
    ious = [float("nan") if v is None else 100 * v for v in result.per_class_iou]
    report.table(["class", "IoU %"], [[c, v] for c, v in zip(result.classes, ious, strict=True)])
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(ious) + 1.2))
    ax.barh(result.classes, [0 if v != v else v for v in ious], color="#228833")
    ax.invert_yaxis()
    ax.set_xlabel("IoU (%)")
    report.figure(fig, "per-class IoU")
    confusion = getattr(result, "confusion", None)
    if confusion is not None:
        import numpy as np

        cm = np.asarray(confusion, dtype=np.float64)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(6, 5))
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(len(result.classes)), result.classes, rotation=90, fontsize=7)
        ax.set_yticks(range(len(result.classes)), result.classes, fontsize=7)
        fig.colorbar(im, ax=ax)
        report.figure(fig, "row-normalised confusion matrix")
    return report.write(path)


def profile_report(result: Any, path: str | Path, top: int = 20, roofline: Any = None) -> Path:
    """HTML report of a :class:`atrous.bench.profile.Profile`: blocks, bar chart, top ops, and
    with ``roofline`` (:class:`atrous.bench.roofline.Roofline`) its plot and per-layer table."""
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
    if roofline is not None:
        report.heading(f"roofline ({roofline.precision})")
        report.paragraph(f"{roofline.summary()}. {roofline.peaks.describe()}")
        report.figure(roofline.figure(), "layers against the measured roof")
        report.table(
            ["layer", "kind", "MACs", "bytes", "MAC/B", "bound", "ms", "floor ms"],
            [[x.name, x.kind, x.macs, x.bytes, x.intensity, x.bound,
              "-" if x.ms is None else x.ms, x.floor_ms] for x in roofline.layers],
        )  # fmt: skip
    return report.write(path)


def optimize_report(result: Any, path: str | Path) -> Path:
    """HTML report of an :class:`atrous.bench.pareto.OptimizeResult`: plot and tables."""
    report = HtmlReport("atrous optimize")
    best = result.recommended
    if best is not None:
        c = best.candidate
        report.paragraph(
            f"recommended under {result.budget_ms:g} ms: {c.key} "
            f"(mIoU {best.miou:.4f}, {best.latency_ms:.1f} ms end to end)"
        )
    for note in result.notes.values():
        report.paragraph(str(note))
    report.figure(result.figure(), "end-to-end latency against mIoU")
    columns, rows = result.table_rows()
    report.table(columns, rows)
    return report.write(path)
