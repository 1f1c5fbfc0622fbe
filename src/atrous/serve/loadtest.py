"""A bounded load generator for the service: N concurrent clients x M requests each.

Used by the load tests, ``benchmarks/serve_load.py`` and ``python -m atrous.serve.loadtest``;
every request is accounted for, as a status code or as a transport failure (a request left
unanswered). A 503 carrying Retry-After is retried after the advised delay (bounded), as a
well-behaved client would, so the figures show the rate the server sustains rather than how
fast it refuses.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np

__all__ = [
    "LoadReport",
    "run_load",
    "retry_delay",
    "sample_images",
    "server_timing",
    "single_image_line",
    "status_counts",
    "target_line",
]

RETRY_JITTER = 0.2  # retries wait up to 20% past the advised delay, so clients do not re-sync
TARGET_SPEEDUP = 1.5  # 16 clients sustain at least this times the req/s of 1 client
TARGET_TAIL = 3.0  # ... with p99 at most this times p50


@dataclass
class LoadReport:
    """Outcome of a load run: status counts, latencies (ms), retries, failures and wall time.

    A request's latency runs from its first attempt to its final response, retries included.
    ``network_ms``: the network time the server reports (Server-Timing ``infer``) per success.
    """

    clients: int
    requests_per_client: int
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    ok_latencies_ms: list[float] = field(default_factory=list)
    network_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    invalid: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        """Requests the clients completed or gave up on (retries not counted)."""
        return self.answered + len(self.failures)

    @property
    def answered(self) -> int:
        """Requests that got a final HTTP response, whatever its status."""
        return sum(self.statuses.values())

    def percentiles(self, qs: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
        """Latency percentiles (ms) of the successful (200) requests."""
        if not self.ok_latencies_ms:
            return {f"p{q:g}": float("nan") for q in qs}
        values = np.percentile(self.ok_latencies_ms, qs)
        return {f"p{q:g}": float(v) for q, v in zip(qs, values, strict=True)}

    def summary(self) -> dict[str, Any]:
        """Counts, latency percentiles, retries and throughput (completed requests per second)."""
        ok = self.statuses.get(200, 0)
        return {
            "clients": self.clients,
            "requests_per_client": self.requests_per_client,
            "sent": self.sent,
            "answered": self.answered,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "retries": self.retries,
            "failures": len(self.failures),
            "invalid": self.invalid,
            "seconds": self.seconds,
            "throughput_rps": ok / self.seconds if self.seconds else 0.0,
            **{f"{k}_ms": v for k, v in self.percentiles().items()},
            "network_p50_ms": float(np.median(self.network_ms)) if self.network_ms else None,
        }


def retry_delay(header: str | None, max_wait: float) -> float | None:
    """Seconds to wait as a Retry-After header advises (seconds or HTTP date), at most
    ``max_wait``; None when there is no usable header (the 503 is then final)."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), max_wait)


def server_timing(header: str | None, name: str) -> float | None:
    """The duration (ms) of metric ``name`` in a Server-Timing header, None if absent."""
    for part in (header or "").split(","):
        metric, *params = (p.strip() for p in part.split(";"))
        if metric != name:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key == "dur":
                try:
                    return float(value)
                except ValueError:
                    return None
    return None


async def _post(http, url: str, data: bytes, retries: int, max_wait: float, report: LoadReport):
    """POST ``data``, retrying a 503 with Retry-After up to ``retries`` times."""
    attempt = 0
    while True:
        response = await http.post(url, content=data)
        delay = None
        if response.status_code == 503 and attempt < retries:
            delay = retry_delay(response.headers.get("retry-after"), max_wait)
        if delay is None:
            return response
        attempt += 1
        report.retries += 1
        await asyncio.sleep(delay * (1 + RETRY_JITTER * random.random()))


