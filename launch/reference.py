"""The one launcher of the reference server: `llamacert serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from launch.process import ManagedProcess, free_loopback_port

__all__ = ["ReferenceServer"]


class ReferenceServer:
    """`llamacert serve` with the given flags, a generated key, on 127.0.0.1; always stopped.

    The server runs as a process (not imported), so the layers above can start it without this
    package depending on them.
    """

    def __init__(
        self, extra_args: Sequence[str] = (), profile: str | None = None, *, api_key: str | None = None
    ) -> None:
        self.port = free_loopback_port()
        self.api_key = api_key or secrets.token_urlsafe(16)
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable,
            "-m",
            "llamacert.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            # `=`: a key may begin with "-", which argparse would take for an option
            f"--api-key={self.api_key}",
            *extra_args,
        ]
        if profile:
            command += ["--profile", profile]
        self.managed = ManagedProcess(command, name="the reference server")

    @property
    def process(self) -> ManagedProcess:
        return self.managed

    def log_tail(self, characters: int = 6000) -> str:
        return self.managed.log_tail(characters)

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        # a first vLLM start exports the embedded model and loads the engine: minutes on 2 cores
        self.managed.wait_http(f"{self.url}/health", timeout_s=timeout_s)

    def stop(self) -> int | None:
        return self.managed.stop()

    def __enter__(self) -> Self:
        self.wait_ready()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
