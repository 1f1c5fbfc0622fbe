"""Prometheus metrics of the HTTP service: requests, latency, errors by status, queue depth.

Every label takes a bounded set of values (made-up methods and paths count as 'other'), so
clients cannot grow the registry. Each app gets its own registry, so several apps in one
process (tests) do not share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["ServeMetrics", "MetricsMiddleware", "CONTENT_TYPE_LATEST"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KNOWN_PATHS = ("/", "/v1/segment", "/v1/model", "/healthz", "/metrics")
KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")


def method_label(method: str) -> str:
    """A bounded label for a request method: the standard ones, else 'other'."""
    return method if method in KNOWN_METHODS else "other"


def path_label(path: str) -> str:
    """A bounded label for a request path: known routes, '/static' or 'other'."""
    if path in KNOWN_PATHS:
        return path
    return "/static" if path.startswith("/static/") else "other"


class ServeMetrics:
    """The service's counters and histograms in one registry."""

    def __init__(self, inflight: Callable[[], float] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "atrous_http_requests",
            "HTTP requests by method, route and status code.",
            ["method", "path", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "atrous_http_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "atrous_http_errors",
            "Responses with status 400 or above, by status code.",
            ["code"],
            registry=self.registry,
        )
        self.inference = Histogram(
            "atrous_inference_duration_seconds",
            "Engine time per segmented image (preprocess, run, postprocess).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        if inflight is not None:
            gauge = Gauge(
                "atrous_inflight_requests",
                "Segment requests admitted and not yet answered.",
                registry=self.registry,
            )
            gauge.set_function(inflight)

    def observe(self, method: str, path: str, code: int, seconds: float) -> None:
        """Record one finished request."""
        label = path_label(path)
        self.requests.labels(method_label(method), label, str(code)).inc()
        self.latency.labels(label).observe(seconds)
        if code >= 400:
            self.errors.labels(str(code)).inc()

    def render(self) -> bytes:
        """The registry in Prometheus text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware recording every HTTP request's status and latency in ``metrics``."""

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_send)
        finally:
            self.metrics.observe(
                scope["method"], scope["path"], status, time.perf_counter() - start
            )
