"""The Backend interface over a pool of TokenModel instances, one request per instance (the simulated backend).

Each model instance is owned by one worker thread: every call that touches it runs on that
thread, so a llama.cpp context is never used concurrently. Requests wait for a free instance
in arrival order; when too many wait, new ones are refused with BackendOverloaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from reference_server.backends.base import (
    BackendInfo,
    BackendOverloaded,
    ChatTurn,
    Choice,
    ChoiceDelta,
    Generation,
    SamplingOptions,
)
from reference_server.backends.decoding import Aborted, DecodedStep, SequenceDecoder, TokenModel, best_of

__all__ = ["ModelSlot", "TokenBackend"]

T = TypeVar("T")


@dataclass
class ModelSlot:
    """One model instance and the single thread allowed to touch it."""

    model: TokenModel
    executor: ThreadPoolExecutor


class TokenBackend:
    """generate / stream / abort over a pool of TokenModel slots."""

    def __init__(
        self,
        info: BackendInfo,
        slots: list[ModelSlot],
        tokenize: Callable[[str], list[int]],
        render_chat: Callable[[list[ChatTurn]], str],
        *,
        max_waiting: int = 64,
        first_token_delay_s: float = 0.0,
        token_delay_s: float = 0.0,
        inline: bool = False,
    ) -> None:
        self.info = info
        self._free: asyncio.Queue[ModelSlot] = asyncio.Queue()
        for slot in slots:
            self._free.put_nowait(slot)
        self._slots = slots
        self._tokenize = tokenize
        self._render_chat = render_chat
        self._max_waiting = max_waiting
        self._waiting = 0
        self._cancel_events: dict[str, threading.Event] = {}
        self._first_token_delay_s = first_token_delay_s
        self._token_delay_s = token_delay_s
        # The simulated backend's work is trivial: run it on the event loop, no thread hop.
        self._inline = inline

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for event in self._cancel_events.values():
            event.set()
        for slot in self._slots:
            slot.executor.shutdown(wait=True, cancel_futures=True)

    async def _run(self, slot: ModelSlot, function: Callable[..., T], *args: Any) -> T:
        if self._inline:
            return function(*args)
        return await asyncio.get_running_loop().run_in_executor(slot.executor, function, *args)

    async def tokenize(self, text: str) -> list[int]:
        # Tokenizing reads only the vocabulary, never a context: it need not wait for a slot.
        if self._inline:
            return self._tokenize(text)
        return await asyncio.to_thread(self._tokenize, text)

    async def render_chat(self, messages: list[ChatTurn]) -> str:
        return self._render_chat(messages)

    @contextlib.asynccontextmanager
    async def _slot(self, request_id: str) -> AsyncIterator[tuple[ModelSlot, threading.Event]]:
        if self._free.empty() and self._waiting >= self._max_waiting:
            raise BackendOverloaded(retry_after_s=2.0)
        self._waiting += 1
        try:
            slot = await self._free.get()
        finally:
            self._waiting -= 1
        cancelled = threading.Event()
        self._cancel_events[request_id] = cancelled
        try:
            yield slot, cancelled
        finally:
            cancelled.set()
            self._cancel_events.pop(request_id, None)
            self._free.put_nowait(slot)

    async def abort(self, request_id: str) -> None:
        event = self._cancel_events.get(request_id)
        if event is not None:
            event.set()

    async def _step(self, slot: ModelSlot, iterator: Iterator[T], first: bool) -> T | None:
        delay = self._first_token_delay_s if first else self._token_delay_s
        if delay:
            await asyncio.sleep(delay)
        return await self._run(slot, next, iterator, None)

    async def _sample_choices(
        self, slot: ModelSlot, decoder: SequenceDecoder, prompt_ids: list[int], count: int
    ) -> list[Choice]:
        choices: list[Choice] = []
        for index in range(count):
            if self._first_token_delay_s or self._token_delay_s:
                steps: list[DecodedStep] = []
                iterator = decoder.sample_choice(prompt_ids, index)
                while (step := await self._step(slot, iterator, not steps)) is not None:
                    steps.append(step)
            else:
                # one hop to the model's thread per choice, not per token: waking the event loop
                # for every token steals a core from llama.cpp's busy-waiting threads
                steps = await self._run(slot, list, decoder.sample_choice(prompt_ids, index))
            tokens = [token for step in steps for token in step.tokens]
            finish = steps[-1].finish_reason
            assert finish is not None
            choices.append(Choice(index, tokens, finish))
        return choices

    async def generate(self, prompt_ids: list[int], options: SamplingOptions, request_id: str) -> Generation:
        async with self._slot(request_id) as (slot, cancelled):
            decoder = SequenceDecoder(slot.model, options, cancelled)
            if options.use_beam_search:
                hypotheses = await self._run(slot, decoder.beam_search, prompt_ids)
                choices = [
                    await self._run(slot, decoder.replay, prompt_ids, hypothesis.tokens, hypothesis.finish_reason)
                    for hypothesis in hypotheses[: options.n]
                ]
                generated = sum(len(hypothesis.tokens) for hypothesis in hypotheses)
            else:
                candidates = await self._sample_choices(slot, decoder, prompt_ids, options.best_of)
                choices = candidates
                generated = decoder.sampled_tokens
            return Generation(choices=best_of(choices, options.n), generated_tokens=generated)

    async def stream(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str
    ) -> AsyncIterator[ChoiceDelta]:
        async with self._slot(request_id) as (slot, cancelled):
            decoder = SequenceDecoder(slot.model, options, cancelled)
            for index in range(options.n):
                iterator = decoder.sample_choice(prompt_ids, index)
                first = True
                try:
                    while (step := await self._step(slot, iterator, first)) is not None:
                        first = False
                        if step.tokens or step.finish_reason is not None:
                            yield ChoiceDelta(index, step.tokens, step.finish_reason)
                except Aborted:
                    return
