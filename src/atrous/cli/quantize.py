"""``atrous quantize``: int8 for ONNX Runtime, OpenVINO or LiteRT, then the side-by-side table."""

from __future__ import annotations

from pathlib import Path

import typer

from atrous.bench.compare import Variant, compare, miou_scorer
from atrous.cli._app import app
from atrous.cli._common import (
    COMPARE_LIMIT,
    card_if_synthetic,
    macs_of,
    model_side,
    open_data,
    print_comparison,
)
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
from atrous.cost import measure_cost
from atrous.errors import InputError
from atrous.export.tflite import export_tflite
from atrous.outputs import beside_input
from atrous.quantize.pipeline import quantize_model
from atrous.sources import load_source

QUANTIZE_ENGINES = ("onnxruntime", "openvino", "litert")


@app.command("quantize")
def quantize_command(
    model: str = typer.Argument(..., help="checkpoint, zoo name or float .onnx"),
    calib: str = typer.Option(..., "--calib", help="calibration data: folder, YAML or 'synthetic'"),
    out: OutFile = None,
    num: int = typer.Option(100, help="calibration images"),
    granularity: str = typer.Option("per-channel", help="per-channel or per-tensor weights"),
    activations: str = typer.Option("uint8", help="uint8 (fast without VNNI) or int8"),
    method: str = typer.Option("minmax", help="calibration: minmax, entropy, percentile, auto"),
    engine: str = typer.Option(
        "onnxruntime",
        help="the runtime the int8 model is for: onnxruntime (QDQ .onnx), openvino (NNCF .xml) "
        "or litert (full-integer .tflite)",
    ),
    equalize: bool = typer.Option(None, help="cross-layer equalisation (default: per-tensor)"),
    bias_correction: bool = typer.Option(True, help="correct biases for int8 weight rounding"),
    relu6: str = typer.Option("cap", help="equalised ReLU6: cap (exact) or relu (faster int8)"),
    mixed: str = typer.Option(None, help="'auto': keep the most sensitive layers in float"),
    max_drop: float = typer.Option(
        0.5, help="mixed-precision budget, mIoU percentage points (0.5 = 0.005 mIoU)"
    ),
    eval_data: str = typer.Option(None, "--eval", help="held-out data (default: --calib's val)"),
    limit: int = typer.Option(COMPARE_LIMIT, help="held-out images for scoring and the table"),
    size: SizeOpt = None,
    threads: ThreadsOpt = None,
    runs: int = typer.Option(20, help="timed runs per variant"),
    as_json: JsonFlag = False,
    json_out: JsonOut = None,
) -> None:
    """Static int8 quantization (fold BN, equalise, bias-correct, calibrate), optionally mixed.

    The int8 file goes beside the model (MODEL.int8.onnx / .xml / .tflite) unless -o says
    otherwise; --size (square; default: the model's input size) sets latency and
    multiply-adds. With --engine litert: a fixed-size .tflite in float and in full-integer int8
    (LiteRT's calibrator: int8 activations, min/max ranges), side by side; 'atrous export
    --format tflite --calib DATA' writes the same int8 file alone, with its parity table.
    """
    output = Output(as_json, json_out)
    if engine not in QUANTIZE_ENGINES:
        raise InputError(f"--engine '{engine}': quantize targets {', '.join(QUANTIZE_ENGINES)}")
    if mixed not in (None, "auto"):
        raise InputError(f"--mixed '{mixed}': only 'auto' is supported")
    side, n_threads = square_side(size, "quantize"), resolve_threads(threads)
    if engine == "litert":
        if mixed or method != "minmax" or granularity != "per-channel":
            raise InputError(
                "--engine litert: full-integer int8, per-channel weights, min/max ranges only"
            )
        _quantize_litert(output, model, calib, eval_data, out, num, side, n_threads, runs, limit)
        return
    settings = {
        "num": num,
        "granularity": granularity,
        "activations": activations,
        "method": method,
        "engine": engine,
        "equalize": equalize,
        "bias_correction": bias_correction,
        "relu6": relu6,
        "mixed": mixed == "auto",
        "max_drop": max_drop,
    }
    held = (eval_data, limit, runs)
    _quantize_graph(output, model, calib, held, out, model_side(model, side), n_threads, settings)


