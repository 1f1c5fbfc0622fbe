"""``atrous export``: write ONNX / OpenVINO / TFLite and print the parity table against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from atrous.cli._app import app, console, print_json, print_table
from atrous.cli.models import parse_size
from atrous.export import export_model


@app.command("export")
def export_command(
    checkpoint: str = typer.Argument(..., help="checkpoint (.pt) or zoo name"),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx, openvino or tflite"),
    size: str = typer.Option(None, help="input size to trace at (HxW); fixed for tflite"),
    opset: int = typer.Option(None, help="ONNX opset (default 17)"),
    with_argmax: bool = typer.Option(
        None, "--with-argmax/--no-with-argmax", help="argmax inside the graph (uint8 labels out)"
    ),
    out: Path = typer.Option(None, "--out", "-o", help="output file"),
    threads: int = typer.Option(None, help="threads for the parity check"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Export a model; it is checked against PyTorch at two sizes and fails under 99.9%."""
    result = export_model(
        checkpoint,
        format,
        out,
        size=parse_size(size) if size else None,
        opset=opset,
        with_argmax=with_argmax,
        threads=threads,
    )
    if json_out:
        print_json(
            {"path": str(result.path), "output": result.card.output, **result.parity.to_dict()}
        )
        return
    print_table(
        f"parity vs {result.parity.reference}",
        ["engine", "size", "max abs diff", "argmax agreement", "classes seen"],
        [
            [
                r.engine,
                f"{r.size[0]}x{r.size[1]}",
                "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}",
                f"{r.agreement:.4%}",
                r.classes_seen,
            ]
            for r in result.parity.rows
        ],
    )
    if any(r.classes_seen < 2 for r in result.parity.rows):
        console.print(
            "[yellow]note:[/yellow] the reference predicts a single class on the test images "
            "(untrained weights?), so argmax agreement says little"
        )
    files = (
        [result.path, result.path.with_suffix(".bin")] if format == "openvino" else [result.path]
    )
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    console.print(f"wrote {result.path} ({size_mb:.2f} MB, output: {result.card.output})")
