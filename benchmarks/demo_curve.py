"""Run ``atrous demo`` and record val mIoU against training minutes (the demo's settings).

    python benchmarks/demo_curve.py [--out benchmarks/results/training.md] [override ...]

Appends a Markdown section with the demo's final table and its mIoU-vs-minutes curve.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from atrous.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides of configs/demo.yaml")
    parser.add_argument("--out", type=Path, default=None, help="append the Markdown here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_demo(Path(tmp) / "demo", overrides=args.overrides)
    s = result.summary
    lines = [
        f"Demo ({s['model']}, synthetic {s['scene_size']}px scenes, {s['train_crop']}px crops, "
        f"{s['epochs']} epochs, "
        f"{os.cpu_count()} cores): val mIoU {s['val_miou']:.4f} (network alone), "
        f"{s['val_miou_refined']:.4f} (refined to image edges), pixel accuracy "
        f"{s['val_pixel_accuracy']:.4f}, training {s['train_minutes']:.2f} min at "
        f"{s['train_images_per_second']} img/s, whole demo {s['total_minutes']:.2f} min",
        "",
        "| class | IoU | IoU refined |",
        "|---|---|---|",
        *[
            f"| {c} | {v:.4f} | {s['per_class_iou_refined'][c]:.4f} |"
            for c, v in s["per_class_iou"].items()
        ],
        "",
        "| training minutes | val mIoU |",
        "|---|---|",
        *[f"| {m:.2f} | {v:.4f} |" for m, v in s["miou_vs_minutes"]],
    ]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()
