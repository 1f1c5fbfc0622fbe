"""The seeds' mobile-efficiency advice, measured: one table per claim, same-run ratios.

    PYTHONPATH=src python benchmarks/seed_claims.py [--size 257] [--rounds 7] [--full]

Every model is built from existing zoo entries and model options (random weights, 21 classes),
exported to ONNX and run network-only (a float 1x3xSxS batch in, full-resolution logits out) on
ONNX Runtime at 2 threads, the engines atrous ships. Within a claim the models are timed once per
round, the rounds interleaved, so a busy neighbour slows all of them alike, and each model's
best round is kept (the least disturbed one on a shared machine): compare the ratios, not the
milliseconds. The default is reduced (257 px, 7 rounds, a few minutes); ``--full`` runs
513 px and 15 rounds. Multiply-adds from ``atrous.cost``; bytes moved and roofline floors from
``atrous.bench.roofline`` against the cached peaks (``atrous profile MODEL --measure-peaks``).
Each table ends with a verdict: confirmed / refuted / depends. Writes
benchmarks/results/seed_claims.md and seed_claims_scatter.png.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _claims import CLAIMS, Claim  # noqa: E402
from atrous.bench.latency import cpu_model  # noqa: E402
from atrous.bench.peaks import load_peaks  # noqa: E402
from atrous.bench.roofline import layer_traffic, roofline  # noqa: E402
from atrous.config import ModelConfig  # noqa: E402
from atrous.cost import measure_cost  # noqa: E402
from atrous.export.onnx import export_onnx  # noqa: E402
from atrous.models import default_card  # noqa: E402
from atrous.models.deeplab import DeepLab  # noqa: E402
from atrous.quantize.ptq import quantize_onnx  # noqa: E402
from atrous.sources import load_engine  # noqa: E402

OUT = Path(__file__).parent / "results" / "seed_claims.md"
SCATTER = OUT.with_name("seed_claims_scatter.png")
THREADS = 2


def undilated(model: nn.Module) -> nn.Module:
    """The same model with every dilated convolution made undilated (padding kept 'same'):
    identical shapes, weights and multiply-adds, no holes."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and max(module.dilation) > 1:
            module.dilation = (1, 1)
            module.padding = tuple(k // 2 for k in module.kernel_size)
    return model


def build(config: ModelConfig, transform: str | None) -> nn.Module:
    """A random-weight model of ``config`` (seed 0), transformed when asked."""
    torch.manual_seed(0)
    model = DeepLab(ModelConfig.model_validate(config.model_dump())).eval()
    return undilated(model) if transform == "undilated" else model


def engine_for(model: nn.Module, config: ModelConfig, precision: str, folder: Path, size: int):
    """An ONNX Runtime engine of the model at ``precision`` (int8: static QDQ calibrated on 4
    random normalised batches at ``size``: the speed, not the accuracy, is measured)."""
    card = default_card("deeplabv3_mnv2_dm05_os16").model_copy(update={"model": config})
    path = export_onnx(model, card, folder / f"m{len(list(folder.iterdir()))}.onnx")
    if precision == "int8":
        rng = np.random.default_rng(1)
        batches = [rng.standard_normal((1, 3, size, size), np.float32) for _ in range(4)]
        path = quantize_onnx(path, batches, path.with_suffix(".int8.onnx"), num=4, card=card)
    return load_engine(path, "onnxruntime", THREADS)[0]


def _side(code: int | None, size: int) -> int:
    """A row's side: the run's, or a code relative to it (-2: half, -8: the multiple of 8
    below, -9: one pixel more than that)."""
    if code is None:
        return size
    if code == -2:
        return (size + 1) // 2
    return size // 8 * 8 + (1 if code == -9 else 0)


def time_rows(claim: Claim, size: int, rounds: int, folder: Path, peaks) -> list[dict]:
    """Median ms per row of one claim (rounds interleaved), with MACs, bytes and floor."""
    rows = []
    for row in claim.rows:
        side = _side(row.size, size)
        model = build(row.config, row.transform)
        traffic = roofline(layer_traffic(model, (side, side), row.precision), peaks, row.precision)
        rows.append({
            "row": row,
            "side": side,
            "engine": engine_for(model, row.config, row.precision, folder, side),
            "batch": np.random.default_rng(0).standard_normal((1, 3, side, side), np.float32),
            "macs": measure_cost(model, (side, side)).macs,
            "bytes": sum(layer.bytes for layer in traffic.layers),
            "floor": traffic.floor_ms,
            "times": [],
        })  # fmt: skip
    for r in rows:
        r["engine"].run(r["batch"])  # warm-up
    for _ in range(rounds):
        for r in rows:
            start = time.perf_counter()
            r["engine"].run(r["batch"])
            r["times"].append((time.perf_counter() - start) * 1e3)
    for r in rows:
        r["ms"] = min(r["times"])  # the least disturbed round: the machine is shared
        del r["engine"]
    return rows


def table(claim: Claim, rows: list[dict]) -> list[str]:
    """Markdown: the claim, its rows with ratios to the first row, and the verdict."""
    base = rows[0]
    out = [f"### {claim.title}", "", claim.claim, ""]
    out += ["| model | size | GMACs | MB moved | floor ms | ms | time ratio | MAC ratio |"]
    out += ["|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        out.append(
            f"| {r['row'].label} | {r['side']} | {r['macs'] / 1e9:.3f} | {r['bytes'] / 1e6:.1f} "
            f"| {r['floor']:.2f} | {r['ms']:.2f} | {r['ms'] / base['ms']:.2f} "
            f"| {r['macs'] / base['macs']:.2f} |"
        )
    out += ["", f"**Verdict: {claim.verdict(rows)}**", ""]
    return out


def correlations(rows: list[dict]) -> tuple[list[str], str]:
    """Pearson r of measured time with MACs, bytes and floor (log scale) and the scatter plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ms = np.log([r["ms"] for r in rows])
    lines, best = [], ("", -2.0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (key, label) in zip(
        axes,
        [("macs", "GMACs"), ("bytes", "MB moved"), ("floor", "roofline floor ms")],
        strict=True,
    ):
        x = np.array([r[key] for r in rows], float) / (
            1e9 if key == "macs" else 1e6 if key == "bytes" else 1
        )
        r_value = float(np.corrcoef(np.log(x), ms)[0, 1])
        lines.append(f"- log time vs log {label}: Pearson r = {r_value:.3f}")
        best = max(best, (label, r_value), key=lambda b: b[1])
        ax.scatter(x, [r["ms"] for r in rows])
        for xi, r in zip(x, rows, strict=True):
            short = r["row"].label.split(" ")[0].replace("deeplabv3", "v3").replace("_os16", "")
            ax.annotate(short, (xi, r["ms"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.margins(x=0.25)
        ax.set_xlabel(label)
        ax.set_ylabel("measured ms (ONNX Runtime fp32)")
        ax.set_title(f"r = {r_value:.3f}")
    fig.tight_layout()
    fig.savefig(SCATTER, dpi=100)
    plt.close(fig)
    return lines, best[0]


def caution(load: float) -> list[str]:
    """A paragraph for a run on a machine busier than its cores, else nothing."""
    cores = len(os.sched_getaffinity(0))
    if load <= cores:
        return []
    return [
        f"**Caution: the load ({load:.1f}) exceeded the {cores} cores.** Each process got a "
        "fraction of a core; a run of a few milliseconds can fit in one time slice while a "
        "run of tens of milliseconds is preempted many times, so ratios between rows of very "
        "different length (the halving claim above all) are biased towards the short row, and "
        "the floors come from peaks measured under load. Rows of similar length (the block "
        "variants) compare more fairly, still within wide noise; re-run on a quiet machine "
        "before trusting any verdict.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=257)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--full", action="store_true", help="513 px, 15 rounds")
    parser.add_argument("--only", nargs="*", help="claim keys to run (default: all)")
    args = parser.parse_args()
    if args.full:
        args.size, args.rounds = 513, 15
    peaks = load_peaks(THREADS)
    load_before = os.getloadavg()[0]
    sections: list[str] = []
    with tempfile.TemporaryDirectory(prefix="atrous-claims-") as tmp:
        for key, claim in CLAIMS.items():
            if args.only and key not in args.only:
                continue
            rows = time_rows(claim, args.size, args.rounds, Path(tmp), peaks)
            sections += table(claim, rows)
            if key == "flops":
                lines, best = correlations(rows)
                note = f"Best predictor here: {best}. Scatter: `{SCATTER.name}`."
                sections += ["Correlation across the models (log-log):", "", *lines, "", note, ""]
            print("\n".join(sections[-12:]), flush=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "PYTHONPATH=src python benchmarks/seed_claims.py" + (" --full" if args.full else "")
    head = [
        "## The seeds' efficiency advice, measured",
        "",
        f"Generated {when} by `{command}` ({args.size} px unless a row says otherwise, "
        f"best of {args.rounds} interleaved rounds, ONNX Runtime at {THREADS} threads, network "
        f"only with full-resolution logits; {cpu_model()}; 1-minute load {load_before:.1f} at "
        f"the start, {os.getloadavg()[0]:.1f} at the end). Random weights, 21 classes. Ratios "
        "are to the first row of each table, from the same run. Floors: "
        f"{peaks.describe()}.",
        "",
    ]
    OUT.write_text("\n".join(head + caution(load_before) + sections).rstrip() + "\n", "utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
