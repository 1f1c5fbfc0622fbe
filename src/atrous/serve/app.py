"""The HTTP service: segment uploaded images with one model, behind bounded limits.

Inference runs on a pool of engine replicas (:mod:`atrous.serve.service`,
:mod:`atrous.serve.workers`), so concurrent requests never oversubscribe the cores and the event
loop stays free to answer health checks, metrics and 503s. An
upload is read (within ``body_timeout``) and its image header checked before the request takes
a place in the queue, so slow or bad uploads never hold one.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from atrous.segmenter import Segmenter
from atrous.serve.limits import (
    BodyLimitMiddleware,
    ServeError,
    ServeLimits,
    error_response,
    too_large,
)
from atrous.serve.metrics import CONTENT_TYPE_LATEST, MetricsMiddleware
from atrous.serve.security import PAGE_CSP, HostCheckMiddleware, SecurityHeadersMiddleware
from atrous.serve.service import OutputFormat, Segmentation, SegmentService
from atrous.serve.workers import WorkerPlan

__all__ = ["create_app", "SegmentService", "Segmentation"]

log = logging.getLogger("atrous.serve")

STATIC_DIR = Path(__file__).parent / "static"

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
    workers: WorkerPlan | None = None,
) -> FastAPI:
    """Build the FastAPI app serving ``model`` (a file, zoo name or ready Segmenter).

    Endpoints: POST /v1/segment, GET /v1/model, GET /healthz, GET /metrics, and the page at /.
    ``allowed_hosts``: Host header names answered (any port), others get 400; None answers any
    (``atrous serve`` on a loopback address passes LOOPBACK_HOSTS against DNS rebinding).
    ``workers``: engine replicas, threads, micro-batching and deadline (default: one replica
    per core the engine's threads leave, see :func:`atrous.serve.workers.plan_workers`).
    """
    if isinstance(model, Segmenter):
        segmenter = model
    else:
        segmenter = Segmenter.from_file(model, engine=engine, threads=threads)
    service = SegmentService(segmenter, limits, workers)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await asyncio.to_thread(service.close)

    app = FastAPI(
        title="atrous",
        summary=f"DeepLab semantic segmentation with {segmenter.card.name}",
        lifespan=lifespan,
    )
    app.state.service = service

    _add_error_handlers(app)
    _add_routes(app, service, limits)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_bytes, budget=service.uploads)
    app.add_middleware(HostCheckMiddleware, allowed=allowed_hosts)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Answer every failure with the JSON error body of :func:`error_response`."""

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


def _add_routes(app: FastAPI, service: SegmentService, limits: ServeLimits) -> None:
    """The endpoints: POST /v1/segment, GET /v1/model, /healthz, /metrics and the page at /."""

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
            "workers": service.pool.describe(),
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
