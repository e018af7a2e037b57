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
    OpenAIChatLogprobs,
    TextContentPart,
)

__all__ = ["ChatApi"]


def _refuse_unserved(request: ChatCompletionRequest) -> None:
    """Azure members this deployment cannot serve are refused as Azure refuses them, never ignored (D44)."""

    def unsupported(param: str, message: str) -> ApiError:
        return ApiError(422, "parameter_not_supported", message, param=param)

    if request.response_format is not None and request.response_format.type != "text":
        raise unsupported(
            "response_format", f"response_format '{request.response_format.type}' is not supported by this model"
        )
    if request.tool_choice not in (None, "none", "auto") or (request.tools and request.tool_choice != "none"):
        param = "tools" if request.tools else "tool_choice"
        raise unsupported(param, "this deployment does not call tools (send tool_choice 'none', or no tools)")
    for index, message in enumerate(request.messages):
        if message.role == "tool":
            raise unsupported(f"messages[{index}].role", "tool messages are not supported: no tools are called here")
        if message.tool_calls:
            raise unsupported(
                f"messages[{index}].tool_calls", "assistant tool_calls are not supported: no tools are called here"
            )


def _chat_turns(request: ChatCompletionRequest) -> list[ChatTurn]:
    turns = []
    for index, message in enumerate(request.messages):
        role = "system" if message.role == "developer" else message.role  # OpenAI's newer name (D44)
        if isinstance(message.content, str):
            turns.append(ChatTurn(role, message.content))
            continue
        assert message.content is not None, "only tool-call messages lack content, and they are refused"
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
        turns.append(ChatTurn(role, "".join(texts)))
    return turns


class ChatApi:
    """The `ApiFamily` of chat completions."""

    id_prefix = "chatcmpl"
    prompt_param = "messages"

    def parse(self, data: dict[str, Any]) -> ChatCompletionRequest:
        return ChatCompletionRequest.model_validate(data)

    async def prompts(self, params: GenerationParameters, backend: Backend) -> tuple[list[str], list[str]]:
        assert isinstance(params, ChatCompletionRequest)
        _refuse_unserved(params)
        turns = _chat_turns(params)
        return [await backend.render_chat(turns)], [turn.content for turn in turns]

    response_model = ChatCompletionResponse
    chunk_model = ChatCompletionChunk

    def response_choice(self, choice: Choice, logprobs: Logprobs | OpenAIChatLogprobs | None) -> ChatChoice:
        return ChatChoice(
            index=choice.index,
            message=AssistantMessage(content=choice.text),
            finish_reason=choice.finish_reason,
            logprobs=logprobs,
        )

    def chunk_choice(
        self,
        index: int,
        text: str,
        finish_reason: FinishReason,
        first: bool,
        logprobs: Logprobs | OpenAIChatLogprobs | None,
    ) -> ChatChunkChoice:
        delta = ChatDelta(role="assistant" if first else None, content=text)
        return ChatChunkChoice(index=index, delta=delta, finish_reason=finish_reason, logprobs=logprobs)
