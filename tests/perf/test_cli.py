"""perf.cli argument handling: bad input is a clear status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from perf.cli import main


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scenario", "nope"], "unknown scenario 'nope'"),
        (["--tolerance", "lots"], "tolerance 'lots': expected a percentage such as 10%"),
        (["--tolerance", "0.1"], "tolerance '0.1' is ambiguous: write 0.1% or 10%"),
        (["--slo", "ttft_p95=fast"], "expected a duration with its unit"),
        (["--slo", "tps_p95=5ms"], "the metric must be one of ttft, itl, e2e or errors"),
        (["--master"], "--master needs --expect-workers N"),
        (["--worker"], "--worker needs --master-host"),
        (["--runs", "0"], "--runs must be at least 1"),
        (["--duration", "soon"], "invalid parse_duration value"),
        (["--mix", "chat+slow"], "invalid parse_mix value"),
        (["--baseline", "missing.json"], "baseline missing.json"),
        (["--scenario", "throughput", "--rate", "5"], "--rate applies to open-loop scenarios"),
        (["--profile", "serverless-llama9"], "unknown profile"),
    ],
)
def test_bad_arguments(arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--endpoint", "http://127.0.0.1:9", "--out", str(tmp_path), *arguments]) == 2
    assert message in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--save-baseline" in capsys.readouterr().out
