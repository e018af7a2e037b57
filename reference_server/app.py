"""The HTTP layer: the routes of spec/openapi.yaml over any Backend (the Azure routes' own rules: azure.py).

It knows the wire format (spec/models.py), auth, limits and errors; it never imports llama.cpp or
vLLM. Streams are plain async generators of `data: {json}\\n\\n` strings ending `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from reference_server.azure import (
    ClientRequestIdMiddleware,
    admit_members,
    check_api_version,
    is_azure_route,
)
from reference_server.backends.base import (
    Backend,
    BackendOverloaded,
    ChatTurn,
    Choice,
    ChoiceDelta,
    GeneratedToken,
    Generation,
    SamplingOptions,
)
from reference_server.errors import ApiError, azure_error_response, error_response, from_validation_error
from reference_server.ratelimit import RateLimiter, Rejection, Ticket, rate_limit_headers
from reference_server.safety import ContentSafety, StreamModerator
from reference_server.settings import ServerSettings
from spec.document import load_document
from spec.models import (
    AZURE_ROUTE_KINDS,
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    CompletionChoice,
    CompletionChunk,
    CompletionChunkChoice,
    CompletionRequest,
    CompletionResponse,
    GenerationParameters,
    Logprobs,
    ModelInfo,
    ModelList,
    ModelListEntry,
    OpenAIChatLogprobs,
    OpenAIChatTokenLogprob,
    OpenAITopLogprob,
    TextContentPart,
    Usage,
)
from spec.sse import DONE_EVENT, encode_event

__all__ = ["AppState", "create_app"]


@dataclass
class AppState:
    """What the routes share: the backend, the key, the deployment's limits and content safety."""

    settings: ServerSettings
    backend: Backend
    api_key: str
    rate_limiter: RateLimiter | None
    safety: ContentSafety | None
    openapi_json: bytes = field(default_factory=lambda: json.dumps(load_document()).encode())


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.llamacert
    return state


