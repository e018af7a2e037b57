"""The clients people point at an OpenAI-style endpoint (openai, LiteLLM, langchain-openai), on the real model.

Each uses the forms of D45 (max_completion_tokens, a list prompt, chat logprobs: true, text_offset,
GET /v1/models); LiteLLM's Azure AI provider talks to the Azure routes.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network: LiteLLM's bundled model list

import litellm
from langchain_openai import ChatOpenAI, OpenAI
from openai import OpenAI as OpenAIClient

from launch import ReferenceServer

pytestmark = [pytest.mark.model, pytest.mark.slow]

MESSAGES = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture
def openai_client(served: ReferenceServer) -> OpenAIClient:
    return OpenAIClient(base_url=f"{served.url}/v1", api_key=served.api_key, max_retries=0)


@pytest.fixture
def model_name(openai_client: OpenAIClient) -> str:
    (model,) = openai_client.models.list().data
    return model.id


def test_openai_sdk_chat_completions_and_models(openai_client: OpenAIClient, model_name: str) -> None:
    result = openai_client.chat.completions.create(model=model_name, messages=MESSAGES, max_tokens=6, temperature=0)  # type: ignore[arg-type]
    assert result.choices[0].message.content and result.usage is not None
    assert 0 < result.usage.completion_tokens <= 6
    newer = openai_client.chat.completions.create(
        model=model_name,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_completion_tokens=3,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    assert newer.usage is not None and newer.usage.completion_tokens == 3


def test_openai_sdk_chat_logprobs(openai_client: OpenAIClient, model_name: str) -> None:
    result = openai_client.chat.completions.create(
        model=model_name,
        messages=MESSAGES,  # type: ignore[arg-type]
        max_tokens=4,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    logprobs = result.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(entry.token for entry in logprobs.content) == result.choices[0].message.content
    assert all(len(entry.top_logprobs) == 2 and entry.logprob <= 0 for entry in logprobs.content)


def test_openai_sdk_completions_list_prompt_and_text_offset(openai_client: OpenAIClient, model_name: str) -> None:
    result = openai_client.completions.create(
        model=model_name, prompt=["The sky is", "Grass is"], max_tokens=3, temperature=0, logprobs=1
    )
    assert [choice.index for choice in result.choices] == [0, 1]
    logprobs = result.choices[0].logprobs
    assert logprobs is not None and logprobs.text_offset is not None and logprobs.text_offset[0] == 0


def test_openai_sdk_streaming_with_usage(openai_client: OpenAIClient, model_name: str) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model=model_name,
            messages=MESSAGES,  # type: ignore[arg-type]
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_litellm_openai_compatible(served: ReferenceServer, model_name: str) -> None:
    response = litellm.completion(
        model=f"openai/{model_name}",
        api_base=f"{served.url}/v1",
        api_key=served.api_key,
        messages=MESSAGES,
        max_tokens=5,
        temperature=0,
    )
    assert response.choices[0].message.content
    assert 0 < response.usage.completion_tokens <= 5


def test_litellm_azure_ai_provider(served: ReferenceServer, model_name: str) -> None:
    response = litellm.completion(
        model=f"azure_ai/{model_name}",
        api_base=served.url,
        api_key=served.api_key,
        messages=MESSAGES,
        max_tokens=5,
        temperature=0,
    )
    assert response.choices[0].message.content
    assert 0 < response.usage.completion_tokens <= 5


@pytest.fixture
def chat_model(served: ReferenceServer, model_name: str) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{served.url}/v1",
        api_key=served.api_key,  # type: ignore[arg-type]
        model=model_name,
        max_tokens=5,  # type: ignore[call-arg]  # sent as max_completion_tokens (D45)
        temperature=0,
        max_retries=0,
    )


def test_langchain_chat_openai_invoke_batch_stream(chat_model: ChatOpenAI) -> None:
    answer = chat_model.invoke("Name three colours.")
    assert answer.content and answer.usage_metadata is not None
    assert 0 < answer.usage_metadata["output_tokens"] <= 5
    batch = chat_model.batch(["Name a colour.", "Name a fruit."])
    assert len(batch) == 2 and all(message.content for message in batch)
    streamed = "".join(str(chunk.content) for chunk in chat_model.stream("Name three colours."))
    assert streamed == answer.content


def test_langchain_chat_openai_max_tokens_reaches_the_server(served: ReferenceServer, model_name: str) -> None:
    long_answer = ChatOpenAI(
        base_url=f"{served.url}/v1",
        api_key=served.api_key,  # type: ignore[arg-type]
        model=model_name,
        max_tokens=40,  # type: ignore[call-arg]
        temperature=0,
        max_retries=0,
        extra_body={"ignore_eos": True},
    ).invoke("Tell me about the sea.")
    assert long_answer.usage_metadata is not None and long_answer.usage_metadata["output_tokens"] == 40


def test_langchain_openai_llm_invoke_batch_stream(served: ReferenceServer, model_name: str) -> None:
    llm = OpenAI(
        base_url=f"{served.url}/v1",
        api_key=served.api_key,  # type: ignore[arg-type]
        model=model_name,
        max_tokens=5,
        temperature=0,
        max_retries=0,
    )
    text = llm.invoke("The sky is")
    assert text
    batch = llm.batch(["The sky is", "Grass is"])  # one request with a list prompt (D45)
    assert len(batch) == 2 and batch[0] == text
    assert "".join(llm.stream("The sky is")) == text
