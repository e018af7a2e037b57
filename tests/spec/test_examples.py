"""The docs' own examples as fixtures: responses validate; request bodies are not JSON as printed (D9, D12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spec.document import schema_validator
from spec.models import ChatCompletionRequest, CompletionRequest

EXAMPLES = Path(__file__).parents[2] / "spec" / "examples"
SEEDS = Path(__file__).parents[3] / "shared" / "docs" / "seeds"


def _without_trailing_comma(text: str) -> str:
    return text.replace(",\n}", "\n}")


@pytest.mark.parametrize("name", ["completions_request", "chat_request"])
def test_request_examples_are_not_valid_json_as_printed(name: str) -> None:
    printed = (EXAMPLES / f"{name}.as_printed.txt").read_text(encoding="utf-8")
    with pytest.raises(json.JSONDecodeError, match="double quotes"):
        json.loads(printed)


def test_request_examples_validate_once_the_trailing_comma_is_removed() -> None:
    completion = json.loads(_without_trailing_comma((EXAMPLES / "completions_request.as_printed.txt").read_text()))
    chat = json.loads(_without_trailing_comma((EXAMPLES / "chat_request.as_printed.txt").read_text()))
    assert schema_validator("CompletionRequest").is_valid(completion)
    assert schema_validator("ChatCompletionRequest").is_valid(chat)
    assert CompletionRequest.model_validate(completion).max_tokens == 512
    assert [m.role for m in ChatCompletionRequest.model_validate(chat).messages] == ["system", "user"]


def test_completion_response_example_validates_as_printed() -> None:
    example = json.loads((EXAMPLES / "completions_response.as_printed.txt").read_text(encoding="utf-8"))
    errors = [error.message for error in schema_validator("CompletionResponse").iter_errors(example)]
    assert errors == []
    assert example["usage"] == {"prompt_tokens": 7, "total_tokens": 23, "completion_tokens": 16}


def test_chat_response_example_validates_after_repairing_its_escapes() -> None:
    printed = (EXAMPLES / "chat_response.as_printed.txt").read_text(encoding="utf-8")
    with pytest.raises(json.JSONDecodeError):
        json.loads(printed)
    # Only the content string uses `\'` and doubled quotes; `"model": ""` is a real empty string.
    lines = [
        line.replace("\\'", "'").replace('""', '\\"') if '"content"' in line else line for line in printed.splitlines()
    ]
    repaired = json.loads("\n".join(lines))
    errors = [error.message for error in schema_validator("ChatCompletionResponse").iter_errors(repaired)]
    assert errors == []
    assert repaired["model"] == ""
    assert repaired["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.skipif(not SEEDS.is_dir(), reason="shared/docs/seeds is not beside this checkout")
def test_fixtures_are_the_seed_text() -> None:
    seed = next(SEEDS.glob("000_*.txt")).read_text(encoding="utf-8")
    for name in ["completions_response", "chat_response"]:
        fixture = (EXAMPLES / f"{name}.as_printed.txt").read_text(encoding="utf-8")
        assert fixture.strip() in seed, name
