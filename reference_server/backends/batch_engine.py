"""Continuous batching over one llama.cpp context: many sequences advance in each llama_decode.

One engine thread owns the context. Callers on any thread submit evaluation jobs (the tokens a
sequence appends, and whether logits of its last token are wanted) and KV-memory operations (copy a
sequence's cells to another, free a sequence); each step the engine runs the memory operations in
the order they came, then decodes one batch holding the next token of every running sequence plus
chunks of prompts still being evaluated, up to the batch budget. A sequence joins the step after
its job arrives and leaves the moment it is freed; nothing waits for a whole batch to finish.

`SequenceModel` puts one sequence behind decoding's TokenModel interface, so the decoding state
machines (SequenceDecoder, ChoiceAssembler, BeamSearch) run unchanged: only where the logits come
from differs.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from reference_server.backends.decoding import Logits

__all__ = [
    "GATHER_WAIT_S",
    "PROMPT_TOKENS_PER_STEP",
    "BatchEngine",
    "EngineClosed",
    "EngineStats",
    "KvCacheFull",
    "SequenceModel",
]

GATHER_WAIT_S = 0.004
"""How long a step waits at least for running sequences to hand in their next token before it decodes
without them: a choice's thread samples in well under a millisecond once it runs."""
GATHER_SHARE = 0.25
"""...and at most this share of the last step's llama_decode time, when that is longer. A sequence that
misses the window waits a whole step, so waiting a quarter step for it is the cheaper side; it is late
when its thread waits for the GIL (held by the event loop for up to the 5 ms switch interval) or for a
core a load generator took. Choices never block on their clients (streams queue their deltas), so a
sequence that is expected does come back soon."""


PROMPT_TOKENS_PER_STEP = 64
"""Prompt tokens one step evaluates at most (one chunk, or several prompts' chunks), besides the
running sequences' next tokens. Evaluating a prompt is compute-bound: on one CPU thread a 64-token
chunk of SmolLM2-135M costs about as much as twenty single-token steps, so a bigger chunk stalls every
running stream for longer while the prompt as a whole costs about the same in any chunk size."""


