"""The completions API (`/v1/completions`, `/completions`): a prompt in, text choices out."""

from __future__ import annotations

from typing import Any

from reference_server.backends.base import Backend, Choice
from spec.models import (
    CompletionChoice,
    CompletionChunk,
    CompletionChunkChoice,
    CompletionRequest,
    CompletionResponse,
    FinishReason,
    GenerationParameters,
    Logprobs,
    OpenAIChatLogprobs,
)

__all__ = ["CompletionsApi"]


class CompletionsApi:
    """The `ApiFamily` of text completions."""

    id_prefix = "cmpl"
    prompt_param = "prompt"

    def parse(self, data: dict[str, Any]) -> CompletionRequest:
        return CompletionRequest.model_validate(data)

    async def prompts(self, params: GenerationParameters, backend: Backend) -> tuple[list[str], list[str]]:
        assert isinstance(params, CompletionRequest)
        return params.prompts, params.prompts

    response_model = CompletionResponse
    chunk_model = CompletionChunk

    def response_choice(self, choice: Choice, logprobs: Logprobs | OpenAIChatLogprobs | None) -> CompletionChoice:
        assert not isinstance(logprobs, OpenAIChatLogprobs), "the OpenAI chat form is asked for on chat only"
        return CompletionChoice(
            index=choice.index, text=choice.text, finish_reason=choice.finish_reason, logprobs=logprobs
        )

    def chunk_choice(
        self,
        index: int,
        text: str,
        finish_reason: FinishReason,
        first: bool,
        logprobs: Logprobs | OpenAIChatLogprobs | None,
    ) -> CompletionChunkChoice:
        assert not isinstance(logprobs, OpenAIChatLogprobs), "the OpenAI chat form is asked for on chat only"
        return CompletionChunkChoice(index=index, text=text, finish_reason=finish_reason, logprobs=logprobs)
