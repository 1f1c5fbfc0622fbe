"""Seed claim "on phones, try ncnn": each mobile backbone on the four engines atrous ships.

    PYTHONPATH=src python benchmarks/engines_by_backbone.py [--size 256] [--runs 20]

Each zoo model (random weights) is exported fp32 by `atrous export` to ONNX, OpenVINO IR,
TFLite and ncnn (each export passes its parity check) and the four files are timed network-only
on their own engine at 2 threads, one engine after the other (interleaving them in one
process let the idle runtimes' spinning thread pools take the cores from the running one).
Writes benchmarks/results/engines_by_backbone.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from atrous.bench.latency import benchmark, cpu_model
from atrous.export.pipeline import export_model
from atrous.segmenter import Segmenter

OUT = Path(__file__).parent / "results" / "engines_by_backbone.md"
MODELS = [
    "deeplabv3_mnv2_dm05_os16",
    "deeplabv3_shufflenetv2_x1_os16",
    "lraspp_mobilenet_v3_large_tv",
]
FORMATS = {  # engine -> (export format, file suffix)
    "onnxruntime": ("onnx", ".onnx"),
    "openvino": ("openvino", ".xml"),
    "litert": ("tflite", ".tflite"),
    "ncnn": ("ncnn", ".param"),
}
THREADS = 2


def timings(name: str, size: int, runs: int, folder: Path) -> dict[str, float]:
    """Median network ms of ``name`` on each engine, exported at ``size``."""
    times = {}
    for engine, (fmt, suffix) in FORMATS.items():
        out = folder / f"{name}{suffix}"
        path = export_model(name, fmt, out, size=(size, size), threads=THREADS).path
        target = Segmenter.from_file(path, engine=engine, threads=THREADS)
        # one engine at a time: interleaved in one process, the idle runtimes' spinning thread
        # pools (ONNX Runtime, OpenVINO, ncnn's OpenMP) took the cores from the one running
        result = benchmark(
            [target], sizes=(size,), threads=(THREADS,), runs=runs, warmup=3, end_to_end=False
        )
        record = result.records[0]
        assert record.input_size == [size, size], (engine, record.input_size)
        times[engine] = record.median_ms
    return times


def verdict(rows: dict[str, dict[str, float]]) -> str:
    """Which engine is fastest per backbone, and ncnn's place."""
    wins = {name: min(times, key=times.get) for name, times in rows.items()}
    ncnn_best = [name for name, engine in wins.items() if engine == "ncnn"]
    if len(ncnn_best) == len(rows):
        return "confirmed: ncnn fastest for every backbone"
    if ncnn_best:
        return f"depends: ncnn fastest for {', '.join(ncnn_best)} only"
    return (
        "refuted on this x86 CPU: ncnn fastest for no backbone ("
        + ", ".join(f"{n}: {e}" for n, e in wins.items())
        + "); the claim is about ARM phones, which this machine is not"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)  # a multiple of 16: no padding
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = {name: timings(name, args.size, args.runs, Path(tmp)) for name in MODELS}
    engines = list(FORMATS)
    lines = [
        "## Engines by backbone: ncnn vs ONNX Runtime vs OpenVINO vs LiteRT",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `PYTHONPATH=src python "
        f"benchmarks/engines_by_backbone.py --size {args.size} --runs {args.runs}` "
        f"({cpu_model()}, {THREADS} threads, fp32, network only, {args.size}x{args.size}, "
        f"random weights; median of {args.runs} runs per engine, engines one after the other; "
        f"1-minute load {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end). "
        "Ratios are to ONNX Runtime in the same run.",
        "",
        "| model | "
        + " | ".join(f"{e} ms" for e in engines)
        + " | "
        + " | ".join(f"{e} / onnxruntime" for e in engines[1:])
        + " |",
        "|---|" + "---:|" * (2 * len(engines) - 1),
    ]
    for name, times in rows.items():
        base = times["onnxruntime"]
        cells = [f"{times[e]:.2f}" for e in engines] + [
            f"{times[e] / base:.2f}x" for e in engines[1:]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"**Verdict: {verdict(rows)}**", ""]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
