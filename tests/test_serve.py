"""The HTTP service: every output format against the Segmenter, every error code, the queue."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
import warnings

import httpx
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from atrous.card import ModelCard
from atrous.data.io import fast_decode_image
from atrous.errors import AtrousError
from atrous.models.zoo import default_card
from atrous.segmenter import Segmenter
from atrous.serve import ServeLimits, create_app
from atrous.serve.limits import probe_image
from atrous.visualize import overlay

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")  # the TestClient still works on httpx
    from fastapi.testclient import TestClient


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def client(small_checkpoint):
    # torch: these tests compare served masks with the float model's own
    with TestClient(create_app(small_checkpoint, engine="torch", threads=2)) as c:
        yield c


@pytest.fixture
def card() -> ModelCard:
    """The card of the small checkpoint (5 VOC classes, 64-pixel input)."""
    base = default_card("deeplabv3_mnv2_dm05_os16", num_classes=5)
    pre = base.preprocessing.model_copy(update={"size": 64})
    return base.model_copy(update={"preprocessing": pre})


@pytest.fixture
def photo(rng) -> np.ndarray:
    """A smooth random image (so the random network predicts several classes)."""
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((80, 60), Image.BILINEAR))


def reference_mask(checkpoint, image: np.ndarray) -> np.ndarray:
    return Segmenter.from_file(checkpoint, engine="torch", threads=2).predict(image).mask


# -- success -----------------------------------------------------------------------------------
def test_png_mask_equals_segmenter_and_carries_the_card_palette(client, small_checkpoint, photo):
    response = client.post("/v1/segment?format=png", content=encode(photo))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    mask = Image.open(io.BytesIO(response.content))
    assert mask.mode == "P" and mask.size == (80, 60)
    card: ModelCard = client.app.state.service.card
    assert np.asarray(mask.getpalette()[:15]).reshape(5, 3).tolist() == [
        list(c) for c in card.palette
    ]
    assert np.array_equal(np.asarray(mask), reference_mask(small_checkpoint, photo))
    assert "infer;dur=" in response.headers["server-timing"]


def test_json_lists_classes_present_with_fractions_and_timings(client, small_checkpoint, photo):
    files = {"image": ("photo.jpg", encode(photo, "JPEG"), "image/jpeg")}
    response = client.post("/v1/segment?format=json&mask=true", files=files)
    assert response.status_code == 200
    body = response.json()
    expected = reference_mask(small_checkpoint, fast_decode_image(encode(photo, "JPEG")))
    ids, counts = np.unique(expected, return_counts=True)
    assert len(ids) >= 2  # the diversified network predicts several classes
    by_id = {c["id"]: c for c in body["classes"]}
    assert sorted(by_id) == ids.tolist()
    for i, n in zip(ids, counts, strict=True):
        assert by_id[i]["fraction"] == pytest.approx(n / expected.size)
        assert by_id[i]["name"] == client.app.state.service.card.classes[i]
    assert (body["width"], body["height"], body["input_format"]) == (80, 60, "JPEG")
    assert set(body["timings"]) >= {"decode_ms", "infer_ms", "encode_ms", "total_ms"}
    assert body["timings"]["total_ms"] >= body["timings"]["infer_ms"] > 0
    header, data = body["mask_png"].split(",", 1)
    assert header == "data:image/png;base64"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))), expected)


def test_overlay_is_the_blend_of_image_and_mask(client, small_checkpoint, photo):
    response = client.post("/v1/segment?format=overlay&alpha=0.7", content=encode(photo))
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    got = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)
    card = client.app.state.service.card
    want = overlay(photo, reference_mask(small_checkpoint, photo), card.palette, 0.7).astype(int)
    assert got.shape == want.shape
    error_to_overlay = np.abs(got - want).mean()
    assert error_to_overlay < 6.0  # JPEG quality 90 with chroma subsampling
    assert error_to_overlay < 0.5 * np.abs(got - photo.astype(int)).mean()


def test_model_card_and_health(client, card):
    served = client.get("/v1/model").json()
    assert served["classes"] == card.classes and served["preprocessing"]["size"] == 64
    assert served["palette"] == [list(c) for c in card.palette]
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["engine"]["engine"] == "torch"
    assert health["path"] == "torch"
    assert (health["inflight"], health["queue"]) == (0, 16)


def test_health_names_the_default_fast_path(small_checkpoint):
    # a checkpoint with no graph beside it: the fp32 fast graph, built once and cached
    with TestClient(create_app(small_checkpoint, threads=2)) as served:
        health = served.get("/healthz").json()
    assert health["path"] == "fast-fp32" and health["engine"]["engine"] == "onnxruntime"


def test_metrics_count_requests_latency_and_errors(client, photo):
    for _ in range(2):
        assert client.post("/v1/segment", content=encode(photo)).status_code == 200
    assert client.post("/v1/segment", content=b"plain text").status_code == 415
    text = client.get("/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    segment = (("code", "200"), ("method", "POST"), ("path", "/v1/segment"))
    assert samples[("atrous_http_requests_total", segment)] == 2
    assert samples[("atrous_http_errors_total", (("code", "415"),))] == 1
    count = samples[("atrous_http_request_duration_seconds_count", (("path", "/v1/segment"),))]
    assert count == 3
    assert samples[("atrous_inference_duration_seconds_count", ())] == 2


# -- errors ------------------------------------------------------------------------------------
def error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["detail"]
    return body["detail"]


def test_413_for_too_many_bytes_declared_or_streamed(small_checkpoint, photo):
    data = encode(photo)
    app = create_app(small_checkpoint, threads=2, limits=ServeLimits(max_bytes=len(data) - 1))
    with TestClient(app) as c:
        detail = error(c.post("/v1/segment", content=data), 413, "payload_too_large")
        assert f"{len(data):,} bytes" in detail
        files = {"image": ("a.png", data, "image/png")}
        error(c.post("/v1/segment", files=files), 413, "payload_too_large")
        big = b"\x89PNG\r\n\x1a\n" + bytes(200_000)
        error(c.post("/v1/segment", content=big), 413, "payload_too_large")

    async def chunked() -> int:
        async def body():
            for _ in range(10):
                yield bytes(20_000)

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            response = await ac.post("/v1/segment", content=body())
            assert "content-length" not in response.request.headers
            return response.status_code

    assert asyncio.run(chunked()) == 413


def test_413_for_too_many_pixels_before_decoding(small_checkpoint):
    app = create_app(small_checkpoint, threads=2, limits=ServeLimits(max_pixels=100 * 100))
    with TestClient(app) as c:
        big = encode(np.zeros((101, 100, 3), np.uint8))
        detail = error(c.post("/v1/segment", content=big), 413, "too_many_pixels")
        assert "100x101" in detail and "10,000 pixel limit" in detail
        ok = encode(np.zeros((100, 100, 3), np.uint8))
        assert c.post("/v1/segment", content=ok).status_code == 200


def test_415_for_bytes_that_are_not_an_image(client):
    error(client.post("/v1/segment", content=b"just some text"), 415, "unsupported_media_type")
    files = {"image": ("a.pdf", b"%PDF-1.4 not an image", "application/pdf")}
    error(client.post("/v1/segment", files=files), 415, "unsupported_media_type")


def test_422_for_corrupt_images_and_missing_upload(client, photo):
    png, jpeg = encode(photo), encode(photo, "JPEG")
    error(client.post("/v1/segment", content=png[:200]), 422, "corrupt_image")  # truncated data
    error(client.post("/v1/segment", content=png[:20]), 422, "corrupt_image")  # broken header
    error(client.post("/v1/segment", content=jpeg[: len(jpeg) // 2]), 422, "corrupt_image")
    error(client.post("/v1/segment", content=b""), 422, "missing_image")
    error(client.post("/v1/segment", files={"other": ("a", png)}), 422, "missing_image")
    error(client.post("/v1/segment?format=gif", content=png), 422, "invalid_request")
    error(
        client.post("/v1/segment", content=encode(np.zeros((1, 1, 3), np.uint8))),
        422,
        "invalid_image",
    )


def test_probe_image_classifies_by_signature():
    assert probe_image(encode(np.zeros((3, 5, 3), np.uint8)), 100) == ("PNG", 5, 3)
    with pytest.raises(Exception) as info:
        probe_image(b"GIF89a" + bytes(4), 100)
    assert info.value.status == 422
    with pytest.raises(Exception) as info:
        probe_image(b"<html></html>", 100)
    assert info.value.status == 415


# -- the queue ---------------------------------------------------------------------------------
class GatedEngine:
    """A fake engine whose runs wait for a gate; it records the most runs at once."""

    name = "gated"
    threads = 1

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        self.entered.release()
        self.gate.wait(10)
        time.sleep(0.01)
        with self.lock:
            self.running -= 1
        n, _, h, w = batch.shape
        out = np.zeros((n, self.num_classes, h, w), np.float32)
        out[:, 1] = 1.0
        return out

    def describe(self) -> dict:
        return {"engine": self.name, "threads": self.threads}


async def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_503_with_retry_after_when_the_queue_is_full(card, photo):
    engine = GatedEngine(card.num_classes)
    app = create_app(Segmenter(engine, card), limits=ServeLimits(queue=2, retry_after=3))
    service = app.state.service
    data = encode(photo)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            first = asyncio.create_task(ac.post("/v1/segment", content=data))
            second = asyncio.create_task(ac.post("/v1/segment", content=data))
            await until(lambda: service.queue.inflight == 2)
            refused = await ac.post("/v1/segment", content=data)
            health = await ac.get("/healthz")  # the event loop answers while the engine works
            engine.gate.set()
            done = await asyncio.gather(first, second)
            after = await ac.post("/v1/segment", content=data)
            return refused, health, done, after

    refused, health, done, after = asyncio.run(scenario())
    detail = error(refused, 503, "overloaded")
    assert refused.headers["retry-after"] == "3" and "queue limit 2" in detail
    assert health.status_code == 200 and health.json()["inflight"] == 2
    assert [r.status_code for r in done] == [200, 200]
    assert after.status_code == 200 and service.queue.inflight == 0
    assert engine.peak == 1  # requests in flight never run the engine at the same time


def test_concurrent_requests_run_the_engine_one_at_a_time(card, photo, monkeypatch):
    import atrous.serve.service as app_module

    decoded = []
    monkeypatch.setattr(
        app_module,
        "fast_decode_image",
        lambda *a, **k: decoded.append(1) or fast_decode_image(*a, **k),
    )
    engine = GatedEngine(card.num_classes)
    app = create_app(Segmenter(engine, card), limits=ServeLimits(queue=8))

    async def burst():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as ac:
            calls = [ac.post("/v1/segment?format=json", content=encode(photo)) for _ in range(6)]
            tasks = [asyncio.create_task(c) for c in calls]
            await until(lambda: app.state.service.queue.inflight == 6 and engine.running == 1)
            await asyncio.sleep(0.2)
            waiting = len(decoded)  # one image in the engine, one decoded and ready, no more
            engine.gate.set()
            return waiting, await asyncio.gather(*tasks)

    waiting, responses = asyncio.run(burst())
    assert waiting == 2
    assert [r.status_code for r in responses] == [200] * 6
    assert all(r.json()["classes"][0]["name"] == card.classes[1] for r in responses)
    assert engine.peak == 1 and len(decoded) == 6


def test_serve_cli_refuses_bad_limits_and_models_with_atrous_errors():
    from typer.testing import CliRunner

    from atrous.cli import app

    cases = {
        "queue must be at least 1": ["deeplabv3_mnv2_dm05_os16", "--queue", "0"],
        "no_such_model": ["no_such_model"],
    }
    for message, args in cases.items():
        result = CliRunner().invoke(app, ["serve", *args])
        assert isinstance(result.exception, AtrousError), result.output
        assert message in str(result.exception)


def test_serve_cli_answers_over_loopback(small_checkpoint, photo):
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "atrous", "serve", str(small_checkpoint)]
    command += ["--port", str(port), "--threads", "1", "--max-pixels", "5000"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # the first start builds the fp32 fast graph
        while True:
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "atrous serve did not start"
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        response = httpx.post(base + "/v1/segment?format=png", content=encode(photo))
        assert response.status_code == 200
        assert Image.open(io.BytesIO(response.content)).size == (80, 60)
        big = encode(np.zeros((63, 80, 3), np.uint8))  # 5,040 pixels
        error(httpx.post(base + "/v1/segment", content=big), 413, "too_many_pixels")
        # bound to loopback: a page on another name (DNS rebinding) gets no answer
        rebound = httpx.get(base + "/healthz", headers={"Host": f"evil.example:{port}"})
        error(rebound, 400, "invalid_host")
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"on http://127.0.0.1:{port}/" in out
    assert "path: fast-fp32" in out  # the default path for a checkpoint, said at start


@pytest.mark.parametrize("with_argmax", [False, True])
def test_exported_onnx_model_serves_like_the_checkpoint(
    small_checkpoint, client, photo, tmp_path, with_argmax
):
    from atrous.checkpoint import load_checkpoint
    from atrous.export import export_onnx

    model, card = load_checkpoint(small_checkpoint)
    path = export_onnx(model, card, tmp_path / "small.onnx", with_argmax=with_argmax)
    # an explicit engine: 'auto' picks by timing, which a loaded machine can tip either way
    with TestClient(create_app(path, engine="onnxruntime", threads=2)) as onnx_client:
        assert onnx_client.get("/healthz").json()["engine"]["engine"] == "onnxruntime"
        response = onnx_client.post("/v1/segment?format=png", content=encode(photo))
    assert response.status_code == 200
    got = np.asarray(Image.open(io.BytesIO(response.content)))
    want = np.asarray(
        Image.open(io.BytesIO(client.post("/v1/segment?format=png", content=encode(photo)).content))
    )
    assert got.shape == want.shape == (60, 80)
    # labels come from an argmax at network size, so only the class boundaries may move
    assert (got == want).mean() > (0.9 if with_argmax else 0.999)
