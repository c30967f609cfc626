"""Host and Origin checks: only the service's own page (and origins the user allows) may call it.

A service on 127.0.0.1 is still reachable from any web page the user visits: the page can POST to it
(the browser sends the request, only the answer is hidden from the page), and with DNS rebinding a
hostile name that resolves to 127.0.0.1 can read the answers too. So:

- ``Host`` must be a loopback name, the bound host, or one the caller adds (a rebinding name is none);
  a service bound to all interfaces (``0.0.0.0`` / ``::``) cannot know its public names and skips this;
- a request carrying ``Origin`` must come from the service's own origin (the same host and port as its
  ``Host``) or one of ``allow_origins`` (``csnet serve --allow-origin``). Requests without ``Origin``
  (curl, scripts, same-origin GETs) are not from another web page and pass.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Iterable, Optional
from urllib.parse import urlsplit

__all__ = ["OriginGuard", "LOOPBACK_HOSTS"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_ANY_INTERFACE = ("0.0.0.0", "::", "")

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def _hostname(host: str) -> str:
    """``host[:port]`` (or ``[v6]:port``) -> the lower-case name without port or brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class OriginGuard:
    """ASGI middleware answering 403 (the JSON error format) to requests from foreign hosts or origins.

    Args:
        app: the wrapped ASGI app.
        bound_host: the address the server listens on; its name is an allowed ``Host``.
        allow_origins: extra origins (``scheme://host[:port]``) whose pages may call the service.
        allow_hosts: extra ``Host`` names (e.g. the name of a reverse proxy in front of the service).
    """

    def __init__(self, app: Callable[..., Any], *, bound_host: str = "127.0.0.1",
                 allow_origins: Iterable[str] = (), allow_hosts: Iterable[str] = ()) -> None:
        self.app = app
        bound = _hostname(bound_host)
        self.any_host = bound in _ANY_INTERFACE
        self.hosts = {*LOOPBACK_HOSTS, bound, *(_hostname(h) for h in allow_hosts)}
        self.origins = {origin.rstrip("/").lower() for origin in allow_origins}

    def refusal(self, headers: dict[bytes, bytes]) -> Optional[str]:
        """Why a request with these headers is refused, or None."""
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.any_host and _hostname(host) not in self.hosts:
            return (f"Host {host!r:.100} is not this service's (allowed: {', '.join(sorted(self.hosts))}); "
                    f"start csnet serve with --allow-host NAME to answer to that name")
        origin = headers.get(b"origin")
        if origin is None:
            return None
        text = origin.decode("latin-1").rstrip("/").lower()
        if text in self.origins:
            return None
        parts = urlsplit(text)
        if parts.scheme in ("http", "https") and parts.netloc == host.strip().lower():
            return None  # the service's own page
        return (f"requests from origin {text!r:.100} are refused; start csnet serve with --allow-origin "
                f"{text[:100]} to allow that page to call the service")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for key, value in scope.get("headers", ()):
            headers.setdefault(key.lower(), value)
        problem = self.refusal(headers)
        if problem is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": {"status": 403, "message": problem}}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