def _authenticate(request: Request, api_key: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    supplied = token.strip() if scheme.lower() == "bearer" else request.headers.get("api-key", "")
    if not supplied:
        raise ApiError(401, "invalid_api_key", "missing key: send 'Authorization: Bearer <key>' (or 'api-key: <key>')")
    # constant time: the comparison must not leak how much of a guessed key was right
    if not hmac.compare_digest(supplied.encode(), api_key.encode()):
        raise ApiError(401, "invalid_api_key", "the key is not valid for this endpoint")


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"the request body is {declared} bytes; the limit is {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise ApiError(413, "payload_too_large", f"the request body exceeds the limit of {limit} bytes")
    except ClientDisconnect:
        raise ApiError(400, "invalid_request", "the client went away before sending the whole body") from None
    if not body:
        raise ApiError(400, "invalid_request", "the request body is empty; send a JSON object")

    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    try:
        data = json.loads(body, parse_constant=refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "the request body must be a JSON object")
    return data


def _sampling_options(params: GenerationParameters) -> SamplingOptions:
    return SamplingOptions(
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        n=params.n,
        best_of=params.effective_best_of,
        stop=tuple(params.stop_sequences),
        stop_token_ids=tuple(params.stop_token_ids or ()),
        logprobs=params.logprobs_count,
        presence_penalty=params.presence_penalty or 0.0,
        frequency_penalty=params.frequency_penalty or 0.0,
        ignore_eos=params.ignore_eos,
        use_beam_search=params.use_beam_search,
        skip_special_tokens=True if params.skip_special_tokens is None else params.skip_special_tokens,
        seed=params.seed,
    )


def _logprobs(tokens: list[GeneratedToken], start_offset: int) -> Logprobs:
    offsets: list[int] = []
    token_logprobs: list[float | None] = []
    position = start_offset
    for token in tokens:
        if token.logprob is None:
            raise ValueError("logprobs were requested, but the backend returned a token without its log-probability")
        offsets.append(position)
        position += len(token.text)
        token_logprobs.append(min(0.0, token.logprob))
    return Logprobs(
        text_offsets=offsets,
        token_logprobs=token_logprobs,
        tokens=[t.text for t in tokens],
        top_logprobs=[{k: min(0.0, v) for k, v in (t.top_logprobs or {}).items()} for t in tokens],
        text_offset=offsets,
    )


def _openai_chat_logprobs(tokens: list[GeneratedToken], alternatives: int) -> OpenAIChatLogprobs:
    """The OpenAI chat form (D30): each token with its `alternatives` most likely tokens."""
    content = []
    for token in tokens:
        if token.logprob is None:
            raise ValueError("logprobs were requested, but the backend returned a token without its log-probability")
        ranked = sorted((token.top_logprobs or {}).items(), key=lambda entry: -entry[1])[:alternatives]
        content.append(
            OpenAIChatTokenLogprob(
                token=token.text,
                logprob=min(0.0, token.logprob),
                bytes=list(token.text.encode()),
                top_logprobs=[
                    OpenAITopLogprob(token=text, logprob=min(0.0, value), bytes=list(text.encode()))
                    for text, value in ranked
                ],
            )
        )
    return OpenAIChatLogprobs(content=content)


def _choice_logprobs(
    params: GenerationParameters, tokens: list[GeneratedToken], start_offset: int
) -> Logprobs | OpenAIChatLogprobs | None:
    """A choice's logprobs in the form the request asked for, or None when it asked for none."""
    alternatives = params.logprobs_count
    if alternatives is None:
        return None
    if params.openai_chat_logprobs:
        return _openai_chat_logprobs(tokens, alternatives)
    return _logprobs(tokens, start_offset)


def _refuse_unserved(request: ChatCompletionRequest) -> None:
    """Azure members this deployment cannot serve are refused as Azure refuses them, never ignored (D29)."""

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
        role = "system" if message.role == "developer" else message.role  # OpenAI's newer name (D29)
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


@dataclass
class _Prepared:
    """A validated request, its prompt, and what it was charged."""

    params: GenerationParameters
    options: SamplingOptions
    prompts: list[str]
    """One prompt, except for the OpenAI list form of a completions prompt (D30)."""
    prompt_tokens: int
    request_id: str
    ticket: Ticket | None
    limit_headers: dict[str, str]
    prompt_unmoderated: bool = False
    """Content safety could not judge the prompt: nothing is generated from it (D24)."""

    @property
    def choice_count(self) -> int:
        return self.options.n * len(self.prompts)


class _Routes:
    def __init__(self, chat: bool) -> None:
        self.chat = chat

    async def _prepare(self, request: Request, state: AppState) -> _Prepared:
        _authenticate(request, state.api_key)
        azure_kind = AZURE_ROUTE_KINDS.get(request.url.path)
        if azure_kind is not None:
            check_api_version(request)
        data = await _read_json(request, state.settings.max_body_bytes)
        if azure_kind is not None:
            data = admit_members(request, data, azure_kind)
        model_class = ChatCompletionRequest if self.chat else CompletionRequest
        try:
            params: GenerationParameters = model_class.model_validate(data)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        if isinstance(params, ChatCompletionRequest):
            _refuse_unserved(params)
            turns = _chat_turns(params)
            prompts = [await state.backend.render_chat(turns)]
            prompt_param = "messages"
            texts = [turn.content for turn in turns]
        else:
            assert isinstance(params, CompletionRequest)
            prompts = params.prompts
            prompt_param = "prompt"
            texts = prompts
            if params.stream and len(prompts) > 1:
                raise ApiError(400, "invalid_request", "a list of several prompts cannot be streamed", param="prompt")
        prompt_tokens = 0
        for prompt in prompts:
            prompt_tokens += await self._checked_prompt_tokens(state, prompt, prompt_param, params.max_tokens)
        prompt_moderated = True
        if state.safety is not None:
            prompt_moderated = await state.safety.check_prompt(texts, prompt_param)
        options = _sampling_options(params)
        ticket: Ticket | None = None
        limit_headers: dict[str, str] = {}
        if state.rate_limiter is not None:
            estimate = prompt_tokens + params.max_tokens * max(params.n, options.best_of) * len(prompts)
            admission = state.rate_limiter.admit(estimate)
            if isinstance(admission, Rejection):
                rejection_headers = rate_limit_headers(state.rate_limiter.snapshot(), admission)
                if admission.reason == "too_large":
                    raise ApiError(
                        400,
                        "rate_limit_request_too_large",
                        admission.message,
                        param="max_tokens",
                        headers=rejection_headers,
                    )
                raise ApiError(429, "rate_limit_exceeded", admission.message, headers=rejection_headers)
            ticket = admission
            limit_headers = rate_limit_headers(state.rate_limiter.snapshot())
        prefix = "chatcmpl" if self.chat else "cmpl"
        request_id = f"{prefix}-{uuid.uuid4().hex}"
        return _Prepared(
            params, options, prompts, prompt_tokens, request_id, ticket, limit_headers, not prompt_moderated
        )

    async def _checked_prompt_tokens(self, state: AppState, prompt: str, param: str, max_tokens: int) -> int:
        """The prompt's token count; a 400 for an empty prompt or one that with max_tokens exceeds the context."""
        prompt_tokens = len(await state.backend.tokenize(prompt))
        if prompt_tokens == 0:
            raise ApiError(400, "invalid_request", "the prompt has no tokens: nothing to continue", param=param)
        context = state.backend.info.context_length
        if prompt_tokens + max_tokens > context:
            raise ApiError(
                400,
                "context_length_exceeded",
                f"the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}: "
                f"{prompt_tokens + max_tokens} tokens exceed the model's context length of {context}",
                param=param if prompt_tokens >= context else "max_tokens",
            )
        return prompt_tokens

    async def handle(self, request: Request) -> Response:
        state = _state(request)
        prepared = await self._prepare(request, state)
        try:
            if prepared.params.stream:
                return StreamingResponse(
                    self._stream(state, prepared),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **prepared.limit_headers},
                )
            return await self._complete(state, prepared)
        except BaseException:
            self._settle(state, prepared, 0)
            raise

    def _settle(self, state: AppState, prepared: _Prepared, generated_tokens: int) -> None:
        if state.rate_limiter is not None and prepared.ticket is not None:
            state.rate_limiter.settle(prepared.ticket, prepared.prompt_tokens + generated_tokens)

    async def _moderate(self, state: AppState, choice: Choice) -> Choice:
        if state.safety is None:
            return choice
        outcome = await state.safety.moderate_completion(choice.text)
        if outcome.finish_reason is None:
            return choice
        kept: list[GeneratedToken] = []
        length = 0
        for token in choice.tokens:
            if length >= outcome.safe_length:
                break
            token.text = token.text[: outcome.safe_length - length]
            length += len(token.text)
            kept.append(token)
        return Choice(choice.index, kept, outcome.finish_reason)

    async def _generate(self, state: AppState, prepared: _Prepared) -> Generation:
        if prepared.prompt_unmoderated:
            empty = [Choice(index, [], "content_filter_error") for index in range(prepared.choice_count)]
            return Generation(choices=empty, prompt_tokens=prepared.prompt_tokens, generated_tokens=0)
        if len(prepared.prompts) == 1:
            return await state.backend.generate(prepared.prompts[0], prepared.options, prepared.request_id)
        # the OpenAI list form (D30): one after another under the one request id, so abort reaches each
        choices: list[Choice] = []
        generated_tokens = 0
        for position, prompt in enumerate(prepared.prompts):
            generation = await state.backend.generate(prompt, prepared.options, prepared.request_id)
            offset = position * prepared.options.n
            choices.extend(Choice(offset + c.index, c.tokens, c.finish_reason) for c in generation.choices)
            generated_tokens += generation.generated_tokens
        return Generation(choices=choices, prompt_tokens=prepared.prompt_tokens, generated_tokens=generated_tokens)

    async def _deltas(self, state: AppState, prepared: _Prepared) -> AsyncIterator[ChoiceDelta]:
        if prepared.prompt_unmoderated:
            for index in range(prepared.options.n):
                yield ChoiceDelta(index, "", [], "content_filter_error")
            return
        async for delta in state.backend.stream(prepared.prompts[0], prepared.options, prepared.request_id):
            yield delta

    async def _complete(self, state: AppState, prepared: _Prepared) -> Response:
        params = prepared.params
        try:
            generation = await self._generate(state, prepared)
        except BaseException:
            with contextlib.suppress(Exception):
                await state.backend.abort(prepared.request_id)
            raise
        self._settle(state, prepared, generation.generated_tokens)
        choices = [await self._moderate(state, choice) for choice in generation.choices]
        completion_tokens = sum(len(choice.tokens) for choice in choices)
        usage = Usage(
            prompt_tokens=prepared.prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prepared.prompt_tokens + completion_tokens,
        )
        created, model_name = int(time.time()), state.backend.info.model_name
        body: ChatCompletionResponse | CompletionResponse
        if self.chat:
            body = ChatCompletionResponse(
                id=prepared.request_id,
                created=created,
                model=model_name,
                usage=usage,
                choices=[
                    ChatChoice(
                        index=c.index,
                        message=AssistantMessage(content=c.text),
                        finish_reason=c.finish_reason,
                        logprobs=_choice_logprobs(params, c.tokens, 0),
                    )
                    for c in choices
                ],
            )
        else:
            body = CompletionResponse(
                id=prepared.request_id,
                created=created,
                model=model_name,
                usage=usage,
                choices=[
                    CompletionChoice(
                        index=c.index,
                        text=c.text,
                        finish_reason=c.finish_reason,
                        logprobs=_logprobs(c.tokens, 0) if params.logprobs_count is not None else None,
                    )
                    for c in choices
                ],
            )
        return JSONResponse(body.model_dump(mode="json"), headers=prepared.limit_headers)

    def _chunk(
        self,
        prepared: _Prepared,
        model_name: str,
        created: int,
        index: int,
        text: str,
        finish_reason: Any,
        logprobs: Logprobs | OpenAIChatLogprobs | None,
        first: bool,
    ) -> str:
        chunk: ChatCompletionChunk | CompletionChunk
        if self.chat:
            delta = ChatDelta(role="assistant" if first else None, content=text)
            chunk = ChatCompletionChunk(
                id=prepared.request_id,
                created=created,
                model=model_name,
                choices=[ChatChunkChoice(index=index, delta=delta, finish_reason=finish_reason, logprobs=logprobs)],
            )
        else:
            chunk = CompletionChunk(
                id=prepared.request_id,
                created=created,
                model=model_name,
                choices=[
                    CompletionChunkChoice(
                        index=index,
                        text=text,
                        finish_reason=finish_reason,
                        logprobs=logprobs if isinstance(logprobs, Logprobs) else None,
                    )
                ],
            )
        return encode_event(chunk.model_dump_json())

    async def _stream(self, state: AppState, prepared: _Prepared) -> AsyncIterator[str]:
        created = int(time.time())
        model_name = state.backend.info.model_name
        offsets: dict[int, int] = {}
        completion_tokens = 0
        started: set[int] = set()
        moderators: dict[int, StreamModerator] = {}
        finished: set[int] = set()
        try:
            async for delta in self._deltas(state, prepared):
                if delta.index in finished:
                    continue
                tokens = delta.tokens
                finish_reason = delta.finish_reason
                if state.safety is not None:
                    moderator = moderators.setdefault(delta.index, state.safety.stream_moderator())
                    tokens, finish_reason = await moderator.step(tokens, finish_reason)
                if not tokens and finish_reason is None:
                    continue
                completion_tokens += len(tokens)
                offset = offsets.get(delta.index, 0)
                text = "".join(t.text for t in tokens)
                offsets[delta.index] = offset + len(text)
                first = delta.index not in started
                started.add(delta.index)
                logprobs = _choice_logprobs(prepared.params, tokens, offset)
                yield self._chunk(prepared, model_name, created, delta.index, text, finish_reason, logprobs, first)
                if finish_reason is not None:
                    finished.add(delta.index)
                    # a filtered choice's backend generation runs on; stop once every choice is done
                    if finish_reason.startswith("content_filter") and len(finished) == prepared.options.n:
                        break
            if prepared.params.include_usage_in_stream:
                usage = Usage(
                    prompt_tokens=prepared.prompt_tokens,
                    completion_tokens=completion_tokens,
                    total_tokens=prepared.prompt_tokens + completion_tokens,
                )
                chunk_class = ChatCompletionChunk if self.chat else CompletionChunk
                usage_chunk = chunk_class(
                    id=prepared.request_id, created=created, model=model_name, choices=[], usage=usage
                )
                yield encode_event(usage_chunk.model_dump_json())
        except (asyncio.CancelledError, GeneratorExit):
            await state.backend.abort(prepared.request_id)
            raise
        except BackendOverloaded as exc:
            error = ApiError(503, "overloaded", str(exc))
            yield encode_event(json.dumps(error.body()))
        except Exception as exc:  # an error after the 200 goes in-band (D21), never as a traceback
            error = ApiError(500, "server_error", f"generation failed: {type(exc).__name__}")
            yield encode_event(json.dumps(error.body()))
        finally:
            self._settle(state, prepared, completion_tokens)
        yield DONE_EVENT


