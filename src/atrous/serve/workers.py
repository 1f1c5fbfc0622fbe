"""Engine replicas and micro-batching behind the HTTP service.

An :class:`EnginePool` runs R engine replicas (each with T intra-op threads), one worker thread
each, fed from one queue. R x T fills the cores this process may run on and no more; by default
one replica on every core (on a quiet 2-core AMD EPYC it served 16 clients at 1.64x the req/s of
one client, two 1-thread replicas at 1.49x, and it is the fastest for a single client: see
benchmarks/results/serve_load.md); more replicas run concurrent requests side by side. With
``max_batch`` > 1, a worker that takes a request waits up to
``batch_window`` seconds for more requests of the same padded input size and runs them as one
batch (engines whose input takes a dynamic batch only; others run one request at a time). A
request past its ``deadline`` is never run: it fails with :class:`DeadlineExceeded`.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from atrous import preprocess as _pre
from atrous.errors import InputError
from atrous.runtimes import TorchEngine, default_threads
from atrous.runtimes.contract import StandardOutput
from atrous.runtimes.litert_engine import LiteRtEngine
from atrous.runtimes.onnxruntime_engine import OrtEngine
from atrous.runtimes.openvino_engine import OpenVinoEngine
from atrous.segmenter import Prediction, Segmenter

__all__ = [
    "DeadlineExceeded",
    "EnginePool",
    "WorkerPlan",
    "accepts_batch",
    "padded_size",
    "plan_workers",
    "replicate",
]


class DeadlineExceeded(Exception):
    """A request was not served within its deadline (it was not run, or its answer came late)."""


@dataclass(frozen=True)
class WorkerPlan:
    """How the service runs its engine: ``replicas`` x ``threads``, micro-batching, deadline.

    Args:
        replicas: engine replicas, one worker thread each.
        threads: intra-op threads of each replica.
        max_batch: most requests run as one batch (1: no batching; an engine that cannot
            take a batch runs one at a time).
        batch_window: seconds a worker waits for a batch to fill once it holds a request
            (0: it takes the requests already queued).
        deadline: seconds from a request's admission to its answer, else 503 (None: no limit).
    """

    replicas: int = 1
    threads: int = 1
    # batches of what queued while the engine was busy, with no wait: a lone client's latency
    # is unchanged, 16 concurrent clients get 1.63x one client's requests/s instead of 1.40x
    # (dm0.5 fast int8 at 513, Xeon with AMX, benchmarks/results/serve_load.md; a 5 ms window:
    # 2.04x, but one client 23% slower)
    max_batch: int = 4
    batch_window: float = 0.0
    deadline: float | None = None

    def __post_init__(self) -> None:
        for name in ("replicas", "threads", "max_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.batch_window <= 1:
            raise ValueError(f"batch window must be 0 to 1000 ms, got {self.batch_window * 1e3}")
        if self.deadline is not None and not 0 < self.deadline < math.inf:
            raise ValueError(f"deadline must be a positive number of seconds, got {self.deadline}")


def plan_workers(
    replicas: int | None = None,
    threads: int | None = None,
    cores: int | None = None,
    **options: float | int | None,
) -> WorkerPlan:
    """A WorkerPlan filling ``cores`` (default: those this process may use) without exceeding
    them unless both ``replicas`` and ``threads`` are given: neither given, one replica with a
    thread per core; one given, the other fills the cores. ``options``: the other
    :class:`WorkerPlan` fields (``max_batch``, ``batch_window``, ``deadline``)."""
    cores = cores or default_threads()
    if threads is None:
        threads = max(1, cores // replicas) if replicas else cores
    if replicas is None:
        replicas = max(1, cores // threads)
    return WorkerPlan(replicas, threads, **options)


def replicate(engine: object, threads: int) -> object | None:
    """A new engine running the same model with ``threads`` intra-op threads (a PyTorch replica
    shares the module), or None for an engine it does not know how to open again."""
    if isinstance(engine, StandardOutput):
        inner = replicate(engine.engine, threads)
        return None if inner is None else StandardOutput(inner, engine.layout, engine.output)
    if isinstance(engine, TorchEngine):
        return TorchEngine(engine.model, threads, engine.channels_last, engine.source)
    if isinstance(engine, OpenVinoEngine):
        return OpenVinoEngine(engine.path, threads, precision=engine.precision)
    if isinstance(engine, OrtEngine | LiteRtEngine):
        return type(engine)(engine.path, threads)
    return None


def accepts_batch(engine: object) -> bool:
    """Whether ``engine`` runs a batch of several images: PyTorch, or an input whose batch
    dimension is dynamic (a fixed batch of 1 runs one request at a time)."""
    if isinstance(engine, StandardOutput):
        return accepts_batch(engine.engine)
    if isinstance(engine, TorchEngine):
        return True
    signature = getattr(engine, "signature", None)
    if signature is None:
        return False
    try:
        return signature().input_shape[0] is None
    except Exception:  # an engine that cannot say: one request at a time
        return False


def padded_size(segmenter: Segmenter, image: np.ndarray) -> tuple[int, int]:
    """The padded network input size of ``image``: only images of the same padded size share
    a batch, so a batched image is preprocessed exactly as it would be alone."""
    pre = segmenter.card.preprocessing
    th, tw = _pre.target_size(pre, image.shape[0], image.shape[1])
    m = pre.pad_multiple
    ph, pw = -(-th // m) * m, -(-tw // m) * m
    if pre.resize == "fixed" and pre.size is not None:
        ph, pw = max(ph, pre.size), max(pw, pre.size)
    return ph, pw


@dataclass(eq=False)  # identity: the queue removes jobs by identity
class _Job:
    image: np.ndarray
    key: tuple[int, int]
    deadline: float | None  # time.perf_counter() past which it is not run
    future: Future


class EnginePool:
    """Worker threads, one per Segmenter (replica), taking requests from one queue.

    ``submit`` returns a Future of (Prediction, time its run started); ``predict`` awaits it
    within the request's deadline. ``batches`` counts the batches run by their size.
    """

    def __init__(
        self, replicas: list[Segmenter], max_batch: int = 1, batch_window: float = 0.0
    ) -> None:
        if not replicas:
            raise ValueError("an EnginePool needs at least one replica")
        self.replicas = replicas
        self.batching = max_batch > 1 and all(accepts_batch(s.engine) for s in replicas)
        self.max_batch = max_batch if self.batching else 1
        self.batch_window = batch_window
        self.batches: Counter[int] = Counter()
        self._pending: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(s,), name=f"atrous-engine-{i}", daemon=True)
            for i, s in enumerate(replicas)
        ]
        for thread in self._threads:
            thread.start()

    @classmethod
    def from_plan(cls, segmenter: Segmenter, plan: WorkerPlan) -> EnginePool:
        """The pool ``plan`` asks for, built from ``segmenter`` (used as the first replica when
        it already runs at ``plan.threads``); an engine that cannot be replicated gives one."""
        replicas = [segmenter] if segmenter.engine.threads == plan.threads else []
        while len(replicas) < plan.replicas:
            engine = replicate(segmenter.engine, plan.threads)
            if engine is None:
                replicas = replicas or [segmenter]
                break
            replicas.append(Segmenter(engine, segmenter.card))
        return cls(replicas, plan.max_batch, plan.batch_window)

    @property
    def capacity(self) -> int:
        """Requests the replicas can hold at once (running or filling a batch)."""
        return len(self.replicas) * self.max_batch

    def describe(self) -> dict[str, int | float]:
        """Replicas, threads each, batching, and the batches run so far (and their mean size)."""
        with self._ready:
            batches = sum(self.batches.values())
            requests = sum(size * n for size, n in self.batches.items())
        return {
            "replicas": len(self.replicas),
            "threads": self.replicas[0].engine.threads,
            "max_batch": self.max_batch,
            "batch_window_ms": self.batch_window * 1e3,
            "batches": batches,
            "mean_batch": round(requests / batches, 3) if batches else 0.0,
        }

    def submit(self, image: np.ndarray, deadline: float | None = None) -> Future:
        """Queue one RGB image; ``deadline``: time.perf_counter() past which it is not run."""
        if self._closed:
            raise RuntimeError("the engine pool is closed")
        key = padded_size(self.replicas[0], image) if self.batching else (0, 0)
        job = _Job(image, key, deadline, Future())
        with self._ready:
            self._pending.append(job)
            self._ready.notify_all()
        return job.future

    async def predict(
        self, image: np.ndarray, deadline: float | None = None
    ) -> tuple[Prediction, float]:
        """The prediction of one image and when its run started (DeadlineExceeded past the
        deadline, given as time.perf_counter())."""
        future = asyncio.wrap_future(self.submit(image, deadline))
        if deadline is None:
            return await future
        try:
            async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                return await future
        except TimeoutError:
            raise DeadlineExceeded("not served within its deadline") from None

    def close(self) -> None:
        """Stop the workers once the queued requests are done."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(timeout=60)

    # -- worker side ---------------------------------------------------------------------------
    def _take(self) -> list[_Job] | None:
        """The next batch: the first live request, then (batching) live requests of its size
        arriving within the window; None once closed and empty."""
        with self._ready:
            first = None
            while first is None:
                while not self._pending:
                    if self._closed:
                        return None
                    self._ready.wait()
                first = self._live(self._pending.popleft())
            batch = [first]
            end = time.perf_counter() + self.batch_window
            while len(batch) < self.max_batch:
                for job in [j for j in self._pending if j.key == first.key]:
                    self._pending.remove(job)
                    if self._live(job) is not None:
                        batch.append(job)
                    if len(batch) == self.max_batch:
                        break
                left = end - time.perf_counter()
                if len(batch) == self.max_batch or left <= 0 or self._closed:
                    break
                self._ready.wait(left)
        return batch

    @staticmethod
    def _live(job: _Job) -> _Job | None:
        """``job`` marked running, or None (and failed) if cancelled or past its deadline."""
        if not job.future.set_running_or_notify_cancel():
            return None
        if job.deadline is not None and time.perf_counter() > job.deadline:
            job.future.set_exception(DeadlineExceeded("not run within its deadline"))
            return None
        return job

    def _work(self, segmenter: Segmenter) -> None:
        while (batch := self._take()) is not None:
            started = time.perf_counter()
            try:
                predictions = segmenter.predict_batch([job.image for job in batch])
            except InputError as exc:
                if len(batch) == 1:
                    batch[0].future.set_exception(exc)
                    continue
                self._one_by_one(segmenter, batch)  # each request gets its own answer
                continue
            except Exception as exc:
                for job in batch:
                    job.future.set_exception(exc)
                continue
            self._count(len(batch))
            for job, prediction in zip(batch, predictions, strict=True):
                job.future.set_result((prediction, started))

    def _count(self, size: int) -> None:
        with self._ready:
            self.batches[size] += 1

    def _one_by_one(self, segmenter: Segmenter, batch: list[_Job]) -> None:
        for job in batch:
            started = time.perf_counter()
            try:
                prediction = segmenter.predict_batch([job.image])[0]
            except Exception as exc:
                job.future.set_exception(exc)
                continue
            self._count(1)
            job.future.set_result((prediction, started))
