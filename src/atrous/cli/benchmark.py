"""``atrous benchmark``: latency, throughput and cost of models measured side by side here."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import typer
from rich.progress import Progress

from atrous.bench.latency import BenchTarget
from atrous.bench.latency import benchmark as run_benchmark
from atrous.cli._app import app
from atrous.cli._model import open_segmenter, warn_card, with_weights
from atrous.cli._options import (
    ContractOpt,
    JsonFlag,
    JsonOut,
    OutputTensorOpt,
    ThreadCountsOpt,
    WeightsOpt,
    parse_size,
    square_side,
    thread_counts,
    with_output_tensor,
)
from atrous.cli._output import Output, err_console
from atrous.segmenter import Segmenter
from atrous.video import stream_benchmark


def parse_sizes(text: str | None) -> list[int | None]:
    """'257,513' (or '257x257,513') -> [257, 513]; None -> [None] (the card's size)."""
    if not text:
        return [None]
    return [square_side(parse_size(item.strip()), "benchmark") for item in text.split(",")]


def _open(model: str, engine: str, threads: int | None, contract: list[str] | None) -> Segmenter:
    """``model`` on ``engine`` as benchmark measures it (a checkpoint on an exported-file engine
    is exported once, cached), with the ``--contract`` overrides when given."""
    if contract:
        return open_segmenter(model, engine, threads, contract, warn=False)
    return Segmenter.from_file(model, engine=engine, threads=threads)


def _stream_benchmark(
    out: Output,
    models: list[str],
    source: str,
    engine: str,
    threads: list[int | None],
    contract: list[str] | None,
) -> None:
    """``--stream``: pipelined vs sequential frames/s of each model on a video (atrous.video)."""
    rows, payload, repeats = [], [], 0
    for model, count in ((m, t) for m in models for t in threads):
        segmenter = _open(model, engine, count, contract)
        if count == threads[0]:  # the card's warnings once per model
            warn_card(segmenter.card, model)
        result = stream_benchmark(segmenter, source)
        fps = [statistics.median(result.sequential_fps), statistics.median(result.pipelined_fps)]
        rows.append([model, count, result.frames, *fps, result.ratio])
        repeats = result.repeats
        payload.append(
            dict(model=model, threads=count, frames=result.frames, sequential_fps=fps[0],
                 pipelined_fps=fps[1], ratio=result.ratio)
        )  # fmt: skip
    out.json({"stream": source, "results": payload})
    columns = ["model", "threads", "frames", "sequential f/s", "pipelined f/s", "ratio"]
    out.table(f"stream {source} ({repeats} interleaved pairs)", columns, rows)


def _targets(
    models: list[str], engines: list[str], contract: list[str] | None
) -> list[BenchTarget]:
    """Each model on each engine (with ``--contract``: opened with the overridden card); the
    card's warnings (random weights, guessed contract) are printed once per model, when it is
    first opened."""
    warned: set[str] = set()

    def opener(model: str, engine: str) -> Callable[[int], Segmenter]:
        def open_(threads: int) -> Segmenter:
            segmenter = _open(model, engine, threads, contract)
            if model not in warned:
                warned.add(model)
                warn_card(segmenter.card, model)
            return segmenter

        return open_

    return [
        BenchTarget(f"{Path(m).name}:{e}", opener(m, e), Path(m) if Path(m).is_file() else None)
        for m in models
        for e in engines
    ]


@app.command()
def benchmark(
    models: list[str] = typer.Argument(..., help="checkpoints, exported models or zoo names"),
    engine: str = typer.Option(
        "auto", help="comma-separated: auto, torch, onnxruntime, openvino, litert, ncnn, fast"
    ),
    threads: ThreadCountsOpt = None,
    sizes: str = typer.Option(None, help="comma-separated input sizes (N or NxN), e.g. 257,513"),
    runs: int = typer.Option(30, help="timed runs per configuration"),
    warmup: int = typer.Option(5, help="untimed runs first"),
    network_only: bool = typer.Option(False, help="skip the end-to-end (image file in) timing"),
    image: Path = typer.Option(
        None, help="time end to end on this image file (default: a synthetic photo)"
    ),
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
    csv_out: Path = typer.Option(None, "--csv", help="write results as CSV"),
    report: Path = typer.Option(None, help="write a self-contained HTML report"),
    stream: str = typer.Option(
        None, help="a video file or stream URL: frames/s of the pipelined vs the sequential loop"
    ),
    contract: ContractOpt = None,
    output_tensor: OutputTensorOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Latency (median/p90/p99), throughput, GMACs and GFLOP/s; models run interleaved."""
    contract = with_output_tensor(contract, output_tensor)
    out = Output(as_json, json_out)
    size_list, thread_list = parse_sizes(sizes), thread_counts(threads)
    engines = [e.strip() for e in engine.split(",") if e.strip()]
    models = [with_weights(m, weights) for m in models]
    if stream is not None:
        return _stream_benchmark(out, models, stream, engine.split(",")[0], thread_list, contract)
    with Progress(
        console=out.console, transient=True, disable=not out.console.is_terminal
    ) as progress:
        task = progress.add_task("benchmarking", total=runs + warmup)
        result = run_benchmark(
            _targets(models, engines, contract),
            sizes=size_list,
            threads=thread_list,
            runs=runs,
            warmup=warmup,
            end_to_end=not network_only,
            engine=engines,
            progress=lambda done, total: progress.update(task, completed=done),
            image=image,
        )
    if csv_out:
        result.to_csv(csv_out)
    if report:
        from atrous.report import benchmark_report  # matplotlib: only when a report is asked

        benchmark_report(result, report)
    out.json(result.to_dict())
    columns, rows = result.table_rows()
    out.table(f"benchmark ({runs} runs, peak RSS {result.peak_rss_mb:.0f} MB)", columns, rows)
    paths = dict.fromkeys(f"{r.label}: {r.path}" for r in result.records)
    # on stderr: the table on stdout stays one row per record (read by scripts through a pipe)
    err_console.print(f"path: {'; '.join(paths)}", markup=False, highlight=False, soft_wrap=True)
