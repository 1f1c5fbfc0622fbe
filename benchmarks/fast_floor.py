"""How far the fast path is from its roofline floor, block by block.

    PYTHONPATH=src python benchmarks/fast_floor.py [--size 513] [--threads 2] [--runs 10]

Profiles ``deeplabv3_mnv2_dm05_os16`` on the fast path (``Segmenter.from_file(..., engine=
"fast")``: the fp32 fast graph on ONNX Runtime, the host's sparse upsample + argmax) at one
size and thread count, gives each layer its profiled time (ONNX Runtime node names carry the
module path) and its roofline floor against this machine's cached peaks
(:mod:`atrous.bench.peaks`; ``atrous profile MODEL --measure-peaks`` measures them again), and
sums both per block. The int8 floor (1 B per activation and weight, the int8 peak) is beside:
what the quantized graph could reach on the same roofs. Writes benchmarks/results/fast_floor.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from atrous.bench._profile_blocks import block_labels, block_of  # noqa: E402
from atrous.bench.latency import cpu_model  # noqa: E402
from atrous.bench.profile import open_profiled, profile_segmenter  # noqa: E402
from atrous.bench.roofline import layer_traffic, model_of, roofline, roofline_of  # noqa: E402

OUT = Path(__file__).parent / "results" / "fast_floor.md"
MODEL = "deeplabv3_mnv2_dm05_os16"


def measure(args: argparse.Namespace):
    """The profile, its fp32 roofline and the int8 floor of the same layers."""
    seg, model_file = open_profiled(MODEL, engine=args.engine, threads=args.threads)
    prof = profile_segmenter(seg, model_file=model_file, size=args.size, runs=args.runs)
    roof = roofline_of(seg, prof, precision="fp32", remeasure_peaks=args.measure_peaks)
    int8 = roofline(layer_traffic(model_of(seg), prof.size, "int8"), roof.peaks, "int8", prof.size)
    labels = block_labels(model_of(seg), prof.size)
    return prof, roof, int8, labels


def block_rows(prof, roof, int8, labels) -> tuple[list[list[str]], dict[str, dict[str, float]]]:
    """Per block: measured time, time in layers, fp32 and int8 floors, bandwidth-bound share."""
    acc: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for layer, layer8 in zip(roof.layers, int8.layers, strict=True):
        block = block_of(layer.name, layer.kind, labels)
        acc[block]["layers"] += layer.ms or 0.0
        acc[block]["floor"] += layer.floor_ms
        acc[block]["floor8"] += layer8.floor_ms
        acc[block]["mem"] += (layer.ms or 0.0) if layer.bound == "memory" else 0.0
    rows = []
    for block, ms in prof.blocks.items():
        a = acc.get(block, {})
        floor = a.get("floor", 0.0)
        rows.append([
            block,
            f"{ms:.2f}",
            f"{a.get('layers', 0.0):.2f}",
            f"{floor:.3f}" if a else "-",
            f"{a.get('floor8', 0.0):.3f}" if a else "-",
            f"{ms / floor:.1f}x" if floor else "-",
            f"{a['mem'] / a['layers']:.0%}" if a and a.get("layers") else "-",
        ])  # fmt: skip
    for block, a in acc.items():  # layers the profiled graph runs elsewhere or not at all
        if block not in prof.blocks:
            rows.append([f"{block} (no ops of its own)", "-", f"{a['layers']:.2f}",
                         f"{a['floor']:.3f}", f"{a['floor8']:.3f}", "-", "-"])  # fmt: skip
    return rows, acc


def next_step(prof, roof, acc) -> str:
    """The largest gap between a block's measured time and its floor, and what kind it is."""
    gaps = {b: prof.blocks[b] - acc.get(b, {}).get("floor", 0.0) for b in prof.blocks}
    block = max(gaps, key=gaps.get)
    share = gaps[block] / prof.total_ms
    if block in acc and acc[block].get("layers"):
        mem = acc[block]["mem"] / acc[block]["layers"]
        kind = (
            "mostly bandwidth-bound layers: fewer bytes (int8 activations, fusing the depthwise "
            "convolution with its neighbours so the expanded tensor stays in cache)"
            if mem >= 0.5
            else "mostly compute-bound layers running below the roof: kernel efficiency "
            "(blocked layouts, channel counts that fill the SIMD width, int8 dot products)"
        )
    else:
        kind = "outside the network's layers (host work, runtime overhead): pipeline, not kernels"
    return (
        f"largest gap: **{block}**, {gaps[block]:.2f} ms above its floor ({share:.0%} of the "
        f"end-to-end time); {kind}."
    )


def report(args, prof, roof, int8, labels) -> str:
    """The Markdown results."""
    rows, acc = block_rows(prof, roof, int8, labels)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    network = sum(
        ms for b, ms in prof.blocks.items() if b not in ("decode", "preprocess", "postprocess")
    )
    peaks_flag = " --measure-peaks" if args.measure_peaks else ""
    head = ["block", "ms", "in layers", "fp32 floor", "int8 floor", "ms/floor", "mem-bound"]
    lines = [
        "## How far the fast path is from its roofline floor",
        "",
        f"Generated {when} by `PYTHONPATH=src python benchmarks/fast_floor.py --size {args.size} "
        f"--threads {args.threads} --runs {args.runs}{peaks_flag}` ({MODEL}, engine "
        f"`{prof.engine}` via `--engine {args.engine}`, {prof.size[0]}x{prof.size[1]}, "
        f"{prof.threads} threads, {prof.runs} profiled runs; {cpu_model()}, "
        f"1-minute load {load:.1f}).",
        "",
        f"Roofs: {roof.peaks.describe()}. Machine balance {roof.peaks.balance():.2f} MAC/B "
        f"(fp32), {roof.peaks.balance('int8'):.2f} MAC/B (int8). A layer's floor is "
        "max(MACs / peak, bytes / bandwidth), every byte from memory once; a block's floor is "
        "its layers' sum (a block with no layers has none).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|",
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        f"End to end {prof.total_ms:.2f} ms; network blocks {network:.2f} ms; layers "
        f"{roof.measured_ms:.2f} ms against an fp32 floor of {roof.floor_ms:.2f} ms "
        f"({roof.measured_ms / roof.floor_ms:.1f}x the floor; the whole path "
        f"{prof.total_ms / roof.floor_ms:.1f}x). The int8 floor is {int8.floor_ms:.2f} ms. "
        f"{roof.summary()}.",
        "",
        f"Next step: {next_step(prof, roof, acc)}",
    ]
    cores = len(os.sched_getaffinity(0))
    if load > cores:
        lines += [
            "",
            f"Caution: the 1-minute load was {load:.1f} on {cores} cores, so every measured "
            "time here is inflated by the neighbours' share of the cores; the peaks "
            f"({'measured in this run, under the same load' if args.measure_peaks else 'cached'}"
            ") set the floors. Read the per-block ms/floor ratios against each other, and "
            "re-run on a quiet machine (with --measure-peaks) for absolute distances.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--engine", default="fast")
    parser.add_argument("--measure-peaks", action="store_true")
    args = parser.parse_args()
    text = report(args, *measure(args))
    OUT.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
