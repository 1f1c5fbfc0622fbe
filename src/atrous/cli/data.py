"""``atrous data check``: validate a dataset folder before training on it."""

from __future__ import annotations

from pathlib import Path

import typer

from atrous.cli._app import app, console, print_json, print_table

data_app = typer.Typer(help="Dataset tools.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("check")
def check_command(
    path: Path = typer.Argument(..., help="dataset folder (VOC, Cityscapes or images/ + masks/)"),
    kind: str = typer.Option(None, help="voc, cityscapes or folder (default: detected)"),
    split: str = typer.Option(None, help="split to check (default: val for VOC/Cityscapes)"),
    limit: int = typer.Option(None, help="check only the first N pairs"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Find unpaired files, size mismatches, bad label values, RGB masks; count class pixels."""
    from atrous.data.check import check_dataset

    report = check_dataset(path, kind=kind, split=split, limit=limit)
    if as_json:
        print_json(report.to_dict())
    else:
        print_table(
            f"{report.kind} dataset {path} ({report.samples} samples)",
            ["id", "class", "pixels", "fraction"],
            report.class_table(),
        )
        for problem in report.problems:
            console.print(f"[red]problem:[/red] {problem}", highlight=False, soft_wrap=True)
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        console.print(f"{report.samples} pairs checked: {verdict}")
    if not report.ok:
        raise typer.Exit(1)
