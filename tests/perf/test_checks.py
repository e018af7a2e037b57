"""`llamacert load --check` without Locust: sampling, recording an answer as the load test reads it, judging.

Answers come from the reference app on the simulated backend, in process, honest or with an injected fault,
and are fed to `ExchangeRecorder` line by line as the Locust user feeds them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from conformance.exchange import Exchange, encode_exchange, load_exchanges
from conformance.rules import RULES
from perf.checks import (
    NOT_RUN_PROBE,
    NOT_RUN_UNEXERCISED,
    ExchangeRecorder,
    ExchangeSampler,
    ExchangeWriter,
    check_exchanges,
    combine_findings,
    merge_exchange_files,
    parse_check_fraction,
)
from perf.cli import main
from spec.load_summary import CheckFinding
from spec.profiles import get_profile
from tests.reference_server.inprocess import simulated_client

KEY = "check-key"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
COMPLETION = {"prompt": "the quick brown fox", "max_tokens": 8, "ignore_eos": True}
SAVED_EXCHANGE = TypeAdapter(Exchange)
CHAT = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8, "ignore_eos": True}


def _streamed(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


async def _recorded(
    requests: list[tuple[str, dict[str, Any]]], *, drop_done: bool = False, **settings: Any
) -> list[Exchange]:
    """Each request sent to a fresh simulated app and recorded as the Locust user records a sampled request."""
    exchanges = []
    async for client in simulated_client(KEY, **settings):
        for path, body in requests:
            sent = json.dumps(body).encode()
            # wall-clock stamps, as the load test takes them (envelope.created is judged against the send time)
            recorder = ExchangeRecorder(path, sent, HEADERS, sent_at=time.time())
            async with client.stream("POST", path, content=sent, headers=HEADERS) as response:
                recorder.answered(response.status_code, response.headers.items(), time.time())
                text = (await response.aread()).decode()
            if body.get("stream"):
                for line in text.splitlines(keepends=True):
                    if not (drop_done and line.startswith("data: [DONE]")):
                        recorder.line(line.encode(), time.time())
            else:
                recorder.body_text = text
            # the saved form: what a worker sends its master and the runner judges
            exchanges.append(SAVED_EXCHANGE.validate_json(recorder.encode(time.time())))
    return exchanges


ALL_KINDS = [
    ("/v1/completions", COMPLETION),
    ("/v1/chat/completions", CHAT),
    ("/v1/completions", _streamed(COMPLETION)),
    ("/v1/chat/completions", _streamed(CHAT)),
]


def _by_rule(findings: list[CheckFinding]) -> dict[str, CheckFinding]:
    return {finding.rule_id: finding for finding in findings}


@pytest.mark.parametrize(("text", "fraction"), [("0.1", 0.1), ("1", 1.0), ("10%", 0.1), ("100%", 1.0), (" 0.5 ", 0.5)])
def test_a_check_fraction_is_a_share_or_a_percentage(text: str, fraction: float) -> None:
    assert parse_check_fraction(text) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["0", "0%", "-0.1", "1.5", "150%", "abc", "", "nan"])
def test_a_check_fraction_outside_zero_to_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--check"):
        parse_check_fraction(text)


@pytest.mark.parametrize("value", ["0", "2", "abc", "-1"])
def test_the_command_refuses_a_bad_check_value_with_exit_2(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    # the endpoint is never contacted: the value is refused while the arguments are read
    assert main(["--endpoint", "http://127.0.0.1:9", f"--check={value}"]) == 2
    assert "--check" in capsys.readouterr().err


def test_the_command_refuses_an_unknown_profile_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--endpoint", "http://127.0.0.1:9", "--check", "--profile", "no-such-profile"]) == 2
    assert "unknown profile 'no-such-profile'" in capsys.readouterr().err


def test_the_sampler_takes_its_share_reproducibly() -> None:
    assert all(ExchangeSampler(1.0).take() for _ in range(100))
    draws = [ExchangeSampler(0.25, seed=7) for _ in range(2)]
    first, second = ([sampler.take() for _ in range(4_000)] for sampler in draws)
    assert first == second
    assert 900 <= sum(first) <= 1_100
    assert first != [ExchangeSampler(0.25, seed=8).take() for _ in range(4_000)]


async def test_honest_answers_pass_every_rule_that_judges_them_and_the_rest_are_not_run() -> None:
    findings = _by_rule(check_exchanges(await _recorded(ALL_KINDS)))
    assert set(findings) == set(RULES)
    assert not [finding for finding in findings.values() if finding.outcome == "failed"]
    for rule_id in (
        "usage.total_is_sum",
        "envelope.schema",
        "stream.done",
        "stream.usage_chunk",
        "finish_reason.length",
    ):
        assert findings[rule_id].outcome == "passed" and findings[rule_id].passed >= 1, findings[rule_id]
    assert findings["usage.total_is_sum"].passed == len(ALL_KINDS)
    assert findings["stream.done"].passed == 2  # streams only
    # a rule that needs a second request, or a feature the workload never asks for, did not run: never "passed"
    for rule_id, reason in (("relations.deterministic", NOT_RUN_PROBE), ("logprobs.values", NOT_RUN_UNEXERCISED)):
        assert findings[rule_id].outcome == "not run" and findings[rule_id].reason == reason
        assert findings[rule_id].passed == findings[rule_id].failed == 0
    assert all(
        finding.outcome == "not run" for finding in findings.values() if RULES[finding.rule_id].probe is not None
    )


async def test_a_wrong_usage_fails_its_rule_with_the_first_failing_example() -> None:
    exchanges = await _recorded(ALL_KINDS, fault_wrong_usage=0.5)
    finding = _by_rule(check_exchanges(exchanges))["usage.total_is_sum"]
    assert finding.outcome == "failed" and finding.failed == 2 and finding.passed == 2
    assert finding.first_failure is not None
    assert "total_tokens" in finding.first_failure.message
    assert finding.first_failure.request.startswith("POST /v1/")
    assert finding.first_failure.response.startswith("HTTP 200")


async def test_a_stream_cut_before_done_fails_its_rule() -> None:
    exchanges = await _recorded([("/v1/chat/completions", _streamed(CHAT))], drop_done=True)
    findings = _by_rule(check_exchanges(exchanges))
    assert findings["stream.done"].outcome == "failed" and findings["stream.done"].failed == 1
    assert findings["usage.total_is_sum"].outcome == "passed"


async def test_the_key_is_never_saved() -> None:
    [exchange] = await _recorded([("/v1/completions", COMPLETION)])
    assert exchange.request.headers["Authorization"] == "<redacted>"
    assert exchange.request.body == COMPLETION


async def test_a_profile_judges_only_the_rules_it_requires() -> None:
    exchanges = await _recorded([("/v1/chat/completions", _streamed(CHAT))])
    findings = _by_rule(check_exchanges(exchanges, get_profile("managed-compute")))
    # Azure's framing rule is required by the serverless profiles only (it judged this stream without a profile)
    assert findings["azure.sse_framing"].outcome == "not run"
    assert findings["azure.sse_framing"].reason == "not required by profile managed-compute"
    assert findings["stream.done"].outcome == "passed"


async def test_saved_exchanges_of_several_processes_merge_in_send_order(tmp_path: Path) -> None:
    exchanges = await _recorded(ALL_KINDS)
    for number, part in enumerate((exchanges[1::2], exchanges[::2])):
        writer = ExchangeWriter(tmp_path / "records" / f"exchanges-host-{number}.jsonl")
        for exchange in part:
            writer.write_exchange(encode_exchange(exchange))
        writer.close()
    merged = merge_exchange_files(tmp_path / "records", tmp_path / "exchanges.jsonl")
    assert [exchange.sent_at_unix for exchange in merged] == [exchange.sent_at_unix for exchange in exchanges]
    assert [exchange.request.path for exchange in load_exchanges(tmp_path / "exchanges.jsonl")] == [
        path for path, _ in ALL_KINDS
    ]


def _finding(rule_id: str, passed: int, failed: int) -> CheckFinding:
    outcome = "failed" if failed else "passed" if passed else "not run"
    return CheckFinding(
        rule_id=rule_id,
        title=rule_id,
        severity="required",
        outcome=outcome,
        passed=passed,
        failed=failed,
        reason=None if passed or failed else NOT_RUN_UNEXERCISED,
    )


def test_repeated_runs_combine_their_findings() -> None:
    combined = _by_rule(
        combine_findings(
            [
                [_finding("a", 3, 0), _finding("b", 0, 0), _finding("c", 0, 0)],
                [_finding("a", 2, 1), _finding("b", 4, 0), _finding("c", 0, 0)],
            ]
        )
    )
    assert (combined["a"].outcome, combined["a"].passed, combined["a"].failed) == ("failed", 5, 1)
    assert (combined["b"].outcome, combined["b"].reason) == ("passed", None)
    assert (combined["c"].outcome, combined["c"].reason) == ("not run", NOT_RUN_UNEXERCISED)
