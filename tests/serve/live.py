"""A real uvicorn server on a free loopback port, in a thread, for tests that need a socket."""
import contextlib
import socket
import threading
import time


@contextlib.contextmanager
def live_server(app, **options):
    """Yield ``(server, port)`` for ``app`` served by :func:`csnet.serve.server.build_server` (``options`` go
    to it, e.g. ``max_connections``); stopped on exit."""
    from csnet.serve.server import build_server

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # a free loopback port, held from now on: no race
    port = sock.getsockname()[1]
    server = build_server(app, log_level="warning", **options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield server, port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
