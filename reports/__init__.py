"""Certification reports: one versioned pydantic `Report` (reports.model), rendered to JSON, JUnit XML and HTML.

Renderers live in their own modules (render_json, render_junit, render_html; writer writes all three), `compare`
diffs two reports, and `cli` holds the `compare` entry point.
"""

__all__: list[str] = []