async def _client(
    http,
    url: str,
    payloads: list[bytes],
    index: int,
    count: int,
    report: LoadReport,
    options: dict[str, Any],
) -> None:
    validate, deadline = options["validate"], options["deadline"]
    for i in range(count):
        if deadline is not None and time.perf_counter() >= deadline:
            return
        which = (index + i) % len(payloads)
        start = time.perf_counter()
        try:
            response = await _post(
                http, url, payloads[which], options["retries"], options["max_wait"], report
            )
        except Exception as exc:  # every transport failure is a request left unanswered
            report.failures.append(f"{type(exc).__name__}: {exc}")
            continue
        elapsed = (time.perf_counter() - start) * 1e3
        report.statuses[response.status_code] += 1
        report.latencies_ms.append(elapsed)
        if response.status_code == 200:
            report.ok_latencies_ms.append(elapsed)
            network = server_timing(response.headers.get("server-timing"), "infer")
            if network is not None:
                report.network_ms.append(network)
            if validate is not None and not validate(which, response):
                report.invalid += 1


async def _run(
    url: str,
    payloads: list[bytes],
    clients: int,
    requests_per_client: int,
    timeout: float,
    options: dict[str, Any],
) -> LoadReport:
    import httpx

    report = LoadReport(clients, requests_per_client)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        start = time.perf_counter()
        if options["duration"] is not None:
            options = {**options, "deadline": start + options["duration"]}
        await asyncio.gather(
            *(
                _client(http, url, payloads, c, requests_per_client, report, options)
                for c in range(clients)
            )
        )
        report.seconds = time.perf_counter() - start
    return report


def run_load(
    url: str,
    payloads: list[bytes],
    clients: int = 50,
    requests_per_client: int = 20,
    timeout: float = 120.0,
    validate: Callable[[int, Any], bool] | None = None,
    retries: int = 5,
    max_wait: float = 10.0,
    duration: float | None = None,
) -> LoadReport:
    """POST ``payloads`` (round robin) to ``url`` from ``clients`` concurrent clients.

    ``validate(payload_index, response)`` may check each successful response's content. A 503
    with Retry-After is retried up to ``retries`` times after the advised delay (at most
    ``max_wait`` s); ``retries=0`` counts every 503. ``duration`` (s) stops each client from
    starting a new request once it has passed, whatever ``requests_per_client`` says.
    """
    if not payloads:
        raise ValueError("run_load needs at least one payload")
    if retries < 0 or not max_wait >= 0:
        raise ValueError(f"retries and max_wait must be >= 0, got {retries} and {max_wait}")
    options = {
        "validate": validate,
        "retries": retries,
        "max_wait": max_wait,
        "duration": duration,
        "deadline": None,
    }
    return asyncio.run(_run(url, payloads, clients, requests_per_client, timeout, options))


