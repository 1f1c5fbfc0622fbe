"""TFLite export: LiteRT fp32 / int8 against ONNX Runtime fp32 (network only), sizes and accuracy.

The .tflite files come from atrous's own ONNX -> TFLite writer (``atrous export --format
tflite``), int8 from LiteRT's calibrator. Latency: random weights spread by ``diversify``, one
batch per engine, interleaved rounds (A, B, C, A, B, C ...) so the ratios hold on a noisy
machine. Accuracy (with ``--checkpoint``): val mIoU of the checkpoint's own synthetic set through
the one evaluator, float PyTorch against the two .tflite files at the checkpoint's input size.
Writes benchmarks/results/tflite.md. Run:

    PYTHONPATH=src python benchmarks/tflite.py --checkpoint demo/best.pt
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np

from atrous.export import export_onnx
from atrous.export.parity import diversify, sample_batch, synthetic_image
from atrous.export.tflite import export_tflite
from atrous.models import default_card, get_model
from atrous.runtimes import Engine, open_engine

OUT = Path(__file__).parent / "results" / "tflite.md"
NAME = "deeplabv3_mnv2_dm05_os16"


def latency_rows(size: int, threads: int, rounds: int, tmp: Path) -> list[tuple[str, float, float]]:
    """(engine, median ms, file MB) of ORT fp32, LiteRT fp32 and LiteRT int8 at ``size``, each
    with the argmax inside (labels out), as ``atrous export`` writes them by default."""
    card = default_card(NAME)
    model = diversify(get_model(NAME), card).eval()
    photos = [synthetic_image(size, size, seed=i) for i in range(16)]
    files = {
        "onnxruntime fp32 (.onnx)": (
            export_onnx(model, card, tmp / f"m{size}.onnx", with_argmax=True),
            "onnxruntime",
        ),
        "litert fp32 (.tflite)": (
            export_tflite(
                model, card, tmp / f"f{size}.tflite", size=(size, size), with_argmax=True
            ),
            "litert",
        ),
        "litert int8 (.tflite)": (
            export_tflite(
                model,
                card,
                tmp / f"q{size}.tflite",
                size=(size, size),
                precision="int8",
                calibration=photos,
                with_argmax=True,
            ),
            "litert",
        ),
    }
    engines: dict[str, Engine] = {k: open_engine(p, e, threads) for k, (p, e) in files.items()}
    nchw = sample_batch(card, (size, size))
    batches = {
        k: nchw if e == "onnxruntime" else nchw.transpose(0, 2, 3, 1).copy()
        for k, (_, e) in files.items()
    }
    times: dict[str, list[float]] = {k: [] for k in engines}
    for k, engine in engines.items():
        for _ in range(3):
            engine.run(batches[k])
    for _ in range(rounds):
        for k, engine in engines.items():
            start = time.perf_counter()
            engine.run(batches[k])
            times[k].append((time.perf_counter() - start) * 1e3)
    return [(k, float(np.median(times[k])), files[k][0].stat().st_size / 1e6) for k in engines]


def accuracy_rows(checkpoint: Path, threads: int, tmp: Path) -> list[tuple[str, float]]:
    """Val mIoU of float PyTorch and the fp32 / int8 .tflite files of ``checkpoint``."""
    from atrous.data import open_dataset
    from atrous.evaluate import evaluate
    from atrous.export.pipeline import load_source
    from atrous.segmenter import Segmenter

    model, card = load_source(checkpoint)
    side = card.preprocessing.size or 513
    val = open_dataset("synthetic", "val", card=card)
    calib = open_dataset("synthetic", "train", card=card)
    files = {
        "PyTorch float (.pt)": checkpoint,
        "litert fp32 (.tflite)": export_tflite(
            model, card, tmp / "acc_f.tflite", size=(side, side), with_argmax=True
        ),
        "litert int8 (.tflite)": export_tflite(
            model,
            card,
            tmp / "acc_q.tflite",
            size=(side, side),
            with_argmax=True,
            precision="int8",
            calibration=[calib[i] for i in range(32)],
        ),
    }
    rows = []
    for label, path in files.items():
        engine = "torch" if str(path).endswith(".pt") else "litert"
        seg = Segmenter.from_file(path, engine=engine, threads=threads)
        rows.append((label, evaluate(seg, val).miou))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="513,257")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# TFLite export: LiteRT against ONNX Runtime",
        "",
        f"`{NAME}`, batch 1, {args.threads} threads, {args.rounds} interleaved rounds after 3 "
        f"warm-up runs, `Engine.run` on a ready batch: the network, the logits resized to "
        f"the input and the argmax, all inside each file (uint8/int32 labels out). ai-edge-litert "
        f"{version('ai-edge-litert')}, onnxruntime {version('onnxruntime')}, "
        f"{platform.machine()}, {stamp}.",
        "Regenerate: `PYTHONPATH=src python benchmarks/tflite.py --checkpoint demo/best.pt`.",
        "",
        "| size | engine | median ms | vs ORT fp32 | file MB |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            rows = latency_rows(size, args.threads, args.rounds, Path(tmp))
            base = rows[0][1]
            for name, ms, mb in rows:
                lines.append(f"| {size} | {name} | {ms:.1f} | {ms / base:.2f}x | {mb:.2f} |")
        if args.checkpoint is not None:
            lines += [
                "",
                f"Accuracy of `{args.checkpoint}` on its synthetic val set:",
                "",
                "| model file | val mIoU |",
                "|---|---|",
            ]
            for name, miou in accuracy_rows(args.checkpoint, args.threads, Path(tmp)):
                lines.append(f"| {name} | {miou:.4f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
