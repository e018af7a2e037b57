"""Fixtures shared by the project's tests: reference servers on free loopback ports, always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from conformance.plugin import EmbeddedServer

ServerFactory = Callable[..., EmbeddedServer]


@pytest.fixture(scope="session")
def model_server() -> Iterator[EmbeddedServer]:
    """`llamacert serve` on the embedded SmolLM2 (llama.cpp), managed-compute profile."""
    server = EmbeddedServer(["--context-length", "2048"], profile=None)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Start `llamacert serve` with any flags; every server started is stopped after the test."""
    started: list[EmbeddedServer] = []

    def start(*args: str, profile: str | None = None) -> EmbeddedServer:
        server = EmbeddedServer(list(args), profile=profile)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
