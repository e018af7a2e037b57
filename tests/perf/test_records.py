"""perf.records: records survive a JSONL round trip, unknown fields are refused, workers' files merge in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from perf.records import (
    RecordReadError,
    RecordWriter,
    RequestRecord,
    merge_record_files,
    read_records,
    record_file_name,
    write_records,
)


def _record(sent: float, status: int = 200, error: str | None = None) -> RequestRecord:
    return RequestRecord(
        route="/v1/completions", stream=False, t_send=sent, t_end=sent + 0.5, status=status, error=error
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    record = RequestRecord(
        route="/chat/completions",
        stream=True,
        t_send=1_700_000_000.123456,
        t_end=1_700_000_001.5,
        status=200,
        t_first_byte=1_700_000_000.2,
        t_first_token=1_700_000_000.3,
        token_event_times=[1_700_000_000.3, 1_700_000_000.4],
        prompt_tokens=7,
        completion_tokens=2,
        finish_reason="length",
        limit_requests=120,
    )
    path = tmp_path / "r.jsonl"
    assert write_records(path, [record]) == 1
    assert read_records(path) == [record]


def test_outcomes() -> None:
    assert _record(0).ok and not _record(0).rejected
    assert _record(0, status=429).rejected
    assert not _record(0, error="in-band error: boom").ok
    assert _record(0, status=0, error="timeout: no complete answer in 5 s").hung
    assert _record(0, status=200, error="interrupted: still running when the test stopped").hung
    assert not _record(0, status=500, error="HTTP 500").hung


def test_unknown_fields_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"route": "/v1/completions", "stream": false, "t_send": 1, "t_end": 2, "status": 200, "x": 1}\n')
    with pytest.raises(RecordReadError, match=r"r\.jsonl:1"):
        read_records(path)


def test_writer_opens_lazily_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "records" / record_file_name()
    with RecordWriter(path) as writer:
        assert not path.exists()
        writer.write(_record(2.0))
        writer.write(_record(1.0))
    with RecordWriter(path) as writer:
        writer.write(_record(3.0))
    assert [record.t_send for record in read_records(path)] == [1.0, 2.0, 3.0]


def test_merge_orders_records_of_all_processes(tmp_path: Path) -> None:
    write_records(tmp_path / "records-a-1.jsonl", [_record(1.0), _record(4.0)])
    write_records(tmp_path / "records-b-2.jsonl", [_record(2.0), _record(3.0)])
    (tmp_path / "other.jsonl").write_text("not records\n")
    merged = merge_record_files(tmp_path, tmp_path / "out" / "records.jsonl")
    assert [record.t_send for record in merged] == [1.0, 2.0, 3.0, 4.0]
    assert read_records(tmp_path / "out" / "records.jsonl") == merged
