"""The host's label step (bilinear upsample + argmax at 1/2, ``atrous.upsample``) against the
kernel of an earlier revision, interleaved on the same logits.

    PYTHONPATH=src python benchmarks/label_step.py --against 09fcaf3

Cases: a smooth 21-class map (what a trained model gives), random 21-class logits at 33 x 33
(dm0.5 at 513 with random weights: a boundary in nearly every cell) and at 65 x 65 (stride 8,
LR-ASPP at 520), and 150-class noise (ADE20K's class count). The earlier kernel is read from
git (``git show REV:src/atrous/_sparse_kernel.py``) and compiled beside the current one.
Writes benchmarks/results/label_step.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from _report import write_report
from atrous._sparse_kernel import kernel as current
from atrous.bench.latency import cpu_model

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results" / "label_step.md"


def earlier_kernel(rev: str):
    """The kernel function of ``rev``'s ``_sparse_kernel.py``, compiled in this process."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/atrous/_sparse_kernel.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="atrous-kernel-")) / "earlier_kernel.py"
    path.write_text(source.replace("cache=True", "cache=False"), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("earlier_kernel", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kernel


def cases() -> dict[str, tuple[np.ndarray, int]]:
    """Logits (C, h, w) and the network input side they come from."""
    rng = np.random.default_rng(0)
    coarse = torch.from_numpy(rng.normal(size=(21, 5, 5)).astype(np.float32) * 4)
    smooth = F.interpolate(coarse[None], size=(33, 33), mode="bicubic", align_corners=False)
    return {
        "smooth, 21 classes, 33 x 33": (smooth[0].numpy(), 528),
        "random, 21 classes, 33 x 33": (rng.normal(size=(21, 33, 33)).astype(np.float32), 528),
        "random, 21 classes, 65 x 65": (rng.normal(size=(21, 65, 65)).astype(np.float32), 520),
        "random, 150 classes, 33 x 33": (rng.normal(size=(150, 33, 33)).astype(np.float32), 528),
    }


def run(kernel, logits: np.ndarray, side: int) -> np.ndarray:
    """Labels at 1/2 of ``side`` enlarged to ``side``, in one band."""
    scores = np.ascontiguousarray(logits.transpose(1, 2, 0))
    rows = -(-side // 2)
    labels = np.empty((side, side), np.uint8)
    kernel(scores, scores.argmax(-1), rows, rows, rows, 2, labels, 0, rows)
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="09fcaf3", help="git revision of the earlier kernel")
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    earlier = earlier_kernel(args.against)
    rows = []
    for name, (logits, side) in cases().items():
        same = np.array_equal(run(earlier, logits, side), run(current, logits, side))
        times: dict[str, list[float]] = {"earlier": [], "current": []}
        for _ in range(args.runs):
            for label, kernel in (("earlier", earlier), ("current", current)):
                start = time.perf_counter()
                run(kernel, logits, side)
                times[label].append(time.perf_counter() - start)
        e, c = (float(np.median(times[k])) * 1e3 for k in ("earlier", "current"))
        rows.append(f"| {name} | {side} | {e:.3f} | {c:.3f} | {e / c:.2f}x | {same} |")
        print(rows[-1], flush=True)
    about = (
        f"(median of {args.runs} interleaved runs each, one thread, labels at 1/2 enlarged to "
        f"the input side; {cpu_model()}). The current kernel skips, in each cell of four "
        "logit vectors, the classes below one corner's winner at all four corners."
    )
    columns = ["logits", "input side", f"{args.against} ms", "current ms", "speed-up",
               "same labels"]  # fmt: skip
    title = "The host label step against an earlier kernel"
    text = write_report(OUT, title, about, columns, "lrrrrl", rows)
    print(text)


if __name__ == "__main__":
    main()