def _settle(future: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Complete a job's future unless its waiter already cancelled it (an asyncio task that went away)."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


@dataclass(frozen=True)
class EngineStats:
    """What the engine's steps did since it started: totals, read by benchmarks and diagnostics.

    Times are the engine thread's: wall time and thread CPU time inside llama_decode, wall time spent
    waiting for expected sequences in the gather window, and wall time of the rest of each step
    (building the batch, copying logits out, answering jobs). Decode wall time well above its CPU
    time means the thread lost its core to another process.
    """

    steps: int = 0
    sequences: int = 0
    """Sum over steps of the sequences decoded in the step."""
    tokens: int = 0
    """Sum over steps of the tokens decoded (generated tokens plus prompt chunks)."""
    running: int = 0
    """Sum over steps of the sequences that were running: decoded, or expected back and late."""
    left_out: int = 0
    """Sum over steps of the expected sequences that missed the gather window (each waits a whole step)."""
    prompt_steps: int = 0
    """Steps that carried a prompt chunk."""
    answered: int = 0
    """Jobs answered with logits: one per token sampled (a request's first token included)."""
    decode_wall_s: float = 0.0
    decode_cpu_s: float = 0.0
    gather_wait_s: float = 0.0
    other_wall_s: float = 0.0

    def since(self, earlier: EngineStats) -> EngineStats:
        """The difference between two snapshots: what happened in between."""
        return EngineStats(**{name: getattr(self, name) - getattr(earlier, name) for name in self.__dataclass_fields__})


class EngineClosed(RuntimeError):
    """The engine was closed while the job waited."""


class KvCacheFull(RuntimeError):
    """llama.cpp found no room in the KV cache for the batch."""


@dataclass
class _Evaluate:
    """Append `tokens` to `seq_id` at `position` (after removing its cells from `position` on)."""

    seq_id: int
    tokens: list[int]
    position: int
    future: Future[Logits] = field(default_factory=Future)
    done: int = 0
    """Tokens of this job already decoded (a long prompt takes several steps)."""


@dataclass
class _Memory:
    """A KV-memory operation, run on the engine thread between steps."""

    apply: Callable[[], None]
    future: Future[None] = field(default_factory=Future)


class BatchEngine:
    """The thread that owns one llama.cpp context and decodes every sequence's tokens together."""

    def __init__(
        self,
        lib: Any,
        context: Any,
        n_vocab: int,
        *,
        n_seq_max: int,
        batch_tokens: int,
        prompt_tokens_per_step: int = PROMPT_TOKENS_PER_STEP,
    ) -> None:
        if prompt_tokens_per_step < 1:
            raise ValueError("a step must carry at least one prompt token")
        self._lib = lib
        self._ctx = context
        self._memory = lib.llama_get_memory(context)
        self.n_vocab = n_vocab
        self.n_seq_max = n_seq_max
        self._batch_tokens = batch_tokens
        self._prompt_tokens_per_step = prompt_tokens_per_step
        self._batch = lib.llama_batch_init(batch_tokens, 0, 1)
        self._queue: deque[_Evaluate | _Memory] = deque()
        self._condition = threading.Condition()
        self._active: dict[int, _Evaluate] = {}
        # sequences that received logits last step and are expected back with their next token
        self._expected: set[int] = set()
        self._closed = False
        self._stats = EngineStats()
        self._left_out = 0
        """Expected sequences that missed the last gather window."""
        self._last_decode_s = 0.0
        """Wall time of the last llama_decode: the gather window is a share of it."""
        self._thread = threading.Thread(target=self._loop, name="llamacpp-batch", daemon=True)
        self._thread.start()

    # --- called from any thread -------------------------------------------------------------

    def evaluate(self, seq_id: int, tokens: list[int], position: int) -> Future[Logits]:
        """Logits after `tokens`, appended to `seq_id` at `position` (its cells from there on are replaced)."""
        if not tokens:
            raise ValueError("nothing to evaluate")
        job = _Evaluate(seq_id, list(tokens), position)
        self._submit(job)
        return job.future

    def copy(self, source: int, target: int) -> Future[None]:
        """Make `target` share every cell of `source` (its own cells are freed first)."""

        def apply() -> None:
            self._lib.llama_memory_seq_rm(self._memory, target, -1, -1)
            self._lib.llama_memory_seq_cp(self._memory, source, target, -1, -1)

        return self._memory_op(apply)

    def free(self, seq_id: int) -> Future[None]:
        """Free the sequence's cells; it is no longer expected in the next step."""

        def apply() -> None:
            self._expected.discard(seq_id)
            self._lib.llama_memory_seq_rm(self._memory, seq_id, -1, -1)

        return self._memory_op(apply)

    def park(self, seq_id: int) -> None:
        """The sequence will not ask for a while (its choice ended, its beam died): steps stop waiting for it."""
        with self._condition:
            self._expected.discard(seq_id)
            self._condition.notify_all()

    @property
    def steps(self) -> int:
        return self._stats.steps

    def step_counters(self) -> dict[str, float]:
        """The totals by name, for /metrics."""
        return dataclasses.asdict(self.stats())

    def stats(self) -> EngineStats:
        """The totals so far (take two snapshots and `since` for a window)."""
        with self._condition:
            return self._stats

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=30)
        self._lib.llama_batch_free(self._batch)

    # --- the engine thread ------------------------------------------------------------------

    def _memory_op(self, apply: Callable[[], None]) -> Future[None]:
        operation = _Memory(apply)
        self._submit(operation)
        return operation.future

    def _submit(self, item: _Evaluate | _Memory) -> None:
        with self._condition:
            if self._closed:
                raise EngineClosed("the llama.cpp engine is closed")
            self._queue.append(item)
            self._condition.notify_all()

    def _gather(self) -> bool:
        """Take queued work (waiting briefly for expected sequences); False once closed."""
        with self._condition:
            while not self._queue and not self._active and not self._closed:
                self._condition.wait()
            if self._closed:
                return False
            started = time.perf_counter()
            deadline = started + max(GATHER_WAIT_S, GATHER_SHARE * self._last_decode_s)
            while True:
                queued = {job.seq_id for job in self._queue if isinstance(job, _Evaluate)}
                missing = self._expected - self._active.keys() - queued
                remaining = deadline - time.perf_counter()
                if not missing or remaining <= 0 or self._closed:
                    break
                self._condition.wait(remaining)
            self._left_out = len(missing)
            self._stats = replace(self._stats, gather_wait_s=self._stats.gather_wait_s + time.perf_counter() - started)
            taken = list(self._queue)
            self._queue.clear()
        for item in taken:
            if isinstance(item, _Memory):
                try:
                    item.apply()
                    _settle(item.future)
                except Exception as exc:  # reported to the caller, the engine goes on
                    _settle(item.future, error=exc)
            else:
                # one job per sequence: an older one still there would never be answered, so say why
                superseded = self._active.pop(item.seq_id, None)
                if superseded is not None:
                    _settle(superseded.future, error=RuntimeError(f"sequence {item.seq_id} got a second job"))
                # the cells from `position` on belong to an older continuation: replace them
                self._lib.llama_memory_seq_rm(self._memory, item.seq_id, item.position, -1)
                self._active[item.seq_id] = item
        return True

    def _loop(self) -> None:
        try:
            while self._gather():
                if self._active:
                    self._step()
        finally:
            with self._condition:
                pending = [*self._active.values(), *self._queue]
                self._active.clear()
                self._queue.clear()
            for item in pending:
                _settle(item.future, error=EngineClosed("the llama.cpp engine is closed"))

    def _step(self) -> None:
        """One llama_decode: the next token of every generating sequence, then prompt chunks in arrival order.

        The rows are laid out in increasing sequence id: with a KV stream per sequence, llama.cpp
        splits a batch into one micro-batch per run of consecutive sequence ids in row order, and
        each micro-batch costs about a whole step (four sequences in the order 0, 2, 5, 7 cost four
        single-sequence steps; in the order 0, 1, 2, 3 one step of four).
        """
        started = time.perf_counter()
        batch = self._batch
        budget = self._batch_tokens
        # the running sequences' next tokens first; then prompts, oldest first, at most
        # `prompt_tokens_per_step` of them: a joining prompt delays the running sequences by one
        # bounded chunk, and prompts arriving together are evaluated one after another, so the
        # first of them starts generating first instead of all of them waiting for all the prompts
        jobs = list(self._active.values())
        taken: list[tuple[_Evaluate, int]] = []
        count = 0
        for job in jobs:
            if len(job.tokens) - job.done == 1 and count < budget:
                taken.append((job, 1))
                count += 1
        prompt_budget = min(self._prompt_tokens_per_step, budget - count)
        for job in jobs:
            remaining = len(job.tokens) - job.done
            if remaining > 1 and prompt_budget > 0:
                take = min(remaining, prompt_budget)
                taken.append((job, take))
                prompt_budget -= take
                count += take
        taken.sort(key=lambda entry: entry[0].seq_id)
        rows: list[tuple[_Evaluate, int]] = []  # (job, batch row of its last token when it ends this step)
        count = 0
        for job, take in taken:
            for offset in range(take):
                index = job.done + offset
                batch.token[count] = job.tokens[index]
                batch.pos[count] = job.position + index
                batch.n_seq_id[count] = 1
                batch.seq_id[count][0] = job.seq_id
                last = index == len(job.tokens) - 1
                batch.logits[count] = 1 if last else 0
                if last:
                    rows.append((job, count))
                count += 1
            job.done += take
        sequences = len(taken)
        chunked = any(take > 1 for _, take in taken)
        batch.n_tokens = count
        decode_started, decode_cpu_started = time.perf_counter(), time.thread_time()
        status = self._lib.llama_decode(self._ctx, batch)
        decode_wall, decode_cpu = time.perf_counter() - decode_started, time.thread_time() - decode_cpu_started
        self._last_decode_s = decode_wall
        if status != 0:
            self._fail_step(jobs, status)
        else:
            finished: set[int] = set()
            for job, row in rows:
                pointer = ctypes.cast(self._lib.llama_get_logits_ith(self._ctx, row), ctypes.POINTER(ctypes.c_float))
                logits: Logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
                finished.add(job.seq_id)
                del self._active[job.seq_id]
                _settle(job.future, logits)
        with self._condition:
            if status == 0:
                self._expected = (self._expected | finished) - self._active.keys()
            totals = self._stats
            self._stats = EngineStats(
                steps=totals.steps + 1,
                sequences=totals.sequences + sequences,
                tokens=totals.tokens + count,
                running=totals.running + len(jobs) + self._left_out,
                left_out=totals.left_out + self._left_out,
                prompt_steps=totals.prompt_steps + chunked,
                answered=totals.answered + (len(rows) if status == 0 else 0),
                decode_wall_s=totals.decode_wall_s + decode_wall,
                decode_cpu_s=totals.decode_cpu_s + decode_cpu,
                gather_wait_s=totals.gather_wait_s,
                other_wall_s=totals.other_wall_s + time.perf_counter() - started - decode_wall,
            )

    def _fail_step(self, jobs: list[_Evaluate], status: int) -> None:
        error: RuntimeError = (
            KvCacheFull("the KV cache has no room for this request's tokens")
            if status == 1
            else RuntimeError(f"llama_decode failed with status {status}")
        )
        for job in jobs:
            # the cells the failed batch may have written are dropped with the job
            self._lib.llama_memory_seq_rm(self._memory, job.seq_id, job.position, -1)
            self._active.pop(job.seq_id, None)
            self._expected.discard(job.seq_id)
            _settle(job.future, error=error)


