"""The chat API (`/v1/chat/completions`, `/chat/completions`): messages in, assistant messages out."""

from __future__ import annotations

from typing import Any

from reference_server.backends.base import Backend, ChatTurn, Choice
from reference_server.errors import ApiError
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

    response_model = ChatCompletionResponse
    chunk_model = ChatCompletionChunk

    def response_choice(self, choice: Choice, logprobs: Logprobs | None) -> ChatChoice:
        return ChatChoice(
            index=choice.index,
            message=AssistantMessage(content=choice.text),
            finish_reason=choice.finish_reason,
            logprobs=logprobs,
        )

    def chunk_choice(
        self, index: int, text: str, finish_reason: FinishReason, first: bool, logprobs: Logprobs | None
    ) -> ChatChunkChoice:
        delta = ChatDelta(role="assistant" if first else None, content=text)
        return ChatChunkChoice(index=index, delta=delta, finish_reason=finish_reason, logprobs=logprobs)
