"""Edge-aware refinement (``atrous evaluate --refine``) on a trained checkpoint.

    python benchmarks/refine.py CHECKPOINT [--out benchmarks/results/refine.md]

On the checkpoint's synthetic set (the demo's settings), on 'val' and on 'test' (a second set
of scenes from the same generator, on which the default radius was chosen): mIoU of the network
alone, with flip, refined, and refined with flip; on 'test', the window radius swept at the
default grid step; the cost per image; and the same for the output-stride ceiling (the true
labels averaged over 16x16 cells, what a perfect OS16 network without a decoder outputs).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from atrous.data import build_dataset
from atrous.demo import demo_config
from atrous.evaluate import ConfusionMatrix
from atrous.refine import refine_probabilities, refine_radius
from atrous.segmenter import Segmenter

RADIUS_FACTORS = (0.5, 1.0, 1.5, 2.0)  # window radius in output cells


def _ceiling_probabilities(label: np.ndarray, classes: int, stride: int) -> np.ndarray:
    """The OS ceiling: one-hot labels averaged over stride x stride cells, enlarged
    bilinearly, as probabilities at the label's size."""
    import torch
    import torch.nn.functional as F

    h, w = label.shape
    onehot = np.stack([(label == c).astype(np.float32) for c in range(classes)])
    cells = onehot.reshape(classes, h // stride, stride, w // stride, stride).mean((2, 4))
    up = F.interpolate(torch.from_numpy(cells)[None], size=(h, w), mode="bilinear")[0]
    return up.numpy()


def _score(name: str, rows: dict, classes: int) -> ConfusionMatrix:
    return rows.setdefault(name, ConfusionMatrix(classes))


def run(checkpoint: str, threads: int) -> str:
    """Every measurement, as Markdown."""
    seg = Segmenter.from_file(checkpoint, engine="torch", threads=threads)
    config = demo_config("unused")
    stride = seg.output_stride
    classes = len(seg.card.classes)
    radius = refine_radius(stride)
    lines = [
        f"Checkpoint `{checkpoint}` ({seg.card.name}, output stride {stride}), synthetic "
        f"{config.data.image_size} px scenes, {threads} threads, {os.cpu_count()} cores. "
        f"Default radius {radius} px (two output cells), eps 1e-3, fitted on a grid "
        f"{max(1, radius // 8)}x coarser.",
        "",
    ]
    for split in ("val", "test"):
        data = build_dataset(config.data, split)
        rows: dict[str, ConfusionMatrix] = {}
        seconds = {"network": 0.0, "refine": 0.0}
        for sample in data:
            t0 = time.perf_counter()
            plain = seg.probabilities(sample.image)
            t1 = time.perf_counter()
            flipped = seg.probabilities(sample.image, flip=True)
            t2 = time.perf_counter()
            refined = seg.refine(sample.image, plain)
            t3 = time.perf_counter()
            seconds["network"] += t1 - t0
            seconds["refine"] += t3 - t2
            both = seg.refine(sample.image, flipped)
            ceiling = _ceiling_probabilities(sample.mask, classes, stride)
            results = {
                "network": plain,
                "network + flip": flipped,
                "refined": refined,
                "refined + flip": both,
                f"OS{stride} ceiling": ceiling,
                f"OS{stride} ceiling refined": seg.refine(sample.image, ceiling),
            }
            if split == "test":
                for factor in RADIUS_FACTORS:
                    r = max(1, round(factor * stride))
                    results[f"radius {r}"] = refine_probabilities(
                        sample.image, plain, r, subsample=max(1, stride // 4)
                    )
            for name, probs in results.items():
                _score(name, rows, classes).update(probs.argmax(0).astype(np.uint8), sample.mask)
        n = len(data)
        lines += [
            f"**{split}** ({n} scenes; network {seconds['network'] / n * 1e3:.1f} ms/image, "
            f"refinement {seconds['refine'] / n * 1e3:.1f} ms/image)",
            "",
            "| prediction | mIoU | " + " | ".join(seg.card.classes) + " |",
            "|---|---|" + "---|" * classes,
        ]
        for name, cm in rows.items():
            ious = " | ".join(f"{v:.3f}" for v in cm.iou())
            lines.append(f"| {name} | {cm.miou():.4f} | {ious} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="append the Markdown here")
    args = parser.parse_args()
    text = run(args.checkpoint, args.threads)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
