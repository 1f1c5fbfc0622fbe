"""``atrous export``: write ONNX / OpenVINO / TFLite and print the parity table against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from atrous.cli._app import app, card_if_synthetic, console, print_json, print_table
from atrous.cli.models import parse_size
from atrous.errors import ConfigError
from atrous.export import export_model
from atrous.runtimes import model_file_mb


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
    fast: bool = typer.Option(
        False,
        "--fast",
        help="the fast CPU graph: uint8 pixels in, low-res logits out; int8 as OpenVINO IR "
        "(-o x.xml, the default when OpenVINO and NNCF are installed) or ONNX (-o x.onnx)",
    ),
    label_stride: int = typer.Option(2, help="--fast: labels at 1/N of the input (1 = exact)"),
    precision: str = typer.Option(
        None, help="--fast and tflite: fp32 or int8 (default: int8 when --calib is given)"
    ),
    calib: str = typer.Option(
        None, help="int8: calibration data (dataset folder, experiment YAML, 'synthetic')"
    ),
    num: int = typer.Option(32, help="int8: calibration images (8 more are held out to check)"),
) -> None:
    """Export a model; it is checked against PyTorch at two sizes and fails under 99.9%.

    With --fast, writes the fast CPU graph instead and reports its pixel agreement with the
    float PyTorch path on held-out images. A tflite export with --calib is full-integer int8
    (for NPU delegates); its masks must agree with PyTorch's on 95% of held-out pixels.
    """
    if fast:
        _export_fast(checkpoint, out, label_stride, precision, calib, num, threads, json_out)
        return
    if calib and format != "tflite":
        raise ConfigError(
            "--calib applies to --format tflite (int8) and --fast; "
            "for an int8 ONNX or OpenVINO model use 'atrous quantize'"
        )
    precision = precision or ("int8" if calib and format == "tflite" else "fp32")
    items = _calibration_items(checkpoint, calib, num) if precision == "int8" else []
    with console.status(f"exporting {format} ({precision})"):
        result = export_model(
            checkpoint,
            format,
            out,
            size=parse_size(size) if size else None,
            opset=opset,
            with_argmax=with_argmax,
            threads=threads,
            precision=precision,
            calibration=items,
            num=num,
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
    size_mb = model_file_mb(result.path)
    console.print(f"wrote {result.path} ({size_mb:.2f} MB, output: {result.card.output})")


def _calibration_items(checkpoint: str, calib: str | None, num: int) -> list:
    """``num`` calibration samples and 8 more held out, from a dataset (none without one)."""
    from atrous.data import open_dataset

    if not calib:
        return []
    data = open_dataset(calib, "val", card=card_if_synthetic(checkpoint, calib))
    return [data[i] for i in range(min(len(data), num + 8))]


def _export_fast(
    checkpoint: str,
    out: Path | None,
    label_stride: int,
    precision: str | None,
    calib: str | None,
    num: int,
    threads: int | None,
    json_out: bool,
) -> None:
    from atrous.fastpath import export_fast
    from atrous.quantize.nncf_ptq import nncf_available

    precision = precision or ("int8" if calib else "fp32")
    items = _calibration_items(checkpoint, calib, num)
    stem = Path(checkpoint).stem
    # the int8 graph is fastest on OpenVINO's CPU plugin (int8 depthwise kernels)
    suffix = ".xml" if precision == "int8" and nncf_available() else ".onnx"
    out = out or Path(f"{stem}-fast-{precision}-s{label_stride}{suffix}")
    with console.status(f"exporting the fast {precision} graph"):
        result = export_fast(
            checkpoint,
            out,
            label_stride=label_stride,
            precision=precision,
            calibration=items,
            num=num,
            threads=threads,
        )
    size_mb = model_file_mb(result.path)
    if json_out:
        print_json(
            {
                "path": str(result.path),
                "precision": result.precision,
                "engine": result.engine,
                "label_stride": result.label_stride,
                "size_mb": round(size_mb, 3),
                "agreement_with_float": round(result.agreement, 6),
                "images_checked": result.images_checked,
            }
        )
        return
    print_table(
        "fast graph",
        ["file", "engine", "precision", "labels at", "MB", "agreement with float PyTorch"],
        [
            [
                str(result.path),
                result.engine,
                result.precision,
                f"1/{result.label_stride}",
                f"{size_mb:.2f}",
                f"{result.agreement:.2%} ({result.images_checked} images)",
            ]
        ],
    )
