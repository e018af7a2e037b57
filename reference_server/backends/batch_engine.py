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
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference_server.backends.decoding import Logits

__all__ = ["BatchEngine", "EngineClosed", "KvCacheFull", "SequenceModel"]

GATHER_WAIT_S = 0.004
"""How long a step waits for running sequences to hand in their next token before it decodes
without them: long enough for a choice's thread to sample (well under a millisecond), short
enough that a slow one (a stream whose client reads slowly) costs the others little."""


def _settle(future: Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Complete a job's future unless its waiter already cancelled it (an asyncio task that went away)."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


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

    def __init__(self, lib: Any, context: Any, n_vocab: int, *, n_seq_max: int, batch_tokens: int) -> None:
        self._lib = lib
        self._ctx = context
        self._memory = lib.llama_get_memory(context)
        self.n_vocab = n_vocab
        self.n_seq_max = n_seq_max
        self._batch_tokens = batch_tokens
        self._batch = lib.llama_batch_init(batch_tokens, 0, 1)
        self._queue: deque[_Evaluate | _Memory] = deque()
        self._condition = threading.Condition()
        self._active: dict[int, _Evaluate] = {}
        # sequences that received logits last step and are expected back with their next token
        self._expected: set[int] = set()
        self._closed = False
        self.steps = 0
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
            deadline = time.monotonic() + GATHER_WAIT_S
            while not self._closed:
                queued = {job.seq_id for job in self._queue if isinstance(job, _Evaluate)}
                missing = self._expected - self._active.keys() - queued
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0:
                    break
                self._condition.wait(remaining)
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
        """One llama_decode: the next token of every generating sequence first, then prompt chunks."""
        batch = self._batch
        budget = self._batch_tokens
        # single tokens (sequences generating) before prompt chunks, so a long prompt arriving
        # never delays the running sequences by more than its chunk
        jobs = sorted(self._active.values(), key=lambda job: len(job.tokens) - job.done)
        rows: list[tuple[_Evaluate, int]] = []  # (job, batch row of its last token when it ends this step)
        count = 0
        for job in jobs:
            if count >= budget:
                break
            take = min(len(job.tokens) - job.done, budget - count)
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
        batch.n_tokens = count
        status = self._lib.llama_decode(self._ctx, batch)
        self.steps += 1
        if status != 0:
            self._fail_step(jobs, status)
            return
        finished: set[int] = set()
        for job, row in rows:
            pointer = ctypes.cast(self._lib.llama_get_logits_ith(self._ctx, row), ctypes.POINTER(ctypes.c_float))
            logits: Logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
            finished.add(job.seq_id)
            del self._active[job.seq_id]
            _settle(job.future, logits)
        with self._condition:
            self._expected = (self._expected | finished) - self._active.keys()

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
