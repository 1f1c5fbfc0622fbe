"""The HTTP service: segment uploaded images with one model, behind bounded limits.

Inference runs in one worker thread per engine, so concurrent requests never oversubscribe the
engine's threads and the event loop stays free to answer health checks, metrics and 503s. An
upload is read (within ``body_timeout``) and its image header checked before the request takes
a place in the queue, so slow or bad uploads never hold one.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from atrous.data.io import decode_image, encode_mask_png
from atrous.errors import InputError
from atrous.segmenter import Prediction, Segmenter
from atrous.serve.limits import (
    BodyLimitMiddleware,
    InflightQueue,
    ServeError,
    ServeLimits,
    UploadBudget,
    error_response,
    probe_image,
    too_large,
)
from atrous.serve.metrics import CONTENT_TYPE_LATEST, MetricsMiddleware, ServeMetrics
from atrous.serve.security import PAGE_CSP, HostCheckMiddleware, SecurityHeadersMiddleware
from atrous.visualize import legend, overlay

__all__ = ["create_app", "SegmentService", "Segmentation"]

log = logging.getLogger("atrous.serve")

STATIC_DIR = Path(__file__).parent / "static"
OutputFormat = Literal["png", "overlay", "json"]
PIPELINE_DEPTH = 2  # one image in the engine, the next one decoded and ready

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "description": "the image, as multipart field 'image' or as the raw request body",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@dataclass
class Segmentation:
    """One served segmentation: the decoded image, its prediction and timings (ms)."""

    image: np.ndarray
    image_format: str
    prediction: Prediction
    timings: dict[str, float]


class SegmentService:
    """Decodes, segments and encodes images for the app; owns the engine's single worker."""

    def __init__(self, segmenter: Segmenter, limits: ServeLimits) -> None:
        self.segmenter = segmenter
        self.card = segmenter.card
        self.limits = limits
        self.queue = InflightQueue(limits.queue, limits.retry_after)
        self.uploads = UploadBudget(limits.upload_budget, limits.retry_after)
        self.metrics = ServeMetrics(inflight=lambda: self.queue.inflight)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atrous-engine")
        self.pipeline = asyncio.Semaphore(PIPELINE_DEPTH)
        self.skip_background = bool(self.card.classes) and self.card.classes[0] == "background"

    def probe(self, data: bytes) -> str:
        """The image format of an upload, read from its header (ServeError if refused)."""
        return probe_image(data, self.limits.max_pixels)[0]

    async def segment(self, data: bytes, image_format: str) -> Segmentation:
        """Decode and segment probed image bytes (raising ServeError on bad input).

        At most PIPELINE_DEPTH requests are between decoding and the end of inference, so
        decoded images do not pile up in memory while they wait for the engine.
        """
        start = time.perf_counter()
        async with self.pipeline:
            admitted = time.perf_counter()
            try:
                image = await asyncio.to_thread(
                    decode_image, data, "upload", max_pixels=self.limits.max_pixels
                )
            except InputError as exc:
                raise ServeError(422, "corrupt_image", str(exc)) from None
            decoded = time.perf_counter()
            loop = asyncio.get_running_loop()
            try:
                prediction, started = await loop.run_in_executor(self.worker, self._predict, image)
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

    def _predict(self, image: np.ndarray) -> tuple[Prediction, float]:
        """Runs in the engine worker: the prediction and when the worker picked it up."""
        started = time.perf_counter()
        return self.segmenter.predict(image), started

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
            return JSONResponse({**payload, "timings": timings}, headers=_timing_headers(timings))
        timings = self._finish_timings(result, start)
        return Response(body, media_type=media, headers=_timing_headers(timings))

    @staticmethod
    def _finish_timings(result: Segmentation, encode_start: float) -> dict[str, float]:
        timings = dict(result.timings)
        timings["encode_ms"] = (time.perf_counter() - encode_start) * 1e3
        timings["total_ms"] = sum(timings.values())
        return {key: round(value, 3) for key, value in timings.items()}


def _timing_headers(timings: dict[str, float]) -> dict[str, str]:
    """Server-Timing header (shown by browser dev tools) from the timings in ms."""
    parts = [f"{key.removesuffix('_ms')};dur={value:.3f}" for key, value in timings.items()]
    return {"Server-Timing": ", ".join(parts)}


