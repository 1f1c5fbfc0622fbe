"""Request limits of the HTTP service: upload size and time, image pixels, the in-flight queue.

Every limit turns into a JSON error with its HTTP status (408, 413, 415, 422, 503), so a client
can tell a too-large upload from a corrupt one, and memory stays bounded under any load.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from starlette.responses import JSONResponse

__all__ = [
    "ServeLimits",
    "ServeError",
    "InflightQueue",
    "UploadBudget",
    "BodyLimitMiddleware",
    "error_response",
    "probe_image",
    "IMAGE_SIGNATURES",
    "SERVED_FORMATS",
]

# Leading bytes of the image formats PIL decodes: bytes that start like an image but do not
# open are a corrupt image (422), anything else is not an image at all (415).
IMAGE_SIGNATURES: tuple[bytes, ...] = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"RIFF",  # WebP (RIFF....WEBP)
    b"P1",
    b"P2",
    b"P3",
    b"P4",
    b"P5",
    b"P6",  # Netpbm
)

# The formats the service opens: common photo formats only. PIL's other plugins (EPS runs
# Ghostscript, and a dozen rarely used formats) are never given untrusted bytes.
SERVED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")

MULTIPART_SLACK = 64 * 1024  # room for multipart boundaries and part headers around the file


@dataclass(frozen=True)
class ServeLimits:
    """Configurable limits of the service.

    Args:
        max_bytes: largest accepted upload (the encoded image), in bytes.
        max_pixels: largest accepted image, width x height, checked before decoding. One
            inference holds the logits at full size (4 bytes x classes per pixel), so this
            bounds the memory of a request.
            At most PIL's decompression-bomb limit (about 89 M pixels).
        queue: most requests admitted at once (running or waiting for the engine); more get 503.
            A request is admitted once its whole upload has arrived and its header was read,
            so a slow upload never holds a place.
        retry_after: seconds sent in the Retry-After header of a 503.
        body_timeout: seconds an upload may take to arrive, from the request's headers to its
            last byte; past it the request is answered 408.
    """

    max_bytes: int = 20_000_000
    max_pixels: int = 16_000_000  # a 12 MP photo fits; see the docstring for its memory
    queue: int = 16
    retry_after: int = 1
    body_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "queue", "retry_after"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.body_timeout < float("inf"):
            raise ValueError(f"body_timeout must be a positive number, got {self.body_timeout}")
        if self.max_pixels > Image.MAX_IMAGE_PIXELS:
            raise ValueError(
                f"max_pixels must be at most {Image.MAX_IMAGE_PIXELS:,} (the decompression-bomb "
                f"limit), got {self.max_pixels:,}"
            )

    @property
    def upload_budget(self) -> int:
        """Bytes that uploads still arriving may hold at once: a full queue's worth."""
        return self.queue * (self.max_bytes + MULTIPART_SLACK)


