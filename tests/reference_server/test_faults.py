"""Injected faults (reference_server/faults.py): they strike exactly the share asked for, and only when asked."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from reference_server.faults import FractionFault
from tests.reference_server.inprocess import simulated_client

KEY = "fault-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.mark.parametrize(("fraction", "struck"), [(0.0, 0), (0.1, 10), (0.25, 25), (1 / 3, 33), (1.0, 100)])
def test_a_fraction_fault_strikes_its_share_evenly(fraction: float, struck: int) -> None:
    fault = FractionFault(fraction)
    hits = [fault.strikes() for _ in range(100)]
    assert sum(hits) == fault.struck == struck
    # evenly spread: no two strikes closer together than the share allows
    positions = [index for index, hit in enumerate(hits) if hit]
    gaps = [later - earlier for earlier, later in itertools.pairwise(positions)]
    assert all(gap >= int(1 / fraction) for gap in gaps)


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_a_fraction_outside_zero_to_one_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        FractionFault(fraction)


async def _totals(body: dict[str, Any], count: int, **settings: Any) -> list[bool]:
    """For `count` answers, whether usage.total_tokens was the honest sum."""
    honest = []
    async for client in simulated_client(KEY, **settings):
        for _ in range(count):
            usage = (await client.post("/v1/completions", json=body, headers=AUTH)).json()["usage"]
            honest.append(usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"])
    return honest


async def test_the_usage_fault_breaks_the_share_of_answers_it_is_given() -> None:
    honest = await _totals({"prompt": "hello", "max_tokens": 4}, 20, fault_wrong_usage=0.25)
    assert honest.count(False) == 5 and honest[3] is False and honest[2] is True


async def test_the_usage_fault_also_breaks_a_streams_usage_chunk() -> None:
    async for client in simulated_client(KEY, fault_wrong_usage=1.0):
        body = {"prompt": "hello", "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}}
        text = (await client.post("/v1/completions", json=body, headers=AUTH)).text
    usage_line = next(line for line in text.splitlines() if '"usage":{' in line)
    usage = json.loads(usage_line.removeprefix("data: "))["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] + 1


async def test_without_the_fault_every_usage_is_honest() -> None:
    assert all(await _totals({"prompt": "hello", "max_tokens": 4}, 20))
