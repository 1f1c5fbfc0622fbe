"""``atrous prune``: structured channel pruning, then the side-by-side table."""

from __future__ import annotations

from pathlib import Path

import typer

from atrous._atomic import scratch_directory
from atrous.bench.compare import Variant, compare
from atrous.cli._app import app
from atrous.cli._common import COMPARE_LIMIT, model_side, open_data, print_comparison
from atrous.cli._options import (
    JsonFlag,
    JsonOut,
    OutFile,
    SizeOpt,
    ThreadsOpt,
    resolve_threads,
    square_side,
)
from atrous.cli._output import Output
from atrous.errors import InputError
from atrous.export.onnx import export_onnx
from atrous.outputs import beside_input
from atrous.quantize.finetune import dataset_batches, finetune
from atrous.quantize.prune import prune
from atrous.sources import load_engine


@app.command("prune")
def prune_command(
    model: str = typer.Argument(..., help="checkpoint or zoo name"),
    ratio: float = typer.Option(0.5, help="target fraction of the multiply-adds"),
    method: str = typer.Option("bn", help="channel importance: bn (BN scale) or l1"),
    out: OutFile = None,
    data: str = typer.Option(None, help="data for fine-tuning and the table (folder/YAML)"),
    finetune_steps: int = typer.Option(0, help="fine-tuning steps after pruning"),
    limit: int = typer.Option(COMPARE_LIMIT, help="held-out images for the table"),
    size: SizeOpt = None,
    threads: ThreadsOpt = None,
    runs: int = typer.Option(20, help="timed runs per variant"),
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
) -> None:
    """Structured channel pruning to a multiply-add ratio; exports the smaller network to ONNX.

    The pruned ONNX goes beside the model (MODEL.pruned.onnx) unless -o says otherwise;
    --size (square, default: the model's input size) sets latency and multiply-adds.
    """
    output = Output(as_json, json_out)
    side = model_side(model, square_side(size, "prune"))
    engine, card = load_engine(model, "torch")
    net = engine.model  # type: ignore[attr-defined]
    with output.working(f"pruning to {ratio:.0%} of the multiply-adds") as progress:
        result = prune(net, ratio, method=method, input_size=(side, side))  # type: ignore[arg-type]
        held = open_data(data, "val", card) if data else None
        if finetune_steps:
            if held is None:
                raise InputError("--finetune-steps needs --data")
            progress(f"fine-tuning {finetune_steps} steps")
            crop = card.preprocessing.size or 257
            batches = dataset_batches(open_data(data, "train", card), card, crop=crop)
            finetune(result.model, batches, steps=finetune_steps, lr=1e-3)
        progress("exporting the pruned and float models")
        out = out or beside_input(model, ".pruned.onnx")
        export_onnx(result.model, card, out)
    with scratch_directory("prune") as tmp:
        base = export_onnx(net, card, Path(tmp) / "float.onnx")
        output.progress("scoring and timing both models")
        rows = compare(
            [
                Variant("float", base, result.macs[0]),
                Variant(f"pruned {ratio:.0%}", out, result.macs[1]),
            ],
            held,
            threads=resolve_threads(threads),
            size=(side, side),
            limit=limit,
            runs=runs,
        )
    print_comparison(output, rows, {"out": str(out), "keep_fraction": result.keep_fraction})
    output.note(f"wrote {out} (kept {result.keep_fraction:.0%} of the internal channels)")
