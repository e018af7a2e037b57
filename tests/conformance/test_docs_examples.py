"""The docs' own examples pass every rule: each request and response example, as an exchange, judged."""

from __future__ import annotations

import json
from pathlib import Path

from conformance.exchange import Exchange, RecordedRequest
from conformance.rules import JudgeContext, judge
from spec.document import Strictness

EXAMPLES = Path(__file__).parents[2] / "spec" / "examples"


def _example(name: str) -> str:
    return (EXAMPLES / f"{name}.as_printed.txt").read_text(encoding="utf-8")


def _repaired_chat_response() -> str:
    # D12: only the content string uses `\'` and doubled quotes
    lines = [
        line.replace("\\'", "'").replace('""', '\\"') if '"content"' in line else line
        for line in _example("chat_response").splitlines()
    ]
    return "\n".join(lines)


def _exchange(path: str, request_name: str, response_text: str) -> Exchange:
    request = json.loads(_example(request_name).replace(",\n}", "\n}"))  # D9: the trailing comma removed
    return Exchange(
        request=RecordedRequest("POST", path, request),
        status=200,
        headers={"content-type": "application/json"},
        body_text=response_text,
    )


def test_the_docs_examples_pass_every_rule_at_both_strictness_levels() -> None:
    exchanges = [
        _exchange("/v1/completions", "completions_request", _example("completions_response")),
        _exchange("/v1/chat/completions", "chat_request", _repaired_chat_response()),
    ]
    for strictness in Strictness:
        outcomes = judge(exchanges, JudgeContext(strictness))
        assert outcomes, "no rule judged the examples"
        assert [(o.rule_id, o.message) for o in outcomes if not o.passed] == []
        judged = {o.rule_id for o in outcomes}
        assert {"envelope.schema", "usage.total_is_sum", "finish_reason.enum", "envelope.created"} <= judged
