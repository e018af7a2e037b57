"""The stress suite (`tox -e stress`): servers on loopback, each loop bounded in count and time.

Counts and durations scale with LLAMACERT_STRESS_SCALE (default 1, the full suite); the figures
each test measured are printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from launch import ReferenceServer
from tests.stress.figures import FIGURES, SCALE_ENV, idle_cpu_percent


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("stress figures")
    scale = os.environ.get(SCALE_ENV, "1")
    terminalreporter.write_line(f"scale {scale} (LLAMACERT_STRESS_SCALE); idle CPU now {idle_cpu_percent():.0f} %")
    for line in FIGURES:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def simulated_server() -> Iterator[ReferenceServer]:
    """The simulated backend with a little per-token latency, so streams are still running when dropped."""
    with ReferenceServer(["--backend", "simulated", "--simulated-token-s", "0.002"]) as server:
        yield server


@pytest.fixture(scope="session")
def model_server() -> Iterator[ReferenceServer]:
    """The embedded SmolLM2 on llama.cpp, one thread (two collapse when the other core is busy)."""
    with ReferenceServer(["--backend", "llamacpp", "--context-length", "2048", "--threads", "1"]) as server:
        yield server
