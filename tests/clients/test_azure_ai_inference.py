"""The official azure-ai-inference SDK against the reference server's Azure routes, on the real model."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.ai.inference import ChatCompletionsClient, load_client
from azure.ai.inference.models import SystemMessage, UserMessage
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from launch import ReferenceServer

pytestmark = [pytest.mark.model, pytest.mark.slow]

HARMFUL_PROMPTS = Path(__file__).parents[2] / "conformance" / "data" / "harmful_prompts.txt"
QUESTION = [SystemMessage("Answer briefly."), UserMessage("Name three colours.")]


@pytest.fixture
def client(served: ReferenceServer) -> ChatCompletionsClient:
    return ChatCompletionsClient(endpoint=served.url, credential=AzureKeyCredential(served.api_key))


def test_model_info_and_load_client(served: ReferenceServer, client: ChatCompletionsClient) -> None:
    info = client.get_model_info()
    assert info.model_name and info.model_provider_name
    assert info.model_type == "chat-completion"  # load_client picks the chat client for it (D43)
    loaded = load_client(endpoint=served.url, credential=AzureKeyCredential(served.api_key))
    assert isinstance(loaded, ChatCompletionsClient)


def test_complete(client: ChatCompletionsClient) -> None:
    result = client.complete(messages=QUESTION, max_tokens=8, temperature=0)
    choice = result.choices[0]
    assert choice.message.content and choice.finish_reason in ("stop", "length")
    usage = result.usage
    assert 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streaming_matches_complete_and_usage_comes_through_model_extras(client: ChatCompletionsClient) -> None:
    whole = client.complete(messages=QUESTION, max_tokens=10, temperature=0)
    updates = list(
        client.complete(
            messages=QUESTION,
            max_tokens=10,
            temperature=0,
            stream=True,
            # stream_options is a Llama extra on the Azure routes: model_extras sends it with pass-through (D40)
            model_extras={"stream_options": {"include_usage": True}},
        )
    )
    text = "".join(update.choices[0].delta.content or "" for update in updates if update.choices)
    assert text == whole.choices[0].message.content
    assert updates[-1].usage is not None
    assert updates[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_llama_extras_through_model_extras(client: ChatCompletionsClient) -> None:
    result = client.complete(
        messages=QUESTION, max_tokens=5, temperature=0.8, seed=3, model_extras={"n": 2, "ignore_eos": True}
    )
    assert sorted(choice.index for choice in result.choices) == [0, 1]
    assert result.usage.completion_tokens == 10


def test_frequency_penalty_is_a_served_keyword(client: ChatCompletionsClient) -> None:
    result = client.complete(messages=QUESTION, max_tokens=6, temperature=0, frequency_penalty=1.5)
    assert result.choices[0].message.content


@pytest.mark.parametrize("header", [None, "error", "drop", "pass-through", "bogus"])
def test_an_unknown_parameter_with_each_header_value(client: ChatCompletionsClient, header: str | None) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "not_a_parameter": 1}
    headers = {} if header is None else {"extra-parameters": header}
    if header in ("drop", "pass-through"):
        assert client.complete(body=body, headers=headers).choices[0].message.content is not None
        return
    with pytest.raises(HttpResponseError) as caught:
        client.complete(body=body, headers=headers)
    assert caught.value.status_code == 400
    expected = "invalid_extra_parameters" if header == "bogus" else "extra_parameters_not_allowed"
    assert caught.value.error is not None and caught.value.error.code == expected
    assert caught.value.response.headers["x-ms-error-code"] == expected


def test_json_mode_is_refused_with_422(client: ChatCompletionsClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.complete(messages=QUESTION, max_tokens=3, response_format="json_object")
    assert caught.value.status_code == 422 and caught.value.error is not None
    assert caught.value.error.code == "parameter_not_supported"


def test_a_content_filter_refusal_reads_through_the_sdk_exception(client: ChatCompletionsClient) -> None:
    harmful = next(line for line in HARMFUL_PROMPTS.read_text().splitlines() if line and not line.startswith("#"))
    with pytest.raises(HttpResponseError) as caught:
        client.complete(messages=[UserMessage(harmful)], max_tokens=8)
    assert caught.value.status_code == 400 and caught.value.error is not None
    assert caught.value.error.code == "content_filter"
    inner = caught.value.response.json()["error"]["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert any(finding["filtered"] for finding in inner["content_filter_result"].values())


def test_a_wrong_key_is_an_authentication_error(served: ReferenceServer) -> None:
    wrong = ChatCompletionsClient(endpoint=served.url, credential=AzureKeyCredential("not-the-key"))
    with pytest.raises(ClientAuthenticationError) as caught:
        wrong.complete(messages=QUESTION, max_tokens=3)
    assert caught.value.status_code == 401
