"""The llama.cpp backend (llama-cpp-python): the CPU reference, on the embedded SmolLM2 by default.

One llama.cpp context serves up to `parallel` sequences at once by continuous batching
(batch_engine.py): every decode step carries the next token of each running sequence and chunks
of new prompts. A request's choices (n, best_of, beam hypotheses) are sequences of their own that
share the prompt's evaluated cells, so the prompt is evaluated once.

Decoding is ours (reference_server/backends/decoding.py) over llama.cpp's logits, because the
library's own completion API does not do n, best_of or beam search, counts the token that
completed a stop string, and reports offsets that include the prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reference_server.backends.base import (
    BackendInfo,
    BackendOverloaded,
    ChatTurn,
    Choice,
    ChoiceDelta,
    Generation,
    SamplingOptions,
    plain_chat_prompt,
    prompt_with_a_start,
)
from reference_server.backends.batch_engine import BatchEngine, SequenceModel
from reference_server.backends.beam import BeamSearch, Hypothesis, ends_hypothesis
from reference_server.backends.decoding import (
    Aborted,
    DecodedStep,
    Logits,
    SequenceDecoder,
    best_of,
    log_softmax,
)
from reference_server.backends.embedded import ModelNotFound, embedded_model_path

__all__ = [
    "LlamaCppBackend",
    "ThreadChoice",
    "choose_threads",
    "create_llamacpp_backend",
]

BATCH_TOKENS = 512
"""Tokens per decode step at most: running sequences' next tokens first, then prompt chunks (the engine
bounds those by PROMPT_TOKENS_PER_STEP)."""
MICRO_BATCH_TOKENS = 32
"""Rows of one llama.cpp micro-batch (n_ubatch). Below 64 rows llama.cpp's CPU matrix products compute
each row on its own; from 64 on they take another kernel whose rounding depends on the rows beside
(measured on SmolLM2-135M: a 150-token prompt in chunks of 1 to 63 tokens gives bit-identical logits,
in one chunk or chunks of 64 up to 0.5 apart). Micro-batches of 32 keep every evaluation on the
row-independent side, so a prompt's logits do not depend on how it was chunked or what shared its
step (D50), at no cost: evaluating a prompt costs the same per token in chunks of 32 as of 64 or more."""


@dataclass(frozen=True)
class ThreadChoice:
    """The llama.cpp thread count and why (printed by `llamacert serve`)."""

    threads: int
    reason: str


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose_threads(requested: int | None) -> ThreadChoice:
    """One core fewer than available, at most 8: llama.cpp's threads meet at a barrier after every
    operation, so when another process (a load generator, a test run) takes one of their cores the
    whole step waits for the descheduled thread. On 2 cores, 2 threads fell from ~100 to 2-8
    tokens/s next to a Locust run, 1 thread kept ~50 (issue 14)."""
    cores = available_cores()
    if requested is not None:
        return ThreadChoice(requested, f"--threads {requested} / LLAMACERT_THREADS (of {cores} available cores)")
    threads = max(1, min(cores - 1, 8))
    return ThreadChoice(
        threads,
        f"{cores} cores available: one is left for the HTTP layer, sampling and a load generator beside the "
        "server (llama.cpp threads wait for each other at every step, so a thread that loses its core "
        "stalls all of them); pass --threads to override",
    )


class _LlamaVocabulary:
    """Token pieces and classes of the model's vocabulary (read-only: safe from any thread)."""

    def __init__(self, llama: Any) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self._llama = llama
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)

    def token_bytes(self, token_id: int, *, special: bool) -> bytes:
        if not special and self.is_special(token_id):
            return b""
        piece: bytes = self._llama.detokenize([token_id], special=True)
        return piece

    def is_end_of_generation(self, token_id: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token_id))

    def is_special(self, token_id: int) -> bool:
        return bool(self._lib.llama_vocab_is_control(self._vocab, token_id))


@dataclass
class _Lease:
    """The sequences a request holds while it runs, and its cancellation flag."""

    models: list[SequenceModel]
    cancelled: threading.Event
    work: list[asyncio.Future[Any]] = field(default_factory=list)
    """What runs on the lease's sequences in worker threads: they are freed only once it has all ended."""

    def run(self, loop: asyncio.AbstractEventLoop, executor: Any, function: Callable[..., Any], *args: Any) -> Any:
        future = loop.run_in_executor(executor, function, *args)
        self.work.append(future)
        return future


