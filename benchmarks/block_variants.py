"""Block variants measured: bilinear vs nearest vs transposed-convolution upsampling, ReLU vs
ReLU6 vs hardswish, and ShuffleNetV2 vs MobileNetV2 at the same multiply-adds.

    PYTHONPATH=src python benchmarks/block_variants.py [--rounds 15] [--size 513]

Network only (a float 1x3xSxS batch in, full-resolution logits out, so the upsampling is
inside the timed graph), random weights, each model on ONNX Runtime fp32 (plain export) and in
PyTorch eager, at 1 and 2 threads. Every (model, engine, threads) is timed once per round, the
rounds interleaved, so a busy neighbour slows all of them alike; results are medians and ratios
to the first model of their group, from this one run. Multiply-adds (``atrous.cost``, transposed
convolutions included) are beside. Writes benchmarks/results/block_variants.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from atrous.bench.latency import cpu_model, cpu_times, stolen_percent  # noqa: E402
from atrous.config import ModelConfig  # noqa: E402
from atrous.cost import measure_cost  # noqa: E402
from atrous.export.onnx import export_onnx  # noqa: E402
from atrous.models import default_card  # noqa: E402
from atrous.models.deeplab import DeepLab  # noqa: E402
from atrous.runtimes import TorchEngine  # noqa: E402
from atrous.sources import load_engine  # noqa: E402

OUT = Path(__file__).parent / "results" / "block_variants.md"
DM05 = "deeplabv3_mnv2_dm05_os16"
SNV2 = "deeplabv3_shufflenetv2_x1_os16"
VARIANTS = {
    "bilinear, relu (default)": {},
    "nearest": {"upsampling": "nearest"},
    "transposed": {"upsampling": "transposed"},
    "relu6": {"activation": "relu6"},
    "hardswish": {"activation": "hardswish"},
}
# the same multiply-adds (1.30 G at 513): ShuffleNetV2 1.0x and MobileNetV2 x0.65, pooling heads
SAME_MACS = {
    "MobileNetV2 x0.65 (divisor 1), pooling head": {
        "backbone": "mobilenet_v2",
        "width_mult": 0.65,
        "channel_divisor": 1,
        "head": "pooling",
    },
    "ShuffleNetV2 1.0x, pooling head": {"backbone": "shufflenet_v2_x1_0", "head": "pooling"},
}


def groups() -> dict[str, dict[str, ModelConfig]]:
    """Group title -> {row label -> config}; the first row of a group is its baseline."""
    out: dict[str, dict[str, ModelConfig]] = {}
    for zoo in (DM05, SNV2):
        base = default_card(zoo).model
        out[f"{zoo}: block variants"] = {
            label: base.model_copy(update=fields) for label, fields in VARIANTS.items()
        }
    out["same multiply-adds: ShuffleNetV2 vs MobileNetV2"] = {
        label: ModelConfig(**fields) for label, fields in SAME_MACS.items()
    }
    return out


def runners(config: ModelConfig, folder: Path, threads: list[int]) -> dict[tuple[str, int], object]:
    """(engine, threads) -> an Engine running ``config``'s model (random weights, seed 0)."""
    torch.manual_seed(0)
    model = DeepLab(ModelConfig.model_validate(config.model_dump())).eval()
    card = default_card(DM05).model_copy(update={"model": model.config})
    path = export_onnx(model, card, folder / f"{abs(hash(config.model_dump_json()))}.onnx")
    out: dict[tuple[str, int], object] = {}
    for t in threads:
        out["onnxruntime", t] = load_engine(path, "onnxruntime", t)[0]
        out["torch", t] = TorchEngine(model, t)
    return out


def measure(args: argparse.Namespace) -> tuple[dict, dict, float]:
    """Median ms per (group, label, engine, threads), multiply-adds per (group, label), steal %."""
    batch = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size), np.float32)
    macs, engines = {}, {}
    with tempfile.TemporaryDirectory(prefix="atrous-variants-") as tmp:
        for title, rows in groups().items():
            for label, config in rows.items():
                macs[title, label] = measure_cost(DeepLab(config), (args.size, args.size)).macs
                for key, engine in runners(config, Path(tmp), args.threads).items():
                    engines[(title, label, *key)] = engine
        for engine in engines.values():
            for _ in range(2):
                engine.run(batch)
        times: dict[tuple, list[float]] = {k: [] for k in engines}
        before = cpu_times()
        for _ in range(args.rounds):
            for key, engine in engines.items():
                start = time.perf_counter()
                engine.run(batch)
                times[key].append((time.perf_counter() - start) * 1e3)
        steal = stolen_percent(before, cpu_times())
    return {k: statistics.median(v) for k, v in times.items()}, macs, steal


def report(args: argparse.Namespace, ms: dict, macs: dict, steal: float) -> str:
    """The markdown page: one table per group, ms and ratio per engine x threads."""
    cols = [(e, t) for e in ("onnxruntime", "torch") for t in args.threads]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"PYTHONPATH=src python benchmarks/block_variants.py --rounds {args.rounds}"
    lines = [
        f"# Block variants ({args.size}x{args.size}, fp32, network only)",
        "",
        f"Generated {when} by `{command}` ({args.rounds} interleaved rounds; {cpu_model()}; "
        f"CPU time stolen by the hypervisor during the timed rounds: {steal:.1f}%). Random "
        "weights; logits at full resolution, so the upsampling is timed. Medians in ms, and in "
        "brackets the ratio to the group's first row in the same run. The activation variants "
        "change the head, decoder and aux head only (the backbones keep their own: ReLU6 in "
        "MobileNetV2, ReLU in ShuffleNetV2). Transposed: a depthwise ConvTranspose2d "
        "(kernel 2x the factor) initialised to bilinear.",
        "",
    ]
    head = " | ".join(f"{e} {t}T" for e, t in cols)
    for title in dict.fromkeys(k[0] for k in macs):
        labels = [k[1] for k in macs if k[0] == title]
        lines += [f"## {title}", "", f"| model | GMACs | {head} |", "|---" * (2 + len(cols)) + "|"]
        for label in labels:
            cells = []
            for e, t in cols:
                value, base = ms[title, label, e, t], ms[title, labels[0], e, t]
                cells.append(f"{value:.1f} ({value / base:.2f})")
            lines.append(f"| {label} | {macs[title, label] / 1e9:.3f} | {' | '.join(cells)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    ms, macs, steal = measure(args)
    text = report(args, ms, macs, steal)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
