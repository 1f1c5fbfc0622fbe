"""``atrous export``: write ONNX / OpenVINO / TFLite / ncnn; print the parity table vs PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from atrous.cli._app import app
from atrous.cli._common import card_if_synthetic, open_data
from atrous.cli._model import with_weights
from atrous.cli._options import (
    ContractOpt,
    JsonFlag,
    JsonOut,
    OutFile,
    SizeOpt,
    ThreadsOpt,
    WeightsOpt,
)
from atrous.cli._output import Output
from atrous.errors import ConfigError
from atrous.export import export_model
from atrous.export.ncnn import INT8_UNAVAILABLE
from atrous.export.pipeline import FORMATS
from atrous.fastpath import export_fast
from atrous.outputs import beside_input
from atrous.quantize.nncf_ptq import nncf_available
from atrous.runtimes import model_file_mb


@app.command("export")
def export_command(
    checkpoint: str = typer.Argument(..., help="checkpoint (.pt) or zoo name"),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx, openvino, tflite or ncnn"),
    size: SizeOpt = None,
    opset: int = typer.Option(None, help="ONNX opset (default 17)"),
    with_argmax: bool = typer.Option(
        None, "--with-argmax/--no-with-argmax", help="argmax inside the graph (uint8 labels out)"
    ),
    out: OutFile = None,
    threads: ThreadsOpt = None,
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
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
    weights: WeightsOpt = None,
    contract: ContractOpt = None,
) -> None:
    """Export a model; it is checked against PyTorch at two sizes and fails under 99.9%.

    --size is the size to trace at (fixed for tflite). The file goes beside the checkpoint
    unless -o says otherwise (a zoo name: the current folder). With --fast, writes the fast
    CPU graph instead and reports its pixel agreement with the float PyTorch path on held-out
    images. A tflite export with --calib is full-integer int8 (for NPU delegates; 'atrous
    quantize --engine litert' writes the same file beside its float twin and compares them);
    its masks must agree with PyTorch's on 95% of held-out pixels. ncnn (through pnnx) writes
    MODEL.param + MODEL.bin in fp32 with the card beside them (MODEL.param.card.json); -o may
    name a folder. int8 ncnn is not offered: ncnn2table and ncnn2int8 are C++ tools that the
    ncnn and pnnx wheels do not ship.
    """
    output = Output(as_json, json_out)
    out = out or _default_out(checkpoint, format, fast, precision, calib, label_stride)
    checkpoint = with_weights(checkpoint, weights)
    if fast:
        if contract:
            raise ConfigError("--contract applies to a plain export, not --fast")
        _export_fast(output, checkpoint, out, label_stride, precision, calib, num, threads)
        return
    if calib and format == "ncnn":
        raise ConfigError(f"--calib: {INT8_UNAVAILABLE}")
    if calib and format != "tflite":
        raise ConfigError(
            "--calib applies to --format tflite (int8) and --fast; "
            "for an int8 ONNX or OpenVINO model use 'atrous quantize'"
        )
    precision = precision or ("int8" if calib and format == "tflite" else "fp32")
    items = _calibration_items(checkpoint, calib, num) if precision == "int8" else []
    with output.working(f"exporting {format} ({precision})") as progress:
        result = export_model(
            checkpoint,
            format,
            out,
            size=tuple(size) if size else None,
            opset=opset,
            with_argmax=with_argmax,
            threads=threads,
            precision=precision,
            calibration=items,
            num=num,
            contract=contract or [],
            progress=progress,
        )
    _print_parity(output, result)


def _print_parity(output: Output, result) -> None:
    """The parity table (or its JSON) and the file written."""
    rows = result.parity.rows
    output.json({"path": str(result.path), "output": result.card.output, **result.parity.to_dict()})
    output.table(
        f"parity vs {result.parity.reference}",
        ["engine", "compared at", "max abs diff", "argmax agreement", "classes seen"],
        [
            [
                r.engine,
                _compared_at(r),
                "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}",
                f"{r.agreement:.4%}",
                r.classes_seen,
            ]
            for r in rows
        ],
    )
    if any(r.classes_seen < 2 for r in rows):
        output.note(
            "[yellow]note:[/yellow] the reference predicts a single class on the test images "
            "(untrained weights?), so argmax agreement says little"
        )
    size_mb = model_file_mb(result.path)
    output.note(f"wrote {result.path} ({size_mb:.2f} MB, output: {result.card.output})")


def _compared_at(row) -> str:
    """'65x97' for tensors compared at the network's input; 'image 375x500 (net 385x513)' for
    whole-pipeline masks at an image's original size."""
    h, w = row.size
    if row.scope != "original":
        return f"{h}x{w}"
    net = f" (net {row.network_size[0]}x{row.network_size[1]})" if row.network_size else ""
    return f"image {h}x{w}{net}"


def _default_out(
    checkpoint: str,
    format: str,
    fast: bool,
    precision: str | None,
    calib: str | None,
    label_stride: int,
) -> Path | None:
    """Beside the checkpoint, named after it (None for an unknown format: the API refuses it);
    decided before --weights turns a zoo name into a cached checkpoint."""
    if fast:
        precision = precision or ("int8" if calib else "fp32")
        # the int8 graph is fastest on OpenVINO's CPU plugin (int8 depthwise kernels)
        suffix = ".xml" if precision == "int8" and nncf_available() else ".onnx"
        return beside_input(checkpoint, f"-fast-{precision}-s{label_stride}{suffix}")
    return beside_input(checkpoint, FORMATS[format]) if format in FORMATS else None


def _calibration_items(checkpoint: str, calib: str | None, num: int) -> list:
    """``num`` calibration samples and 8 more held out, from a dataset (none without one)."""
    if not calib:
        return []
    data = open_data(calib, "val", card_if_synthetic(checkpoint, calib))
    return [data[i] for i in range(min(len(data), num + 8))]


def _export_fast(
    output: Output,
    checkpoint: str,
    out: Path,
    label_stride: int,
    precision: str | None,
    calib: str | None,
    num: int,
    threads: int | None,
) -> None:
    """``export --fast``: the fast graph, then its agreement with the float PyTorch path."""
    precision = precision or ("int8" if calib else "fp32")
    items = _calibration_items(checkpoint, calib, num)
    with output.working(f"exporting the fast {precision} graph (export, calibrate, check)"):
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
    output.json(
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
    output.table(
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
