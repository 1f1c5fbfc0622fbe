"""Load on loopback: many concurrent clients, every request answered, only deliberate 503s."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from atrous.segmenter import Segmenter
from atrous.serve import ServeLimits, create_app
from atrous.serve.loadtest import run_load

SIZES = [(24, 32), (40, 30), (33, 47), (48, 48), (20, 60)]


@pytest.fixture
def payloads(rng) -> list[bytes]:
    """Small PNGs of different sizes, so a mixed-up response would have the wrong size."""
    out = []
    for h, w in SIZES:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


def right_size(index: int, response) -> bool:
    mask = Image.open(io.BytesIO(response.content))
    return mask.mode == "P" and mask.size == SIZES[index][::-1]


class SlowEngine:
    """Delegates to a real engine after a pause, so concurrent requests surely overlap."""

    def __init__(self, engine, pause: float) -> None:
        self.engine, self.pause = engine, pause
        self.name, self.threads = engine.name, engine.threads

    def run(self, batch):
        time.sleep(self.pause)
        return self.engine.run(batch)

    def describe(self):
        return self.engine.describe()


def load(live_server, checkpoint, payloads, clients, requests, queue, pause=0.0, retries=0):
    segmenter = Segmenter.from_file(checkpoint, threads=1)
    if pause:
        segmenter = Segmenter(SlowEngine(segmenter.engine, pause), segmenter.card)
    app = create_app(segmenter, limits=ServeLimits(queue=queue))
    url = live_server(app) + "/v1/segment?format=png"
    report = run_load(url, payloads, clients, requests, validate=right_size, retries=retries)
    assert report.failures == [], report.failures[:3]  # no request left unanswered
    assert report.answered == clients * requests
    assert set(report.statuses) <= {200, 503}, report.statuses  # no 5xx but deliberate 503s
    assert report.invalid == 0
    assert app.state.service.queue.inflight == 0
    return report, app


def test_small_load_within_the_queue_is_all_answered_200(live_server, small_checkpoint, payloads):
    report, app = load(live_server, small_checkpoint, payloads, clients=10, requests=5, queue=16)
    assert report.statuses == {200: 50}
    assert (
        app.state.service.metrics.requests.labels("POST", "/v1/segment", "200")._value.get() == 50
    )


def test_overload_sheds_with_503_and_recovers(live_server, small_checkpoint, payloads):
    report, _ = load(
        live_server, small_checkpoint, payloads, clients=12, requests=3, queue=2, pause=0.05
    )
    assert report.statuses[200] >= 2 and report.statuses[503] >= 1
    assert report.retries == 0


def test_clients_honouring_retry_after_all_get_served(live_server, small_checkpoint, payloads):
    """The same overload, with the load client retrying each 503 after its Retry-After."""
    report, _ = load(
        live_server,
        small_checkpoint,
        payloads,
        clients=12,
        requests=2,
        queue=2,
        pause=0.05,
        retries=20,
    )
    assert report.statuses == {200: 24} and report.retries >= 1


@pytest.mark.slow
def test_50_clients_x_20_requests(live_server, small_checkpoint, payloads):
    report, _ = load(live_server, small_checkpoint, payloads, clients=50, requests=20, queue=16)
    assert report.statuses[200] > 0
