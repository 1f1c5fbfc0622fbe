"""A bounded load generator for the service: N concurrent clients x M requests each.

Used by the load tests and ``benchmarks/serve_load.py``; every request is accounted for, as a
status code or as a transport failure (a request left unanswered).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LoadReport", "run_load"]


@dataclass
class LoadReport:
    """Outcome of a load run: status counts, latencies (ms), failures and wall time."""

    clients: int
    requests_per_client: int
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    ok_latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    invalid: int = 0
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        """Requests the clients were asked to send."""
        return self.clients * self.requests_per_client

    @property
    def answered(self) -> int:
        """Requests that got an HTTP response, whatever its status."""
        return sum(self.statuses.values())

    def percentiles(self, qs: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
        """Latency percentiles (ms) of the successful (200) requests."""
        if not self.ok_latencies_ms:
            return {f"p{q:g}": float("nan") for q in qs}
        values = np.percentile(self.ok_latencies_ms, qs)
        return {f"p{q:g}": float(v) for q, v in zip(qs, values, strict=True)}

    def summary(self) -> dict[str, Any]:
        """Counts, latency percentiles and throughput (successful requests per second)."""
        ok = self.statuses.get(200, 0)
        return {
            "clients": self.clients,
            "requests_per_client": self.requests_per_client,
            "sent": self.sent,
            "answered": self.answered,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "failures": len(self.failures),
            "invalid": self.invalid,
            "seconds": self.seconds,
            "throughput_rps": ok / self.seconds if self.seconds else 0.0,
            **{f"{k}_ms": v for k, v in self.percentiles().items()},
        }


async def _client(
    http,
    url: str,
    payloads: list[bytes],
    index: int,
    count: int,
    report: LoadReport,
    validate: Callable[[int, Any], bool] | None,
) -> None:
    for i in range(count):
        which = (index + i) % len(payloads)
        start = time.perf_counter()
        try:
            response = await http.post(url, content=payloads[which])
        except Exception as exc:  # every transport failure is a request left unanswered
            report.failures.append(f"{type(exc).__name__}: {exc}")
            continue
        elapsed = (time.perf_counter() - start) * 1e3
        report.statuses[response.status_code] += 1
        report.latencies_ms.append(elapsed)
        if response.status_code == 200:
            report.ok_latencies_ms.append(elapsed)
            if validate is not None and not validate(which, response):
                report.invalid += 1


async def _run(
    url: str,
    payloads: list[bytes],
    clients: int,
    requests_per_client: int,
    timeout: float,
    validate: Callable[[int, Any], bool] | None,
) -> LoadReport:
    import httpx

    report = LoadReport(clients, requests_per_client)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _client(http, url, payloads, c, requests_per_client, report, validate)
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
) -> LoadReport:
    """POST ``payloads`` (round robin) to ``url`` from ``clients`` concurrent clients.

    ``validate(payload_index, response)`` may check each successful response's content.
    """
    if not payloads:
        raise ValueError("run_load needs at least one payload")
    return asyncio.run(_run(url, payloads, clients, requests_per_client, timeout, validate))
