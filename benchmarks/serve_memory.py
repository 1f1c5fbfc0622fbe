"""Memory benchmark of ``atrous serve``: peak server memory under load and for one large image,
with the queue limit's effect on latency and 503s.

Starts the real CLI server in a subprocess on loopback, sends C concurrent clients x R requests of
small PNG images, and writes benchmarks/results/serve.md (throughput by configuration and client
count: benchmarks/serve_load.py). Run:

    python benchmarks/serve_memory.py [--model MODEL] [--clients 50] [--requests 20]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from atrous._atomic import atomic_write_text
from atrous.checkpoint import save_checkpoint
from atrous.models.zoo import default_card, get_model
from atrous.serve.loadtest import run_load, status_counts

RESULTS = Path(__file__).parent / "results" / "serve.md"
DEFAULT_MODEL = "deeplabv3_mnv2_dm05_os16"


def small_model(folder: Path, size: int) -> Path:
    """The dm0.5 MobileNetV2 zoo model (random weights) with a ``size``-pixel input."""
    card = default_card(DEFAULT_MODEL)
    card = card.model_copy(
        update={"preprocessing": card.preprocessing.model_copy(update={"size": size})}
    )
    return save_checkpoint(folder / "serve_bench.pt", get_model(DEFAULT_MODEL).eval(), card)


def images(count: int, seed: int = 0) -> list[bytes]:
    """Small smooth PNG images of a few sizes around 96 x 72."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        h, w = 64 + 8 * (i % 4), 96 - 8 * (i % 3)
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(small).resize((w, h), Image.BILINEAR).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident memory (VmRSS) or its peak (VmHWM) of a process, in MiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MemorySampler(threading.Thread):
    """Samples a process's RSS every ``interval`` seconds; keeps the largest."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(self.interval)


@contextmanager
def running_server(model: Path, options: list[str]) -> Iterator[tuple[str, int]]:
    """Start ``atrous serve MODEL OPTIONS`` on a free port; yield (base URL, pid) once /healthz
    answers."""
    port = free_port()
    command = [sys.executable, "-m", "atrous", "serve", str(model), "--port", str(port), *options]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {server.stderr.read().decode()[-500:]}")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not start within 120 s")
            time.sleep(0.2)
        yield base, server.pid
    finally:
        server.terminate()
        server.wait(30)


def measure(model: Path, args: argparse.Namespace, queue: int, payloads: list[bytes]) -> dict:
    """Run the load against a server with ``queue`` after a warm-up; return its figures."""
    options = ["--threads", str(args.threads), "--replicas", "1", "--queue", str(queue)]
    with running_server(model, options) as (base, pid):
        for data in payloads:  # warm-up
            httpx.post(base + "/v1/segment?format=png", content=data, timeout=60)
        idle = rss_mb(pid)
        sampler = MemorySampler(pid)
        sampler.start()
        report = run_load(base + "/v1/segment?format=png", payloads, args.clients, args.requests)
        sampler.stop.set()
        sampler.join()
        peak = max(sampler.peak, rss_mb(pid, "VmHWM"))
    summary = report.summary()
    summary.update(queue=queue, idle_rss_mib=idle, peak_rss_mib=peak)
    return summary


def measure_large(model: Path, args: argparse.Namespace, width: int, height: int) -> dict:
    """Latency and peak server RSS of one large image (logits are upsampled to full size)."""
    small = np.random.default_rng(1).integers(0, 256, (9, 16, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BILINEAR).save(buffer, "JPEG")
    with running_server(model, ["--threads", str(args.threads), "--queue", "1"]) as (base, pid):
        httpx.post(base + "/v1/segment?format=png", content=images(1)[0], timeout=60)
        idle = rss_mb(pid)
        start = time.perf_counter()
        response = httpx.post(
            base + "/v1/segment?format=png", content=buffer.getvalue(), timeout=300
        )
        seconds = time.perf_counter() - start
        peak = rss_mb(pid, "VmHWM")
    return {
        "image": f"{width}x{height}",
        "status": response.status_code,
        "latency_ms": seconds * 1e3,
        "idle_rss_mib": idle,
        "peak_rss_mib": peak,
    }


def markdown(rows: list[dict], large: dict | None, args: argparse.Namespace) -> str:
    """The results page."""
    lines = [
        "# Serving under load",
        "",
        f"`atrous serve` ({args.model_label}, input {args.size} px longest side, torch engine, "
        f"--threads {args.threads}) on loopback; {args.clients} concurrent clients x "
        f"{args.requests} requests of small PNG images (64-88 x 80-96 px), `format=png`. "
        f"Machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores shared by client and server; "
        f"1-minute load average before the run {args.load_before:.1f}.",
        "",
        "| queue | sent | 200 | 503 | other | unanswered | p50 ms | p90 ms | p99 ms | "
        "throughput req/s | idle RSS MiB | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ok, busy, other = status_counts(r)
        lines.append(
            f"| {r['queue']} | {r['sent']} | {ok} | {busy} | "
            f"{other} | {r['failures']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['throughput_rps']:.1f} | {r['idle_rss_mib']:.0f} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
    if large:
        lines += [
            "",
            f"One {large['image']} JPEG (status {large['status']}): {large['latency_ms']:.0f} ms, "
            f"server RSS {large['idle_rss_mib']:.0f} MiB idle -> {large['peak_rss_mib']:.0f} MiB "
            "peak. The segmenter upsamples the logits to the full image size before the argmax "
            "(4 bytes x classes per pixel), which dominates the memory of large images; "
            "`--max-pixels` bounds it.",
        ]
    lines += [
        "",
        "Latency percentiles are of successful (200) requests, measured by the client from send "
        "to full response; they include waiting in the server's queue. Throughput counts "
        "successful requests per second of wall time. With a queue at least as deep as the "
        "number of clients every request is served; with a shallower queue the excess is "
        "refused at once with 503 + Retry-After, which bounds memory and latency. Peak RSS is "
        "the server process's resident memory high-water mark (VmHWM and 50 ms samples).",
        "",
        "Regenerate: `python benchmarks/serve_memory.py`.",
        "",
        "```json",
        json.dumps({"load": rows, "large_image": large}, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint or exported model (default: dm0.5 zoo)")
    parser.add_argument("--size", type=int, default=128, help="input size of the default model")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queues", default="64,16", help="queue limits to measure, comma list")
    parser.add_argument("--large", default="3840x2160", help="one large image WxH ('' to skip)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    payloads = images(8)
    args.load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else small_model(Path(tmp), args.size)
        args.model_label = args.model or f"{DEFAULT_MODEL}, random weights"
        rows = []
        for queue in (int(q) for q in args.queues.split(",") if q):
            row = measure(model, args, queue, payloads)
            print(json.dumps(row), flush=True)
            rows.append(row)
        large = None
        if args.large:
            width, height = (int(v) for v in args.large.lower().split("x"))
            large = measure_large(model, args, width, height)
            print(json.dumps(large), flush=True)
    atomic_write_text(args.out, markdown(rows, large, args))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
