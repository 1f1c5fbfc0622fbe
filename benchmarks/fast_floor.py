"""How far the fast path is from its roofline floor, block by block.

    PYTHONPATH=src python benchmarks/fast_floor.py [--size 513] [--threads 2] [--runs 10]
    PYTHONPATH=src python benchmarks/fast_floor.py --model dm05_int8.xml --engine openvino \
        --precision int8

Profiles ``deeplabv3_mnv2_dm05_os16`` on the fast path (``Segmenter.from_file(..., engine=
"fast")``: for a zoo name without calibration data the fp32 fast graph on ONNX Runtime; with
``--model`` the file given, e.g. the int8 fast graph ``atrous train`` writes, the default
path) at one size and thread count, gives each layer its profiled time (ONNX Runtime and
OpenVINO node names carry the module path) and its roofline floor against this machine's
cached peaks (:mod:`atrous.bench.peaks`; ``atrous profile MODEL --measure-peaks`` measures
them again), and sums both per block. Both floors are beside each other (fp32: 4 B per
element and the fp32 peak; int8: 1 B and the int8 peak); ``--precision`` says which one the
graph runs at, the one the ratios and the bandwidth-bound shares are taken against. Writes
benchmarks/results/fast_floor.md.
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
    """The profile, its roofline at the graph's precision and the other precision's floors of
    the same layers."""
    seg, model_file = open_profiled(args.model, engine=args.engine, threads=args.threads)
    prof = profile_segmenter(seg, model_file=model_file, size=args.size, runs=args.runs)
    roof = roofline_of(seg, prof, precision=args.precision, remeasure_peaks=args.measure_peaks)
    other = "fp32" if args.precision == "int8" else "int8"
    alt = roofline(layer_traffic(model_of(seg), prof.size, other), roof.peaks, other, prof.size)
    labels = block_labels(model_of(seg), prof.size)
    return prof, roof, alt, labels


def block_rows(prof, roof, alt, labels) -> tuple[list[list[str]], dict[str, dict[str, float]]]:
    """Per block: measured time, time in layers, fp32 and int8 floors, and against the floor
    of the graph's own precision (``roof``): the ratio and the bandwidth-bound share."""
    acc: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for layer, other in zip(roof.layers, alt.layers, strict=True):
        block = block_of(layer.name, layer.kind, labels)
        acc[block]["layers"] += layer.ms or 0.0
        acc[block][floor_key(roof)] += layer.floor_ms
        acc[block][floor_key(alt)] += other.floor_ms
        acc[block]["mem"] += (layer.ms or 0.0) if layer.bound == "memory" else 0.0
    rows = []
    for block, ms in prof.blocks.items():
        a = acc.get(block, {})
        floor = a.get(floor_key(roof), 0.0)
        rows.append([
            block,
            f"{ms:.2f}",
            f"{a.get('layers', 0.0):.2f}",
            f"{a.get('floor32', 0.0):.3f}" if a else "-",
            f"{a.get('floor8', 0.0):.3f}" if a else "-",
            f"{ms / floor:.1f}x" if floor else "-",
            f"{a['mem'] / a['layers']:.0%}" if a and a.get("layers") else "-",
        ])  # fmt: skip
    for block, a in acc.items():  # layers the profiled graph runs elsewhere or not at all
        if block not in prof.blocks:
            rows.append([f"{block} (no ops of its own)", "-", f"{a['layers']:.2f}",
                         f"{a['floor32']:.3f}", f"{a['floor8']:.3f}", "-", "-"])  # fmt: skip
    return rows, acc


def floor_key(roof) -> str:
    """The per-block accumulator key of a roofline's floor (one per precision)."""
    return "floor8" if roof.precision == "int8" else "floor32"


def next_step(prof, roof, acc) -> str:
    """The largest gap between a block's measured time and its floor, and what kind it is."""
    gaps = {b: prof.blocks[b] - acc.get(b, {}).get(floor_key(roof), 0.0) for b in prof.blocks}
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


def report(args, prof, roof, alt, labels) -> str:
    """The Markdown results."""
    rows, acc = block_rows(prof, roof, alt, labels)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    network = sum(
        ms for b, ms in prof.blocks.items() if b not in ("decode", "preprocess", "postprocess")
    )
    flags = " --measure-peaks" if args.measure_peaks else ""
    if args.model != MODEL:
        flags += f" --model {args.model}"
    if args.precision != "fp32":
        flags += f" --precision {args.precision}"
    head = ["block", "ms", "in layers", "fp32 floor", "int8 floor", "ms/floor", "mem-bound"]
    lines = [
        "## How far the fast path is from its roofline floor",
        "",
        f"Generated {when} by `PYTHONPATH=src python benchmarks/fast_floor.py --size {args.size} "
        f"--threads {args.threads} --runs {args.runs} --engine {args.engine}{flags}` "
        f"({Path(str(args.model)).name}, engine "
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
        f"{roof.measured_ms:.2f} ms against an {roof.precision} floor of {roof.floor_ms:.2f} ms "
        f"({roof.measured_ms / roof.floor_ms:.1f}x the floor; the whole path "
        f"{prof.total_ms / roof.floor_ms:.1f}x). The {alt.precision} floor is "
        f"{alt.floor_ms:.2f} ms. {roof.summary()}.",
        "",
        f"Next step: {next_step(prof, roof, acc)}",
    ]
    own = floor_key(roof)
    beaten = [b for b, a in acc.items() if a.get("layers") and a["layers"] < a[own]]
    if beaten:
        lines += [
            "",
            f"Below the floor: {', '.join(beaten)}. The {roof.precision} peak is the best "
            "large matrix product this machine ran when its peaks were cached (int8: ONNX "
            "Runtime's MatMulInteger and OpenVINO's int8 product); a layer under its floor "
            "ran faster than that (its kernel suits its shape better, or the peaks are stale: "
            "--measure-peaks), so for those blocks the floor is an over-estimate.",
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
    parser.add_argument("--model", default=MODEL, help="zoo name or model file to profile")
    parser.add_argument(
        "--precision", choices=("fp32", "int8"), default="fp32", help="what the graph runs at"
    )
    parser.add_argument("--measure-peaks", action="store_true")
    args = parser.parse_args()
    text = report(args, *measure(args))
    OUT.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
