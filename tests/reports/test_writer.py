"""write_report_dir: all three renderings in one directory."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from reports.model import Report
from reports.writer import write_report_dir


def test_writes_json_junit_and_html(report: Report, tmp_path: Path) -> None:
    paths = write_report_dir(report, tmp_path / "out" / "run-1")
    assert paths == {
        "json": tmp_path / "out" / "run-1" / "report.json",
        "junit": tmp_path / "out" / "run-1" / "junit.xml",
        "html": tmp_path / "out" / "run-1" / "report.html",
    }
    assert Report.load(paths["json"]) == report
    assert ET.parse(paths["junit"]).getroot().tag == "testsuites"
    assert paths["html"].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
