"""Fixtures of the perf tests: endpoints in subprocesses (trivial, or the reference server with a request counter).

Every server binds 127.0.0.1 on a free port and is stopped when its test ends.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.harness_capacity import trivial_endpoint
from launch import ManagedProcess, free_loopback_port
from perf.runner import subprocess_environment

API_KEY = "perf-test-key"
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Server:
    url: str

    def seen(self) -> dict[str, int]:
        """What the server counted (the reference server wrapped by tests/perf/counting_server.py)."""
        counts: dict[str, int] = httpx.get(f"{self.url}/_seen", timeout=5).json()
        return counts

    def bodies(self) -> list[Any]:
        """Every generation request's JSON body the server was sent, in arrival order (counting_server.py)."""
        bodies: list[Any] = httpx.get(f"{self.url}/_bodies", timeout=5).json()
        return bodies


TrivialFactory = Callable[..., str]
ReferenceFactory = Callable[..., Server]


@pytest.fixture
def start_trivial() -> Iterator[TrivialFactory]:
    """Start benchmarks/trivial_server.py with the given options; returns its URL."""
    with ExitStack() as stack:
        yield lambda *arguments: stack.enter_context(trivial_endpoint(*arguments))


def _reference_available() -> bool:
    try:
        return importlib.util.find_spec("reference_server.server") is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture
def start_reference() -> Iterator[ReferenceFactory]:
    """Start the reference server (simulated backend) behind a request counter; returns it when it answers."""
    if not _reference_available():
        pytest.skip("the reference server is not importable")
    processes: list[ManagedProcess] = []

    def start(*arguments: str) -> Server:
        port = free_loopback_port()
        command = [sys.executable, "-m", "tests.perf.counting_server", "--port", str(port), "--api-key", API_KEY]
        process = ManagedProcess(
            [*command, *arguments],
            name="the counting reference server",
            environment=subprocess_environment(""),
            cwd=ROOT,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        try:
            process.wait_http(f"{url}/_seen", timeout_s=30)
        except RuntimeError as exc:
            pytest.fail(str(exc))
        return Server(url)

    yield start
    for process in processes:
        process.stop(grace_s=10)


def locust_counts(out_dir: Path) -> tuple[int, int]:
    """(requests, 429s) in Locust's final CSVs, leaving out the TTFT/ITL METRIC entries and the total row."""
    with (out_dir / "locust_stats.csv").open(newline="") as file:
        requests = sum(int(row["Request Count"]) for row in csv.DictReader(file) if row["Type"] not in ("METRIC", ""))
    with (out_dir / "locust_failures.csv").open(newline="") as file:
        rejected = sum(int(row["Occurrences"]) for row in csv.DictReader(file) if "HTTP 429" in row["Error"])
    return requests, rejected
