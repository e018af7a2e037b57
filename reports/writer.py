"""Write a report directory: report.json, junit.xml and report.html side by side."""

from __future__ import annotations

import os
from pathlib import Path

from reports.model import Report
from reports.render_html import render_html
from reports.render_json import render_json
from reports.render_junit import render_junit

__all__ = ["REPORT_FILES", "write_report_dir"]

REPORT_FILES = {"json": "report.json", "junit": "junit.xml", "html": "report.html"}
"""File name of each rendering, by the key `write_report_dir` returns it under."""


def write_report_dir(report: Report, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Render every form of `report` into `out_dir` (created if needed); the written paths by kind."""
    # Render everything before writing anything, so a failing renderer leaves no half-written directory.
    contents = {"json": render_json(report), "junit": render_junit(report), "html": render_html(report)}
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / REPORT_FILES[kind] for kind in contents}
    for kind, text in contents.items():
        paths[kind].write_text(text, encoding="utf-8")
    return paths