@dataclass
class _Waiter:
    sequences: int
    granted: asyncio.Future[list[int]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class LlamaCppBackend:
    """generate / stream / tokenize / abort over one batched llama.cpp context."""

    def __init__(
        self,
        info: BackendInfo,
        engine: BatchEngine,
        vocabulary: _LlamaVocabulary,
        tokenize: Callable[[str], list[int]],
        render_chat: Callable[[list[ChatTurn]], str],
        *,
        max_waiting: int,
        resources: Any,
    ) -> None:
        self.info = info
        self._engine = engine
        self._vocabulary = vocabulary
        self._tokenize = tokenize
        self._render_chat = render_chat
        self.parallel = engine.n_seq_max
        self._max_waiting = max_waiting
        self._resources = resources  # the Llama object and context the engine's pointers point into
        self._free_ids: list[int] = list(range(engine.n_seq_max))
        self._waiters: deque[_Waiter] = deque()
        self._cancel_events: dict[str, threading.Event] = {}
        self._in_flight = 0
        # one thread per running sequence: each blocks on the engine while the batch decodes
        self._executor = ThreadPoolExecutor(engine.n_seq_max + 2, thread_name_prefix="llamacpp-choice")

    def step_counters(self) -> dict[str, float]:
        """The batch engine's totals (reference_server.metrics exposes them as llamacert_engine_*)."""
        return self._engine.step_counters()

    @property
    def in_flight(self) -> int:
        """Requests running or waiting for sequences."""
        return self._in_flight

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for event in self._cancel_events.values():
            event.set()
        self._engine.close()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._resources.close()

    async def tokenize(self, text: str) -> list[int]:
        # reads only the vocabulary, never the context: no need to wait for the engine
        return self._tokenize(text)

    async def render_chat(self, messages: list[ChatTurn]) -> str:
        return self._render_chat(messages)

    async def abort(self, request_id: str) -> None:
        event = self._cancel_events.get(request_id)
        if event is not None:
            event.set()

    # --- admission ------------------------------------------------------------------------------

    def _wake_waiters(self) -> None:
        # in arrival order: a request wanting several sequences is not overtaken indefinitely
        while self._waiters and self._waiters[0].sequences <= len(self._free_ids):
            waiter = self._waiters.popleft()
            if not waiter.granted.done():
                waiter.granted.set_result(self._take(waiter.sequences))

    def _take(self, sequences: int) -> list[int]:
        # the lowest free ids: the running sequences stay a run of consecutive ids, which llama.cpp
        # decodes as one micro-batch (each gap in the ids splits a step in two, see BatchEngine._step)
        ids, self._free_ids = self._free_ids[:sequences], self._free_ids[sequences:]
        return ids

    def _release(self, ids: list[int]) -> None:
        for seq_id in ids:
            self._engine.free(seq_id)
        self._free_ids = sorted(self._free_ids + ids)
        self._wake_waiters()

    def _release_after(self, ids: list[int], work: list[asyncio.Future[Any]]) -> None:
        """Free the sequences once every thread that used them has ended.

        A request cancelled twice (its client left while it was stopping) leaves this context before
        its threads do; handing their sequences to the next request then would put two owners' jobs
        on one sequence. The cancelled flag stops the threads within one decode step.
        """
        running = [future for future in work if not future.done()]
        if not running:
            self._release(ids)
            return
        asyncio.gather(*running, return_exceptions=True).add_done_callback(lambda _: self._release(ids))

    @contextlib.asynccontextmanager
    async def _admitted(self, request_id: str, choices: int) -> AsyncIterator[_Lease]:
        """Sequences for the request's choices (at most `parallel`: more choices take turns on them).

        Requests wait in arrival order; when `max_waiting` already wait, a new one is refused.
        A request whose client left (its task cancelled, or aborted) while waiting never starts.
        """
        sequences = min(choices, self.parallel)
        ready = not self._waiters and sequences <= len(self._free_ids)
        if not ready and len(self._waiters) >= self._max_waiting:
            raise BackendOverloaded(retry_after_s=2.0)
        cancelled = threading.Event()
        self._cancel_events[request_id] = cancelled
        self._in_flight += 1
        ids: list[int] = []
        lease: _Lease | None = None
        try:
            if ready:
                ids = self._take(sequences)
            else:
                waiter = _Waiter(sequences)
                self._waiters.append(waiter)
                try:
                    ids = await waiter.granted
                except asyncio.CancelledError:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                    elif waiter.granted.done() and not waiter.granted.cancelled():
                        ids = waiter.granted.result()
                    raise
            if cancelled.is_set():
                raise Aborted
            lease = _Lease([SequenceModel(self._engine, seq_id, self._vocabulary) for seq_id in ids], cancelled)
            yield lease
        finally:
            cancelled.set()
            self._cancel_events.pop(request_id, None)
            self._in_flight -= 1
            if ids:
                self._release_after(ids, lease.work if lease is not None else [])

    # --- generation -----------------------------------------------------------------------------

    async def _evaluate_prompt(self, lease: _Lease, prompt_ids: list[int], sharers: int) -> None:
        """Evaluate the prompt once on the first sequence; the next `sharers - 1` get its cells copied."""
        first = lease.models[0]
        await asyncio.wrap_future(first.submit(prompt_ids))
        for model in lease.models[1:sharers]:
            self._engine.copy(first.seq_id, model.seq_id)
            model.adopt(first)

    def _run_choices(
        self,
        model: SequenceModel,
        decoder: SequenceDecoder,
        prompt_ids: list[int],
        indexes: list[int],
        emit: Callable[[int, DecodedStep], None] | None,
    ) -> list[Choice]:
        """Choices `indexes`, one after another on one sequence, each step handed to `emit` as decoded."""
        choices = []
        try:
            for index in indexes:
                tokens = []
                finish = None
                for step in decoder.sample_choice(prompt_ids, index):
                    tokens.extend(step.tokens)
                    finish = step.finish_reason
                    if emit is not None:
                        emit(index, step)
                assert finish is not None
                choices.append(Choice(index, tokens, finish))
        finally:
            self._engine.park(model.seq_id)  # the engine stops waiting for it
        return choices

    async def _sample(
        self,
        lease: _Lease,
        options: SamplingOptions,
        prompt_ids: list[int],
        count: int,
        emit: Callable[[int, DecodedStep], None] | None,
    ) -> tuple[list[Choice], int]:
        """`count` sampled choices in index order, and the tokens sampled for them."""
        await self._evaluate_prompt(lease, prompt_ids, min(count, len(lease.models)))
        loop = asyncio.get_running_loop()
        decoders = [SequenceDecoder(model, options, lease.cancelled) for model in lease.models]
        width = len(lease.models)
        runs = [
            lease.run(
                loop,
                self._executor,
                self._run_choices,
                model,
                decoder,
                prompt_ids,
                list(range(offset, count, width)),
                emit,
            )
            for offset, (model, decoder) in enumerate(zip(lease.models, decoders, strict=True))
        ]
        try:
            finished = await asyncio.gather(*runs)
        finally:
            # an abort or a failed choice stops the others within one decode step
            lease.cancelled.set()
            await asyncio.gather(*runs, return_exceptions=True)
        choices = sorted((choice for group in finished for choice in group), key=lambda choice: choice.index)
        return choices, sum(decoder.sampled_tokens for decoder in decoders)

    async def generate(self, prompt_ids: list[int], options: SamplingOptions, request_id: str) -> Generation:
        async with self._admitted(request_id, options.best_of) as lease:
            if options.use_beam_search:
                await self._evaluate_prompt(lease, prompt_ids, 1)
                loop = asyncio.get_running_loop()
                hypotheses = await lease.run(loop, self._executor, self._beam_search, lease, options, prompt_ids)
                choices = []
                best = hypotheses[: options.n]
                for start in range(0, len(best), len(lease.models)):
                    batch = best[start : start + len(lease.models)]
                    choices += await asyncio.gather(
                        *(
                            lease.run(
                                loop,
                                self._executor,
                                SequenceDecoder(model, options, lease.cancelled).replay,
                                prompt_ids,
                                hypothesis.tokens,
                                hypothesis.finish_reason,
                            )
                            for model, hypothesis in zip(lease.models, batch, strict=False)
                        )
                    )
                generated = sum(len(hypothesis.tokens) for hypothesis in hypotheses)
            else:
                choices, generated = await self._sample(lease, options, prompt_ids, options.best_of, None)
            return Generation(choices=best_of(choices, options.n), generated_tokens=generated)

    async def stream(
        self, prompt_ids: list[int], options: SamplingOptions, request_id: str
    ) -> AsyncIterator[ChoiceDelta]:
        async with self._admitted(request_id, options.n) as lease:
            loop = asyncio.get_running_loop()
            # the choices' threads post their steps as decoded; the choices' deltas interleave
            deltas: asyncio.Queue[ChoiceDelta] = asyncio.Queue()

            def emit(index: int, step: DecodedStep) -> None:
                if step.tokens or step.finish_reason is not None:
                    delta = ChoiceDelta(index, step.tokens, step.finish_reason)
                    loop.call_soon_threadsafe(deltas.put_nowait, delta)

            sampling = asyncio.ensure_future(self._sample(lease, options, prompt_ids, options.n, emit))
            try:
                remaining = options.n
                while remaining:
                    next_delta = asyncio.ensure_future(deltas.get())
                    await asyncio.wait({next_delta, sampling}, return_when=asyncio.FIRST_COMPLETED)
                    if not next_delta.done():
                        next_delta.cancel()
                        if deltas.empty():
                            sampling.result()  # the choices ended without finishing: raise why
                            return
                        continue
                    delta = next_delta.result()
                    if delta.finish_reason is not None:
                        remaining -= 1
                    yield delta
            except Aborted:
                return
            finally:
                lease.cancelled.set()
                # the choices' threads stop within one decode step; the sequences are freed after
                await asyncio.gather(sampling, return_exceptions=True)

    def _beam_search(self, lease: _Lease, options: SamplingOptions, prompt_ids: list[int]) -> list[Hypothesis]:
        """decoding's BeamSearch with the live beams decoded in the same step, each on a sequence.

        A beam continues on the sequence that holds its parent. Another sequence takes over a
        beam by evaluating only what the beam adds to what it holds, or, when it does not even hold
        the prompt, by a copy of the parent's cells. With more beams than sequences, the beams of
        a step take turns.
        """
        ends = ends_hypothesis(options, self._vocabulary.is_end_of_generation)
        search = BeamSearch(options.best_of, options.max_tokens, ends)
        wanted = search.candidates_per_beam
        holders: dict[tuple[int, ...], SequenceModel] = {(): lease.models[0]}
        prompt_length = len(prompt_ids)
        while not search.done:
            if lease.cancelled.is_set():
                raise Aborted
            pending = search.pending()
            logits: dict[tuple[int, ...], Logits] = {}
            next_holders: dict[tuple[int, ...], SequenceModel] = {}
            for start in range(0, len(pending), len(lease.models)):
                turn = pending[start : start + len(lease.models)]
                free = list(lease.models)
                assigned: dict[tuple[int, ...], SequenceModel] = {}
                for tokens in turn:  # first: beams whose parent's sequence is still free
                    parent = holders.get(tokens[:-1] if tokens else ())
                    if parent is not None and parent in free:
                        assigned[tokens] = parent
                        free.remove(parent)
                for tokens in turn:
                    if tokens in assigned:
                        continue
                    model = free.pop(0)
                    if len(model.evaluated) < prompt_length or model.evaluated[:prompt_length] != prompt_ids:
                        source = holders[tokens[:-1]]
                        self._engine.copy(source.seq_id, model.seq_id)
                        model.adopt(source)
                    assigned[tokens] = model
                futures = {tokens: model.submit(prompt_ids + list(tokens)) for tokens, model in assigned.items()}
                for tokens, future in futures.items():
                    logits[tokens] = future.result()
                next_holders.update(assigned)
            for model in lease.models:
                if model not in next_holders.values():
                    self._engine.park(model.seq_id)
            holders = next_holders
            candidates = []
            for tokens in pending:
                logprobs = log_softmax(logits[tokens])
                top = np.argpartition(-logprobs, wanted)[:wanted].tolist()
                candidates.append([(int(token_id), float(logprobs[token_id])) for token_id in top])
            search.advance(candidates)
        for model in lease.models:
            self._engine.park(model.seq_id)
        return search.best()


class _Resources:
    """The Llama object (vocabulary, weights) and the batched context made from its weights."""

    def __init__(self, llama: Any, context: Any) -> None:
        self.llama = llama
        self.context = context

    def close(self) -> None:
        import llama_cpp

        if self.context is not None:
            llama_cpp.llama_free(self.context)
            self.context = None
        self.llama.close()


def _chat_renderer(llama: Any) -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    source = llama.metadata.get("tokenizer.chat_template")
    if not source:
        return None
    template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(source)
    eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", errors="replace")
    bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", errors="replace")

    def render(messages: list[ChatTurn]) -> str:
        turns = [{"role": m.role, "content": m.content} for m in messages]
        rendered: str = template.render(messages=turns, add_generation_prompt=True, bos_token=bos, eos_token=eos)
        return rendered

    return render


def create_batched_context(llama: Any, *, context_length: int, sequences: int, threads: int) -> Any:
    """A llama.cpp context over `llama`'s weights: `sequences` sequences of `context_length` cells each.

    Each sequence has a KV stream of its own (not one unified buffer), so its cells always lie at
    the same places whatever else runs: attention sums a token's cells in the same order every
    time, and greedy decoding gives the same tokens alone or in a full batch (spec/DECISIONS.md).
    Micro-batches stay small enough for row-independent arithmetic (MICRO_BATCH_TOKENS). The price
    is that a sequence copy copies the stream, which the backend does only to share a prompt's cells
    between the choices of a request.
    """
    import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.n_ctx = context_length * sequences
    params.n_batch = BATCH_TOKENS
    params.n_ubatch = MICRO_BATCH_TOKENS
    params.n_seq_max = sequences
    params.n_threads = threads
    params.n_threads_batch = threads
    params.kv_unified = False
    params.no_perf = True
    context = llama_cpp.llama_init_from_model(llama.model, params)
    if context is None:
        raise RuntimeError(f"llama.cpp could not create a context for {sequences} sequences of {context_length} tokens")
    return context


def create_llamacpp_backend(
    model_path: Path | None = None,
    *,
    n_ctx: int = 8192,
    n_threads: int | None = None,
    parallel: int = 4,
    max_waiting: int = 64,
    model_name: str | None = None,
) -> LlamaCppBackend:
    """One batched llama.cpp context of the GGUF: `parallel` sequences of up to `n_ctx` tokens each."""
    import llama_cpp
    from llama_cpp import Llama

    path = model_path or embedded_model_path()
    if not path.is_file():
        raise ModelNotFound(f"model file not found: {path}")
    threads = choose_threads(n_threads).threads
    # the Llama object gives the vocabulary, metadata and weights; its own context stays minimal
    llama = Llama(model_path=str(path), n_ctx=256, n_batch=32, n_threads=1, verbose=False)
    renderer = _chat_renderer(llama)
    add_bos = llama.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false"
    bos = int(llama.token_bos())
    trained_context = int(llama.metadata.get("llama.context_length", n_ctx))
    context_length = min(n_ctx, trained_context)
    context = create_batched_context(llama, context_length=context_length, sequences=parallel, threads=threads)
    engine = BatchEngine(llama_cpp, context, int(llama.n_vocab()), n_seq_max=parallel, batch_tokens=BATCH_TOKENS)

    def tokenize(text: str) -> list[int]:
        tokens: list[int] = llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return prompt_with_a_start(tokens, text, bos)

    def render_chat(messages: list[ChatTurn]) -> str:
        if renderer is None:
            return plain_chat_prompt(messages)
        rendered: str = renderer(messages)
        return rendered

    info = BackendInfo(
        model_name=model_name or path.stem,
        model_type="chat-completion" if renderer is not None else "text-generation",
        model_provider_name=llama.metadata.get("general.organization", "unknown"),
        context_length=context_length,
        backend="llamacpp",
        concurrency=parallel,
    )
    return LlamaCppBackend(
        info,
        engine,
        _LlamaVocabulary(llama),
        tokenize,
        render_chat,
        max_waiting=max_waiting,
        resources=_Resources(llama, context),
    )
