"""One reference server on the real model for the client tests, with content safety on (serverless-llama31)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from launch import ReferenceServer


@pytest.fixture(scope="package")
def served() -> Iterator[ReferenceServer]:
    """`llamacert serve` on the embedded SmolLM2 with the serverless-llama31 profile (content safety included)."""
    server = ReferenceServer(["--context-length", "2048"], profile="serverless-llama31")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