class ServeError(Exception):
    """A request the service refuses: HTTP status, a short error code and a one-line detail."""

    def __init__(
        self, status: int, error: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


class InflightQueue:
    """Admits at most ``capacity`` requests at once; the rest are refused with 503 at once.

    Used from the event loop only, so a plain counter is enough (no lock).
    """

    def __init__(self, capacity: int, retry_after: int = 1) -> None:
        self.capacity = capacity
        self.retry_after = retry_after
        self.inflight = 0

    def check(self) -> None:
        """Raise the 503 now if the queue is full (e.g. before reading an upload for nothing)."""
        if self.inflight >= self.capacity:
            raise overloaded(
                f"server busy: {self.inflight} requests in flight (queue limit {self.capacity})",
                self.retry_after,
            )

    def __enter__(self) -> InflightQueue:
        self.check()
        self.inflight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.inflight -= 1


def overloaded(detail: str, retry_after: int) -> ServeError:
    """The 503 refusal, with the Retry-After a client should honour."""
    return ServeError(503, "overloaded", detail, headers={"Retry-After": str(retry_after)})


class UploadBudget:
    """Bytes held by uploads still arriving, shared by all requests; past ``capacity``, 503.

    Bounds the memory of bodies in transit by their bytes, not their number, so clients that
    trickle a few bytes hold almost nothing while a flood of large uploads is refused.
    Used from the event loop only (no lock).
    """

    def __init__(self, capacity: int, retry_after: int = 1) -> None:
        self.capacity = capacity
        self.retry_after = retry_after
        self.held = 0

    def take(self, size: int) -> None:
        """Account ``size`` more bytes, or raise 503 if they do not fit."""
        if self.held + size > self.capacity:
            raise overloaded(
                f"server busy: uploads in transit hold {self.held:,} bytes "
                f"(limit {self.capacity:,})",
                self.retry_after,
            )
        self.held += size

    def release(self, size: int) -> None:
        """Give back ``size`` bytes once their upload is complete or abandoned."""
        self.held -= size


def error_response(error: ServeError) -> JSONResponse:
    """The JSON body every refusal has: ``{"error": code, "detail": one line}``."""
    return JSONResponse(
        {"error": error.error, "detail": error.detail},
        status_code=error.status,
        headers=error.headers,
    )


def too_large(size: int, limit: int) -> ServeError:
    """The 413 error for an upload of ``size`` bytes over ``limit``."""
    return ServeError(
        413, "payload_too_large", f"upload of {size:,} bytes exceeds the {limit:,} byte limit"
    )


class BodyLimitMiddleware:
    """ASGI middleware that stops reading a request body past ``max_bytes``.

    A declared Content-Length over the limit is refused before any byte is read; a body that
    streams past it raises ServeError(413) inside ``receive``, so a client cannot make the
    server buffer an unbounded upload. Bytes received count against ``budget`` until the body
    is complete (ServeError 503 past it).
    """

    def __init__(
        self, app, max_bytes: int, budget: UploadBudget, slack: int = MULTIPART_SLACK
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.cap = max_bytes + slack
        self.budget = budget

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.cap:
            await error_response(too_large(int(declared), self.max_bytes))(scope, receive, send)
            return
        received = held = 0

        async def limited_receive():
            nonlocal received, held
            message = await receive()
            if message["type"] == "http.request":
                size = len(message.get("body", b""))
                received += size
                if received > self.cap:
                    raise too_large(received, self.max_bytes)
                self.budget.take(size)
                held += size
                if not message.get("more_body", False):
                    self.budget.release(held)
                    held = 0
            return message

        try:
            await self.app(scope, limited_receive, send)
        finally:
            self.budget.release(held)


def probe_image(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Identify encoded image bytes without decoding them: (format, width, height).

    Raises ServeError 415 for bytes that are not an image of SERVED_FORMATS, 422 for an image
    whose header is broken, 413 for an image over ``max_pixels`` (or PIL's bomb limit).
    """
    try:
        with Image.open(io.BytesIO(data), formats=SERVED_FORMATS) as image:
            fmt, (width, height) = image.format or "unknown", image.size
    except Image.DecompressionBombError:
        bomb = 2 * Image.MAX_IMAGE_PIXELS  # PIL refuses to open images past this
        raise ServeError(
            413,
            "too_many_pixels",
            f"image of more than {bomb:,} pixels exceeds the {max_pixels:,} pixel limit",
        ) from None
    except UnidentifiedImageError:
        if data.startswith(IMAGE_SIGNATURES):
            raise ServeError(
                422, "corrupt_image", "corrupt image: its header cannot be read"
            ) from None
        raise ServeError(
            415, "unsupported_media_type", "not an image (unrecognised format)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise ServeError(422, "corrupt_image", f"corrupt image ({reason})") from None
    if width * height > max_pixels:
        raise ServeError(
            413,
            "too_many_pixels",
            f"image of {width}x{height} ({width * height:,} pixels) exceeds the "
            f"{max_pixels:,} pixel limit",
        )
    return fmt, width, height
