"""Browser-facing protections of the HTTP service: the Host allow-list and security headers.

A server bound to localhost is reachable from any web page the user opens through DNS
rebinding (a hostile name that resolves to 127.0.0.1): answering only requests whose Host header
names this machine closes that door. The headers stop MIME sniffing, framing and referrer leaks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from atrous.serve.limits import ServeError, error_response

__all__ = [
    "LOOPBACK_HOSTS",
    "PAGE_CSP",
    "HostCheckMiddleware",
    "SecurityHeadersMiddleware",
    "allowed_hosts_for",
    "host_name",
]

LOOPBACK_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

# The page loads its own script and style, shows the mask as a data: URL and the photo as a
# blob: URL, and talks to this server only.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def host_name(header: str) -> str:
    """The host of a Host header, lowercase, without port, IPv6 brackets or a trailing dot."""
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8000
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        header = header.split(":", 1)[0]
    return header.rstrip(".")


def is_loopback(bind: str) -> bool:
    """Whether a listen address only accepts connections from this machine."""
    if bind.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(bind: str, given: Iterable[str] | None = None) -> tuple[str, ...] | None:
    """The Host allow-list of a server listening on ``bind``; None accepts any host.

    ``given`` wins ("*" in it accepts any host); else a loopback address allows the loopback
    names only, and any other address any host (its public names are not known here).
    """
    if given:
        names = tuple(host_name(h) for h in given if h.strip())
        return None if "*" in names else names
    return LOOPBACK_HOSTS if is_loopback(bind) else None


class HostCheckMiddleware:
    """ASGI middleware answering 400 to requests whose Host is not in ``allowed`` (any port)."""

    def __init__(self, app, allowed: Iterable[str] | None) -> None:
        self.app = app
        self.allowed = None if allowed is None else frozenset(host_name(h) for h in allowed)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.allowed is None:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if host_name(header) not in self.allowed:
            shown = header[:100] or "(none)"
            refusal = ServeError(400, "invalid_host", f"host {shown!r} is not served here")
            await error_response(refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class SecurityHeadersMiddleware:
    """ASGI middleware adding nosniff, no-framing and no-referrer headers to every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in SECURITY_HEADERS if h[0] not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
