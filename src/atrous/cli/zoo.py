"""``atrous zoo``: the published configurations with their measured and published costs."""

from __future__ import annotations

from collections.abc import Callable

import typer

from atrous.cli._app import app
from atrous.cli._options import JsonFlag, JsonOut
from atrous.cli._output import Output
from atrous.cost import measure_cost
from atrous.errors import InputError
from atrous.models.zoo import get_entry, get_model, list_models

HEADERS = {
    "params_m": "params M",
    "gmacs": "GMACs",
    "published_gmacs": "published GMACs",
    "published_miou": "published mIoU",
    "weights": "weights (mIoU)",
}


def weights_cell(name: str) -> str:
    """The entry's published weights: ``NAME mIoU`` each, '-' for none (random weights)."""
    cells = [
        f"{w.name} {w.published['miou']:g}" if "miou" in w.published else w.name
        for w in get_entry(name).weights
    ]
    return ", ".join(cells) or "-"


def zoo_rows(
    pattern: str, measure: bool, progress: Callable[[str], None] | None = None
) -> list[dict]:
    """One dict per zoo entry matching ``pattern``; measured params / GMACs when asked
    (``progress`` hears each model's name before it is built)."""
    names = list_models(pattern)
    if not names:
        raise InputError(f"no zoo model matches '{pattern}'; known: {', '.join(list_models())}")
    rows = []
    for name in names:
        entry = get_entry(name)
        row = {
            "name": name,
            "input": "x".join(map(str, entry.input_size)),
            "dataset": entry.dataset,
        }
        if measure:
            if progress is not None:
                progress(f"measuring {name} ({len(rows) + 1}/{len(names)})")
            cost = measure_cost(get_model(name), entry.input_size)
            row.update(params_m=cost.params / 1e6, gmacs=cost.gmacs)
        row.update(
            published_gmacs=entry.published.get("gmacs", "-"),
            published_miou=entry.published.get("miou", "-"),
            weights=weights_cell(name),
            source=entry.source,
        )
        rows.append(row)
    return rows


@app.command()
def zoo(
    pattern: str = typer.Argument("*", help="glob over zoo names"),
    measure: bool = typer.Option(True, help="build each model and measure params / multiply-adds"),
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
) -> None:
    """List the zoo: configurations, measured costs, published figures and published weights
    (``--weights NAME`` on predict, evaluate, export, ...; '-': random weights only)."""
    out = Output(as_json, json_out)
    with out.working("listing the zoo") as progress:
        rows = zoo_rows(pattern, measure, progress)
    out.json(rows)
    cols = [c for c in rows[0] if c != "source"]
    headers = [HEADERS.get(c, c) for c in cols]
    out.table("atrous model zoo", headers, [[r[c] for c in cols] for r in rows])
