"""The reference server's real uvicorn stack (protocol, limits, app) in a thread, on a free loopback port.

For tests that need real HTTP and sockets but a backend built in the test (a deliberately faulty
one, say), which a `llamacert serve` subprocess cannot take.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn

from reference_server.backends.base import Backend
from reference_server.server import build_app, uvicorn_config
from reference_server.settings import ServerSettings

__all__ = ["KEY", "ThreadedServer", "serve_in_thread"]

KEY = "threaded-test-key"


class ThreadedServer:
    """A running server: its URL, auth headers and the uvicorn server (to inspect its connections)."""

    def __init__(self, url: str, server: uvicorn.Server) -> None:
        self.url = url
        self.server = server
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.auth = {"Authorization": f"Bearer {KEY}"}

    def open_connections(self) -> int:
        return len(self.server.server_state.connections)


@contextlib.contextmanager
def serve_in_thread(settings: ServerSettings, backend: Backend | None = None) -> Iterator[ThreadedServer]:
    """Serve until the block ends; the server is always stopped."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    app = build_app(settings, backend=backend, api_key=KEY)
    server = uvicorn.Server(uvicorn_config(settings, app))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the threaded server did not start")
            time.sleep(0.02)
        httpx.get(f"{url}/health", timeout=5).raise_for_status()
        yield ThreadedServer(url, server)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
