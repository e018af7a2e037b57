"""Pydantic v2 wire models of `spec/openapi.yaml`, used by the reference server.

The document is the oracle: `tests/spec/test_drift.py` proves these models describe the same
schemas (field names, types, defaults, bounds, required sets). Cross-field rules that JSON
Schema cannot express (spec/DECISIONS.md D2, D3) are validators here and prose in the document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

__all__ = [
    "AZURE_API_VERSIONS",
    "AZURE_KNOWN_MEMBERS",
    "AZURE_PASS_THROUGH",
    "AZURE_ROUTE_KINDS",
    "AZURE_VERSIONED_ROUTES",
    "EXTRA_PARAMETERS_VALUES",
    "FINISH_REASONS",
    "AssistantMessage",
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatDelta",
    "ChatMessage",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionChunkChoice",
    "CompletionRequest",
    "CompletionResponse",
    "ContentPart",
    "ErrorBody",
    "ErrorResponse",
    "FinishReason",
    "GenerationParameters",
    "ImageUrl",
    "ImageUrlContentPart",
    "InvalidParameter",
    "Logprobs",
    "ModelInfo",
    "ModelList",
    "ModelListEntry",
    "OpenAIChatLogprobs",
    "OpenAIChatTokenLogprob",
    "OpenAITopLogprob",
    "ResponseFormat",
    "StreamOptions",
    "TextContentPart",
    "TokenizeRequest",
    "TokenizeResponse",
    "Usage",
    "azure_extra_members",
    "model_type_api",
]


class InvalidParameter(ValueError):
    """A cross-field rule broken by a request; carries the parameter to name in the 400."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


# The api-version values of the Azure AI Model Inference REST spec (D41); the first is the SDK's default.
AZURE_API_VERSIONS: tuple[str, ...] = ("2024-05-01-preview", "2024-04-01-preview", "2025-04-01", "2025-05-01")
# The values of the `extra-parameters` request header on the Azure routes (D40); `error` is the default.
EXTRA_PARAMETERS_VALUES: tuple[str, ...] = ("error", "drop", "pass-through")
# The Azure routes with a request body and the kind of body each takes; all three take api-version (D41).
AZURE_ROUTE_KINDS: dict[str, str] = {"/chat/completions": "chat", "/completions": "completion"}
AZURE_VERSIONED_ROUTES: frozenset[str] = frozenset({*AZURE_ROUTE_KINDS, "/info"})
# What a client of the Azure routes sends with a body carrying Llama extras, as azure-ai-inference does.
AZURE_PASS_THROUGH: dict[str, str] = {"extra-parameters": "pass-through"}
# The members Azure AI Model Inference defines on each Azure route (D40); anything else is a Llama extra.
AZURE_KNOWN_MEMBERS: dict[str, frozenset[str]] = {
    "chat": frozenset(
        {
            "messages",
            "stream",
            "max_tokens",
            "temperature",
            "top_p",
            "stop",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "response_format",
            "tools",
            "tool_choice",
            "model",
        }
    ),
    "completion": frozenset(
        {
            "prompt",
            "stream",
            "max_tokens",
            "temperature",
            "top_p",
            "stop",
            "presence_penalty",
            "frequency_penalty",
            "seed",
            "model",
        }
    ),
}


def azure_extra_members(body: dict[str, Any], kind: str) -> list[str]:
    """The members of a request body that the Azure routes treat as extras (D40), sorted; kind: chat|completion."""
    return sorted(name for name in body if name not in AZURE_KNOWN_MEMBERS[kind])


# /info model_type spellings by the API they mean (D43): Azure's sources write all of these.
_MODEL_TYPE_APIS: dict[str, str] = {
    "chat-completion": "chat",
    "chat-completions": "chat",
    "chat_completion": "chat",
    "chat_completions": "chat",
    "chat": "chat",
    "text-generation": "completion",
    "text_generation": "completion",
}


def model_type_api(model_type: object) -> str | None:
    """`chat` or `completion` for an /info model_type in any of Azure's spellings (D43); None when unknown."""
    if not isinstance(model_type, str):
        return None
    return _MODEL_TYPE_APIS.get(model_type.strip().lower())


FinishReason = Literal["stop", "length", "content_filter", "content_filter_error"] | None
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "content_filter", "content_filter_error")


class RequestModel(BaseModel):
    """Request bodies: unknown fields are ignored (D15); values are never coerced from strings."""

    model_config = ConfigDict(extra="ignore", strict=True)


class ResponseModel(BaseModel):
    """Response bodies: the server builds them, so unknown fields are a programming error."""

    model_config = ConfigDict(extra="forbid")


# --- requests -----------------------------------------------------------------------------

NonEmptyString = Annotated[str, Field(min_length=1)]
TokenId = Annotated[int, Field(ge=0)]


class StreamOptions(RequestModel):
    """Extension (D10): ask for a final usage chunk."""

    include_usage: bool = Field(default=False, description="Send a final usage chunk before [DONE].")


class TextContentPart(RequestModel):
    """Llama 3.2 Vision content part: text."""

    type: Literal["text"]
    text: str


