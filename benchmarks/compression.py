"""Compression benchmark on the demo model (DeepLabV3 MobileNetV2 dm0.5, synthetic shapes).

Variants: float, int8 per-channel (minmax / entropy / percentile calibration), int8 per-tensor
with and without cross-layer equalisation, automatic mixed precision, QAT, pruned to 50% of the
multiply-adds (fine-tuned), fp16 weights. Each is scored by the one evaluator on the synthetic
val split at the card's input size, and timed in ONNX Runtime at 513x513 with 2 threads.

    python benchmarks/compression.py [--checkpoint runs/demo/best.pt] [--quick]

Without --checkpoint the demo recipe is trained first (a few minutes on 2 cores). Writes
benchmarks/results/compression.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from atrous.bench.compare import Variant, compare, markdown_table, miou_scorer
from atrous.bench.cost import measure_cost
from atrous.checkpoint import load_checkpoint
from atrous.config import load_experiment
from atrous.data import build_dataset
from atrous.export.onnx import export_onnx
from atrous.quantize.channel_padding import pad_channels
from atrous.quantize.finetune import dataset_batches, finetune
from atrous.quantize.fold import fold_batchnorm
from atrous.quantize.fp16 import fp16_weights
from atrous.quantize.pipeline import quantize_model
from atrous.quantize.prune import prune
from atrous.quantize.qat import qat_export, qat_finetune

RESULTS = Path(__file__).parent / "results"


def demo_checkpoint(work: Path) -> Path:
    """Train the shipped demo recipe into ``work`` and return its best checkpoint."""
    from atrous.demo import packaged_config
    from atrous.train import train

    result = train(load_experiment(packaged_config("demo")), work / "demo", progress=False)
    return result.best_checkpoint or result.last_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="demo checkpoint (default: train one)")
    parser.add_argument("--size", type=int, default=513, help="latency input size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num", type=int, default=100, help="calibration images")
    parser.add_argument("--finetune-steps", type=int, default=300, help="pruning and QAT steps")
    parser.add_argument("--quick", action="store_true", help="fewer images/steps (smoke run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    experiment = load_experiment(_demo_config())
    limit = 20 if args.quick else None
    steps = 20 if args.quick else args.finetune_steps
    num = 16 if args.quick else args.num
    calib_set = build_dataset(experiment.data, "train")
    val_set = build_dataset(experiment.data, "val")
    work = Path(tempfile.mkdtemp(prefix="atrous-compression-"))
    start = time.perf_counter()
    checkpoint = args.checkpoint or demo_checkpoint(work)
    model, card = load_checkpoint(checkpoint)
    size = (args.size, args.size)
    macs = measure_cost(model, size).macs
    calib = [calib_set[i] for i in range(min(num, len(calib_set)))]
    variants = []

    # channel groups padded to multiples of 16 as quantize_model pads them (exact, faster
    # kernels), so that float and int8 rows compare precisions, not channel counts
    folded = fold_batchnorm(load_checkpoint(checkpoint)[0])
    pad_channels(folded)
    variants.append(
        Variant("float (BN folded)", export_onnx(folded, card, work / "float.onnx"), macs)
    )
    fp16 = fp16_weights(work / "float.onnx", work / "fp16.onnx")
    variants.append(Variant("fp16 weights", fp16, macs))

    def int8(name: str, file: str, **kw) -> None:
        result = quantize_model(checkpoint, calib, work / file, num=num, **kw)
        variants.append(Variant(name, result.path, macs))

    for method in ("minmax", "entropy", "percentile"):
        int8(f"int8 per-channel, {method}", f"pc_{method}.onnx", method=method)
    int8(
        "int8 per-tensor, no equalisation",
        "pt_raw.onnx",
        granularity="per-tensor",
        equalize=False,
        bias_correction=False,
    )
    int8(
        "int8 per-tensor, equalised (ReLU6 caps) + bias-corrected",
        "pt_eq.onnx",
        granularity="per-tensor",
        equalize=True,
    )
    int8(
        "int8 per-tensor, equalised (ReLU6->ReLU) + bias-corrected",
        "pt_eq_relu.onnx",
        granularity="per-tensor",
        equalize=True,
        relu6="relu",
    )
    held = miou_scorer(val_set, threads=args.threads, limit=limit, points=True)
    mixed = quantize_model(
        checkpoint,
        calib,
        work / "mixed.onnx",
        num=num,
        score=lambda _: held,
        mixed=True,
        max_drop=0.2,
    )
    variants.append(
        Variant(f"int8 auto mixed ({len(mixed.mixed.float_groups)} float)", mixed.path, macs)
    )

    # the demo's own crops and scale range; QAT at ~1% of the training LR only adapts the
    # weights to int8 rounding, pruning needs a larger LR to recover the removed channels
    train_batches = dataset_batches(
        calib_set,
        card,
        batch_size=8,
        crop=experiment.data.crop_size,
        scale_range=experiment.data.scale_range,
    )
    qat_model, _ = load_checkpoint(checkpoint)
    qat_finetune(qat_model, train_batches, steps=steps, lr=experiment.train.lr * 0.01)
    variants.append(
        Variant("int8 QAT", qat_export(qat_model, card, calib, work / "qat.onnx", num=num), macs)
    )

    net, _ = load_checkpoint(checkpoint)
    pruned = prune(net, 0.5, input_size=size)
    finetune(pruned.model, train_batches, steps=steps, lr=1e-3)
    pad_channels(pruned.model)  # pruned widths are multiples of 8
    variants.append(
        Variant(
            "pruned 50% MACs, fine-tuned",
            export_onnx(pruned.model, card, work / "pruned.onnx"),
            pruned.macs[1],
        )
    )

    rows = compare(
        variants,
        val_set,
        threads=args.threads,
        size=size,
        limit=limit,
        runs=10 if args.quick else 30,
    )
    elapsed = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    fp32 = next(r for r in rows if r.variant.startswith("float"))
    pc = next(r for r in rows if r.variant == "int8 per-channel, minmax")
    text = [
        "# Compression on the demo model",
        "",
        "Command: `PYTHONPATH=src python benchmarks/compression.py "
        + " ".join(sys.argv[1:])
        + "`.",
        "",
        f"Model: `{card.name}` trained on synthetic shapes ({checkpoint}). mIoU: the one "
        f"evaluator (dataset-level confusion matrix) on the synthetic val split "
        f"({limit or len(val_set)} images, network input {card.preprocessing.size}). Latency: "
        f"ONNX Runtime, network only, batch 1, {args.size}x{args.size}, {args.threads} threads, "
        "median. Multiply-adds at the latency size.",
        "",
        markdown_table(rows),
        f"int8 per-channel / fp32 latency: {pc.latency_ms / fp32.latency_ms:.2f}x; "
        f"mIoU change {100 * (pc.miou - fp32.miou):+.2f} points.",
        f"Auto mixed precision kept in float: {', '.join(mixed.mixed.float_groups) or 'nothing'}.",
        f"Calibration: {num} training images. Fine-tuning (QAT, pruning): {steps} steps.",
        "Every row but QAT has its internal channel groups padded with zero channels to "
        "multiples of 16 (exact; atrous.quantize.channel_padding); GMACs count the model's own "
        "channels.",
        f"Run time {elapsed / 60:.1f} min{' (--quick)' if args.quick else ''}.",
        "",
    ]
    (RESULTS / "compression.md").write_text("\n".join(text))
    (RESULTS / "compression.json").write_text(
        json.dumps([r.to_dict() for r in rows], indent=2) + "\n"
    )
    print("\n".join(text))


def _demo_config() -> Path:
    from atrous.demo import packaged_config

    return packaged_config("demo")


if __name__ == "__main__":
    main()
