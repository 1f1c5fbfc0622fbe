"""``atrous convert``: a weights file as an atrous checkpoint with a card, and its mapping."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from atrous.cli._app import app
from atrous.cli._options import JsonFlag, JsonOut, OutFile
from atrous.cli._output import Output
from atrous.convert import convert_checkpoint
from atrous.errors import InputError
from atrous.outputs import beside_input

SHOWN = 8  # names listed per kind of tensor in the report


@app.command("convert")
def convert_command(
    source: str = typer.Argument(
        ..., help="a checkpoint, a plain state_dict with --zoo, or a TF DeepLab zoo .tflite"
    ),
    out: OutFile = None,
    zoo: str = typer.Option(None, help="zoo name of a plain state_dict's architecture"),
    licence: str = typer.Option(None, help="the licence of the weights, recorded on the card"),
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
) -> None:
    """Write SOURCE as an atrous checkpoint whose card records its source, SHA-256 and licence,
    and report the mapping: tensors mapped, reshaped, unmapped, and model tensors left
    initialised. A file that fits no known layout is named by what it looks like. A TF DeepLab
    zoo .tflite (MobileNetV2, float or int8) is mapped onto the atrous DeepLab it describes.

    The output goes to -o, default beside SOURCE as <stem>-atrous.pt.
    """
    output = Output(as_json, json_out)
    target = out or beside_input(source, "-atrous.pt")
    if Path(source).is_file() and target.resolve() == Path(source).resolve():
        raise InputError(f"-o {target}: would overwrite the source; choose another file")
    report = convert_checkpoint(source, target, zoo_name=zoo, licence=licence)
    output.json(report.to_dict())
    output.table(
        f"{source} ({report.layout}) -> {target}",
        ["tensors", "count"],
        [
            ["mapped", len(report.mapped)],
            ["reshaped", len(report.reshaped)],
            ["unmapped (in the file, not used)", len(report.unmapped)],
            ["initialised (not in the file)", len(report.initialised)],
        ],
    )
    for label, names in (
        ("reshaped", report.reshaped),
        ("unmapped", report.unmapped),
        ("initialised", report.initialised),
    ):
        if names:
            more = f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else ""
            output.print(escape(f"  {label}: {', '.join(names[:SHOWN])}{more}"))
    output.note(escape(f"wrote {target}"))
