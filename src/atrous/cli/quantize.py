"""``atrous quantize`` and ``atrous prune``: compress a model, then print the side-by-side table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from atrous.cli._app import app, card_if_synthetic, console, print_json, print_table
from atrous.errors import InputError

if TYPE_CHECKING:
    from atrous.card import ModelCard
    from atrous.data import SegmentationDataset


def _open_data(data: str, split: str, card: ModelCard | None = None) -> SegmentationDataset:
    """DATA as the evaluate command reads it: folder, experiment YAML or 'synthetic' (the
    model's own synthetic set when ``card`` records one)."""
    from atrous.data import open_dataset

    return open_dataset(data, split, card=card)


def _macs(model: str, size: tuple[int, int]) -> int | None:
    """Multiply-adds of a checkpoint / zoo model (None for exported files)."""
    if Path(model).suffix == ".onnx":
        return None
    from atrous.bench.cost import measure_cost
    from atrous.sources import load_engine

    engine, _ = load_engine(model, "torch")
    return measure_cost(engine.model, size).macs  # type: ignore[attr-defined]


def _print_rows(rows, as_json: bool, extra: dict | None = None) -> None:
    from atrous.bench.compare import COLUMNS

    if as_json:
        print_json({"variants": [r.to_dict() for r in rows], **(extra or {})})
    else:
        print_table("compression: side by side", COLUMNS, [r.cells() for r in rows])


@app.command("quantize")
def quantize_command(
    model: str = typer.Argument(..., help="checkpoint, zoo name or float .onnx"),
    calib: str = typer.Option(..., "--calib", help="calibration data: folder, YAML or 'synthetic'"),
    out: Path = typer.Option(
        None, "--out", "-o", help="int8 model path (default: MODEL.int8.onnx)"
    ),
    num: int = typer.Option(100, help="calibration images"),
    granularity: str = typer.Option("per-channel", help="per-channel or per-tensor weights"),
    activations: str = typer.Option("uint8", help="uint8 (fast without VNNI) or int8"),
    method: str = typer.Option("minmax", help="calibration: minmax, entropy, percentile, auto"),
    engine: str = typer.Option(
        "onnxruntime", help="onnxruntime (QDQ), openvino (NNCF) or litert (full-integer .tflite)"
    ),
    equalize: bool = typer.Option(None, help="cross-layer equalisation (default: per-tensor)"),
    bias_correction: bool = typer.Option(True, help="correct biases for int8 weight rounding"),
    relu6: str = typer.Option("cap", help="equalised ReLU6: cap (exact) or relu (faster int8)"),
    mixed: str = typer.Option(None, help="'auto': keep the most sensitive layers in float"),
    max_drop: float = typer.Option(0.5, help="mixed-precision budget, mIoU points"),
    eval_data: str = typer.Option(None, "--eval", help="held-out data (default: --calib's val)"),
    limit: int = typer.Option(50, help="held-out images for scoring and the table"),
    size: int = typer.Option(
        None, help="input size for latency and multiply-adds (513; litert: the model's size)"
    ),
    threads: int = typer.Option(2, help="inference threads"),
    runs: int = typer.Option(20, help="timed runs per variant"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Static int8 quantization (fold BN, equalise, bias-correct, calibrate), optionally mixed.

    With --engine litert: a fixed-size .tflite in float and in full-integer int8 (LiteRT's
    calibrator: int8 activations, min/max ranges), side by side.
    """
    from atrous.bench.compare import Variant, compare, miou_scorer
    from atrous.quantize.pipeline import quantize_model

    if mixed not in (None, "auto"):
        raise InputError(f"--mixed '{mixed}': only 'auto' is supported")
    if engine == "litert":
        if mixed or method != "minmax" or granularity != "per-channel":
            raise InputError(
                "--engine litert: full-integer int8, per-channel weights, min/max ranges only"
            )
        _quantize_litert(model, calib, eval_data, out, num, size, threads, runs, limit, as_json)
        return
    size = size or 513
    stem = Path(model).stem if Path(model).suffix else model
    out = out or Path(f"{stem}.int8.{'xml' if engine == 'openvino' else 'onnx'}")
    card = card_if_synthetic(model, calib, eval_data)
    calib_set = _open_data(calib, "train", card)
    held = _open_data(eval_data or calib, "val", card)

    def scorer_for(float_path: Path):
        return miou_scorer(held, threads=threads, limit=limit)

    float_keep = out.with_name(f"{out.stem}.float.onnx")
    result = quantize_model(
        model,
        calib_set,
        out,
        num=num,
        granularity=granularity,
        activations=activations,
        method=method,
        engine=engine,
        equalize=equalize,
        bias_correction=bias_correction,
        relu6=relu6,
        score=scorer_for,
        mixed=mixed == "auto",
        max_drop=max_drop,
        keep_float=float_keep,
    )
    if result.mixed is not None and not as_json:
        print_table(
            "int8 sensitivity (score with only this group in float)",
            ["group", "nodes", "mIoU", "gain"],
            [[g.name, len(g.nodes), g.score, g.gain] for g in result.mixed.table],
        )
        console.print(f"kept in float: {', '.join(result.mixed.float_groups) or 'nothing'}")
    macs = _macs(model, (size, size))
    rows = compare(
        [
            Variant("float", result.float_path, macs),
            Variant(f"int8 {granularity}" + (" mixed" if mixed else ""), out, macs),
        ],
        held,
        engine=engine,
        threads=threads,
        size=(size, size),
        limit=limit,
        runs=runs,
    )
    extra = {"out": str(out), "settings": result.settings}
    if result.mixed is not None:
        extra["float_groups"] = result.mixed.float_groups
    _print_rows(rows, as_json, extra)
    if not as_json:
        console.print(
            f"wrote {out} (and {result.float_path}, the float model it was compared with)"
        )


def _quantize_litert(
    model: str,
    calib: str,
    eval_data: str | None,
    out: Path | None,
    num: int,
    size: int | None,
    threads: int,
    runs: int,
    limit: int,
    as_json: bool,
) -> None:
    """Float and int8 .tflite files of ``model`` at one size, then the side-by-side table."""
    from atrous.bench.compare import Variant, compare
    from atrous.bench.cost import measure_cost
    from atrous.export.pipeline import load_source
    from atrous.export.tflite import export_tflite

    net, card_of_model = load_source(model)
    side = size or card_of_model.preprocessing.size or 513
    stem = Path(model).stem if Path(model).suffix else model
    out = out or Path(f"{stem}.int8.tflite")
    float_path = out.with_name(f"{out.stem.removesuffix('.int8')}.float.tflite")
    card = card_if_synthetic(model, calib, eval_data)
    calib_set = _open_data(calib, "train", card)
    held = _open_data(eval_data or calib, "val", card)
    items = [calib_set[i] for i in range(min(num, len(calib_set)))]
    with console.status("writing the float and int8 .tflite files"):
        export_tflite(net, card_of_model, float_path, size=(side, side))
        export_tflite(
            net, card_of_model, out, size=(side, side), precision="int8", calibration=items
        )
    macs = measure_cost(net, (side, side)).macs  # the model is loaded already
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
    _print_rows(rows, as_json, {"out": str(out), "float": str(float_path), "size": side})
    if not as_json:
        console.print(f"wrote {out} and {float_path}")


@app.command("prune")
def prune_command(
    model: str = typer.Argument(..., help="checkpoint or zoo name"),
    ratio: float = typer.Option(0.5, help="target fraction of the multiply-adds"),
    method: str = typer.Option("bn", help="channel importance: bn (BN scale) or l1"),
    out: Path = typer.Option(None, "--out", "-o", help="pruned ONNX (default: MODEL.pruned.onnx)"),
    data: str = typer.Option(None, help="data for fine-tuning and the table (folder/YAML)"),
    finetune_steps: int = typer.Option(0, help="fine-tuning steps after pruning"),
    limit: int = typer.Option(50, help="held-out images for the table"),
    size: int = typer.Option(513, help="input size for latency and multiply-adds"),
    threads: int = typer.Option(2, help="inference threads"),
    runs: int = typer.Option(20, help="timed runs per variant"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Structured channel pruning to a multiply-add ratio; exports the smaller network to ONNX."""
    import tempfile

    from atrous.bench.compare import Variant, compare
    from atrous.export.onnx import export_onnx
    from atrous.quantize.prune import prune
    from atrous.sources import load_engine

    engine, card = load_engine(model, "torch")
    net = engine.model  # type: ignore[attr-defined]
    result = prune(net, ratio, method=method, input_size=(size, size))  # type: ignore[arg-type]
    held = _open_data(data, "val", card) if data else None
    if finetune_steps:
        if held is None:
            raise InputError("--finetune-steps needs --data")
        from atrous.quantize.finetune import dataset_batches, finetune

        crop = card.preprocessing.size or 257
        batches = dataset_batches(_open_data(data, "train", card), card, crop=crop)
        finetune(result.model, batches, steps=finetune_steps, lr=1e-3)
    stem = Path(model).stem if Path(model).suffix else model
    out = out or Path(f"{stem}.pruned.onnx")
    export_onnx(result.model, card, out)
    with tempfile.TemporaryDirectory() as tmp:
        base = export_onnx(net, card, Path(tmp) / "float.onnx")
        rows = compare(
            [
                Variant("float", base, result.macs[0]),
                Variant(f"pruned {ratio:.0%}", out, result.macs[1]),
            ],
            held,
            threads=threads,
            size=(size, size),
            limit=limit,
            runs=runs,
        )
    _print_rows(rows, as_json, {"out": str(out), "keep_fraction": result.keep_fraction})
    if not as_json:
        console.print(f"wrote {out} (kept {result.keep_fraction:.0%} of the internal channels)")


def qat_command(experiment, checkpoint: Path | None, out: Path, steps: int | None) -> None:
    """``atrous train --qat --from CHECKPOINT``: QAT, int8 export, then the comparison table."""
    from atrous.bench.compare import Variant, compare
    from atrous.data import build_dataset
    from atrous.quantize.qat import qat_train

    if checkpoint is None:
        raise InputError("--qat needs --from CHECKPOINT (the trained float model)")
    float_path, int8_path = qat_train(experiment, checkpoint, out, steps=steps)
    size = experiment.model.input_size or experiment.data.crop_size
    macs = _macs(str(checkpoint), (size, size))
    rows = compare(
        [Variant("QAT float", float_path, macs), Variant("QAT int8", int8_path, macs)],
        build_dataset(experiment.data, "val"),
        size=(size, size),
        threads=2,
    )
    _print_rows(rows, False)
    console.print(f"wrote {int8_path}")
