"""Training images/s: ``atrous train`` against a plain PyTorch loop, same model, batch and data.

The plain loop is what the torchvision segmentation reference does (DataLoader -> forward ->
cross-entropy -> backward -> SGD step -> per-iteration LR step), with nothing else. Both run in
the same process, interleaved, on the same synthetic data (generated once, cached) and the same
augmentation; the first epoch of each run warms the cache and is not timed.

    python benchmarks/train_throughput.py [--size 128] [--batch 16] [--images 256] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from atrous.config import ExperimentConfig, parse_config
from atrous.data import build_dataset
from atrous.data.transforms import Normalize, TransformedDataset, train_transform
from atrous.models.deeplab import DeepLab
from atrous.train import train
from atrous.train.loop import build_card


def experiment(
    size: int, batch: int, images: int, epochs: int, threads: int, channels_last: bool = True
) -> ExperimentConfig:
    """The demo model on synthetic data; validation limited to one image, no TensorBoard."""
    return parse_config(
        ExperimentConfig,
        {
            "model": {"name": "deeplabv3_mnv2_dm05_os16", "input_size": size},
            "data": {
                "kind": "synthetic",
                "image_size": size,
                "crop_size": size,
                "train_size": images,
                "val_size": 1,
                "scale_range": [0.75, 1.5],
            },
            "train": {
                "epochs": epochs,
                "batch_size": batch,
                "optimizer": "sgd",
                "lr": 0.01,
                "threads": threads,
                "tensorboard": False,
                "val_every": 1000,
                "channels_last": channels_last,
            },
        },
    )


def plain_loop(config: ExperimentConfig, epochs: int) -> list[float]:
    """torchvision-reference-style loop; images/s of each epoch after the first."""
    torch.manual_seed(0)
    dataset = build_dataset(config.data, "train")
    card = build_card(config, dataset)
    model = DeepLab(card.model).train()
    data = TransformedDataset(
        dataset,
        train_transform(config.data.crop_size, config.data.scale_range),
        Normalize(card.preprocessing),
    )
    loader = torch.utils.data.DataLoader(
        data, batch_size=config.train.batch_size, shuffle=True, drop_last=True
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    total = epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: (1 - i / total) ** 0.9)
    rates = []
    for epoch in range(epochs):
        start, seen = time.perf_counter(), 0
        for image, target in loader:
            loss = F.cross_entropy(model(image), target, ignore_index=255)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(image)
        if epoch > 0:
            rates.append(seen / (time.perf_counter() - start))
    return rates


def atrous_loop(config: ExperimentConfig) -> list[float]:
    """``atrous.train.train``; images/s of each epoch after the first (from its metrics)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, Path(tmp), progress=False)
    return [row["images_per_second"] for row in result.history[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is not timed")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="append a Markdown table here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = experiment(args.size, args.batch, args.images, args.epochs, args.threads)
    nchw = experiment(args.size, args.batch, args.images, args.epochs, args.threads, False)
    plain, ours, ours_nchw = [], [], []
    for _ in range(args.rounds):
        plain += plain_loop(config, args.epochs)
        ours += atrous_loop(config)
        ours_nchw += atrous_loop(nchw)
    p, a, n = statistics.median(plain), statistics.median(ours), statistics.median(ours_nchw)
    lines = [
        f"Training throughput, deeplabv3_mnv2_dm05_os16, {args.size}x{args.size} crops, "
        f"batch {args.batch}, {args.threads} threads, {args.rounds} interleaved rounds, "
        f"median of {len(plain)} epochs each",
        "",
        "| loop | images/s (median) | all epochs |",
        "|---|---|---|",
        f"| plain PyTorch (torchvision reference style) | {p:.1f} | "
        + ", ".join(f"{v:.1f}" for v in plain)
        + " |",
        f"| atrous train (default: channels_last, fused optimizer) | {a:.1f} | "
        + ", ".join(f"{v:.1f}" for v in ours)
        + " |",
        f"| atrous train, train.channels_last=false | {n:.1f} | "
        + ", ".join(f"{v:.1f}" for v in ours_nchw)
        + " |",
        "",
        f"atrous / plain = {a / p:.3f}; with NCHW activations {n / p:.3f}",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()
