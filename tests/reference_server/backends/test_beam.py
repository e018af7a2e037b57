"""BeamSearch, the search both real backends share, on hand-made next-token distributions."""

from __future__ import annotations

import math

from reference_server.backends.beam import BeamSearch

END = 0


def _distribution(table: dict[tuple[int, ...], dict[int, float]], tokens: tuple[int, ...]) -> list[tuple[int, float]]:
    probabilities = table.get(tokens, {END: 1.0})
    return [(token_id, math.log(p)) for token_id, p in probabilities.items()]


def _run(search: BeamSearch, table: dict[tuple[int, ...], dict[int, float]]) -> None:
    while not search.done:
        search.advance([_distribution(table, tokens) for tokens in search.pending()])


def test_beam_search_finds_the_sequence_greedy_decoding_misses() -> None:
    # greedy takes 1 (0.6) and then faces a flat 1/3 each; 2 (0.4) leads to a sure 5
    table = {
        (): {1: 0.6, 2: 0.4},
        (1,): {3: 1 / 3, 4: 1 / 3, 6: 1 / 3},
        (2,): {5: 1.0},
    }
    search = BeamSearch(width=2, max_tokens=2, ends=lambda token: token == END)
    _run(search, table)
    best = search.best()
    assert best[0].tokens == (2, 5)
    assert math.isclose(best[0].score, math.log(0.4))
    assert best[0].finish_reason == "length"
    assert len(best) == 2


def test_hypotheses_that_end_are_kept_with_their_end_token_and_rank_by_mean_logprob() -> None:
    table = {(): {END: 0.5, 1: 0.5}, (1,): {END: 0.9, 2: 0.1}}
    search = BeamSearch(width=2, max_tokens=5, ends=lambda token: token == END)
    _run(search, table)
    best = search.best()
    assert all(h.finish_reason == "stop" for h in best)
    assert {h.tokens for h in best} == {(END,), (1, END)}
    # (1, END): log(0.5 * 0.9) over 2 tokens beats log(0.5) over 1
    assert best[0].tokens == (1, END)
    assert best[0].mean_logprob > best[1].mean_logprob


def test_the_search_stops_at_max_tokens_and_asks_for_twice_the_width() -> None:
    search = BeamSearch(width=3, max_tokens=1, ends=lambda token: False)
    assert search.candidates_per_beam == 6
    assert search.pending() == [()]
    search.advance([[(token_id, -float(token_id)) for token_id in range(1, 20)]])
    assert search.done
    assert [h.tokens for h in search.best()] == [(1,), (2,), (3,)]
