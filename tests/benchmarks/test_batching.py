"""benchmarks/batching.py: every ratio of issue 14 printed from one run; the engine counters read from /metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import batching
from benchmarks.batching import EngineWindow, Figure, LoadRun, engine_counters
from launch import ReferenceServer

COUNTERS = {
    "steps": 100.0,
    "sequences": 390.0,
    "tokens": 500.0,
    "running": 400.0,
    "left_out": 10.0,
    "prompt_steps": 3.0,
    "answered": 392.0,
    "decode_wall_s": 9.0,
    "decode_cpu_s": 8.0,
    "gather_wait_s": 0.5,
    "other_wall_s": 0.3,
}


class _Server:
    url = "http://127.0.0.1:1"
    api_key = "key"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wait_ready(self) -> None:
        pass

    def stop(self) -> None:
        pass


def _run(engine_rate: float, locust_rate: float, ttft: float) -> LoadRun:
    window = EngineWindow(Figure(engine_rate, 0.5), COUNTERS, 10.0)
    return LoadRun(Figure(locust_rate, 0.5), Figure(ttft, 0.5), ok=10, failed=0, engine=window)


def test_one_run_prints_every_ratio_with_the_engine_counted_rates(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = {1: _run(40.0, 30.0, 400.0), 4: _run(80.0, 60.0, 600.0), 8: _run(90.0, 70.0, 900.0)}
    monkeypatch.setattr(batching, "ReferenceServer", _Server)
    monkeypatch.setattr(
        batching,
        "ceiling",
        lambda threads: (
            {1: Figure(50.0, 0.4), 4: Figure(100.0, 0.4), 8: Figure(120.0, 0.4)},
            {1: Figure(40.0, 0.4), 4: Figure(80.0, 0.4), 8: Figure(90.0, 0.4)},
        ),
    )
    monkeypatch.setattr(batching, "direct_one_user", lambda threads, seconds: Figure(40.0, 0.3))
    monkeypatch.setattr(batching, "served_quietly", lambda server, seconds: Figure(50.0, 0.2))

    def load(endpoint: str, api_key: str, users: int, seconds: float, warmup: float, out: Path) -> LoadRun:
        return runs[users]

    monkeypatch.setattr(batching, "load", load)
    assert batching.main(["--duration", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    expected = {
        "served / direct llama-cpp-python, 1 user": "1.00  target >= 0.95",
        "aggregate 4 users / raw ceiling batch 4": "0.80  target >= 0.85",
        "(the same / ceiling batch 4 with prompts: the bound)": "1.00",
        "aggregate 8 users / raw ceiling batch 8": "0.75  target >= 0.85",
        "TTFT p50 4 users / 1 user": "1.50  target <= 2",
        "1 user under Locust / served without Locust": "0.80  target >= 0.7",
    }
    for name, figure in expected.items():
        line = next((line for line in out.splitlines() if name in line), None)
        assert line is not None and figure in line, f"{name}: {line}"
    assert out.count("(the same with Locust's tokens/s)") == 2 and "0.60" in out
    assert "3.90 sequences decoded per step of 4.00 running (10 left out" in out
    assert "llama_decode 90% of wall (CPU 80%), gather wait 5%, other 3%" in out
    # 3 prompt steps: enough for 1 user's window, under two prompts per user at 4 and 8
    assert out.count("lengthen --duration") == 2


@pytest.mark.slow
def test_engine_counters_are_none_for_a_server_without_a_batch_engine() -> None:
    server = ReferenceServer(["--backend", "simulated"], profile=None)
    try:
        server.wait_ready()
        assert engine_counters(server.url) is None
    finally:
        server.stop()
    assert engine_counters("http://127.0.0.1:9") is None  # nothing listening there
