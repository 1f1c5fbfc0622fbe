"""``atrous profile``: where one inference spends its time, per block, per op and per layer
(bytes moved, arithmetic intensity and roofline floor beside multiply-adds and time)."""

from __future__ import annotations

from pathlib import Path
from textwrap import wrap
from typing import Any

import typer

from atrous.bench.profile import open_profiled, profile_segmenter
from atrous.bench.roofline import BYTES_PER_ELEMENT, Roofline, roofline_of
from atrous.cli._app import app
from atrous.cli._options import JsonFlag, JsonOut, SizeOpt, ThreadsOpt, resolve_threads, square_side
from atrous.cli._output import Output
from atrous.errors import ConfigError

NAME_WIDTH = 26  # layer names are cut from the left to keep the table within 80 columns


@app.command()
def profile(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    engine: str = typer.Option("auto", help="auto, torch, onnxruntime or openvino"),
    threads: ThreadsOpt = None,
    size: SizeOpt = None,
    runs: int = typer.Option(20, help="profiled runs"),
    top: int = typer.Option(15, help="how many ops to list"),
    precision: str = typer.Option("fp32", help="fp32 or int8: bytes per element in the roofline"),
    measure_peaks: bool = typer.Option(
        False, "--measure-peaks", help="measure this machine's peak compute and bandwidth again"
    ),
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
    report: Path = typer.Option(
        None, help="a folder (profile.html + roofline.png) or an .html file (png beside it)"
    ),
) -> None:
    """Time per block (backbone stages, head, upsample, pre/postprocess), the top ops, and per
    layer the bytes moved, arithmetic intensity and roofline floor."""
    out = Output(as_json, json_out)
    if precision not in BYTES_PER_ELEMENT:  # before any work
        raise ConfigError(f"--precision {precision}: expected fp32 or int8")
    seg, model_file = open_profiled(model, engine=engine, threads=resolve_threads(threads))
    result = profile_segmenter(
        seg, model_file=model_file, size=square_side(size, "profile"), runs=runs
    )
    roof = roofline_of(seg, result, precision=precision, remeasure_peaks=measure_peaks)
    if report:
        _write_report(result, roof, report, top)
    out.json({**result.to_dict(), "roofline": roof.to_dict()})
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
    out.table(
        f"layers at {precision} (MB read+written, MAC/B intensity, mem = bandwidth-bound)",
        ["layer", "MMAC", "MB", "MAC/B", "bound", "ms", "floor", "eff"],
        layer_rows(roof),
    )
    _print_summary(out, roof)


def layer_rows(roof: Roofline) -> list[list[Any]]:
    """One row per layer, every cell short (the table fits 80 columns even in a pipe)."""
    rows = []
    for layer in roof.layers:
        name = layer.name
        if len(name) > NAME_WIDTH:
            name = name.replace("backbone.", "bb.", 1)
        if len(name) > NAME_WIDTH:
            name = ".." + name[-(NAME_WIDTH - 2) :]
        eff = layer.efficiency
        rows.append([
            name,
            f"{layer.macs / 1e6:.1f}",
            f"{layer.bytes / 1e6:.2f}",
            f"{layer.intensity:.2f}",
            "mem" if layer.bound == "memory" else "cpu",
            "-" if layer.ms is None else f"{layer.ms:.3f}",
            f"{layer.floor_ms:.3f}",
            "-" if eff is None else f"{eff:.0%}",
        ])  # fmt: skip
    return rows


def _print_summary(out: Output, roof: Roofline) -> None:
    """The bandwidth-bound layers, the floor against the measured time, and the peaks used."""
    for line in wrap(roof.summary(), 79):
        out.print(line)
    mem = sorted(roof.bandwidth_bound(), key=lambda layer: -(layer.ms or 0.0))
    if mem:
        names = ", ".join(layer.name for layer in mem[:5])
        for line in wrap(f"slowest bandwidth-bound layers: {names}", 79):
            out.print(line)
    if roof.unattributed_ms:
        out.print(f"op time in no layer (adds, layout, overhead): {roof.unattributed_ms:.2f} ms")
    for line in wrap(roof.peaks.describe(), 79):
        out.print(line)


def _write_report(result: Any, roof: Roofline, report: Path, top: int) -> None:
    """profile.html and roofline.png in a folder, or the .html asked for with the png beside it."""
    from atrous.report import profile_report  # matplotlib: only when a report is asked

    html = report if report.suffix.lower() in (".html", ".htm") else report / "profile.html"
    html.parent.mkdir(parents=True, exist_ok=True)
    profile_report(result, html, top=top, roofline=roof)
    fig = roof.figure()
    fig.savefig(html.parent / "roofline.png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
