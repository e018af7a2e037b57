"""schemathesis from the served /openapi.json, positive and negative: no 5xx, no connection error.

At least 10,000 cases on the simulated backend and 3,000 on the real model (full scale). Generation
is the expensive part (10-40 ms a case), so it runs in two worker processes while the main process
sends, and the real model gets a share of the same generated cases. Valid cases are kept cheap (a
few tokens) without making them invalid; a 4xx on a valid case is the conformance suite's business,
not this one's: here only a server error or a broken connection fails.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode

from launch import ReferenceServer
from tests.stress.figures import idle_cpu_percent, record, scaled

pytestmark = pytest.mark.stress
CHUNK = 250
"""Cases per generation task (one operation, one mode, one seed)."""


@dataclass(frozen=True)
class GeneratedCase:
    """One generated request, as plain data a worker process can hand back."""

    operation: str
    mode: str
    request: dict[str, Any]
    """requests.Session.request keyword arguments, URL relative to the server."""


def _cheap(body: Any, mode: str) -> Any:
    if not isinstance(body, dict):
        return body
    if mode == GenerationMode.POSITIVE.value:
        # shorter text stays valid text; a long generated prompt would only cost prefill time
        if isinstance(body.get("prompt"), str):
            body = {**body, "prompt": body["prompt"][:64]}
        if isinstance(body.get("messages"), list):
            body = {**body, "messages": [_short_message(m) for m in body["messages"][:4]]}
    # one token unless the case is about max_tokens: the default (16) would make a case ten times dearer
    body = {"max_tokens": 1, **body}
    # max_completion_tokens overrides max_tokens (D45): uncapped, 5,761 tokens with a negative
    # frequency_penalty (which keeps the simulated model off its end token) for each of nine prompts
    # held one case past the 120 s timeout at 2 ms a token
    for name, cap in (("max_tokens", 2), ("max_completion_tokens", 2), ("n", 1), ("best_of", 2)):
        value = body.get(name)
        # 409.0 is an integer to JSON Schema, and costs 409 tokens
        if isinstance(value, int | float) and not isinstance(value, bool) and value > cap:
            body[name] = cap
    return body


def _short_message(message: Any) -> Any:
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return {**message, "content": message["content"][:64]}
    return message


def _generate(document: dict[str, Any], label: str, mode: str, count: int, seed: int) -> list[GeneratedCase]:
    """Runs in a worker: `count` cases of one operation in one mode."""
    schema = schemathesis.openapi.from_dict(document)
    operation = next(op for op in (r.ok() for r in schema.get_all_operations()) if op.label == label)
    generated: list[GeneratedCase] = []

    @hypothesis.seed(seed)
    @hypothesis.settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
    def collect(case: Any) -> None:
        request = case.as_transport_kwargs(base_url="")
        if "json" in request:
            request["json"] = _cheap(request["json"], mode)
        generated.append(GeneratedCase(label, mode, request))

    collect()
    return generated


def _cases(document: dict[str, Any], per_mode: dict[GenerationMode, int]) -> Iterator[GeneratedCase]:
    """Generated cases as they come from two worker processes, spread over every operation."""
    schema = schemathesis.openapi.from_dict(document)
    labels = [result.ok().label for result in schema.get_all_operations()]
    tasks = []
    for mode, total in per_mode.items():
        for index, label in enumerate(labels):
            remaining = max(1, round(total / len(labels)))
            chunk = 0
            while remaining > 0:
                count = min(CHUNK, remaining)
                tasks.append((label, mode.value, count, 1000 * index + chunk))
                remaining -= count
                chunk += 1
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        futures = [pool.submit(_generate, document, *task) for task in tasks]
        for future in concurrent.futures.as_completed(futures):
            yield from future.result()


class Tally:
    """Answers by status class, server errors and connection errors, with an example of each failure."""

    def __init__(self) -> None:
        self.statuses: collections.Counter[str] = collections.Counter()
        self.by_mode: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []

    @property
    def cases(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status.startswith("5"))

    def send(self, case: GeneratedCase, session: requests.Session, server: ReferenceServer) -> None:
        self.by_mode[case.mode] += 1
        request = dict(case.request)
        request["url"] = server.url + request["url"]
        request["headers"] = {**(request.get("headers") or {}), "Authorization": f"Bearer {server.api_key}"}
        try:
            response = session.request(**request, timeout=120)
        except requests.RequestException as exc:
            self.statuses["connection error"] += 1
            self.failures.append(f"{case.operation}: {type(exc).__name__}: {exc}"[:300])
            return
        status = response.status_code
        self.statuses[f"{status // 100}xx"] += 1
        if status >= 500:
            self.failures.append(f"{case.operation} -> {status}: {response.text[:200]} {request.get('json')!r:.200}")

    def figures(self, elapsed_s: float) -> str:
        statuses = ", ".join(f"{count} {status}" for status, count in sorted(self.statuses.items()))
        modes = ", ".join(f"{count} {mode}" for mode, count in sorted(self.by_mode.items()))
        return (
            f"{self.cases} cases ({modes}) in {elapsed_s:.0f} s: {statuses}; 5xx {self.server_errors}, "
            f"connection errors {self.statuses['connection error']}"
        )


def test_fuzz_the_simulated_backend_then_the_real_model(
    simulated_server: ReferenceServer, model_server: ReferenceServer
) -> None:
    document = httpx.get(f"{simulated_server.url}/openapi.json", timeout=10).json()
    per_mode = {
        GenerationMode.POSITIVE: int(scaled(5200, 60)),
        GenerationMode.NEGATIVE: int(scaled(5200, 60)),
    }
    # the real model gets a share of each mode: mostly negative cases (refused before generation)
    model_share = {GenerationMode.POSITIVE.value: 0.16, GenerationMode.NEGATIVE.value: 0.46}
    for_model: list[GeneratedCase] = []
    simulated, started = Tally(), time.monotonic()
    with requests.Session() as session:
        for number, case in enumerate(_cases(document, per_mode)):
            simulated.send(case, session, simulated_server)
            if (number * 0.618) % 1 < model_share[case.mode]:
                for_model.append(case)
    record("fuzz, simulated", simulated.figures(time.monotonic() - started))

    model, started = Tally(), time.monotonic()
    with requests.Session() as session:
        for case in for_model:
            model.send(case, session, model_server)
    record("fuzz, model", f"{model.figures(time.monotonic() - started)} (idle CPU after: {idle_cpu_percent():.0f} %)")

    assert not simulated.failures, "\n".join(simulated.failures[:20])
    assert not model.failures, "\n".join(model.failures[:20])
    assert simulated.cases >= int(scaled(10_000, 100))
    assert model.cases >= int(scaled(3_000, 30))