async def read_upload(request: Request, limits: ServeLimits) -> bytes:
    """The uploaded image, complete within ``body_timeout`` (else 408); 413 past ``max_bytes``."""
    try:
        async with asyncio.timeout(limits.body_timeout):
            data = await _receive_image(request)
    except TimeoutError:
        raise ServeError(
            408,
            "request_timeout",
            f"upload not complete within {limits.body_timeout:g} s (send it faster)",
        ) from None
    if len(data) > limits.max_bytes:
        raise too_large(len(data), limits.max_bytes)
    return data


async def _receive_image(request: Request) -> bytes:
    """Multipart field 'image' or the raw body (422 when there is none)."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=16) as form:
            item = form.get("image")
            if not isinstance(item, UploadFile):
                raise ServeError(
                    422, "missing_image", "multipart upload has no file field named 'image'"
                )
            data = await item.read()
    else:
        data = await request.body()
    if not data:
        raise ServeError(
            422, "missing_image", "empty request: send an image as the body or as field 'image'"
        )
    return data


def create_app(
    model: str | Path | Segmenter,
    engine: str = "auto",
    threads: int | None = None,
    limits: ServeLimits = ServeLimits(),
    allowed_hosts: tuple[str, ...] | None = None,
) -> FastAPI:
    """Build the FastAPI app serving ``model`` (a file, zoo name or ready Segmenter).

    Endpoints: POST /v1/segment, GET /v1/model, GET /healthz, GET /metrics, and the page at /.
    ``allowed_hosts``: Host header names answered (any port), others get 400; None answers any
    (``atrous serve`` on a loopback address passes LOOPBACK_HOSTS against DNS rebinding).
    """
    if isinstance(model, Segmenter):
        segmenter = model
    else:
        segmenter = Segmenter.from_file(model, engine=engine, threads=threads)
    service = SegmentService(segmenter, limits)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        service.worker.shutdown(wait=True, cancel_futures=True)

    app = FastAPI(
        title="atrous",
        summary=f"DeepLab semantic segmentation with {segmenter.card.name}",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(ServeError(422, "invalid_request", f"{where}: {first['msg']}"))

    @app.exception_handler(ClientDisconnect)
    async def _disconnected(request: Request, _: ClientDisconnect) -> JSONResponse:
        peer = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.warning("atrous serve: %s disconnected before its upload was complete", peer)
        return error_response(ServeError(499, "client_disconnected", "upload not complete"))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        detail = f"internal error ({type(exc).__name__}); see the server log"
        return error_response(ServeError(500, "internal_error", detail))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = "not_found" if exc.status_code == 404 else "http_error"
        return error_response(ServeError(exc.status_code, name, str(exc.detail), exc.headers))

    @app.post("/v1/segment", openapi_extra=_UPLOAD_DOC)
    async def segment(
        request: Request,
        fmt: OutputFormat = Query("json", alias="format", description="png, overlay or json"),
        alpha: float = Query(0.5, ge=0.0, le=1.0, description="overlay opacity"),
        mask: bool = Query(False, description="json: include the mask as a PNG data URL"),
    ) -> Response:
        """Segment one image; answer with the palette PNG mask, a JPEG overlay or JSON."""
        service.queue.check()  # full already: refuse before reading the upload for nothing
        data = await read_upload(request, limits)
        image_format = service.probe(data)
        with service.queue:
            result = await service.segment(data, image_format)
            return await asyncio.to_thread(service.render, result, fmt, alpha, mask)

    @app.get("/v1/model")
    async def model_card() -> JSONResponse:
        """The model card: classes, palette, preprocessing, provenance."""
        return JSONResponse(service.card.model_dump(mode="json"))

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness and load: model, engine, the path it runs (fast-int8, fast-fp32 or the
        engine's name), requests in flight and the queue limit."""
        return {
            "status": "ok",
            "model": service.card.name,
            "engine": service.segmenter.engine.describe(),
            "path": service.segmenter.path_used,
            "inflight": service.queue.inflight,
            "queue": service.queue.capacity,
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text format: requests, latency histogram, errors by status code."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP}
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_bytes, budget=service.uploads)
    app.add_middleware(HostCheckMiddleware, allowed=allowed_hosts)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    return app
