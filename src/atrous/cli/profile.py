"""``atrous profile``: where one inference spends its time, per block and per op."""

from __future__ import annotations

from pathlib import Path

import typer

from atrous.bench.profile import profile as run_profile
from atrous.cli._app import app
from atrous.cli._options import JsonFlag, JsonOut, SizeOpt, ThreadsOpt, resolve_threads, square_side
from atrous.cli._output import Output


@app.command()
def profile(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    engine: str = typer.Option("auto", help="auto, torch, onnxruntime or openvino"),
    threads: ThreadsOpt = None,
    size: SizeOpt = None,
    runs: int = typer.Option(20, help="profiled runs"),
    top: int = typer.Option(15, help="how many ops to list"),
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
    report: Path = typer.Option(None, help="write a self-contained HTML report"),
) -> None:
    """Time per block (backbone stages, head, upsample, pre/postprocess) and the top ops."""
    out = Output(as_json, json_out)
    result = run_profile(
        model,
        engine=engine,
        threads=resolve_threads(threads),
        size=square_side(size, "profile"),
        runs=runs,
    )
    if report:
        from atrous.report import profile_report  # matplotlib: only when a report is asked

        profile_report(result, report, top=top)
    out.json(result.to_dict())
    out.table(
        f"{result.engine} {result.size[0]}x{result.size[1]}, {result.threads} threads: "
        f"total {result.total_ms:.1f} ms, blocks sum {result.blocks_sum_ms:.1f} ms",
        ["block", "ms", "share"],
        [[b, ms, ms / result.total_ms] for b, ms in result.blocks.items()],
    )
    out.table(
        f"top {top} ops",
        ["op", "type", "block", "ms"],
        [[o.name, o.op_type, o.block, o.ms] for o in result.top(top)],
    )
