"""What every generation route shares: auth, reading and validating the body, the prompt's limits, rate
limiting, content safety, and the non-streamed and streamed flows over the backend.

What differs between the completions and the chat API (request model, prompt, response and chunk objects)
is an `ApiFamily` (reference_server/completions.py, reference_server/chat.py); this module never asks
which one it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from reference_server.admission import GenerationGate, Permit
from reference_server.azure import admit_members, check_api_version
from reference_server.backends.base import (
    Backend,
    BackendOverloaded,
    Choice,
    ChoiceDelta,
    GeneratedToken,
    Generation,
    SamplingOptions,
)
from reference_server.disconnect import CLIENT_CLOSED_STATUS, ClientGone, unless_disconnected
from reference_server.drain import Drain
from reference_server.edge import BodyLimits, read_json_object, refuse_costly_stops
from reference_server.errors import ApiError, from_validation_error
from reference_server.faults import FractionFault, request_id_of
from reference_server.metrics import ServerMetrics
from reference_server.moderation import ContentSafety, StreamModerator
from reference_server.ratelimit import RateLimiter, Rejection, Ticket, rate_limit_headers
from reference_server.settings import ServerSettings
from spec.document import load_document
from spec.models import (
    AZURE_ROUTE_KINDS,
    FinishReason,
    GenerationParameters,
    Logprobs,
    OpenAIChatLogprobs,
    OpenAIChatTokenLogprob,
    OpenAITopLogprob,
    Usage,
)
from spec.sse import DONE_EVENT, encode_event

__all__ = [
    "ApiFamily",
    "AppState",
    "GenerationEndpoint",
    "Prepared",
    "app_state",
    "authenticate",
    "choice_logprobs",
    "logprobs_object",
]


@dataclass
class AppState:
    """What the routes share: the backend, the key, the deployment's limits and content safety."""

    settings: ServerSettings
    backend: Backend
    api_key: str
    rate_limiter: RateLimiter | None
    safety: ContentSafety | None
    gate: GenerationGate
    drain: Drain = field(default_factory=Drain)
    openapi_json: bytes = field(default_factory=lambda: json.dumps(load_document()).encode())
    metrics: ServerMetrics | None = None
    usage_fault: FractionFault | None = None
    """`--fault-wrong-usage`: the answers whose usage is made wrong on purpose."""

    def __post_init__(self) -> None:
        if self.usage_fault is None and self.settings.fault_wrong_usage > 0:
            self.usage_fault = FractionFault(self.settings.fault_wrong_usage)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> Usage:
        """The usage object of an answer (its total off by one where the usage fault strikes)."""
        total = prompt_tokens + completion_tokens
        if self.usage_fault is not None and self.usage_fault.strikes():
            total += 1
        return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=total)

    @property
    def body_limits(self) -> BodyLimits:
        return BodyLimits(self.settings.max_body_bytes, self.settings.max_json_depth, self.settings.body_timeout_s)


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.llamacert
    return state


