"""report.json: the Report model itself as JSON, the form `compare` and other tools read back."""

from __future__ import annotations

from reports.model import Report

__all__ = ["render_json"]


def render_json(report: Report) -> str:
    """The report as indented JSON text (what `Report.from_json` reads)."""
    return report.to_json()
