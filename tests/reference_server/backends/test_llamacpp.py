"""The batched llama.cpp backend in process, on the embedded model: batching, invariance, sharing, aborts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reference_server.backends.base import SamplingOptions
from reference_server.backends.batch_engine import PROMPT_TOKENS_PER_STEP
from reference_server.backends.decoding import Aborted
from reference_server.backends.llamacpp import LlamaCppBackend, choose_threads, create_llamacpp_backend
from reference_server.server import build_app
from reference_server.settings import ServerSettings

pytestmark = pytest.mark.model

PROMPTS = ["The capital of France is", "Once upon a time", "Water boils at", "The best way to learn"]
GREEDY = SamplingOptions(max_tokens=24, temperature=0)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()


@pytest.fixture(scope="module")
def backend(loop: asyncio.AbstractEventLoop) -> Iterator[LlamaCppBackend]:
    # one thread: the machine is shared while tests run
    created = create_llamacpp_backend(n_ctx=1024, n_threads=1, parallel=4)
    yield created
    loop.run_until_complete(created.close())


def _ids(backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop, prompt: str) -> list[int]:
    return loop.run_until_complete(backend.tokenize(prompt))


def _text(backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop, prompt: str, options: SamplingOptions) -> str:
    return loop.run_until_complete(backend.generate(_ids(backend, loop, prompt), options, "alone")).choices[0].text


def test_greedy_tokens_are_the_same_alone_and_in_a_full_batch(
    backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop
) -> None:
    alone = [_text(backend, loop, prompt, GREEDY) for prompt in PROMPTS]

    async def together() -> list[str]:
        # twice as many requests as sequences: the second half joins as the first half finishes,
        # so each prompt is evaluated beside different neighbours than when it ran alone
        runs = [backend.generate(await backend.tokenize(p), GREEDY, f"r{i}") for i, p in enumerate(PROMPTS * 2)]
        return [generation.choices[0].text for generation in await asyncio.gather(*runs)]

    steps_before = backend._engine.steps
    batched = loop.run_until_complete(together())
    assert batched == alone * 2
    # 8 requests x 24 tokens in far fewer decode steps than one step per token: they were batched
    assert backend._engine.steps - steps_before < 8 * 24 / 2
    assert backend.in_flight == 0


def test_a_second_request_starts_before_the_first_ends(
    backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop
) -> None:
    async def race() -> tuple[int, int]:
        events: list[str] = []

        async def consume(name: str, stream: AsyncIterator[object]) -> None:
            async for _delta in stream:
                events.append(name)

        long = asyncio.ensure_future(
            consume(
                "long",
                backend.stream(
                    await backend.tokenize(PROMPTS[0]), SamplingOptions(max_tokens=64, ignore_eos=True), "long"
                ),
            )
        )
        while "long" not in events:
            await asyncio.sleep(0.005)
        await consume(
            "short", backend.stream(await backend.tokenize(PROMPTS[1]), SamplingOptions(max_tokens=4), "short")
        )
        await long
        return events.index("short"), len(events) - 1 - events[::-1].index("long")

    first_short, last_long = loop.run_until_complete(race())
    assert first_short < last_long


def test_choices_share_the_prompt_and_are_reproducible_with_a_seed(
    backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop
) -> None:
    # best_of 6 on 4 sequences: the candidates take turns; each is reproducible by its seed
    options = SamplingOptions(max_tokens=8, temperature=0.9, n=2, best_of=6, seed=7)
    first = loop.run_until_complete(backend.generate(_ids(backend, loop, PROMPTS[0]), options, "a"))
    second = loop.run_until_complete(backend.generate(_ids(backend, loop, PROMPTS[0]), options, "b"))
    assert [c.text for c in first.choices] == [c.text for c in second.choices]
    assert len(first.choices) == 2 and first.generated_tokens >= 6
    unseeded = SamplingOptions(max_tokens=8, temperature=1.5, n=4, best_of=4)
    texts = [
        c.text
        for c in loop.run_until_complete(backend.generate(_ids(backend, loop, PROMPTS[1]), unseeded, "c")).choices
    ]
    assert len(set(texts)) > 1, "the choices did not sample independently"


def test_beam_search_is_the_same_alone_and_beside_other_requests(
    backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop
) -> None:
    beam = SamplingOptions(max_tokens=8, temperature=0, n=2, best_of=6, use_beam_search=True)
    alone = [
        c.text for c in loop.run_until_complete(backend.generate(_ids(backend, loop, PROMPTS[0]), beam, "beam")).choices
    ]

    async def beside() -> list[str]:
        others = [backend.generate(await backend.tokenize(p), GREEDY, f"o{i}") for i, p in enumerate(PROMPTS[1:])]
        result, *_ = await asyncio.gather(backend.generate(await backend.tokenize(PROMPTS[0]), beam, "beam2"), *others)
        return [c.text for c in result.choices]

    assert loop.run_until_complete(beside()) == alone
    assert len(alone) == 2 and alone[0] != alone[1]


def test_an_abort_stops_the_request_and_frees_its_sequences(
    backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop
) -> None:
    long = SamplingOptions(max_tokens=900, ignore_eos=True, n=3, best_of=3)

    async def abort_one() -> None:
        running = asyncio.ensure_future(backend.generate(await backend.tokenize(PROMPTS[0]), long, "doomed"))
        await asyncio.sleep(0.3)
        steps = backend._engine.steps
        await backend.abort("doomed")
        with pytest.raises(Aborted):
            await running
        # stopped within a couple of decode steps of the abort, not after 900 tokens
        assert backend._engine.steps - steps <= 3

    loop.run_until_complete(abort_one())
    assert backend.in_flight == 0 and len(backend._free_ids) == backend.parallel
    assert _text(backend, loop, PROMPTS[0], GREEDY) == _text(backend, loop, PROMPTS[0], GREEDY)


def test_a_waiting_request_whose_task_is_cancelled_never_starts(
    backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop
) -> None:
    async def scenario() -> None:
        hold = asyncio.ensure_future(
            backend.generate(
                await backend.tokenize(PROMPTS[0]),
                SamplingOptions(max_tokens=40, ignore_eos=True, n=4, best_of=4),
                "hold",
            )
        )
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(backend.generate(await backend.tokenize(PROMPTS[1]), GREEDY, "waiting"))
        await asyncio.sleep(0.05)
        assert backend.in_flight == 2
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await hold

    steps = backend._engine.steps
    loop.run_until_complete(scenario())
    assert backend.in_flight == 0
    # only the held request's 40 steps (and its prompt) ran: the cancelled one never did
    assert backend._engine.steps - steps <= 42


def test_the_default_thread_count_leaves_a_core_free() -> None:
    choice = choose_threads(None)
    assert choice.threads >= 1 and "cores available" in choice.reason
    assert choose_threads(3).threads == 3


class _RecordingLibrary:
    """The real llama_cpp module, with each llama_decode's rows noted (sequence id, position) before it runs."""

    def __init__(self, library: Any) -> None:
        self._library = library
        self.batches: list[list[tuple[int, int]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._library, name)

    def llama_decode(self, context: Any, batch: Any) -> int:
        self.batches.append([(batch.seq_id[row][0], batch.pos[row]) for row in range(batch.n_tokens)])
        status: int = self._library.llama_decode(context, batch)
        return status


@pytest.fixture
def recorded(backend: LlamaCppBackend) -> Iterator[_RecordingLibrary]:
    engine = backend._engine
    library = engine._lib
    recording = _RecordingLibrary(library)
    engine._lib = recording
    try:
        yield recording
    finally:
        engine._lib = library


def test_rows_go_in_sequence_order_and_a_new_request_takes_the_lowest_free_sequence(
    backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop, recorded: _RecordingLibrary
) -> None:
    # llama.cpp decodes a run of consecutive sequence ids in row order as one micro-batch; a gap or a
    # row out of order costs another (BatchEngine._step): three requests must stay on sequences 0-2
    long = SamplingOptions(max_tokens=40, temperature=0, ignore_eos=True)
    short = SamplingOptions(max_tokens=3, temperature=0, ignore_eos=True)

    async def scenario() -> None:
        first = asyncio.ensure_future(backend.generate(await backend.tokenize(PROMPTS[0]), long, "first"))
        await asyncio.sleep(0.05)
        brief = asyncio.ensure_future(backend.generate(await backend.tokenize(PROMPTS[1]), short, "brief"))
        await asyncio.sleep(0.05)
        third = asyncio.ensure_future(backend.generate(await backend.tokenize(PROMPTS[2]), long, "third"))
        await brief
        # the brief request's sequence is free again: the next request takes it, not a higher one
        await asyncio.gather(first, third, backend.generate(await backend.tokenize(PROMPTS[3]), long, "fourth"))

    loop.run_until_complete(scenario())
    used = {seq_id for batch in recorded.batches for seq_id, _ in batch}
    assert used <= {0, 1, 2}, f"sequences used: {sorted(used)}"
    for batch in recorded.batches:
        ids = [seq_id for seq_id, _ in batch]
        assert ids == sorted(ids), f"rows out of sequence order: {ids}"
    assert backend.in_flight == 0 and sorted(backend._free_ids) == list(range(backend.parallel))


def test_prompts_that_arrive_together_are_evaluated_in_bounded_chunks_first_come_first(
    backend: LlamaCppBackend, recorded: _RecordingLibrary
) -> None:
    engine = backend._engine
    prompt = list(range(300, 450))  # 150 tokens: three chunks of at most PROMPT_TOKENS_PER_STEP
    finished_at: dict[int, int] = {}
    futures = []
    for seq_id in (0, 1):
        future = engine.evaluate(seq_id, prompt, 0)
        future.add_done_callback(lambda _, seq_id=seq_id: finished_at.setdefault(seq_id, len(recorded.batches)))
        futures.append(future)
    logits = [future.result(timeout=120) for future in futures]
    for seq_id in (0, 1):
        engine.free(seq_id).result(timeout=30)
    assert all(len(batch) <= PROMPT_TOKENS_PER_STEP for batch in recorded.batches)
    assert sum(len(batch) for batch in recorded.batches) == 2 * len(prompt)
    # the first prompt was finished in its third step, before the second one had its last chunk
    assert finished_at[0] == 3 and finished_at[1] > finished_at[0]
    # the same tokens on another sequence in other chunks: the same logits (D50)
    assert np.array_equal(logits[0], logits[1])


def test_the_engine_counts_its_steps_and_metrics_expose_them(
    backend: LlamaCppBackend, loop: asyncio.AbstractEventLoop
) -> None:
    engine = backend._engine
    before = engine.stats()
    options = SamplingOptions(max_tokens=8, temperature=0, ignore_eos=True)

    async def two() -> None:
        prompts = [await backend.tokenize(p) for p in PROMPTS[:2]]
        await asyncio.gather(*(backend.generate(ids, options, f"count{i}") for i, ids in enumerate(prompts)))

    loop.run_until_complete(two())
    done = engine.stats().since(before)
    assert done.answered == 2 * 8  # one answer per sampled token
    assert 8 <= done.steps <= 2 * 8 and done.sequences <= 2 * done.steps and done.running >= done.sequences
    assert done.prompt_steps >= 1 and done.tokens >= 2 * 7 + 2 * len(_ids(backend, loop, PROMPTS[0])) - 2
    assert done.decode_wall_s > 0 and done.decode_cpu_s > 0 and done.gather_wait_s >= 0

    app = build_app(ServerSettings(backend="llamacpp"), backend=backend, api_key="key")

    async def scrape() -> str:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return (await client.get("/metrics")).text

    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(loop.run_until_complete(scrape()))
        for sample in family.samples
    }
    assert samples["llamacert_engine_steps_total"] == engine.stats().steps
    assert samples["llamacert_engine_answered_total"] >= done.answered
