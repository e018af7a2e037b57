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


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scenario", "multi-turn", "--mix", "completion"], "--turns above 1 holds conversations"),
        (["--turns", "0"], "--turns must be at least 1"),
        (["--think-time", "-1", "--turns", "2", "--mix", "chat"], "--think-time must not be negative"),
        (["--prefix-tokens", "-3"], "must not be negative, got -3"),
        (["--prefix-tokens", "many"], "expected a whole number"),
        (["--prefix-tokens", "8", "--prefix-share", "1.5"], "--prefix-share is the fraction"),
        (["--prefix-tokens", "8", "--prefix-count", "0"], "--prefix-count"),
        (["--trace", "{bad}"], "bad.jsonl:2: input_length must be at least 1, got 0"),
        (["--trace", "{missing}"], "cannot read the trace"),
        (["--trace", "{good}", "--trace-time-scale", "0"], "--trace-time-scale must be positive"),
        (["--trace", "{good}", "--turns", "3", "--mix", "chat"], "--trace sets prompts"),
        (["--trace", "{good}", "--workers", "2"], "trace replay runs in one Locust process"),
        (["--trace", "{good}", "--scenario", "poisson"], "--trace sets prompts, lengths and arrival times itself"),
        (["--scenario", "{scenario}"], "a trace brings its own arrival times"),
        (["--prefix-count", "3"], "--prefix-share and --prefix-count need --prefix-tokens"),
        (["--scenario", "shared-prefix", "--prefix-tokens", "0", "--prefix-share", "0.5"], "need --prefix-tokens"),
        (["--think-time", "2"], "--think-time needs --turns above 1"),
        (["--trace-time-scale", "2"], "--trace-time-scale and --trace-block-tokens need --trace"),
    ],
)
def test_bad_workloads(arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = '{"timestamp": 0, "input_length": 4, "output_length": 2}'
    (tmp_path / "good.jsonl").write_text(good + "\n")
    (tmp_path / "bad.jsonl").write_text(good + '\n{"timestamp": 5, "input_length": 0, "output_length": 2}\n')
    (tmp_path / "scenario.yaml").write_text("name: wrong\nshape: poisson\nrate: 2\ntrace: good.jsonl\n")
    files = {name: str(tmp_path / f"{name}.jsonl") for name in ("good", "bad", "missing")}
    files["scenario"] = str(tmp_path / "scenario.yaml")
    arguments = [argument.format(**files) for argument in arguments]
    assert main(["--endpoint", "http://127.0.0.1:9", "--out", str(tmp_path / "out"), *arguments]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