class SequenceModel:
    """decoding's TokenModel over one sequence of a BatchEngine.

    It remembers which tokens the sequence's cells hold, so a call with those tokens plus one more
    evaluates just that one, and a call that departs from them (beam search, replaying a
    hypothesis) replaces only the cells after the common prefix.
    """

    def __init__(self, engine: BatchEngine, seq_id: int, vocabulary: Any) -> None:
        self.engine = engine
        self.seq_id = seq_id
        self._vocabulary = vocabulary
        self.evaluated: list[int] = []
        self._logits: Logits | None = None
        """Logits after `evaluated` (None when they are not known)."""

    def adopt(self, source: SequenceModel) -> None:
        """Take the state of `source` after its cells were copied into this sequence."""
        self.evaluated = list(source.evaluated)
        self._logits = source._logits

    def submit(self, sequence: list[int]) -> Future[Logits]:
        """Start evaluating what `sequence` adds to the cells; the future holds its next-token logits."""
        held = self.evaluated
        if len(sequence) == len(held) and self._logits is not None and sequence == held:
            done: Future[Logits] = Future()
            done.set_result(self._logits)
            return done
        if len(sequence) > len(held) and sequence[: len(held)] == held:
            common = len(held)
        else:
            limit = min(len(held), len(sequence))
            mismatch = np.flatnonzero(np.asarray(held[:limit]) != np.asarray(sequence[:limit]))
            common = int(mismatch[0]) if mismatch.size else limit
        # logits exist only for the last token evaluated: evaluate at least one
        common = min(common, len(sequence) - 1)
        future = self.engine.evaluate(self.seq_id, sequence[common:], common)
        self.evaluated = list(sequence)
        self._logits = None

        def keep(finished: Future[Logits]) -> None:
            if not finished.cancelled() and finished.exception() is None and self.evaluated == sequence:
                self._logits = finished.result()

        future.add_done_callback(keep)
        return future

    def next_logits(self, sequence: list[int]) -> Logits:
        return self.submit(sequence).result()

    def token_bytes(self, token_id: int, *, special: bool) -> bytes:
        piece: bytes = self._vocabulary.token_bytes(token_id, special=special)
        return piece

    def is_end_of_generation(self, token_id: int) -> bool:
        return bool(self._vocabulary.is_end_of_generation(token_id))

    def is_special(self, token_id: int) -> bool:
        return bool(self._vocabulary.is_special(token_id))
