"""One managed subprocess: spawned with the project environment, waited for, its log kept, always stopped."""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from launch.environment import project_environment

__all__ = ["ManagedProcess", "free_loopback_port"]


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ManagedProcess:
    """A subprocess whose stderr (and stdout unless given elsewhere) goes to a private log file.

    A file, not a pipe: nobody reads a pipe once the process is up, and a full pipe would stall the
    process at its next log line (vLLM's engine logs a lot).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        environment: dict[str, str] | None = None,
        cwd: Path | None = None,
        capture_stdout: bool = True,
    ) -> None:
        self.name = name
        self.command = list(command)
        self._log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            self.command,
            env=environment if environment is not None else project_environment(),
            cwd=cwd,
            stdout=self._log if capture_stdout else None,
            stderr=self._log,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, characters: int = 6000) -> str:
        """The end of what the process has written."""
        if self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()[-characters:]

    def wait_until(self, ready: Callable[[], bool], *, timeout_s: float, poll_s: float = 0.2) -> None:
        """Return once `ready()` holds; raise with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} exited with status {self.process.returncode}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(poll_s)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout_s:.0f} s:\n{tail}")

    def wait_http(self, url: str, *, timeout_s: float, expect_status: int | None = 200) -> None:
        """Wait until GET `url` answers (with `expect_status`, or anything when it is None)."""

        def answers() -> bool:
            try:
                status = httpx.get(url, timeout=2).status_code
            except httpx.HTTPError:
                return False
            return expect_status is None or status == expect_status

        self.wait_until(answers, timeout_s=timeout_s)

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace_s`; the exit status. Safe to call twice."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