class ImageUrl(RequestModel):
    """The image reference of an image_url part."""

    url: str


class ImageUrlContentPart(RequestModel):
    """Llama 3.2 Vision content part: an image by URL (data: URLs included)."""

    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextContentPart | ImageUrlContentPart, Field(discriminator="type")]


class ChatMessage(RequestModel):
    """One message of the chat history (D44: developer is served as system; tool turns are refused)."""

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_or_tool_calls(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise InvalidParameter("content", "a message needs content (only an assistant tool call may omit it)")
        return self


class ResponseFormat(RequestModel):
    """OpenAI / Azure response_format (D44: `text` is served; JSON modes are refused with 422)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


def _integral(value: Any) -> Any:
    """19.0 -> 19 (an integer in JSON Schema's sense); anything else unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class GenerationParameters(RequestModel):
    """The request fields shared by both route families, in docs order."""

    stream: bool = False
    max_tokens: int = Field(default=16, ge=1)
    top_p: float = Field(default=1.0, gt=0, le=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    n: int = Field(default=1, ge=1, le=16)
    stop: NonEmptyString | Annotated[list[NonEmptyString], Field(max_length=16)] | None = None
    best_of: int | None = Field(default=None, ge=1, le=16)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    ignore_eos: bool = False
    use_beam_search: bool = False
    stop_token_ids: Annotated[list[TokenId], Field(max_length=64)] | None = None
    skip_special_tokens: bool | None = None
    stream_options: StreamOptions | None = None
    seed: int | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _json_numbers(cls, data: Any) -> Any:
        # JSON has one number type: JSON Schema's "integer" includes 19.0, and "number" includes 1.
        # Strict mode refuses both, so they are normalised here; strings and booleans stay refused.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("top_p", "temperature", "presence_penalty", "frequency_penalty"):
            value = data.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                data[name] = float(value)
        for name in ("max_tokens", "n", "best_of", "logprobs", "seed", "max_completion_tokens", "top_logprobs"):
            if name in data:
                data[name] = _integral(data[name])
        if isinstance(data.get("stop_token_ids"), list):
            data["stop_token_ids"] = [_integral(value) for value in data["stop_token_ids"]]
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> GenerationParameters:
        if self.max_completion_tokens is not None:
            # OpenAI's newer name (D45): when given, it is the limit (vLLM's precedence)
            self.max_tokens = self.max_completion_tokens
        best_of = self.effective_best_of
        if best_of < self.n:
            raise InvalidParameter("best_of", f"best_of ({best_of}) must be greater than or equal to n ({self.n})")
        if self.use_beam_search:
            if best_of <= 1:
                raise InvalidParameter("best_of", "use_beam_search requires best_of > 1 (the beam width)")
            if self.temperature != 0:
                raise InvalidParameter("temperature", "use_beam_search requires temperature 0 (spec D2)")
            if self.stream:
                raise InvalidParameter("use_beam_search", "use_beam_search cannot be streamed")
        if self.stream and best_of > self.n:
            raise InvalidParameter("best_of", "best_of greater than n cannot be streamed")
        return self

    @property
    def effective_best_of(self) -> int:
        """best_of, with null meaning n (D3)."""
        return self.best_of if self.best_of is not None else self.n

    @property
    def stop_sequences(self) -> list[str]:
        """`stop` as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def include_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def logprobs_count(self) -> int | None:
        """How many alternatives per position to report, or None when logprobs were not asked for."""
        return self.logprobs if isinstance(self.logprobs, int) and not isinstance(self.logprobs, bool) else None

    @property
    def openai_chat_logprobs(self) -> bool:
        """The OpenAI chat form was asked for (`logprobs: true`), so it is the form answered (D45)."""
        return False


class CompletionRequest(GenerationParameters):
    """Body of POST /v1/completions and POST /completions."""

    prompt: NonEmptyString | Annotated[list[NonEmptyString], Field(min_length=1, max_length=16)]

    @property
    def prompts(self) -> list[str]:
        """`prompt` as a list (the OpenAI list form is an extension, D45)."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatCompletionRequest(GenerationParameters):
    """Body of POST /v1/chat/completions and POST /chat/completions."""

    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=512)]
    logprobs: bool | Annotated[int, Field(ge=0, le=20)] | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _top_logprobs_needs_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and self.logprobs is not True:
            raise InvalidParameter("top_logprobs", "top_logprobs requires logprobs: true (the OpenAI chat form)")
        return self

    @property
    def logprobs_count(self) -> int | None:
        if self.logprobs is True:
            return self.top_logprobs or 0
        return super().logprobs_count

    @property
    def openai_chat_logprobs(self) -> bool:
        return self.logprobs is True


class TokenizeRequest(RequestModel):
    """Body of POST /tokenize (an extension, D58): llama.cpp's `content` or vLLM's `prompt` or `messages`."""

    content: str | None = None
    prompt: str | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=512)] | None = None
    add_special: bool | None = None
    add_special_tokens: bool | None = None
    model: str | None = None

    @model_validator(mode="after")
    def _one_text(self) -> TokenizeRequest:
        given = [name for name in ("content", "prompt", "messages") if getattr(self, name) is not None]
        if len(given) != 1:
            raise InvalidParameter(
                given[1] if len(given) > 1 else "content",
                "send exactly one of 'content' (llama.cpp's form), 'prompt' or 'messages' (vLLM's forms)",
            )
        if None not in (self.add_special, self.add_special_tokens) and self.add_special != self.add_special_tokens:
            raise InvalidParameter("add_special_tokens", "add_special and add_special_tokens disagree")
        return self

    @property
    def with_special_tokens(self) -> bool:
        """Whether the start token(s) are counted: as asked, else each form's own default (D58)."""
        asked = self.add_special if self.add_special is not None else self.add_special_tokens
        if asked is not None:
            return asked
        # llama.cpp's server leaves them out unless asked; vLLM (and the generation routes' usage) counts them
        return self.content is None