def _quantize_graph(
    output: Output,
    model: str,
    calib: str,
    held_out: tuple[str | None, int, int],
    out: Path | None,
    side: int,
    threads: int,
    settings: dict,
) -> None:
    """int8 QDQ .onnx or NNCF .xml (``quantize_model``), then float vs int8 side by side;
    ``held_out`` is (--eval data, --limit, --runs)."""
    eval_data, limit, runs = held_out
    engine = settings["engine"]
    out = out or beside_input(model, f".int8.{'xml' if engine == 'openvino' else 'onnx'}")
    card = card_if_synthetic(model, calib, eval_data)
    calib_set = open_data(calib, "train", card)
    held = open_data(eval_data or calib, "val", card)
    with output.working("quantizing") as progress:
        result = quantize_model(
            model,
            calib_set,
            out,
            score=lambda float_path: miou_scorer(held, threads=threads, limit=limit, points=True),
            keep_float=out.with_name(f"{out.stem}.float.onnx"),
            progress=progress,
            **settings,
        )
    if result.mixed is not None:
        output.table(
            "int8 sensitivity (score with only this group in float)",
            ["group", "nodes", "mIoU", "gain"],
            [  # scored in points for the --max-drop budget, printed as fractions like mIoU
                [g.name, len(g.nodes), round(g.score / 100, 4), round(g.gain / 100, 4)]
                for g in result.mixed.table
            ],
        )
        output.print(f"kept in float: {', '.join(result.mixed.float_groups) or 'nothing'}")
    macs = macs_of(model, (side, side))
    output.progress("scoring and timing the float and int8 models")
    label = f"int8 {settings['granularity']}" + (" mixed" if settings["mixed"] else "")
    rows = compare(
        [Variant("float", result.float_path, macs), Variant(label, out, macs)],
        held,
        engine=engine,
        threads=threads,
        size=(side, side),
        limit=limit,
        runs=runs,
    )
    extra = {"out": str(out), "settings": result.settings}
    if result.mixed is not None:
        extra["float_groups"] = result.mixed.float_groups
    print_comparison(output, rows, extra)
    output.note(f"wrote {out} (and {result.float_path}, the float model it was compared with)")


def _quantize_litert(
    output: Output,
    model: str,
    calib: str,
    eval_data: str | None,
    out: Path | None,
    num: int,
    size: int | None,
    threads: int,
    runs: int,
    limit: int,
) -> None:
    """Float and int8 .tflite files of ``model`` at one size, then the side-by-side table."""
    net, card_of_model = load_source(model)
    side = size or card_of_model.preprocessing.size or 513
    out = out or beside_input(model, ".int8.tflite")
    float_path = out.with_name(f"{out.stem.removesuffix('.int8')}.float.tflite")
    card = card_if_synthetic(model, calib, eval_data)
    calib_set = open_data(calib, "train", card)
    held = open_data(eval_data or calib, "val", card)
    items = [calib_set[i] for i in range(min(num, len(calib_set)))]
    with output.working("writing the float .tflite file") as progress:
        export_tflite(net, card_of_model, float_path, size=(side, side))
        progress("calibrating and writing the int8 .tflite file")
        export_tflite(
            net, card_of_model, out, size=(side, side), precision="int8", calibration=items
        )
    macs = measure_cost(net, (side, side)).macs  # the model is loaded already
    output.progress("scoring and timing both files")
    rows = compare(
        [
            Variant("float (.tflite)", float_path, macs),
            Variant("int8 per-channel (.tflite)", out, macs),
        ],
        held,
        engine="litert",
        threads=threads,
        size=(side, side),
        limit=limit,
        runs=runs,
    )
    print_comparison(output, rows, {"out": str(out), "float": str(float_path), "size": side})
    output.note(f"wrote {out} and {float_path}")
