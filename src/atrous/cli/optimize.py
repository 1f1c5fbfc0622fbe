"""``atrous optimize``: measure candidate configurations here and recommend one for a budget."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from atrous.bench.optimize import optimize as run_optimize
from atrous.bench.optimize import parse_search
from atrous.cli._app import app
from atrous.cli._options import JsonFlag, JsonOut
from atrous.cli._output import Output
from atrous.data import open_dataset
from atrous.errors import InputError


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
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
    report: Path = typer.Option(None, help="write a self-contained HTML report"),
) -> None:
    """Measure candidates here (mIoU + latency), print the Pareto frontier and a recommendation."""
    out = Output(as_json, json_out)
    budget = parse_ms(latency_budget)
    space = parse_search(search)
    dataset = open_dataset(data)

    def show(cand, point) -> None:
        tag = "cached" if point.cached else "measured"
        out.note(escape(f"{tag} {cand.key}: mIoU {point.miou:.4f}, {point.latency_ms:.1f} ms"))

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
    if report:
        from atrous.report import optimize_report  # matplotlib: only when a report is asked

        optimize_report(result, report)
    out.json(result.to_dict())
    columns, rows = result.table_rows()
    out.table(f"candidates (budget {budget:g} ms; * = recommended)", columns, rows)
    for note in result.notes.values():
        out.print(f"[yellow]{escape(note)}[/yellow]")
