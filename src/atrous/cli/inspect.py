"""``atrous inspect``: what a model file or zoo name is, what it costs and what its card says."""

from __future__ import annotations

import typer
from rich.markup import escape

from atrous.card import card_from_json
from atrous.cli._app import app
from atrous.cli._model import warn_card, with_weights
from atrous.cli._options import (
    ContractOpt,
    JsonFlag,
    JsonOut,
    OutputTensorOpt,
    SizeOpt,
    WeightsOpt,
    with_output_tensor,
)
from atrous.cli._output import Output
from atrous.inspection import inspect_model


@app.command()
def inspect(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    size: SizeOpt = None,
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
    contract: ContractOpt = None,
    output_tensor: OutputTensorOpt = None,
    weights: WeightsOpt = None,
) -> None:
    """Show a model's architecture, output stride, head, decoder, costs per stage and card.

    The multiply-adds are counted at --size (default 513x513; a .tflite: its own size).
    """
    contract = with_output_tensor(contract, output_tensor)
    out = Output(as_json, json_out)
    info = inspect_model(with_weights(model, weights), tuple(size) if size else None, contract)
    if "card" in info:
        warn_card(card_from_json(info["card"], model), model)
    out.json(info)
    out.print(f"[bold]{escape(str(info['source']))}[/bold]  ({info['origin']})")
    if "layout" in info:
        out.print(escape(f"  {'layout':16s} {info['layout']}"))
    for key, value in info.get("architecture", {}).items():
        out.print(escape(f"  {key:16s} {value}"))
    if "params" in info:
        out.print(f"  {'parameters':16s} {info['params'] / 1e6:.3f} M")
        h, w = info["input_size"]
        out.print(f"  {'multiply-adds':16s} {info['gmacs']:.3f} G at {h}x{w}")
    if "file_mb" in info:
        out.print(f"  {'file size':16s} {info['file_mb']:.2f} MB")
    if len(info.get("outputs", [])) > 1:  # which one is read: the card's output_tensor
        read = info.get("card", {}).get("output_tensor")
        listed = ", ".join(f"{i}: {name}" for i, name in enumerate(info["outputs"]))
        out.print(escape(f"  {'outputs':16s} {listed} (reading {read if read is not None else 0})"))
    if "macs_by_stage" in info:
        out.table(
            "multiply-adds per stage (G)",
            ["stage", "GMACs"],
            [[k, v] for k, v in info["macs_by_stage"].items()],
        )
    if "card" in info:
        card = info["card"]
        classes = ", ".join(card["classes"][:25])
        out.print(escape(f"  classes ({len(card['classes'])}): {classes}"))
        out.print(escape(f"  preprocessing: {card['preprocessing']}"))
        out.print(escape(f"  output: {card['output']}; provenance: {card['provenance']}"))
