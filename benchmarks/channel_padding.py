"""Channel padding on the int8 fast graph: the same model exported with its own channel counts
and with internal groups padded to multiples of 16, timed interleaved in one process.

    PYTHONPATH=src python benchmarks/channel_padding.py [--checkpoint demo/best.pt] [--rounds 150]

Network only (ONNX Runtime, 513x513 image, 2 threads), each graph fed the input its card asks
for; then the project's ONNX Runtime profile of both graphs, run back to back, and the largest
logit difference between them. Writes benchmarks/results/channel_padding.md.
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

sys.path.insert(0, str(Path(__file__).parent))
from atrous.bench.latency import cpu_model, cpu_times, stolen_percent  # noqa: E402
from atrous.bench.profile import profile_segmenter  # noqa: E402
from atrous.export.parity import synthetic_image  # noqa: E402
from atrous.fastpath import export_fast_int8  # noqa: E402
from atrous.models import default_card, get_model  # noqa: E402
from atrous.segmenter import Segmenter  # noqa: E402
from atrous.sources import load_engine  # noqa: E402
from fast_path import NAME, trained_at_21_classes  # noqa: E402

OUT = Path(__file__).parent / "results" / "channel_padding.md"
MULTIPLES = {"own channel counts": 1, "padded to multiples of 16 (default)": 16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    card = default_card(NAME)
    model = trained_at_21_classes(args.checkpoint) if args.checkpoint else get_model(NAME).eval()
    photos = [synthetic_image(s, s, seed=i) for i, s in enumerate([513, 257] * 8)]
    image = synthetic_image(513, 513, seed=99)
    with tempfile.TemporaryDirectory(prefix="atrous-pad-") as tmp:
        segs, batches, paths = {}, {}, {}
        for label, multiple in MULTIPLES.items():
            paths[label] = export_fast_int8(
                model, card, Path(tmp) / f"m{multiple}.onnx", photos, channel_multiple=multiple
            )
            engine, written = load_engine(paths[label], "onnxruntime", args.threads)
            segs[label] = Segmenter(engine, written)
            batches[label] = segs[label].preprocess([image])[0]
        logits = {k: s.engine.run(batches[k])[0] for k, s in segs.items()}
        diff = float(np.abs(np.subtract(*logits.values())).max())
        for label, seg in segs.items():
            for _ in range(5):
                seg.engine.run(batches[label])
        before = cpu_times()
        times: dict[str, list[float]] = {k: [] for k in segs}
        for _ in range(args.rounds):
            for label, seg in segs.items():
                start = time.perf_counter()
                seg.engine.run(batches[label])
                times[label].append((time.perf_counter() - start) * 1e3)
        steal = stolen_percent(before, cpu_times())
        profiles = {
            k: profile_segmenter(seg, model_file=paths[k], runs=60).top(10)
            for k, seg in segs.items()
        }

    base, padded = (statistics.median(v) for v in times.values())
    command = "PYTHONPATH=src python benchmarks/channel_padding.py"
    if args.checkpoint:
        command += f" --checkpoint {args.checkpoint}"
    lines = [
        "# Channel padding on the int8 fast graph (deeplabv3_mnv2_dm05_os16, 513x513)",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}` "
        f"({args.rounds} interleaved rounds, {args.threads} threads; {cpu_model()}; "
        f"CPU time stolen by the hypervisor during the timed rounds: {steal}%).",
        "",
        "| graph | network ms (median) | p25 | p75 |",
        "|---|---|---|---|",
    ]
    for label, v in times.items():
        q = statistics.quantiles(v, n=4)
        lines.append(f"| {label} | {statistics.median(v):.2f} | {q[0]:.2f} | {q[2]:.2f} |")
    lines += [
        "",
        f"padded / own = {padded / base:.3f}; largest logit difference between the two graphs: "
        f"{diff:.2g}",
        "",
        "ONNX Runtime profile (`atrous.bench.profile`), the ten most expensive nodes of each "
        "graph (ms per run, the two profiles run back to back; the graphs share node names, the "
        "padded one runs 80 channels where the other runs 72):",
        "",
    ]
    for label, top in profiles.items():
        lines += [f"**{label}**", "", "| node | op | ms |", "|---|---|---|"]
        lines += [f"| `{op.name}` | {op.op_type} | {op.ms:.3f} |" for op in top]
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
