"""The chat API (`/v1/chat/completions`, `/chat/completions`): messages in, assistant messages out."""

from __future__ import annotations

from typing import Any

from reference_server.backends.base import Backend, ChatTurn, Choice
from reference_server.errors import ApiError
from reference_server.serving import Prepared, logprobs_object
from spec.models import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    FinishReason,
    GenerationParameters,
    Logprobs,
    TextContentPart,
    Usage,
)

__all__ = ["ChatApi"]


def _chat_turns(request: ChatCompletionRequest) -> list[ChatTurn]:
    turns = []
    for index, message in enumerate(request.messages):
        if isinstance(message.content, str):
            turns.append(ChatTurn(message.role, message.content))
            continue
        texts = []
        for part in message.content:
            if not isinstance(part, TextContentPart):
                raise ApiError(
                    400,
                    "unsupported_content",
                    "this model is not a Llama 3.2 Vision model: image_url content parts are not accepted",
                    param=f"messages[{index}].content",
                )
            texts.append(part.text)
        turns.append(ChatTurn(message.role, "".join(texts)))
    return turns


class ChatApi:
    """The `ApiFamily` of chat completions."""

    id_prefix = "chatcmpl"
    prompt_param = "messages"

    def parse(self, data: dict[str, Any]) -> ChatCompletionRequest:
        return ChatCompletionRequest.model_validate(data)

    async def prompt(self, params: GenerationParameters, backend: Backend) -> tuple[str, list[str]]:
        assert isinstance(params, ChatCompletionRequest)
        turns = _chat_turns(params)
        return await backend.render_chat(turns), [turn.content for turn in turns]

    def response(self, prepared: Prepared, choices: list[Choice], usage: Usage) -> ChatCompletionResponse:
        return ChatCompletionResponse(
            id=prepared.request_id,
            created=prepared.created,
            model=prepared.model_name,
            usage=usage,
            choices=[
                ChatChoice(
                    index=choice.index,
                    message=AssistantMessage(content=choice.text),
                    finish_reason=choice.finish_reason,
                    logprobs=logprobs_object(choice.tokens, 0) if prepared.want_logprobs else None,
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
        logprobs: Logprobs | None,
    ) -> ChatCompletionChunk:
        delta = ChatDelta(role="assistant" if first else None, content=text)
        return ChatCompletionChunk(
            id=prepared.request_id,
            created=prepared.created,
            model=prepared.model_name,
            choices=[ChatChunkChoice(index=index, delta=delta, finish_reason=finish_reason, logprobs=logprobs)],
        )

    def usage_chunk(self, prepared: Prepared, usage: Usage) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=prepared.request_id, created=prepared.created, model=prepared.model_name, choices=[], usage=usage
        )