def sample_images(count: int, height: int, width: int, seed: int = 0) -> list[bytes]:
    """``count`` smooth random PNG images of ``height`` x ``width`` (a random network then
    predicts several classes, like on a photo)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        coarse.resize((width, height), Image.BILINEAR).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def status_counts(summary: dict[str, Any]) -> tuple[int, int, int]:
    """(200, 503, any other status) answer counts of a load summary (JSON keys are strings)."""
    statuses = {int(k): v for k, v in summary["statuses"].items()}
    other = sum(v for k, v in statuses.items() if k not in (200, 503))
    return statuses.get(200, 0), statuses.get(503, 0), other


def table(rows: list[dict[str, Any]]) -> str:
    """The summaries as a markdown table, one row per client count."""
    lines = [
        "| clients | completed | 503 after retries | other | unanswered | retries | "
        "completed req/s | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ok, busy, other = status_counts(r)
        lines.append(
            f"| {r['clients']} | {ok} | {busy} | {other} | "
            f"{r['failures']} | {r['retries']} | {r['throughput_rps']:.1f} | "
            f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} |"
        )
    return "\n".join(lines)


def _row(rows: list[dict[str, Any]], clients: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["clients"] == clients), None)


def single_image_line(rows: list[dict[str, Any]], replicas: int = 1, threads: int = 1) -> str:
    """The 1-client latency and the network-only ceiling: the req/s ``replicas`` engines could
    sustain if they did nothing but run the network (server-reported time at 1 client)."""
    one = _row(rows, 1)
    if one is None or not one.get("network_p50_ms"):
        return "single image: not measured (no 1-client row with the server's network time)"
    network = one["network_p50_ms"]
    sixteen = _row(rows, 16)
    served = f"{sixteen['throughput_rps']:.1f} req/s" if sixteen else "not measured"
    return (
        f"single image (1 client): p50 {one['p50_ms']:.1f} ms end to end, network "
        f"{network:.1f} ms -> network-only ceiling {replicas * 1e3 / network:.1f} req/s "
        f"({replicas} replicas x {threads} threads); served at 16 clients: {served}"
    )


def target_line(rows: list[dict[str, Any]]) -> str:
    """Whether 16 clients sustain >= TARGET_SPEEDUP x the req/s of 1 client with p99 within
    TARGET_TAIL x p50 (at 16 clients), with the measured figures."""
    goal = (
        f"target: 16 clients >= {TARGET_SPEEDUP:g}x the req/s of 1 client, "
        f"p99 <= {TARGET_TAIL:g}x p50"
    )
    one, sixteen = _row(rows, 1), _row(rows, 16)
    if not one or not sixteen or not one["throughput_rps"] or not sixteen["p50_ms"] > 0:
        return f"{goal}: not measured (needs 1- and 16-client rows with successes)"
    speedup = sixteen["throughput_rps"] / one["throughput_rps"]
    tail = sixteen["p99_ms"] / sixteen["p50_ms"]
    met = speedup >= TARGET_SPEEDUP and tail <= TARGET_TAIL
    return f"{goal}: {speedup:.2f}x, p99/p50 {tail:.2f} -> {'met' if met else 'NOT met'}"


def _workers(base: str) -> tuple[int, int]:
    """(replicas, threads) the server reports at /healthz ((1, 1) if it does not say)."""
    import httpx

    try:
        workers = httpx.get(base + "/healthz", timeout=10).json().get("workers", {})
    except (httpx.HTTPError, ValueError):
        workers = {}
    return int(workers.get("replicas", 1)), int(workers.get("threads", 1))


def main(argv: list[str] | None = None) -> None:
    """``python -m atrous.serve.loadtest URL``: load a running server, print a markdown table."""
    parser = argparse.ArgumentParser(description="Load a running `atrous serve` and report.")
    parser.add_argument("url", help="server base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--clients", default="1,4,16,64", help="concurrent clients, comma list")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per client count")
    parser.add_argument("--requests", type=int, default=1000, help="most requests per client")
    parser.add_argument("--retries", type=int, default=5, help="retries of a 503 + Retry-After")
    parser.add_argument("--max-wait", type=float, default=10.0, help="longest retry wait (s)")
    parser.add_argument("--image", default="96x72", help="WxH of the synthetic PNG uploads")
    parser.add_argument("--format", default="png", help="response format: png, overlay, json")
    parser.add_argument("--json", action="store_true", help="also print each summary as JSON")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.image.lower().split("x"))
    payloads = sample_images(8, height, width)
    url = f"{args.url.rstrip('/')}/v1/segment?format={args.format}"
    rows = []
    for clients in (int(c) for c in args.clients.split(",") if c):
        report = run_load(
            url,
            payloads,
            clients,
            args.requests,
            retries=args.retries,
            max_wait=args.max_wait,
            duration=args.duration,
        )
        rows.append(report.summary())
        if args.json:
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    print()
    print(single_image_line(rows, *_workers(args.url.rstrip("/"))))
    print(target_line(rows))


if __name__ == "__main__":
    main()
