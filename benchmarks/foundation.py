"""Foundation benchmark: measured zoo parameters / multiply-adds, and `atrous predict` latency.

Measures, in one interleaved run, the median time of the predict path (Segmenter on the torch
engine: preprocess + network + postprocess to a mask at the original size) for
deeplabv3_mnv2_dm05_os16 on one 513x513 image beside PyTorch eager of the bare network.
Writes benchmarks/results/foundation.md. Run:

    python benchmarks/foundation.py [--threads 2] [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from atrous._atomic import atomic_write_text
from atrous.bench.cost import measure_cost
from atrous.models import default_card, get_entry, get_model, list_models
from atrous.runtimes import TorchEngine
from atrous.segmenter import Segmenter

NAME = "deeplabv3_mnv2_dm05_os16"


def zoo_table() -> list[str]:
    """Markdown rows: measured params / multiply-adds beside the published figures."""
    rows = [
        "| model | input | params (M) | GMACs measured | GMACs published | published mIoU |",
        "|---|---|---|---|---|---|",
    ]
    for name in list_models():
        entry = get_entry(name)
        cost = measure_cost(get_model(name), entry.input_size)
        pub = entry.published
        rows.append(
            f"| {name} | {entry.input_size[0]}x{entry.input_size[1]} | {cost.params / 1e6:.2f} "
            f"| {cost.gmacs:.2f} | {pub.get('gmacs', '-')} | {pub.get('miou', '-')} |"
        )
    return rows


def predict_latency(threads: int, rounds: int) -> dict[str, float]:
    """Median ms of the predict path and of the bare eager network, interleaved."""
    torch.manual_seed(0)
    model = get_model(NAME).eval()
    segmenter = Segmenter(TorchEngine(model, threads=threads), default_card(NAME))
    image = np.random.default_rng(0).integers(0, 256, (513, 513, 3), dtype=np.uint8)
    x = torch.randn(1, 3, 513, 513)
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {"predict": [], "eager": []}
    for i in range(rounds + 3):
        t0 = time.perf_counter()
        segmenter.predict(image)
        t1 = time.perf_counter()
        with torch.inference_mode():
            model(x)
        t2 = time.perf_counter()
        if i >= 3:  # warm-up
            times["predict"].append((t1 - t0) * 1e3)
            times["eager"].append((t2 - t1) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    latency = predict_latency(args.threads, args.rounds)
    lines = [
        "# Foundation: zoo costs and predict latency",
        "",
        "Command: `python benchmarks/foundation.py "
        f"--threads {args.threads} --rounds {args.rounds}`; load average "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "",
        "## Zoo (measured on the built graph)",
        "",
        *zoo_table(),
        "",
        f"## `atrous predict` path vs bare eager network ({NAME}, 513x513, "
        f"{args.threads} threads, median of {args.rounds} interleaved rounds)",
        "",
        "| path | median ms |",
        "|---|---|",
        f"| predict (torch engine, image in, mask out) | {latency['predict']:.1f} |",
        f"| PyTorch eager, bare network | {latency['eager']:.1f} |",
        "",
    ]
    out = Path(__file__).parent / "results" / "foundation.md"
    atomic_write_text(out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
