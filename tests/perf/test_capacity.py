"""perf.capacity: the search's steps, its judgement of a probe, and a search that finds a known, injected knee."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from launch import ReferenceServer
from perf.capacity import format_capacity, judge_probe, next_rate, search_capacity
from perf.objectives import parse_objectives
from perf.runner import LoadRequest
from perf.scenarios import CapacityPlan, RequestMixEntry, Scenario
from tests.perf.test_baseline import summary


def test_bracketing_then_bisection() -> None:
    plan = CapacityPlan(start_rate=2, growth=2, resolution=0.1)
    assert next_rate(None, None, plan, ceiling=100) == 2
    assert next_rate(8, None, plan, ceiling=100) == 16  # held: double
    assert next_rate(64, None, plan, ceiling=100) == 100  # never past the ceiling (published limits)
    assert next_rate(100, None, plan, ceiling=100) is None
    assert next_rate(None, 2, plan, ceiling=100) == 1  # the start failed: halve
    assert next_rate(None, 0.06, plan, ceiling=100) is None  # below min_rate
    assert next_rate(16, 32, plan, ceiling=100) == 24  # bisect
    assert next_rate(20, 22, plan, ceiling=100) is None  # within 10 % of 22


def test_a_probe_that_holds_and_ones_that_do_not() -> None:
    assert judge_probe(summary(requests=600, duration_s=60.0), 10.0, 0.01, None) == (True, [], None)
    held, reasons, first = judge_probe(summary(requests=300, duration_s=60.0), 10.0, 0.01, None)
    assert not held and first == "saturation" and "only 5.00 of 10 requests/s could be sent" in reasons[0]
    # 20 where 24 were expected is Poisson noise, not a backlog
    assert judge_probe(summary(requests=20, ok=20, duration_s=6.0), 4.0, 0.01, None)[0]
    held, reasons, first = judge_probe(summary(errors=50, ok=950), 16.0, 0.01, None)
    assert not held and first == "errors"
    held, _, first = judge_probe(summary(rejected_429=3, ok=997), 16.0, 0.01, None)
    assert not held and first == "rate limit"
    held, reasons, first = judge_probe(summary(), 16.0, 0.01, "median ttft 900 ms is over 2x")
    assert not held and first == "saturation" and reasons == ["stopped early: median ttft 900 ms is over 2x"]


@pytest.fixture
def four_slot_server() -> Iterator[ReferenceServer]:
    """The simulated backend with a known capacity: 4 slots x (50 ms first token + 15 x 10 ms) = 20 requests/s."""
    server = ReferenceServer(
        ["--backend", "simulated", "--simulated-slots", "4", "--simulated-first-token-s", "0.05",
         "--simulated-token-s", "0.01", "--max-waiting", "1000"],
        profile="managed-compute",
    )  # fmt: skip
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_the_search_finds_the_injected_knee(tmp_path: Path, four_slot_server: ReferenceServer) -> None:
    scenario = Scenario(
        name="capacity",
        shape="poisson",
        rate=1,
        users=8,
        warmup=1.0,
        requests=(RequestMixEntry(api="completion", stream=True),),
        prompt_tokens="8",
        output_tokens="16",
        honour_retry_after=False,
        capacity=CapacityPlan(start_rate=4, max_steps=6, step_duration=6.0, resolution=0.15),
    )
    request = LoadRequest(
        endpoint=four_slot_server.url,
        scenario=scenario,
        out_dir=tmp_path,
        api_key=four_slot_server.api_key,
        objectives=parse_objectives("ttft_p95=250ms,errors=1%"),
        request_timeout_s=20,
    )
    outcome = search_capacity(request, log=lambda line: None)
    search = outcome.summary.capacity
    assert search is not None, "the summary carries the search"
    text = format_capacity(search)
    # below the 20 requests/s the slots allow (queueing pushes TTFT up before it), well above half of it
    assert search.capacity_rate is not None and 8 <= search.capacity_rate < 20, text
    assert search.limiting in ("ttft_p95", "saturation", "errors"), text
    assert len(search.steps) <= 6 and any(not step.held for step in search.steps), text
    assert outcome.summary.goodput is not None and outcome.summary.goodput.requests_per_s > 0.8 * 8
    assert (tmp_path / "load-summary.json").is_file() and (tmp_path / "probe-1" / "records.jsonl").is_file()