# --- responses ----------------------------------------------------------------------------


class Usage(ResponseModel):
    """Token usage of a request (completion_tokens summed over the returned choices, D18)."""

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


class Logprobs(ResponseModel):
    """The documented logprobs object (D8, D19), plus OpenAI's `text_offset` with the same values (D45)."""

    text_offsets: list[Annotated[int, Field(ge=0)]]
    token_logprobs: list[Annotated[float, Field(le=0)] | None]
    tokens: list[str]
    top_logprobs: list[dict[str, Annotated[float, Field(le=0)]] | None]
    text_offset: list[Annotated[int, Field(ge=0)]]


class OpenAITopLogprob(ResponseModel):
    """One alternative at a position, in the OpenAI chat form."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class OpenAIChatTokenLogprob(ResponseModel):
    """One generated token in the OpenAI chat form."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[OpenAITopLogprob]


class OpenAIChatLogprobs(ResponseModel):
    """The OpenAI chat logprobs form, answered when the request asked with `logprobs: true` (D45)."""

    content: list[OpenAIChatTokenLogprob] | None


class CompletionChoice(ResponseModel):
    index: int = Field(ge=0)
    text: str
    finish_reason: FinishReason
    logprobs: Logprobs | None = None


class CompletionResponse(ResponseModel):
    id: str = Field(min_length=1)
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(ge=0)
    model: str
    choices: list[CompletionChoice] = Field(min_length=1)
    usage: Usage


class CompletionChunkChoice(ResponseModel):
    index: int = Field(ge=0)
    text: str
    finish_reason: FinishReason
    logprobs: Logprobs | None = None


class CompletionChunk(ResponseModel):
    id: str = Field(min_length=1)
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(ge=0)
    model: str
    choices: list[CompletionChunkChoice]
    usage: Usage | None = None


class AssistantMessage(ResponseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatDelta(ResponseModel):
    """A chat chunk's message piece; `role` only in the first delta of a choice (absent otherwise)."""

    role: Literal["assistant"] | None = Field(default=None, exclude_if=lambda role: role is None)
    content: str | None = None


class ChatChoice(ResponseModel):
    index: int = Field(ge=0)
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: Logprobs | OpenAIChatLogprobs | None = None


class ChatCompletionResponse(ResponseModel):
    id: str = Field(min_length=1)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(ge=0)
    model: str
    choices: list[ChatChoice] = Field(min_length=1)
    usage: Usage


class ChatChunkChoice(ResponseModel):
    index: int = Field(ge=0)
    delta: ChatDelta
    finish_reason: FinishReason
    logprobs: Logprobs | OpenAIChatLogprobs | None = None


class ChatCompletionChunk(ResponseModel):
    id: str = Field(min_length=1)
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(ge=0)
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelInfo(ResponseModel):
    """GET /info; the reference server writes chat-completion / text-generation, clients read all spellings (D43)."""

    model_name: str
    model_type: Literal[
        "chat-completion", "chat-completions", "chat_completion", "chat", "text-generation", "text_generation"
    ]
    model_provider_name: str


class ModelListEntry(ResponseModel):
    """One model of GET /v1/models (OpenAI's form, an extension, D45)."""

    id: str = Field(min_length=1)
    object: Literal["model"] = "model"
    created: int = Field(ge=0)
    owned_by: str


class ModelList(ResponseModel):
    """GET /v1/models: the one deployed model."""

    object: Literal["list"] = "list"
    data: list[ModelListEntry]


class TokenizeResponse(ResponseModel):
    """POST /tokenize: the ids (llama.cpp's and vLLM's `tokens`), their count and the context length (vLLM's)."""

    tokens: list[TokenId]
    count: int = Field(ge=0)
    max_model_len: int = Field(ge=1)


class ErrorBody(ResponseModel):
    """The error body; on the Azure routes it is also the Azure.Core error (target, details list, innererror, D42)."""

    code: str
    message: str = Field(min_length=1)
    param: str | None = None
    type: str | None = None
    details: dict[str, Any] | list[dict[str, Any]] | None = None
    target: str | None = Field(default=None, exclude_if=lambda target: target is None)
    innererror: dict[str, Any] | None = Field(default=None, exclude_if=lambda inner: inner is None)


class ErrorResponse(ResponseModel):
    """The one error envelope (D14)."""

    error: ErrorBody
