"""What the stress suite measured: each test records its figures here; the suite prints them at the end."""

from __future__ import annotations

import os

import psutil

__all__ = ["FIGURES", "idle_cpu_percent", "record", "scaled"]

FIGURES: list[str] = []
SCALE_ENV = "LLAMACERT_STRESS_SCALE"


def record(test: str, text: str) -> None:
    """One line of figures, printed under the test's name in the summary (and at once, for -s runs)."""
    line = f"{test}: {text}"
    FIGURES.append(line)
    print(line, flush=True)


def scaled(full: float, minimum: float) -> float:
    """A count or duration of the full suite, times LLAMACERT_STRESS_SCALE (default 1: the full counts).

    Reduced counts are for developing on a shared machine; the done-when figures need the full ones.
    """
    scale = float(os.environ.get(SCALE_ENV, "1"))
    return max(minimum, full * scale)


def idle_cpu_percent(seconds: float = 1.0) -> float:
    """The machine's idle CPU over `seconds`: figures measured on a busy machine are noisy."""
    return float(psutil.cpu_times_percent(interval=seconds).idle)
