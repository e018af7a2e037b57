"""report.html: a self-contained page for a person, verdict first; inline CSS and PNG plots, no network, no script."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2
from pydantic import JsonValue

from reports.model import LoadSection, Report
from reports.plots import capacity_plot, latency_plot, requests_plot, server_plot, throughput_plot

__all__ = ["render_html"]

_TEMPLATES = Path(__file__).with_name("templates")
_EXCERPT_LIMIT = 4000
# A rule can collect evidence from every test case; the first few explain it, report.json keeps them all.
_EVIDENCE_LIMIT = 10


@dataclass(frozen=True)
class _LoadView:
    section: LoadSection
    latency_plot: str | None
    throughput_plot: str | None
    requests_plot: str | None
    server_plot: str | None
    capacity_plot: str | None


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms" if value >= 100 else f"{value:,.1f} ms"


def _number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _percent(fraction: float) -> str:
    return f"{fraction:.2%}"


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{seconds:.1f} s" if seconds < 60 else f"{minutes} min {rest} s"


def _limit(text: str) -> str:
    extra = len(text) - _EXCERPT_LIMIT
    return text if extra <= 0 else f"{text[:_EXCERPT_LIMIT]}… ({extra:,} more characters)"


def _pretty_body(body: JsonValue) -> str:
    return "" if body is None else _limit(json.dumps(body, indent=2, ensure_ascii=False))


def _pretty_excerpt(excerpt: str) -> str:
    """The excerpt indented when it is complete JSON, as it came otherwise (excerpts are often cut short)."""
    try:
        return _limit(json.dumps(json.loads(excerpt), indent=2, ensure_ascii=False))
    except ValueError:
        return _limit(excerpt)


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        ms=_ms,
        number=_number,
        percent=_percent,
        when=_when,
        duration=_duration,
        pretty_body=_pretty_body,
        pretty_excerpt=_pretty_excerpt,
    )
    return environment


def _headline_loads(loads: list[LoadSection]) -> tuple[LoadSection | None, LoadSection | None]:
    """The scenario the summary cards quote for throughput and latency, and the one for the rate limit."""
    unlimited = next((load for load in loads if load.rate_limit is None), loads[0] if loads else None)
    limited = next((load for load in loads if load.rate_limit is not None), None)
    return unlimited, limited


def render_html(report: Report) -> str:
    """The report as one HTML page."""
    performance, rate_limited = _headline_loads(report.loads)
    loads = [
        _LoadView(
            section=load,
            latency_plot=latency_plot(load),
            throughput_plot=throughput_plot(load),
            requests_plot=requests_plot(load),
            server_plot=server_plot(load),
            capacity_plot=capacity_plot(load),
        )
        for load in report.loads
    ]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            verdict=report.verdict,
            other_verdicts=[verdict for verdict in report.verdicts if verdict.profile != report.profile],
            evidence_limit=_EVIDENCE_LIMIT,
            performance=performance,
            rate_limited=rate_limited,
            loads=loads,
        )
    )
