"""Engines benchmark: parity table (engine x size) and interleaved per-engine latency.

Exports deeplabv3_mnv2_dm05_os16 (random weights spread with ``diversify`` so that argmax
agreement means something) to ONNX and OpenVINO IR,
checks each engine against PyTorch at two real-shaped sizes, then times every engine on one
513x513 batch in interleaved rounds (same load for all), and compares end-to-end Segmenter
latency with logits out of the graph vs uint8 labels from the graph (--with-argmax). Writes
benchmarks/results/engines.md. Run:

    python benchmarks/engines.py [--model NAME] [--size 513] [--threads 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from atrous._atomic import atomic_write_text
from atrous.export.onnx import export_onnx
from atrous.export.openvino import export_openvino
from atrous.export.parity import check_parity, diversify, sample_batch, synthetic_image
from atrous.export.pipeline import parity_sizes
from atrous.models.zoo import default_card, get_model
from atrous.runtimes import Engine, TorchEngine, open_engine
from atrous.segmenter import Segmenter

OUT = Path(__file__).parent / "results" / "engines.md"


def interleaved(fns: dict[str, callable], rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """Time each function once per round, rotating the order, so all see the same load (ms)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def stats(values: list[float]) -> tuple[float, float]:
    """Median and 90th percentile."""
    return float(np.median(values)), float(np.percentile(values, 90))


def build_engines(model, card, size: int, threads: int, tmp: Path) -> dict[str, dict[str, Engine]]:
    """Exported files opened on every installed engine: {'logits': {...}, 'labels': {...}}."""
    engines: dict[str, dict[str, Engine]] = {"logits": {}, "labels": {}}
    for kind, argmax in (("logits", False), ("labels", True)):
        onnx_path = export_onnx(model, card, tmp / f"{kind}.onnx", with_argmax=argmax)
        xml_path = export_openvino(model, card, tmp / f"{kind}.xml", with_argmax=argmax)
        engines[kind]["onnxruntime"] = open_engine(onnx_path, "onnxruntime", threads)
        engines[kind]["openvino"] = open_engine(xml_path, "openvino", threads)
    return engines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deeplabv3_mnv2_dm05_os16")
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    card = default_card(args.model)
    card.preprocessing = card.preprocessing.model_copy(update={"size": args.size})
    model = diversify(get_model(args.model), card).eval()
    reference = TorchEngine(model, args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        engines = build_engines(model, card, args.size, args.threads, Path(tmp))
        sizes = parity_sizes(card)

        parity_rows = []
        for name, engine in engines["logits"].items():
            for row in check_parity(reference, engine, card, sizes).rows:
                parity_rows.append((name, "logits", row))
        for name, engine in engines["labels"].items():
            for row in check_parity(reference, engine, card, sizes, candidate_output="labels").rows:
                parity_rows.append((name, "labels (--with-argmax)", row))

        batch = sample_batch(card, (args.size, args.size))
        latency_engines: dict[str, Engine] = {
            "torch eager": reference,
            "torch eager channels_last": TorchEngine(model, args.threads, channels_last=True),
            **engines["logits"],
        }
        latency = interleaved(
            {n: (lambda e=e: e.run(batch)) for n, e in latency_engines.items()}, args.rounds
        )

        # end to end: a 500x375 photo -> card preprocessing (longest side 513) -> mask 500x375
        image = synthetic_image(375, 500, seed=7)
        segmenters = {}
        for name in ("onnxruntime", "openvino"):
            for kind in ("logits", "labels"):
                out_card = card.model_copy(update={"output": kind})
                segmenters[f"{name} {kind}"] = Segmenter(engines[kind][name], out_card)
        end_to_end = interleaved(
            {n: (lambda s=s: s.predict(image)) for n, s in segmenters.items()}, args.rounds
        )
        masks = {n: s.predict(image).mask for n, s in segmenters.items()}
    write_report(args, parity_rows, latency, end_to_end, masks)


def write_report(args, parity_rows, latency, end_to_end, masks) -> None:
    """benchmarks/results/engines.md with the three tables and the run's conditions."""
    import onnxruntime
    import openvino

    lines = [
        "# Engines: parity and latency",
        "",
        f"Model `{args.model}` (random weights spread by `diversify` so labels vary), input "
        f"{args.size}x{args.size}, batch 1, {args.threads} threads, {args.rounds} interleaved "
        f"rounds after 3 warm-up runs. torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}, openvino {openvino.get_version()}, "
        f"{platform.processor() or platform.machine()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Load average at the end of the run: {os.getloadavg()[0]:.1f} (other processes "
        "compete for the cores when it exceeds the thread count; torch eager suffers most).",
        "Regenerate: `python benchmarks/engines.py`.",
        "",
        "## Parity against PyTorch (real-shaped synthetic images)",
        "",
        "| engine | output | size | max abs diff | argmax agreement | classes seen |",
        "|---|---|---|---|---|---|",
    ]
    for name, kind, r in parity_rows:
        diff = "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.2e}"
        lines.append(
            f"| {name} | {kind} | {r.size[0]}x{r.size[1]} | {diff} | {r.agreement:.4%} "
            f"| {r.classes_seen} |"
        )
    lines += [
        "",
        f"## Network latency at {args.size}x{args.size} (ms, `Engine.run`)",
        "",
        "| engine | median | p90 |",
        "|---|---|---|",
    ]
    for name, values in latency.items():
        med, p90 = stats(values)
        lines.append(f"| {name} | {med:.1f} | {p90:.1f} |")
    lines += [
        "",
        "## End to end: logits out vs argmax in the graph (--with-argmax)",
        "",
        "A 500x375 image through `Segmenter.predict` (resize to 513 longest side, pad, run, "
        "crop, resize to 500x375, argmax). Logits: bilinear resize of all class maps, then "
        "argmax. Labels: argmax at network size in the graph, nearest resize of the uint8 mask.",
        "",
        "| engine | output | median ms | p90 ms | mask agreement with logits path |",
        "|---|---|---|---|---|",
    ]
    for name, values in end_to_end.items():
        engine, kind = name.rsplit(" ", 1)
        med, p90 = stats(values)
        agree = float((masks[name] == masks[f"{engine} logits"]).mean())
        lines.append(f"| {engine} | {kind} | {med:.1f} | {p90:.1f} | {agree:.4%} |")
    faster = {
        e: stats(end_to_end[f"{e} labels"])[0] < stats(end_to_end[f"{e} logits"])[0]
        for e in ("onnxruntime", "openvino")
    }
    verdict = "labels (argmax in the graph)" if all(faster.values()) else "mixed or logits"
    lines += ["", f"Faster end to end on every engine: **{verdict}**.", ""]
    atomic_write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
