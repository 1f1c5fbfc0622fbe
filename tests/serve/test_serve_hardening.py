"""The service against hostile clients: slow uploads, bombs, made-up methods, foreign hosts."""

from __future__ import annotations

import io
import json
import logging
import socket
import struct
import threading
import time
import warnings
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from atrous.serve import ServeLimits, create_app
from atrous.serve.security import LOOPBACK_HOSTS, PAGE_CSP, allowed_hosts_for, host_name

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient


def png(height: int = 30, width: int = 40) -> bytes:
    small = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BILINEAR).save(buffer, "PNG")
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(1000))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def refusal(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["detail"]
    return body["detail"]


@pytest.fixture
def client(small_checkpoint):
    with TestClient(create_app(small_checkpoint, threads=1)) as c:
        yield c


# -- slow uploads --------------------------------------------------------------------------------
class SlowUpload(threading.Thread):
    """A raw-socket client that declares a 1000-byte body and sends it one byte at a time."""

    def __init__(self, url: str, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        host, port = url.removeprefix("http://").split(":")
        self.address, self.interval = (host, int(port)), interval
        self.sent = 0
        self.reply = b""

    def run(self) -> None:
        with socket.create_connection(self.address, timeout=60) as sock:
            head = (
                "POST /v1/segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                "Content-Length: 1000\r\n\r\n"
            )
            sock.sendall(head.encode() + b"\x89")
            sock.settimeout(self.interval)
            while self.sent < 999:
                try:
                    chunk = sock.recv(65536)  # the server answered: stop sending
                    self.reply += chunk
                    break
                except TimeoutError:
                    sock.sendall(b"P")
                    self.sent += 1
            sock.settimeout(30)
            while chunk := sock.recv(65536):
                self.reply += chunk

    def response(self) -> tuple[int, dict]:
        head, _, body = self.reply.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(body)


def test_slow_uploads_hold_no_place_in_the_queue_and_time_out(live_server, small_checkpoint):
    app = create_app(small_checkpoint, threads=1, limits=ServeLimits(queue=2, body_timeout=4))
    base = live_server(app)
    slow = [SlowUpload(base) for _ in range(6)]  # three times the queue
    for client in slow:
        client.start()
    service = app.state.service
    deadline = time.monotonic() + 30
    while not all(client.sent for client in slow):  # every slow upload is under way
        assert time.monotonic() < deadline
        time.sleep(0.05)
    statuses = [httpx.post(base + "/v1/segment", content=png(), timeout=60) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200] * 4, statuses[0].text
    assert service.queue.inflight == 0 and 0 < service.uploads.held < 6 * 1000
    for client in slow:
        client.join(60)
        status, body = client.response()
        assert (status, body["error"]) == (408, "request_timeout")
        assert "within 4 s" in body["detail"]
        assert client.sent < 999  # cut off: the body never had to arrive in full
    assert service.uploads.held == 0 and service.queue.inflight == 0


def test_uploads_in_transit_share_a_byte_budget(small_checkpoint):
    app = create_app(small_checkpoint, threads=1, limits=ServeLimits(queue=1, max_bytes=10_000))
    budget = app.state.service.uploads
    assert budget.capacity == 10_000 + 64 * 1024
    with TestClient(app) as c:
        budget.take(budget.capacity - 100)  # other uploads arriving hold nearly all of it
        refused = c.post("/v1/segment", content=png())
        assert "uploads in transit" in refusal(refused, 503, "overloaded")
        assert refused.headers["retry-after"] == "1"
        budget.release(budget.capacity - 100)
        assert c.post("/v1/segment", content=png()).status_code == 200
    assert budget.held == 0


def test_limits_refuse_pixels_past_the_bomb_limit_and_bad_timeouts():
    with pytest.raises(ValueError, match="decompression-bomb limit"):
        ServeLimits(max_pixels=Image.MAX_IMAGE_PIXELS + 1)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="body_timeout"):
            ServeLimits(body_timeout=bad)


# -- image bombs and formats ---------------------------------------------------------------------
@pytest.mark.parametrize("side", [60_000, 10_000])  # past PIL's refusal; past its warning only
def test_decompression_bomb_is_a_json_413(client, side):
    data = bomb_png(side, side)
    assert len(data) < 1000
    detail = refusal(client.post("/v1/segment", content=data), 413, "too_many_pixels")
    assert "16,000,000 pixel limit" in detail
    files = {"image": ("bomb.png", data, "image/png")}
    refusal(client.post("/v1/segment", files=files), 413, "too_many_pixels")


def test_formats_outside_the_photo_formats_are_415(client):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n0 0 moveto\n"
    refusal(client.post("/v1/segment", content=eps), 415, "unsupported_media_type")
    ico = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(ico, "ICO")
    refusal(client.post("/v1/segment", content=ico.getvalue()), 415, "unsupported_media_type")


# -- metrics, disconnects ------------------------------------------------------------------------
def test_made_up_methods_share_one_metrics_label(client):
    for i in range(40):
        assert client.request(f"MADEUP{i}", "/v1/segment").status_code == 405
    client.request("PATCH", "/healthz")
    text = client.get("/metrics").text
    methods = {
        s.labels["method"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "method" in s.labels
    }
    assert methods == {"other", "PATCH"}  # (this GET /metrics is counted after it renders)
    assert "MADEUP" not in text


def test_client_gone_mid_upload_is_logged_as_one_line(live_server, small_checkpoint, caplog):
    app = create_app(small_checkpoint, threads=1)
    base = live_server(app)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("uvicorn.error").addHandler(handler)
    host, port = base.removeprefix("http://").split(":")
    try:
        with caplog.at_level(logging.WARNING, logger="atrous.serve"):
            for content_type in ("image/png", "multipart/form-data; boundary=x"):
                with socket.create_connection((host, int(port))) as sock:
                    head = (
                        f"POST /v1/segment HTTP/1.1\r\nHost: {host}\r\n"
                        f"Content-Type: {content_type}\r\nContent-Length: 5000\r\n\r\n--x\r\n"
                    )
                    sock.sendall(head.encode())
                    time.sleep(0.2)
            deadline = time.monotonic() + 30
            while len(caplog.records) < 2:
                assert time.monotonic() < deadline, "no log line for a client gone"
                time.sleep(0.05)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
    lines = [r for r in caplog.records if r.name == "atrous.serve"]
    assert len(lines) == 2
    assert all("disconnected before its upload was complete" in r.getMessage() for r in lines)
    assert all(r.exc_info is None for r in lines)
    assert not [r for r in records if r.exc_info or "Exception" in r.getMessage()]
    assert app.state.service.uploads.held == 0


# -- hosts and headers ---------------------------------------------------------------------------
def test_host_names_parse_with_ports_brackets_and_case():
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == "::1" and host_name("::1") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1" and host_name("box.lan.") == "box.lan"
    assert allowed_hosts_for("127.0.0.1") == LOOPBACK_HOSTS
    assert allowed_hosts_for("::1") == LOOPBACK_HOSTS
    assert allowed_hosts_for("localhost") == LOOPBACK_HOSTS
    assert allowed_hosts_for("0.0.0.0") is None
    assert allowed_hosts_for("127.0.0.1", ["Box.Lan", "localhost"]) == ("box.lan", "localhost")
    assert allowed_hosts_for("127.0.0.1", ["*"]) is None


def test_foreign_host_is_refused_when_bound_to_localhost(small_checkpoint):
    app = create_app(small_checkpoint, threads=1, allowed_hosts=LOOPBACK_HOSTS)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        for host in ("localhost", "localhost:9999", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
            assert c.get("/healthz", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
            response = c.get("/healthz", headers={"host": host})
            refusal(response, 400, "invalid_host")
            assert response.headers["x-content-type-options"] == "nosniff"
        forbidden = c.post("/v1/segment", content=png(), headers={"host": "evil.example"})
        refusal(forbidden, 400, "invalid_host")
        assert app.state.service.metrics.inference._sum.get() == 0  # nothing was segmented


def test_security_headers_on_every_response_and_csp_on_the_page(client):
    responses = [
        client.get("/"),
        client.get("/healthz"),
        client.get("/static/app.js"),
        client.post("/v1/segment?format=png", content=png()),
        client.post("/v1/segment", content=b"text"),
        client.get("/nowhere"),
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
    page = responses[0].headers["content-security-policy"]
    assert page == PAGE_CSP and "script-src 'self'" in page and "frame-ancestors 'none'" in page
    assert "unsafe-inline" not in page


def test_unexpected_errors_are_json_500(small_checkpoint, monkeypatch):
    app = create_app(small_checkpoint, threads=1)
    service = app.state.service

    def broken(*_):
        raise RuntimeError("boom")

    monkeypatch.setattr(service, "render", broken)
    with TestClient(app, raise_server_exceptions=False) as c:
        detail = refusal(c.post("/v1/segment", content=png()), 500, "internal_error")
    assert "RuntimeError" in detail and "boom" not in detail


def test_a_full_queue_refuses_before_reading_the_upload(small_checkpoint):
    import asyncio

    app = create_app(small_checkpoint, threads=1, limits=ServeLimits(queue=1))
    service = app.state.service
    chunks_read = []

    async def body():
        for i in range(100):
            chunks_read.append(i)
            yield png()

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            with service.queue:  # one request is in flight: the queue is full
                return await ac.post("/v1/segment", content=body())

    refused = asyncio.run(scenario())
    assert "queue limit 1" in refusal(refused, 503, "overloaded")
    assert len(chunks_read) < 100 and service.uploads.held == 0
