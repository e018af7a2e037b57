"""The batched llama.cpp backend in process, on the embedded model: batching, invariance, sharing, aborts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from reference_server.backends.base import SamplingOptions
from reference_server.backends.decoding import Aborted
from reference_server.backends.llamacpp import LlamaCppBackend, choose_threads, create_llamacpp_backend

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
