"""``atrous data check``: validate a dataset folder before training on it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from atrous.cli._app import app
from atrous.cli._options import JsonFlag, JsonOut
from atrous.cli._output import Output
from atrous.data.check import check_dataset

data_app = typer.Typer(help="Dataset tools.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("check")
def check_command(
    path: Path = typer.Argument(..., help="dataset folder (VOC, Cityscapes or images/ + masks/)"),
    kind: str = typer.Option(None, help="voc, cityscapes or folder (default: detected)"),
    split: str = typer.Option(None, help="split to check (default: val for VOC/Cityscapes)"),
    limit: int = typer.Option(None, help="check only the first N pairs"),
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
) -> None:
    """Find unpaired files, size mismatches, bad label values, RGB masks; count class pixels.

    Exits 1 when a problem is found.
    """
    out = Output(as_json, json_out)
    report = check_dataset(path, kind=kind, split=split, limit=limit)
    out.json(report.to_dict())
    out.table(
        f"{report.kind} dataset {path} ({report.samples} samples)",
        ["id", "class", "pixels", "fraction"],
        report.class_table(),
    )
    for problem in report.problems:
        out.print(f"[red]problem:[/red] {escape(problem)}")
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    out.print(f"{report.samples} pairs checked: {verdict}")
    if not report.ok:
        raise typer.Exit(1)
