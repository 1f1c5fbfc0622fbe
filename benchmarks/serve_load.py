"""Serving throughput of ``atrous serve`` by configuration: replicas x threads and micro-batching.

For each configuration (1 replica x 2 threads and 2 replicas x 1 thread one request at a time,
micro-batching with a 5 ms window, and the default: batches of what is queued), starts the real
CLI server on loopback on the fast int8 graph of deeplabv3_mnv2_dm05_os16 at 513 (random
weights, diversified so it predicts several classes), measures the engine alone (the network-
only ceiling at that configuration, in this process, no server running) and then loads the
server with 1, 4, 16 and 64 concurrent clients (:mod:`atrous.serve.loadtest`). Configurations
are interleaved round by round (``--rounds``).
Writes benchmarks/results/serve_load.md. Run:

    python benchmarks/serve_load.py [--duration 4] [--rounds 1] [--precision int8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from atrous._atomic import atomic_write_text  # noqa: E402
from atrous.bench.latency import cpu_model  # noqa: E402
from atrous.export.parity import diversify, synthetic_image  # noqa: E402
from atrous.fastpath import export_fast_int8, export_fast_onnx, fast_engine  # noqa: E402
from atrous.models.zoo import default_card, get_model  # noqa: E402
from atrous.serve.loadtest import (  # noqa: E402
    run_load,
    sample_images,
    single_image_line,
    table,
    target_line,
)
from atrous.sources import load_engine  # noqa: E402
from serve_memory import running_server  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_load.md"
MODEL = "deeplabv3_mnv2_dm05_os16"
# label, replicas, threads, extra `atrous serve` options
CONFIGS = [
    ("1 replica x 2 threads, one at a time", 1, 2, ["--max-batch", "1"]),
    ("2 replicas x 1 thread, one at a time", 2, 1, ["--max-batch", "1"]),
    ("1 x 2 threads, batches of 4 (5 ms window)", 1, 2, ["--batch-window-ms", "5"]),
    # the default: a batch takes what queued while the engine was busy, a lone client waits
    ("1 x 2 threads, batches of what is queued (default)", 1, 2, []),
]


def fast_graph(folder: Path, size: int, precision: str) -> Path:
    """The fast graph of the dm0.5 zoo model at ``size`` (int8 OpenVINO IR or fp32 ONNX)."""
    card = default_card(MODEL)
    card = card.model_copy(
        update={"preprocessing": card.preprocessing.model_copy(update={"size": size})}
    )
    model = diversify(get_model(MODEL).eval(), card)
    if precision == "fp32":
        return export_fast_onnx(model, card, folder / "fast.onnx")
    photos = [synthetic_image(size * 3 // 4, size, seed=i) for i in range(8)]
    return export_fast_int8(model, card, folder / "fast_int8.xml", photos, num=len(photos))


def engine_alone(path: Path, replicas: int, threads: int, image: np.ndarray, seconds: float):
    """Images per second ``replicas`` engines (``threads`` each) run side by side, network
    only, on one preprocessed image; and the median ms of one run."""
    from atrous.segmenter import Segmenter

    engines = [load_engine(path, fast_engine(path), threads) for _ in range(replicas)]
    batch, _ = Segmenter(*engines[0]).preprocess([image])
    times: list[float] = []
    lock = threading.Lock()

    def loop(engine) -> None:
        for _ in range(3):  # warm-up: the second run of a shape compiles a runner for it
            engine.run(batch)
        end = time.perf_counter() + seconds
        while (start := time.perf_counter()) < end:
            engine.run(batch)
            with lock:
                times.append(time.perf_counter() - start)

    workers = [threading.Thread(target=loop, args=(e,)) for e, _ in engines]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(times) / (time.perf_counter() - start), float(np.median(times)) * 1e3


def load_server(path: Path, config: tuple, payloads: list[bytes], args) -> dict:
    """Start the server for ``config``; the load rows at each client count and its workers."""
    label, replicas, threads, extra = config
    options = ["--engine", fast_engine(path), "--replicas", str(replicas), "--threads"]
    options += [str(threads), "--queue", "128", *extra]
    with running_server(path, options) as (base, _):
        url = base + "/v1/segment?format=png"
        run_load(url, payloads, 1, 3)  # warm-up: engines compile runners for repeated
        run_load(url, payloads, 16, 2)  # shapes (batch sizes) on their second sight
        rows = []
        for clients in args.clients:
            report = run_load(url, payloads, clients, 10_000, duration=args.duration)
            rows.append(report.summary())
            print(label, json.dumps(rows[-1]), flush=True)
        workers = httpx.get(base + "/healthz", timeout=10).json()["workers"]
    return {"label": label, "workers": workers, "rows": rows, "command": " ".join(options)}


def summary_table(results: list[dict]) -> str:
    """One line per configuration and round: ceiling, 1 and 16 clients, ratio, tail."""
    lines = [
        "| configuration | engine alone req/s (ms per image) | 1 client req/s | "
        "16 clients req/s | 16 / 1 | p50 / p99 ms at 16 | p99 / p50 | mean batch | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        one = next(x for x in r["rows"] if x["clients"] == 1)
        sixteen = next(x for x in r["rows"] if x["clients"] == 16)
        met = target_line(r["rows"]).rsplit("-> ", 1)[-1]
        lines.append(
            f"| {r['label']} | {r['alone_rps']:.1f} ({r['alone_ms']:.1f}) | "
            f"{one['throughput_rps']:.1f} | {sixteen['throughput_rps']:.1f} | "
            f"{sixteen['throughput_rps'] / one['throughput_rps']:.2f}x | "
            f"{sixteen['p50_ms']:.0f} / {sixteen['p99_ms']:.0f} | "
            f"{sixteen['p99_ms'] / sixteen['p50_ms']:.2f} | "
            f"{r['workers']['mean_batch']:.2f} | {met} |"
        )
    return "\n".join(lines)


def markdown(results: list[dict], args, loads: tuple[float, float]) -> str:
    """The results page: conditions, summary, then each configuration's rows and verdict."""
    head = [
        "# Serving throughput by configuration",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{args.command}`. "
        f"`atrous serve` on the fast {args.precision} graph of {MODEL} at {args.size} "
        "(random weights, diversified), loaded over loopback by `atrous.serve.loadtest` "
        f"({args.image} PNG uploads, `format=png`, {args.duration:g} s per client count, "
        "`--queue 128`). "
        f"CPU: {cpu_model()}, {os.cpu_count()} cores shared by the server, the load client "
        f"and other work; 1-minute load average {loads[0]:.1f} at the start, {loads[1]:.1f} at "
        "the end. The engine-alone column runs the network only (preprocessed input, replicas "
        "side by side in this process, no server): the ceiling serving could reach.",
        "",
        summary_table(results),
        "",
    ]
    for r in results:
        replicas, threads = r["workers"]["replicas"], r["workers"]["threads"]
        head += [
            f"## {r['label']} (round {r['round']}; `atrous serve MODEL {r['command']}`)",
            "",
            table(r["rows"]),
            "",
            single_image_line(r["rows"], replicas, threads),
            "",
            target_line(r["rows"]),
            "",
        ]
    head += ["```json", json.dumps(results, indent=1), "```", ""]
    return "\n".join(head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=513, help="network input size")
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per client count")
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--rounds", type=int, default=1, help="rounds over the configurations")
    parser.add_argument("--image", default="512x384", help="WxH of the uploads")
    parser.add_argument("--graph", type=Path, help="a fast graph built before (else built now)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.command = "python " + " ".join(sys.argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    width, height = (int(v) for v in args.image.split("x"))
    payloads = sample_images(8, height, width)
    start_load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = args.graph or fast_graph(Path(tmp), args.size, args.precision)
        image = synthetic_image(height, width, seed=99)
        for round_ in range(1, args.rounds + 1):
            for config in CONFIGS:
                alone_rps, alone_ms = engine_alone(path, config[1], config[2], image, 3.0)
                result = load_server(path, config, payloads, args)
                result.update(round=round_, alone_rps=alone_rps, alone_ms=alone_ms)
                results.append(result)
    atomic_write_text(args.out, markdown(results, args, (start_load, os.getloadavg()[0])))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
