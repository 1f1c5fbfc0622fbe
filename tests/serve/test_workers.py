"""The engine pool behind `atrous serve`: replicas, micro-batching, deadlines, the default plan."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from concurrent.futures import wait

import httpx
import numpy as np
import pytest
from PIL import Image

from atrous.runtimes import TorchEngine
from atrous.runtimes.contract import Signature
from atrous.segmenter import Segmenter
from atrous.serve import ServeLimits, create_app
from atrous.serve.workers import (
    DeadlineExceeded,
    EnginePool,
    WorkerPlan,
    accepts_batch,
    padded_size,
    plan_workers,
    replicate,
)

SIZES = [(60, 80), (64, 48), (33, 47), (60, 80), (64, 48), (20, 60), (60, 80), (64, 64)]


class CountingEngine:
    """Delegates to a real engine, counting the batches it runs and their sizes; ``pause``
    seconds per run make concurrent requests overlap. Not replicable (an unknown engine)."""

    def __init__(self, engine, pause: float = 0.0) -> None:
        self.engine, self.pause = engine, pause
        self.name, self.threads = engine.name, engine.threads
        self.sizes: list[int] = []

    def run(self, batch):
        self.sizes.append(len(batch))
        time.sleep(self.pause)
        return self.engine.run(batch)

    def describe(self):
        return self.engine.describe()


class BatchingEngine(CountingEngine):
    """A CountingEngine whose input says its batch dimension is dynamic."""

    def signature(self) -> Signature:
        f32 = np.dtype(np.float32)
        return Signature((None, 3, None, None), f32, (None, 5, None, None), f32)


@pytest.fixture(scope="module")
def segmenter(small_checkpoint) -> Segmenter:
    return Segmenter.from_file(small_checkpoint, engine="torch", threads=1)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Smooth random images (the random network predicts several classes on them)."""
    rng = np.random.default_rng(3)
    out = []
    for h, w in SIZES:
        small = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
        out.append(np.asarray(small.resize((w, h), Image.BILINEAR)))
    return out


def test_pool_of_replicas_and_batches_gives_the_masks_of_one_engine(segmenter, images):
    reference = [segmenter.predict(image).mask for image in images]
    pool = EnginePool.from_plan(segmenter, WorkerPlan(2, 1, max_batch=4, batch_window=0.05))
    try:
        assert len(pool.replicas) == 2 and pool.batching
        assert pool.replicas[0] is segmenter  # already at 1 thread: reused
        assert pool.replicas[1].engine.model is segmenter.engine.model  # torch shares weights
        futures = [pool.submit(image) for image in images for _ in range(2)]
        results = [f.result(timeout=20) for f in futures]
    finally:
        pool.close()
    for i, (prediction, _) in enumerate(results):
        np.testing.assert_array_equal(prediction.mask, reference[i // 2])
    assert sum(size * n for size, n in pool.batches.items()) == len(images) * 2
    assert max(pool.batches) > 1  # some requests did share a batch


def test_requests_of_one_padded_size_share_a_batch_others_do_not(segmenter, images):
    engine = BatchingEngine(segmenter.engine)
    pool = EnginePool([Segmenter(engine, segmenter.card)], max_batch=4, batch_window=0.3)
    same = [im for im in images if im.shape[:2] == (60, 80)]
    other = images[1]
    assert padded_size(segmenter, same[0]) != padded_size(segmenter, other)
    try:
        futures = [pool.submit(im) for im in [*same, other, same[0]]]  # 3 + 1 + 1
        wait(futures, timeout=120)
        masks = [f.result()[0].mask for f in futures]
    finally:
        pool.close()
    assert sorted(engine.sizes) == [1, 4]  # four of one size in one batch, the other alone
    assert pool.batches == {4: 1, 1: 1}
    np.testing.assert_array_equal(masks[3], segmenter.predict(other).mask)


def test_an_engine_without_a_dynamic_batch_runs_one_request_at_a_time(segmenter, images):
    engine = CountingEngine(segmenter.engine)  # no signature(): batching is not assumed
    assert accepts_batch(segmenter.engine) and not accepts_batch(engine)
    assert replicate(engine, 1) is None
    pool = EnginePool.from_plan(Segmenter(engine, segmenter.card), WorkerPlan(2, 1, max_batch=4))
    try:
        assert len(pool.replicas) == 1 and pool.max_batch == 1
        wait([pool.submit(images[0]) for _ in range(3)], timeout=120)
    finally:
        pool.close()
    assert engine.sizes == [1, 1, 1]


def test_a_request_past_its_deadline_is_not_run(segmenter, images):
    engine = CountingEngine(segmenter.engine, pause=0.3)
    pool = EnginePool([Segmenter(engine, segmenter.card)])
    try:
        first = pool.submit(images[0])
        late = pool.submit(images[0], deadline=time.perf_counter() + 0.05)
        first.result(timeout=120)
        with pytest.raises(DeadlineExceeded):
            late.result(timeout=120)
    finally:
        pool.close()
    assert engine.sizes == [1]


def test_the_service_answers_503_deadline_exceeded(segmenter, images):
    engine = CountingEngine(segmenter.engine, pause=0.4)
    plan = WorkerPlan(1, 1, deadline=0.15)
    app = create_app(Segmenter(engine, segmenter.card), limits=ServeLimits(), workers=plan)
    buffer = io.BytesIO()
    Image.fromarray(images[0]).save(buffer, "PNG")

    async def two_requests():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            posts = [client.post("/v1/segment", content=buffer.getvalue()) for _ in range(2)]
            return await asyncio.gather(*posts), await client.get("/healthz")

    responses, health = asyncio.run(two_requests())
    app.state.service.close()
    for response in responses:
        assert response.status_code == 503
        assert response.json()["error"] == "deadline_exceeded"
        assert "retry-after" not in response.headers  # a missed deadline is final
    assert health.json()["workers"]["replicas"] == 1
    assert engine.sizes == [1]  # the second request was never run


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8])
def test_default_plan_never_oversubscribes_the_cores(cores):
    assert plan_workers(cores=cores) == WorkerPlan(1, cores)
    for asked in range(1, 5):
        by_threads = plan_workers(threads=asked, cores=cores)
        by_replicas = plan_workers(replicas=asked, cores=cores)
        assert by_threads.threads == asked and by_replicas.replicas == asked
        for plan in (by_threads, by_replicas):
            assert plan.replicas >= 1 and plan.threads >= 1
            assert plan.replicas * plan.threads <= max(cores, asked)
    assert plan_workers(3, 2, cores=2) == WorkerPlan(3, 2)  # both given: as asked
    with pytest.raises(ValueError, match="max_batch"):
        plan_workers(max_batch=0, cores=2)


def test_the_app_defaults_to_one_replica_per_core_the_engine_leaves(segmenter, monkeypatch):
    monkeypatch.setattr("atrous.serve.workers.default_threads", lambda: 3)
    app = create_app(segmenter)
    pool = app.state.service.pool
    try:
        assert len(pool.replicas) == 3
        # and batches of what is queued, with no wait (a lone request runs at once)
        assert pool.max_batch == 4 and pool.batch_window == 0.0
        assert all(
            isinstance(s.engine, TorchEngine) and s.engine.threads == 1 for s in pool.replicas
        )
        assert {t.name for t in threading.enumerate()} >= {"atrous-engine-0", "atrous-engine-2"}
    finally:
        pool.close()
