"""``atrous benchmark``, ``atrous profile`` and ``atrous optimize``: measurement on this machine."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import typer
from rich.progress import Progress

from atrous.cli._app import app, console, print_json, print_table
from atrous.data import open_dataset
from atrous.errors import InputError


def parse_ints(text: str, what: str) -> list[int]:
    """'1,2' -> [1, 2]; a one-line InputError naming ``what`` otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--{what}: expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise InputError(f"--{what}: expected positive integers, got '{text}'")
    return values


def _stream_benchmark(models: list[str], source: str, engine: str, threads: list[int]) -> None:
    """``--stream``: pipelined vs sequential frames/s of each model on a video (atrous.video)."""
    from atrous.segmenter import Segmenter
    from atrous.video import stream_benchmark

    rows = []
    for model, count in ((m, t) for m in models for t in threads):
        result = stream_benchmark(Segmenter.from_file(model, engine=engine, threads=count), source)
        fps = [statistics.median(result.sequential_fps), statistics.median(result.pipelined_fps)]
        rows.append([model, count, result.frames, *fps, result.ratio])
    columns = ["model", "threads", "frames", "sequential f/s", "pipelined f/s", "ratio"]
    print_table(f"stream {source} ({result.repeats} interleaved pairs)", columns, rows)


@app.command()
def benchmark(
    models: list[str] = typer.Argument(..., help="checkpoints, exported models or zoo names"),
    engine: str = typer.Option(
        "auto", help="comma-separated: auto, torch, onnxruntime, openvino, litert, fast"
    ),
    threads: str = typer.Option("2", help="comma-separated thread counts, e.g. 1,2"),
    sizes: str = typer.Option(None, help="comma-separated input sizes, e.g. 257,513"),
    runs: int = typer.Option(30, help="timed runs per configuration"),
    warmup: int = typer.Option(5, help="untimed runs first"),
    network_only: bool = typer.Option(False, help="skip the end-to-end (image file in) timing"),
    json_out: Path = typer.Option(None, "--json", help="write results as JSON"),
    csv_out: Path = typer.Option(None, "--csv", help="write results as CSV"),
    report: Path = typer.Option(None, help="write a self-contained HTML report"),
    print_json_: bool = typer.Option(False, "--print-json", help="print JSON instead of a table"),
    stream: str = typer.Option(
        None, help="a video file or stream URL: frames/s of the pipelined vs the sequential loop"
    ),
) -> None:
    """Latency (median/p90/p99), throughput, GMACs and GFLOP/s; models run interleaved."""
    from atrous.bench.latency import benchmark as run_benchmark

    if stream is not None:
        return _stream_benchmark(
            models, stream, engine.split(",")[0], parse_ints(threads, "threads")
        )

    size_list = parse_ints(sizes, "sizes") if sizes else [None]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmarking", total=runs + warmup)
        result = run_benchmark(
            models,
            sizes=size_list,
            threads=parse_ints(threads, "threads"),
            runs=runs,
            warmup=warmup,
            end_to_end=not network_only,
            engine=[e.strip() for e in engine.split(",") if e.strip()],
            progress=lambda done, total: progress.update(task, completed=done),
        )
    if json_out:
        result.to_json(json_out)
    if csv_out:
        result.to_csv(csv_out)
    if report:
        from atrous.report import benchmark_report

        benchmark_report(result, report)
    if print_json_:
        print_json(result.to_dict())
        return
    columns, rows = result.table_rows()
    print_table(f"benchmark ({runs} runs, peak RSS {result.peak_rss_mb:.0f} MB)", columns, rows)


@app.command()
def profile(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    engine: str = typer.Option("auto", help="auto, torch, onnxruntime or openvino"),
    threads: int = typer.Option(2, help="inference threads"),
    size: int = typer.Option(None, help="network input size (default: the card's)"),
    runs: int = typer.Option(20, help="profiled runs"),
    top: int = typer.Option(15, help="how many ops to list"),
    json_out: Path = typer.Option(None, "--json", help="write the profile as JSON"),
    report: Path = typer.Option(None, help="write a self-contained HTML report"),
) -> None:
    """Time per block (backbone stages, head, upsample, pre/postprocess) and the top ops."""
    from atrous.bench.profile import profile as run_profile

    result = run_profile(model, engine=engine, threads=threads, size=size, runs=runs)
    if json_out:
        result.to_json(json_out)
    if report:
        from atrous.report import profile_report

        profile_report(result, report, top=top)
    share = [[b, ms, ms / result.total_ms] for b, ms in result.blocks.items()]
    print_table(
        f"{result.engine} {result.size[0]}x{result.size[1]}, {result.threads} threads: "
        f"total {result.total_ms:.1f} ms, blocks sum {result.blocks_sum_ms:.1f} ms",
        ["block", "ms", "share"],
        share,
    )
    print_table(
        f"top {top} ops",
        ["op", "type", "block", "ms"],
        [[o.name, o.op_type, o.block, o.ms] for o in result.top(top)],
    )


def parse_ms(text: str) -> float:
    """'40ms', '40', '0.04s' -> milliseconds."""
    value = text.strip().lower()
    factor = 1e3 if value.endswith("s") and not value.endswith("ms") else 1.0
    try:
        return float(value.removesuffix("ms").removesuffix("s")) * factor
    except ValueError:
        raise InputError(f"--latency-budget: expected e.g. 40ms, got '{text}'") from None


@app.command()
def optimize(
    models: list[str] = typer.Argument(..., help="checkpoints or zoo names to choose from"),
    data: str = typer.Option(..., help="validation data: a dataset folder or 'synthetic'"),
    latency_budget: str = typer.Option("40ms", help="end-to-end latency budget, e.g. 40ms"),
    search: str = typer.Option(
        "size,precision", help="keys (size,precision,engine,threads,label_stride) or key=v1,v2;..."
    ),
    limit: int = typer.Option(None, help="evaluate only the first N images"),
    runs: int = typer.Option(20, help="timed runs per latency measurement"),
    cache: Path = typer.Option(Path(".atrous-optimize.json"), help="measurement cache (JSON)"),
    json_out: Path = typer.Option(None, "--json", help="write the result as JSON"),
    report: Path = typer.Option(None, help="write a self-contained HTML report"),
) -> None:
    """Measure candidates here (mIoU + latency), print the Pareto frontier and a recommendation."""
    from atrous.bench.optimize import optimize as run_optimize
    from atrous.bench.optimize import parse_search

    budget = parse_ms(latency_budget)
    space = parse_search(search)
    dataset = open_dataset(data)

    def show(cand, point) -> None:
        tag = "cached" if point.cached else "measured"
        console.print(f"{tag} {cand.key}: mIoU {point.miou:.2f}, {point.latency_ms:.1f} ms")

    result = run_optimize(
        dataset,
        budget,
        models=models,
        search=space,
        cache=cache,
        runs=runs,
        limit=limit,
        progress=show,
    )
    if json_out:
        from atrous._atomic import atomic_write_text

        atomic_write_text(json_out, json.dumps(result.to_dict(), indent=2) + "\n")
    if report:
        from atrous.report import optimize_report

        optimize_report(result, report)
    columns, rows = result.table_rows()
    print_table(f"candidates (budget {budget:g} ms; * = recommended)", columns, rows)
    for note in result.notes.values():
        console.print(f"[yellow]{note}[/yellow]")