async def _info(request: Request) -> Response:
    state = _state(request)
    _authenticate(request, state.api_key)
    check_api_version(request)
    info = state.backend.info
    body = ModelInfo(
        model_name=info.model_name, model_type=info.model_type, model_provider_name=info.model_provider_name
    )
    headers = rate_limit_headers(state.rate_limiter.snapshot()) if state.rate_limiter is not None else None
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


async def _models(request: Request) -> Response:
    """GET /v1/models, OpenAI's list form of the one deployed model (D30)."""
    state = _state(request)
    _authenticate(request, state.api_key)
    info = state.backend.info
    entry = ModelListEntry(id=info.model_name, created=int(time.time()), owned_by=info.model_provider_name)
    return JSONResponse(ModelList(data=[entry]).model_dump(mode="json"))


async def _openapi(request: Request) -> Response:
    return Response(_state(request).openapi_json, media_type="application/json")


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "backend": _state(request).backend.info.backend})


def _error_response(request: Request, error: ApiError, headers: dict[str, str] | None = None) -> Response:
    """Our envelope on the Llama routes; the Azure.Core form of it on the Azure routes (D27)."""
    render = azure_error_response if is_azure_route(request.url.path) else error_response
    return render(error, headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    state = _state(request)
    headers: dict[str, str] = {}
    if state.rate_limiter is not None and "Retry-After" not in exc.headers:
        headers = rate_limit_headers(state.rate_limiter.snapshot())
    return _error_response(request, exc, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = ApiError(404, "not_found", f"no route {request.method} {request.url.path}")
    elif exc.status_code == 405:
        error = ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
        error.headers = dict(exc.headers or {})
    else:
        error = ApiError(exc.status_code, "http_error", str(exc.detail))
    return _error_response(request, error)


async def _overloaded(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BackendOverloaded)
    retry = max(1, round(exc.retry_after_s))
    return _error_response(request, ApiError(503, "overloaded", str(exc), headers={"Retry-After": str(retry)}))


async def _unexpected(request: Request, exc: Exception) -> Response:
    # A bug of ours: the client still gets the envelope, never a traceback.
    return _error_response(request, ApiError(500, "server_error", f"internal error ({type(exc).__name__})"))


def create_app(
    settings: ServerSettings,
    backend: Backend,
    *,
    api_key: str,
    rate_limiter: RateLimiter | None = None,
    safety: ContentSafety | None = None,
) -> Starlette:
    """The ASGI app for one deployment. The backend is started and closed with the app's lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.close()

    completions = _Routes(chat=False)
    chat = _Routes(chat=True)
    routes = [
        Route("/v1/completions", completions.handle, methods=["POST"]),
        Route("/completions", completions.handle, methods=["POST"]),
        Route("/v1/chat/completions", chat.handle, methods=["POST"]),
        Route("/chat/completions", chat.handle, methods=["POST"]),
        Route("/info", _info, methods=["GET"]),
        Route("/v1/models", _models, methods=["GET"]),
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/swagger.json", _openapi, methods=["GET"]),
        Route("/health", _health, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: _api_error,
        HTTPException: _http_error,
        BackendOverloaded: _overloaded,
        Exception: _unexpected,
    }
    app = Starlette(
        routes=routes,
        exception_handlers=handlers,
        lifespan=lifespan,
        middleware=[Middleware(ClientRequestIdMiddleware)],
    )
    app.state.llamacert = AppState(settings, backend, api_key, rate_limiter, safety)
    return app
