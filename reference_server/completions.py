"""The completions API (`/v1/completions`, `/completions`): a prompt in, text choices out."""

from __future__ import annotations

from typing import Any

from reference_server.backends.base import Backend, Choice
from reference_server.serving import Prepared, logprobs_object
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
    Usage,
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

    def response(self, prepared: Prepared, choices: list[Choice], usage: Usage) -> CompletionResponse:
        return CompletionResponse(
            id=prepared.request_id,
            created=prepared.created,
            model=prepared.model_name,
            usage=usage,
            choices=[
                CompletionChoice(
                    index=choice.index,
                    text=choice.text,
                    finish_reason=choice.finish_reason,
                    logprobs=logprobs_object(choice.tokens, 0) if prepared.params.logprobs_count is not None else None,
                )
                for choice in choices
            ],
        )

    def chunk(
        self,
        prepared: Prepared,
        index: int,
        text: str,
        finish_reason: FinishReason,
        first: bool,
        logprobs: Logprobs | OpenAIChatLogprobs | None,
    ) -> CompletionChunk:
        assert not isinstance(logprobs, OpenAIChatLogprobs), "the OpenAI chat form is asked for on chat only"
        return CompletionChunk(
            id=prepared.request_id,
            created=prepared.created,
            model=prepared.model_name,
            choices=[CompletionChunkChoice(index=index, text=text, finish_reason=finish_reason, logprobs=logprobs)],
        )

    def usage_chunk(self, prepared: Prepared, usage: Usage) -> CompletionChunk:
        return CompletionChunk(
            id=prepared.request_id, created=prepared.created, model=prepared.model_name, choices=[], usage=usage
        )
