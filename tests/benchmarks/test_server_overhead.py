"""benchmarks/server_overhead.py: both sides generate what was asked and are timed (the figures are not judged)."""

from __future__ import annotations

import pytest

from benchmarks import server_overhead
from benchmarks.server_overhead import OverheadRun, SideTiming, measure_overhead


@pytest.mark.model
@pytest.mark.slow
def test_both_sides_generate_the_tokens_asked_for_and_are_timed() -> None:
    results = measure_overhead(tokens=4, runs=2, threads=2)
    assert len(results) == 2
    for result in results:
        assert result.direct.tokens == result.served.tokens == 4
        assert result.ratio > 0 and result.others_cpu_share >= 0
        assert result.direct.first_token_s > 0 and result.served.first_token_s > 0


def test_the_command_prints_each_run_and_a_summary_of_the_quiet_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet = OverheadRun(SideTiming(128, 1.0, 0.05), SideTiming(128, 1.04, 0.05), others_cpu_share=0.02)
    busy = OverheadRun(SideTiming(128, 4.0, 0.2), SideTiming(128, 1.5, 0.1), others_cpu_share=0.9)
    monkeypatch.setattr(server_overhead, "measure_overhead", lambda tokens, runs, threads: [quiet, busy, quiet])
    assert server_overhead.main(["--runs", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("ratio 0.962") == 2 and "ratio 2.667" in out
    assert "all runs: median (min-max) over 3 runs" in out
    assert "over 2 runs" in out and "ratio served/direct:     0.962 (0.962-0.962)" in out
