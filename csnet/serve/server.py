"""Running the app under uvicorn, with the connection limit answered in the service's JSON error format.

uvicorn's own ``limit_concurrency`` answers ``503 Service Unavailable`` in plain text from inside its protocol
code, where no app can change it. :class:`ConnectionLimit` makes the same decision (open connections and
requests in progress, read from the uvicorn server's state) as the outermost layer of the app and answers
``{"error": {"status": 503, ...}}`` like every other error of the service.
"""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Optional

__all__ = ["ConnectionLimit", "build_server"]

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class ConnectionLimit:
    """ASGI middleware: 503 (JSON) when more than ``limit`` connections are open or requests in progress.

    Args:
        app: the wrapped ASGI app.
        limit: the most connections (and requests) served at once.
        server_state: uvicorn's ``Server.server_state`` (its ``connections`` and ``tasks``); without it
            (e.g. under a test client) only the requests in progress in this app are counted.
    """

    def __init__(self, app: Callable[..., Any], *, limit: int, server_state: Optional[Any] = None) -> None:
        if limit < 1:
            raise ValueError(f"the connection limit must be positive, got {limit}")
        self.app = app
        self.limit = int(limit)
        self.server_state = server_state
        self.active = 0
        self.refused = 0

    def over_limit(self) -> bool:
        state = self.server_state
        if state is not None:  # each request in progress is one of uvicorn's tasks, this one included
            return len(state.connections) > self.limit or len(state.tasks) > self.limit
        return self.active > self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.active += 1
        try:
            if not self.over_limit():
                await self.app(scope, receive, send)
                return
            self.refused += 1
            body = json.dumps({"error": {"status": 503, "message": (
                f"the service is at its limit of {self.limit} connections; retry in a moment "
                "(csnet serve --max-connections raises it)")}}).encode()
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
        finally:
            self.active -= 1


def build_server(app: Callable[..., Any], *, host: str = "127.0.0.1", port: int = 8000, max_connections: int = 64,
                 log_level: str = "info", **config: Any):
    """A ``uvicorn.Server`` for ``app`` behind :class:`ConnectionLimit` (uvicorn's own limit stays off).

    Extra keyword arguments go to ``uvicorn.Config``. Run it with ``server.run()`` (or
    ``server.run(sockets=[...])`` on sockets already bound).
    """
    import uvicorn

    limited = ConnectionLimit(app, limit=max_connections)
    server = uvicorn.Server(uvicorn.Config(limited, host=host, port=port, log_level=log_level, **config))
    limited.server_state = server.server_state
    return server
