"""The bundled load client: it honours Retry-After, bounded, and says how often it retried."""

from __future__ import annotations

from email.utils import formatdate

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from atrous.serve.loadtest import main, retry_delay, run_load, sample_images


def flaky_app(refusals: int, retry_after: str | None) -> tuple[Starlette, list[int]]:
    """An app whose /v1/segment answers 503 ``refusals`` times, then 200; it logs statuses."""
    answered: list[int] = []

    async def segment(request: Request) -> Response:
        await request.body()
        status = 503 if len(answered) < refusals else 200
        answered.append(status)
        headers = {"Retry-After": retry_after} if status == 503 and retry_after else {}
        return JSONResponse({"error": "overloaded"} if status == 503 else {}, status, headers)

    return Starlette(routes=[Route("/v1/segment", segment, methods=["POST"])]), answered


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


def test_sample_images_are_pngs_of_the_asked_size():
    from io import BytesIO

    from PIL import Image

    images = sample_images(3, 6, 8)
    assert len(set(images)) == 3
    assert all(Image.open(BytesIO(b)).size == (8, 6) for b in images)
