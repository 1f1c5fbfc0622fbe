"""The bundled load client: it honours Retry-After, bounded, and says how often it retried."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from atrous.serve.loadtest import (
    main,
    retry_delay,
    run_load,
    sample_images,
    server_timing,
    single_image_line,
    target_line,
)


def flaky_app(refusals: int, retry_after: str | None) -> tuple[Starlette, list[int]]:
    """An app whose /v1/segment answers 503 ``refusals`` times, then 200; it logs statuses."""
    answered: list[int] = []

    async def segment(request: Request) -> Response:
        await request.body()
        status = 503 if len(answered) < refusals else 200
        answered.append(status)
        headers = {"Retry-After": retry_after} if status == 503 and retry_after else {}
        if status == 200:
            headers["Server-Timing"] = "decode;dur=1.5, infer;dur=4.000, encode;dur=0.5"
        return JSONResponse({"error": "overloaded"} if status == 503 else {}, status, headers)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "workers": {"replicas": 2, "threads": 1}})

    routes = [Route("/v1/segment", segment, methods=["POST"]), Route("/healthz", healthz)]
    return Starlette(routes=routes), answered


def test_retry_delay_reads_seconds_and_dates_within_the_bound():
    assert retry_delay("2", max_wait=10) == 2.0
    assert retry_delay("120", max_wait=10) == 10.0
    assert retry_delay("-3", max_wait=10) == 0.0
    assert retry_delay(formatdate(0, usegmt=True), max_wait=10) == 0.0  # a date in the past
    assert 0 < retry_delay(formatdate(2e9, usegmt=True), max_wait=10) == 10.0
    for unusable in (None, "", "soon", "nan"):
        assert retry_delay(unusable, max_wait=10) is None


def test_a_503_with_retry_after_is_retried_until_it_succeeds(live_server):
    app, answered = flaky_app(refusals=2, retry_after="1")
    url = live_server(app) + "/v1/segment"
    report = run_load(url, [b"x"], clients=1, requests_per_client=1, max_wait=0.05)
    assert answered == [503, 503, 200]
    assert report.statuses == {200: 1} and report.retries == 2
    assert report.summary()["retries"] == 2 and report.summary()["throughput_rps"] > 0


def test_retries_are_bounded_and_need_retry_after(live_server):
    app, answered = flaky_app(refusals=100, retry_after="1")
    url = live_server(app) + "/v1/segment"
    report = run_load(url, [b"x"], clients=1, requests_per_client=2, retries=3, max_wait=0.01)
    assert report.statuses == {503: 2} and report.retries == 6 and len(answered) == 8
    bare, answered = flaky_app(refusals=1, retry_after=None)
    report = run_load(live_server(bare) + "/v1/segment", [b"x"], 1, 1, max_wait=0.01)
    assert report.statuses == {503: 1} and report.retries == 0 and answered == [503]
    with pytest.raises(ValueError, match="retries"):
        run_load(url, [b"x"], retries=-1)


def test_command_line_prints_one_row_per_client_count(live_server, capsys):
    app, answered = flaky_app(refusals=1, retry_after="1")
    base = live_server(app)
    main([base, "--clients", "1,2", "--requests", "2", "--max-wait", "0.01", "--image", "8x6"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| clients | completed |")
    assert out[2].startswith("| 1 | 2 | 0 | 0 | 0 | 1 |")
    assert out[3].startswith("| 2 | 4 | 0 | 0 | 0 | 0 |")
    assert len(answered) == 7
    # network 4 ms from Server-Timing, 2 replicas from /healthz: 2 x 1000 / 4 req/s
    assert "network 4.0 ms -> network-only ceiling 500.0 req/s (2 replicas x 1 threads)" in out[5]
    assert out[6].endswith("not measured (needs 1- and 16-client rows with successes)")


def test_server_timing_reads_one_metric():
    header = "decode;dur=1.5, infer;desc=network;dur=12.25, encode;dur=0.5"
    assert server_timing(header, "infer") == 12.25 and server_timing(header, "decode") == 1.5
    assert server_timing(header, "queue") is None and server_timing(None, "infer") is None
    assert server_timing("infer;dur=soon", "infer") is None


def row(clients: int, rps: float, p50: float, p99: float, network: float | None = 10.0) -> dict:
    return {
        "clients": clients,
        "throughput_rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "network_p50_ms": network,
    }


def test_target_line_states_the_ratio_the_tail_and_whether_met():
    met = target_line([row(1, 20.0, 50, 60), row(4, 30, 100, 150), row(16, 31.0, 500, 1400)])
    assert met.endswith(": 1.55x, p99/p50 2.80 -> met")
    slow = target_line([row(1, 20.0, 50, 60), row(16, 29.0, 500, 600)])
    assert slow.endswith(": 1.45x, p99/p50 1.20 -> NOT met")
    tail = target_line([row(1, 20.0, 50, 60), row(16, 40.0, 500, 1600)])
    assert tail.endswith(": 2.00x, p99/p50 3.20 -> NOT met")
    assert "not measured" in target_line([row(1, 20.0, 50, 60)])


def test_single_image_line_gives_the_network_only_ceiling():
    line = single_image_line([row(1, 20.0, 50, 60, network=25.0), row(16, 31.0, 500, 900)], 2, 1)
    assert "p50 50.0 ms end to end, network 25.0 ms" in line
    assert "ceiling 80.0 req/s (2 replicas x 1 threads); served at 16 clients: 31.0 req/s" in line
    assert "not measured" in single_image_line([row(1, 20.0, 50, 60, network=None)])


def test_sample_images_are_pngs_of_the_asked_size():
    from io import BytesIO

    from PIL import Image

    images = sample_images(3, 6, 8)
    assert len(set(images)) == 3
    assert all(Image.open(BytesIO(b)).size == (8, 6) for b in images)
