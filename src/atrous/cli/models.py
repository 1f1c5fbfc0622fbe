"""``atrous zoo`` and ``atrous inspect``."""

from __future__ import annotations

import typer

from atrous.bench.cost import measure_cost
from atrous.cli._app import app, console, print_json, print_table
from atrous.errors import ConfigError, InputError
from atrous.inspection import inspect_model
from atrous.models.zoo import get_entry, get_model, list_models

CONTRACT_HELP = (
    "override the model card of a foreign model, key=value "
    "(e.g. preprocessing.layout=NHWC, output=probability); repeatable"
)


def parse_size(text: str) -> tuple[int, int]:
    """'513' or '513x513' (H x W) -> (H, W); ConfigError otherwise."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise ConfigError(f"--size '{text}': expected H or HxW, e.g. 513x513") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise ConfigError(f"--size '{text}': expected H or HxW with positive sizes")
    return parts[0], parts[1]


@app.command()
def zoo(
    pattern: str = typer.Argument("*", help="glob over zoo names"),
    measure: bool = typer.Option(True, help="build each model and measure params / multiply-adds"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List the zoo: configurations, measured costs and published figures."""
    rows = []
    names = list_models(pattern)
    if not names:
        raise InputError(f"no zoo model matches '{pattern}'; known: {', '.join(list_models())}")
    for name in names:
        entry = get_entry(name)
        row = {
            "name": name,
            "input": "x".join(map(str, entry.input_size)),
            "dataset": entry.dataset,
        }
        if measure:
            cost = measure_cost(get_model(name), entry.input_size)
            row.update(params_m=cost.params / 1e6, gmacs=cost.gmacs)
        row.update(
            published_gmacs=entry.published.get("gmacs", "-"),
            published_miou=entry.published.get("miou", "-"),
            source=entry.source,
        )
        rows.append(row)
    if json_out:
        print_json(rows)
        return
    cols = [c for c in rows[0] if c != "source"] if rows else ["name"]
    print_table("atrous model zoo", cols, [[r[c] for c in cols] for r in rows])


@app.command()
def inspect(
    model: str = typer.Argument(..., help="checkpoint, exported model or zoo name"),
    size: str = typer.Option(
        None, help="input size for the multiply-add count, HxW (513x513; a .tflite: its own)"
    ),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
    contract: list[str] = typer.Option(None, help=CONTRACT_HELP),
) -> None:
    """Show a model's architecture, output stride, head, decoder, costs per stage and card."""
    info = inspect_model(model, parse_size(size) if size else None, contract)
    if json_out:
        print_json(info)
        return
    console.print(f"[bold]{info['source']}[/bold]  ({info['origin']})")
    for key, value in info.get("architecture", {}).items():
        console.print(f"  {key:16s} {value}")
    if "params" in info:
        console.print(f"  {'parameters':16s} {info['params'] / 1e6:.3f} M")
        h, w = info["input_size"]
        console.print(f"  {'multiply-adds':16s} {info['gmacs']:.3f} G at {h}x{w}")
    if "file_mb" in info:
        console.print(f"  {'file size':16s} {info['file_mb']:.2f} MB")
    if "macs_by_stage" in info:
        print_table(
            "multiply-adds per stage (G)",
            ["stage", "GMACs"],
            [[k, v] for k, v in info["macs_by_stage"].items()],
        )
    if "card" in info:
        card = info["card"]
        console.print(f"  classes ({len(card['classes'])}): {', '.join(card['classes'][:25])}")
        console.print(f"  preprocessing: {card['preprocessing']}")
        console.print(f"  output: {card['output']}; provenance: {card['provenance']}")