def authenticate(request: Request, api_key: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    supplied = token.strip() if scheme.lower() == "bearer" else request.headers.get("api-key", "")
    if not supplied:
        raise ApiError(401, "invalid_api_key", "missing key: send 'Authorization: Bearer <key>' (or 'api-key: <key>')")
    # constant time: the comparison must not leak how much of a guessed key was right
    if not hmac.compare_digest(supplied.encode(), api_key.encode()):
        raise ApiError(401, "invalid_api_key", "the key is not valid for this endpoint")


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


def logprobs_object(tokens: list[GeneratedToken], start_offset: int) -> Logprobs:
    """The documented logprobs object of `tokens`, their offsets counted from `start_offset` (D19)."""
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
    """The OpenAI chat form (D45): each token with its `alternatives` most likely tokens."""
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


def choice_logprobs(
    params: GenerationParameters, tokens: list[GeneratedToken], start_offset: int
) -> Logprobs | OpenAIChatLogprobs | None:
    """A choice's logprobs in the form the request asked for (D19, D45), or None when it asked for none."""
    alternatives = params.logprobs_count
    if alternatives is None:
        return None
    if params.openai_chat_logprobs:
        return _openai_chat_logprobs(tokens, alternatives)
    return logprobs_object(tokens, start_offset)


@dataclass
class Prepared:
    """A validated request, its prompt, and what it was charged."""

    params: GenerationParameters
    options: SamplingOptions
    prompt_ids: list[list[int]]
    """Each prompt as the model sees it, tokenized once, here, and handed to the backend: one, except for
    the OpenAI list form of a completions prompt (D45)."""
    request_id: str
    ticket: Ticket | None
    limit_headers: dict[str, str]
    created: int
    model_name: str
    prompt_unmoderated: bool = False
    """Content safety could not judge the prompt: nothing is generated from it (D24)."""

    @property
    def prompt_tokens(self) -> int:
        return sum(len(ids) for ids in self.prompt_ids)

    @property
    def choice_count(self) -> int:
        return self.options.n * len(self.prompt_ids)

    @property
    def want_logprobs(self) -> bool:
        return self.params.logprobs_count is not None


class ApiFamily(Protocol):
    """The completions API or the chat API: its wire objects, and how its request becomes a prompt."""

    id_prefix: str
    prompt_param: str
    """The request member that holds the prompt (errors about the prompt name it)."""

    def parse(self, data: dict[str, Any]) -> GenerationParameters:
        """The validated request (raises pydantic's ValidationError)."""

    async def prompts(self, params: GenerationParameters, backend: Backend) -> tuple[list[str], list[str]]:
        """The prompt texts for the backend (one, or the OpenAI list form's several, D45), and the user
        texts content safety judges."""

    @property
    def response_model(self) -> type[BaseModel]:
        """The non-streamed response body; its choices come from `response_choice`."""

    @property
    def chunk_model(self) -> type[BaseModel]:
        """One streamed chunk; its choices come from `chunk_choice`."""

    def response_choice(self, choice: Choice, logprobs: Logprobs | OpenAIChatLogprobs | None) -> BaseModel:
        """One choice of the non-streamed body."""

    def chunk_choice(
        self,
        index: int,
        text: str,
        finish_reason: FinishReason,
        first: bool,
        logprobs: Logprobs | OpenAIChatLogprobs | None,
    ) -> BaseModel:
        """One choice's piece of a streamed chunk (`first`: the choice's first chunk)."""


class _AdmittedStream(StreamingResponse):
    """A stream holding a generation permit: released when the response ends, even if it never started."""

    def __init__(self, permit: Permit, content: AsyncIterator[str], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._permit = permit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._permit.release()


class GenerationEndpoint:
    """One generation route: prepare the request, then answer it whole or as a stream."""

    def __init__(self, family: ApiFamily) -> None:
        self.family = family

    @staticmethod
    def _envelope(prepared: Prepared) -> dict[str, Any]:
        """The members every response and chunk of one request share."""
        return {"id": prepared.request_id, "created": prepared.created, "model": prepared.model_name}

    async def handle(self, request: Request) -> Response:
        state = app_state(request)
        if state.drain.draining:
            raise state.drain.refusal()
        prepared = await self._prepare(request, state)
        # admitted (or refused with 503) before any status is sent, streamed or not (D56); a
        # request whose client leaves while it waits never starts. With a slot free there is no
        # wait, so no disconnect watcher (two tasks) is started for it.
        permit = state.gate.admit_now()
        if permit is None:
            try:
                permit = await unless_disconnected(request, state.gate.admit())
            except ClientGone:
                self._settle(state, prepared, 0)
                return Response(status_code=CLIENT_CLOSED_STATUS)
            except BaseException:
                self._settle(state, prepared, 0)
                raise
        if prepared.params.stream:
            return _AdmittedStream(
                permit,
                self._stream(state, prepared),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **prepared.limit_headers},
            )
        try:
            async with state.drain.deadline():
                # a client that leaves cancels its generation within one decode step
                return await unless_disconnected(request, self._complete(state, prepared))
        except ClientGone:
            self._settle(state, prepared, 0)
            return Response(status_code=CLIENT_CLOSED_STATUS)
        except TimeoutError:
            self._settle(state, prepared, 0)
            if not state.drain.expired():
                raise
            raise state.drain.refusal() from None
        except BaseException:
            self._settle(state, prepared, 0)
            raise
        finally:
            permit.release()

    async def _prepare(self, request: Request, state: AppState) -> Prepared:
        authenticate(request, state.api_key)
        azure_kind = AZURE_ROUTE_KINDS.get(request.scope["path"])  # not request.url: it builds a URL object
        if azure_kind is not None:
            check_api_version(request)
        data = await read_json_object(request, state.body_limits)
        if azure_kind is not None:
            data = admit_members(request, data, azure_kind)
        try:
            params = self.family.parse(data)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        refuse_costly_stops(params.stop_sequences, state.settings.max_stop_chars)
        prompts, texts = await self.family.prompts(params, state.backend)
        prompt_param = self.family.prompt_param
        if params.stream and len(prompts) > 1:
            raise ApiError(400, "invalid_request", "a list of several prompts cannot be streamed", param=prompt_param)
        prompt_ids = [
            await self._checked_prompt_ids(state, prompt, prompt_param, params.max_tokens) for prompt in prompts
        ]
        prompt_tokens = sum(len(ids) for ids in prompt_ids)
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
                if state.metrics is not None:
                    state.metrics.count_rejection(admission.reason)
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
        return Prepared(
            params=params,
            options=options,
            prompt_ids=prompt_ids,
            request_id=f"{self.family.id_prefix}-{request_id_of(request)}",
            ticket=ticket,
            limit_headers=limit_headers,
            created=int(time.time()),
            model_name=state.backend.info.model_name,
            prompt_unmoderated=not prompt_moderated,
        )

    async def _checked_prompt_ids(self, state: AppState, prompt: str, param: str, max_tokens: int) -> list[int]:
        """The prompt's tokens; a 400 for an empty prompt or one that with max_tokens exceeds the context."""
        prompt_ids = await state.backend.tokenize(prompt)
        prompt_tokens = len(prompt_ids)
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
        return prompt_ids

    def _settle(self, state: AppState, prepared: Prepared, generated_tokens: int) -> None:
        if state.metrics is not None:
            state.metrics.count_tokens(prepared.prompt_tokens, generated_tokens)
        if state.rate_limiter is not None and prepared.ticket is not None:
            state.rate_limiter.settle(prepared.ticket, prepared.prompt_tokens + generated_tokens)

    async def _moderate(self, state: AppState, choice: Choice) -> Choice:
        if state.safety is None:
            return choice
        outcome = await state.safety.moderate_completion(choice.text)
        if outcome.finish_reason is None:
            return choice
        return choice.truncated(outcome.safe_length, outcome.finish_reason)

    async def _generate(self, state: AppState, prepared: Prepared) -> Generation:
        if prepared.prompt_unmoderated:
            empty = [Choice(index, [], "content_filter_error") for index in range(prepared.choice_count)]
            return Generation(choices=empty, generated_tokens=0)
        if len(prepared.prompt_ids) == 1:
            return await state.backend.generate(prepared.prompt_ids[0], prepared.options, prepared.request_id)
        # the OpenAI list form (D45): one after another under the one request id, so abort reaches each
        choices: list[Choice] = []
        generated_tokens = 0
        for position, ids in enumerate(prepared.prompt_ids):
            generation = await state.backend.generate(ids, prepared.options, prepared.request_id)
            offset = position * prepared.options.n
            choices.extend(Choice(offset + c.index, c.tokens, c.finish_reason) for c in generation.choices)
            generated_tokens += generation.generated_tokens
        return Generation(choices=choices, generated_tokens=generated_tokens)

    async def _deltas(self, state: AppState, prepared: Prepared) -> AsyncIterator[ChoiceDelta]:
        if prepared.prompt_unmoderated:
            for index in range(prepared.options.n):
                yield ChoiceDelta(index, [], "content_filter_error")
            return
        async for delta in state.backend.stream(prepared.prompt_ids[0], prepared.options, prepared.request_id):
            yield delta

    async def _complete(self, state: AppState, prepared: Prepared) -> Response:
        try:
            generation = await self._generate(state, prepared)
        except BaseException:
            with contextlib.suppress(Exception):
                await state.backend.abort(prepared.request_id)
            raise
        self._settle(state, prepared, generation.generated_tokens)
        choices = [await self._moderate(state, choice) for choice in generation.choices]
        usage = state.usage(prepared.prompt_tokens, sum(len(choice.tokens) for choice in choices))
        body = self.family.response_model(
            **self._envelope(prepared),
            usage=usage,
            choices=[
                self.family.response_choice(choice, choice_logprobs(prepared.params, choice.tokens, 0))
                for choice in choices
            ],
        )
        # pydantic writes the JSON itself: model_dump then json.dumps built and encoded it twice
        return Response(body.model_dump_json(), media_type="application/json", headers=prepared.limit_headers)

    async def _stream(self, state: AppState, prepared: Prepared) -> AsyncIterator[str]:
        offsets: dict[int, int] = {}
        completion_tokens = 0
        started: set[int] = set()
        moderators: dict[int, StreamModerator] = {}
        finished: set[int] = set()
        try:
            async with state.drain.deadline():
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
                    logprobs = choice_logprobs(prepared.params, tokens, offset)
                    piece = self.family.chunk_choice(delta.index, text, finish_reason, first, logprobs)
                    chunk = self.family.chunk_model(**self._envelope(prepared), choices=[piece])
                    yield encode_event(chunk.model_dump_json())
                    if finish_reason is not None:
                        finished.add(delta.index)
                        # a filtered choice's backend generation runs on; stop once every choice is done
                        if finish_reason.startswith("content_filter") and len(finished) == prepared.options.n:
                            break
            if prepared.params.include_usage_in_stream:
                usage = state.usage(prepared.prompt_tokens, completion_tokens)
                usage_chunk = self.family.chunk_model(**self._envelope(prepared), choices=[], usage=usage)
                yield encode_event(usage_chunk.model_dump_json())
        except (asyncio.CancelledError, GeneratorExit):
            await state.backend.abort(prepared.request_id)
            raise
        except TimeoutError:
            with contextlib.suppress(Exception):
                await state.backend.abort(prepared.request_id)
            ended = (
                state.drain.refusal()
                if state.drain.expired()
                else ApiError(500, "server_error", "generation failed: TimeoutError")
            )
            yield encode_event(json.dumps(ended.body()))
        except BackendOverloaded as exc:
            error = ApiError(503, "overloaded", str(exc))
            yield encode_event(json.dumps(error.body()))
        except Exception as exc:  # an error after the 200 goes in-band (D21), never as a traceback
            error = ApiError(500, "server_error", f"generation failed: {type(exc).__name__}")
            yield encode_event(json.dumps(error.body()))
        finally:
            self._settle(state, prepared, completion_tokens)
        yield DONE_EVENT
