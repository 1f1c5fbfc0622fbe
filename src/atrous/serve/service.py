"""The service behind the HTTP app: decode, segment on the engine pool, encode.

Inference runs on an :class:`atrous.serve.workers.EnginePool` (replicas x threads, optional
micro-batching), so concurrent requests never oversubscribe the cores and the event loop stays
free to answer health checks, metrics and 503s.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi.responses import JSONResponse, Response
from PIL import Image

from atrous.data.io import encode_mask_png, fast_decode_image
from atrous.errors import InputError
from atrous.segmenter import Prediction, Segmenter
from atrous.serve.limits import InflightQueue, ServeError, ServeLimits, UploadBudget, probe_image
from atrous.serve.metrics import ServeMetrics
from atrous.serve.workers import DeadlineExceeded, EnginePool, WorkerPlan, plan_workers
from atrous.visualize import legend, overlay

__all__ = ["OutputFormat", "SegmentService", "Segmentation", "timing_headers"]

OutputFormat = Literal["png", "overlay", "json"]


@dataclass
class Segmentation:
    """One served segmentation: the decoded image, its prediction and timings (ms)."""

    image: np.ndarray
    image_format: str
    prediction: Prediction
    timings: dict[str, float]


class SegmentService:
    """Decodes, segments and encodes images for the app; owns the engine pool."""

    def __init__(
        self, segmenter: Segmenter, limits: ServeLimits, plan: WorkerPlan | None = None
    ) -> None:
        self.segmenter = segmenter
        self.card = segmenter.card
        self.limits = limits
        self.queue = InflightQueue(limits.queue, limits.retry_after)
        self.uploads = UploadBudget(limits.upload_budget, limits.retry_after)
        self.metrics = ServeMetrics(inflight=lambda: self.queue.inflight)
        self.plan = plan or plan_workers(threads=segmenter.engine.threads or 1)
        self.pool = EnginePool.from_plan(segmenter, self.plan)
        # decoded images between decoding and the end of inference: what the replicas hold
        # (a full batch each) plus one batch decoded and ready
        self.pipeline = asyncio.Semaphore(self.pool.capacity + self.pool.max_batch)
        self.skip_background = bool(self.card.classes) and self.card.classes[0] == "background"

    def probe(self, data: bytes) -> str:
        """The image format of an upload, read from its header (ServeError if refused)."""
        return probe_image(data, self.limits.max_pixels)[0]

    async def segment(self, data: bytes, image_format: str) -> Segmentation:
        """Decode and segment probed image bytes (raising ServeError on bad input, and 503
        ``deadline_exceeded`` past the plan's deadline).

        Only a bounded number of requests are between decoding and the end of inference, so
        decoded images do not pile up in memory while they wait for the engine.
        """
        start = time.perf_counter()
        deadline = None if self.plan.deadline is None else start + self.plan.deadline
        try:
            async with asyncio.timeout_at(_loop_time(deadline)):
                return await self._segment(data, image_format, start, deadline)
        except (TimeoutError, DeadlineExceeded):
            raise ServeError(
                503,
                "deadline_exceeded",
                f"not served within the {self.plan.deadline:g} s deadline (server busy)",
            ) from None

    async def _segment(
        self, data: bytes, image_format: str, start: float, deadline: float | None
    ) -> Segmentation:
        async with self.pipeline:
            admitted = time.perf_counter()
            try:
                image = await asyncio.to_thread(
                    fast_decode_image, data, "upload", max_pixels=self.limits.max_pixels
                )
            except InputError as exc:
                raise ServeError(422, "corrupt_image", str(exc)) from None
            decoded = time.perf_counter()
            try:
                prediction, started = await self.pool.predict(image, deadline)
            except InputError as exc:
                raise ServeError(422, "invalid_image", str(exc)) from None
        self.metrics.inference.observe(prediction.timings["total_ms"] / 1e3)
        timings = {
            "decode_ms": (decoded - admitted) * 1e3,
            "queue_ms": (admitted - start + started - decoded) * 1e3,
            **{
                key: prediction.timings[key]
                for key in ("preprocess_ms", "infer_ms", "postprocess_ms")
            },
        }
        return Segmentation(image, image_format, prediction, timings)

    def close(self) -> None:
        """Stop the engine pool's workers once their requests are done."""
        self.pool.close()

    def classes_present(self, mask: np.ndarray) -> list[dict[str, Any]]:
        """Classes in the mask with their id, colour and pixel fraction, largest first."""
        ids = {name: i for i, name in enumerate(self.card.classes)}
        return [
            {"id": ids.get(name, -1), "name": name, "color": list(color), "fraction": fraction}
            for name, color, fraction in legend(mask, self.card.classes, self.card.palette)
        ]

    def overlay_jpeg(self, result: Segmentation, alpha: float) -> bytes:
        """The colour mask blended over the image, as JPEG bytes."""
        blended = overlay(
            result.image,
            result.prediction.mask,
            self.card.palette,
            alpha,
            skip_background=self.skip_background,
        )
        buffer = io.BytesIO()
        Image.fromarray(blended).save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()

    def render(
        self, result: Segmentation, fmt: OutputFormat, alpha: float, include_mask: bool
    ) -> Response:
        """Encode a segmentation as a palette PNG, a JPEG overlay or JSON."""
        start = time.perf_counter()
        mask = result.prediction.mask
        if fmt == "png":
            body, media = encode_mask_png(mask, self.card.palette), "image/png"
        elif fmt == "overlay":
            body, media = self.overlay_jpeg(result, alpha), "image/jpeg"
        else:
            payload = {
                "model": self.card.name,
                "width": int(mask.shape[1]),
                "height": int(mask.shape[0]),
                "input_format": result.image_format,
                "classes": self.classes_present(mask),
            }
            if include_mask:
                encoded = base64.b64encode(encode_mask_png(mask, self.card.palette)).decode()
                payload["mask_png"] = "data:image/png;base64," + encoded
            timings = self._finish_timings(result, start)
            return JSONResponse({**payload, "timings": timings}, headers=timing_headers(timings))
        timings = self._finish_timings(result, start)
        return Response(body, media_type=media, headers=timing_headers(timings))

    @staticmethod
    def _finish_timings(result: Segmentation, encode_start: float) -> dict[str, float]:
        timings = dict(result.timings)
        timings["encode_ms"] = (time.perf_counter() - encode_start) * 1e3
        timings["total_ms"] = sum(timings.values())
        return {key: round(value, 3) for key, value in timings.items()}


def timing_headers(timings: dict[str, float]) -> dict[str, str]:
    """Server-Timing header (shown by browser dev tools) from the timings in ms."""
    parts = [f"{key.removesuffix('_ms')};dur={value:.3f}" for key, value in timings.items()]
    return {"Server-Timing": ", ".join(parts)}


def _loop_time(deadline: float | None) -> float | None:
    """A time.perf_counter() deadline on the event loop's clock (None stays None)."""
    if deadline is None:
        return None
    return asyncio.get_running_loop().time() + deadline - time.perf_counter()
