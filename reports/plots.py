"""Plots for the HTML report: matplotlib figures encoded as inline PNG data URIs, so the page needs no network.

Figures are built with `matplotlib.figure.Figure` (Agg canvas) rather than pyplot, so no global state is touched.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.model import LatencyStats, LoadSection

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

__all__ = ["capacity_plot", "latency_plot", "requests_plot", "server_plot", "throughput_plot"]

BLUE = "#2563eb"
ORANGE = "#ea580c"
PURPLE = "#7c3aed"
GREEN = "#16a34a"
RED = "#dc2626"
INK = "#111827"
MUTED = "#6b7280"
GRID = "#e5e7eb"

_STYLE: dict[RcKeyType, object] = {
    "font.size": 9,
    "axes.edgecolor": "#9ca3af",
    "axes.labelcolor": INK,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": True,
    "legend.framealpha": 0.92,
    "legend.edgecolor": "none",
    "legend.fontsize": 8,
}
_DPI = 110
# Room above the tallest bar or line for the legend, as a multiple of the data's maximum.
_HEADROOM = 1.32
# Latency tails can be long; past this quantile the histogram's x axis is cut so the body stays readable.
_CLIP_QUANTILE = 0.995


def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, facecolor="white", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _finish(axes: Axes, title: str, xlabel: str, ylabel: str, *, legend_columns: int = 1) -> None:
    """Shared look: title, labels, a light horizontal grid, and headroom so the legend covers no data."""
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", color=GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    bottom, top = axes.get_ylim()
    axes.set_ylim(0 if bottom >= 0 else bottom, top * _HEADROOM)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper right", ncols=legend_columns)


def _histogram(axes: Axes, title: str, unit: str, samples: Sequence[float], stats: LatencyStats | None) -> None:
    values = np.asarray(samples, dtype=float)
    upper = float(np.quantile(values, _CLIP_QUANTILE))
    clipped = int((values > upper).sum()) if values.max() > 1.5 * upper else 0
    axes.hist(
        values,
        bins=min(40, max(10, len(values) // 8)),
        range=(float(values.min()), upper) if clipped else None,
        color=BLUE,
        alpha=0.85,
        edgecolor="white",
        linewidth=0.5,
    )
    if stats is not None:
        for name, value, style in (("p50", stats.p50, "-"), ("p95", stats.p95, "--"), ("p99", stats.p99, ":")):
            axes.axvline(value, color=INK, linestyle=style, linewidth=1.2, label=f"{name} {value:,.0f} ms")
    _finish(axes, title + (f" ({clipped} beyond the axis)" if clipped else ""), "milliseconds", unit)


def latency_plot(load: LoadSection) -> str | None:
    """Histograms of TTFT, inter-token latency and end-to-end latency, with p50/p95/p99 marked."""
    panels = [
        (title, unit, samples, stats)
        for title, unit, samples, stats in (
            ("Time to first token", "requests", load.samples.ttft_ms, load.ttft_ms),
            ("Inter-token latency", "token gaps", load.samples.itl_ms, load.itl_ms),
            ("End-to-end latency", "requests", load.samples.e2e_ms, load.e2e_ms),
        )
        if samples
    ]
    if not panels:
        return None
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(max(5.5, 3.7 * len(panels)), 2.9), layout="constrained")
        row = figure.subplots(1, len(panels), squeeze=False)[0]
        for axes, (title, unit, samples, stats) in zip(row, panels, strict=True):
            _histogram(axes, title, unit, samples, stats)
        return _data_uri(figure)


def throughput_plot(load: LoadSection) -> str | None:
    """Output tokens per second over the run, with the run's mean."""
    if not load.timeline:
        return None
    # Each bucket covers [t, t + 1); one more edge closes the last step.
    edges = [bucket.t for bucket in load.timeline] + [load.timeline[-1].t + 1]
    tokens = [bucket.output_tokens for bucket in load.timeline]
    tokens += tokens[-1:]
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(5.5, 2.9), layout="constrained")
        axes = figure.subplots()
        axes.fill_between(edges, tokens, step="post", color=BLUE, alpha=0.15, linewidth=0)
        axes.step(edges, tokens, where="post", color=BLUE, linewidth=1.2, label="output tokens/s")
        axes.axhline(
            load.output_tokens_per_s,
            color=INK,
            linestyle="--",
            linewidth=1,
            label=f"mean {load.output_tokens_per_s:,.0f} tokens/s",
        )
        _finish(axes, "Output tokens per second", "seconds since start", "tokens/s", legend_columns=2)
        return _data_uri(figure)


def requests_plot(load: LoadSection) -> str | None:
    """Accepted and rejected (429) requests per second, against the rate limit when the run checked one."""
    if not load.timeline:
        return None
    seconds = [bucket.t for bucket in load.timeline]
    accepted = [bucket.accepted for bucket in load.timeline]
    rejected = [bucket.rejected for bucket in load.timeline]
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(5.5, 2.9), layout="constrained")
        axes = figure.subplots()
        axes.bar(seconds, accepted, width=0.9, align="edge", color=GREEN, label="accepted")
        axes.bar(seconds, rejected, width=0.9, align="edge", bottom=accepted, color=RED, label="rejected (429)")
        limit_rpm = load.rate_limit.limit_rpm if load.rate_limit else None
        if limit_rpm is not None:
            axes.axhline(
                limit_rpm / 60,
                color=INK,
                linestyle="--",
                linewidth=1.4,
                label=f"limit {limit_rpm:,} RPM = {limit_rpm / 60:.1f}/s",
            )
        _finish(axes, "Requests per second", "seconds since start", "requests/s", legend_columns=3)
        return _data_uri(figure)


# Server series drawn on the same axes as a client-side one; the rest get an axes each.
_PAIRED_WITH_CLIENT = {"requests answered/s": "requests", "generated tokens/s": "tokens"}
_MAX_SERVER_PANELS = 5


def server_plot(load: LoadSection) -> str | None:
    """Client-side and scraped server-side series on one time axis (seconds since the measured window began)."""
    server = load.server_metrics
    if server is None or not server.series:
        return None
    by_name = {series.name: series for series in server.series}
    others = [series for series in server.series if series.name not in _PAIRED_WITH_CLIENT][:_MAX_SERVER_PANELS]
    seconds = [bucket.t + 0.5 for bucket in load.timeline]
    panels = 2 + len(others)
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(7.5, 1.7 * panels + 0.6), layout="constrained")
        rows = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
        client = {
            "requests": ([bucket.accepted for bucket in load.timeline], "requests/s", "client: accepted requests/s"),
            "tokens": ([bucket.output_tokens for bucket in load.timeline], "tokens/s", "client: output tokens/s"),
        }
        for axes, (kind, (values, unit, label)) in zip(rows[:2], client.items(), strict=True):
            axes.plot(seconds, values, color=BLUE, linewidth=1.3, label=label)
            paired = next((series for name, series in by_name.items() if _PAIRED_WITH_CLIENT.get(name) == kind), None)
            if paired is not None:
                axes.plot(
                    paired.t, paired.values, color=ORANGE, linewidth=1.3, linestyle="--", label=f"server: {paired.name}"
                )
            _finish(axes, "", "", unit, legend_columns=2)
        for axes, series in zip(rows[2:], others, strict=True):
            axes.plot(series.t, series.values, color=PURPLE, linewidth=1.3, label=f"server: {series.name}")
            _finish(axes, "", "", series.unit)
        rows[0].set_title(f"Client and server side over the run ({server.scrapes} scrapes of {server.url})")
        rows[-1].set_xlabel("seconds since the measured window began")
        return _data_uri(figure)


def capacity_plot(load: LoadSection) -> str | None:
    """The capacity search's evidence: latency and throughput against the offered rate, the answer marked."""
    search = load.capacity
    if search is None or not search.steps:
        return None
    steps = sorted(search.steps, key=lambda step: step.offered_rate)
    offered = [step.offered_rate for step in steps]
    with matplotlib.rc_context(_STYLE):
        figure = Figure(figsize=(9.5, 3.1), layout="constrained")
        latency, throughput = figure.subplots(1, 2)
        for name, values, color in (
            ("p95 TTFT", [step.ttft_p95_ms for step in steps], BLUE),
            ("p95 inter-token", [step.itl_p95_ms for step in steps], PURPLE),
            ("p95 end-to-end", [step.e2e_p95_ms for step in steps], ORANGE),
        ):
            points = [(rate, value) for rate, value in zip(offered, values, strict=True) if value is not None]
            if points:
                latency.plot(*zip(*points, strict=True), marker="o", color=color, linewidth=1.2, label=name)
        latency.set_yscale("log")
        throughput.plot(offered, offered, color=MUTED, linestyle=":", linewidth=1, label="offered")
        throughput.plot(offered, [s.requests_per_s for s in steps], marker="o", color=GREEN, label="ok requests/s")
        goodput = [(s.offered_rate, s.goodput_requests_per_s) for s in steps if s.goodput_requests_per_s is not None]
        if goodput:
            throughput.plot(*zip(*goodput, strict=True), marker="s", color=BLUE, label="goodput requests/s")
        for axes in (latency, throughput):
            for step in steps:
                if not step.held:
                    axes.axvspan(step.offered_rate * 0.98, step.offered_rate * 1.02, color=RED, alpha=0.12)
            if search.capacity_rate is not None:
                axes.axvline(search.capacity_rate, color=INK, linestyle="--", linewidth=1.2, label="capacity")
        latency.set_title("Latency against offered rate (red: did not hold)")
        latency.set_xlabel("offered requests/s")
        latency.set_ylabel("ms (log)")
        latency.grid(axis="y", color=GRID, linewidth=0.8)
        latency.legend(loc="upper left")
        _finish(throughput, "Throughput against offered rate", "offered requests/s", "requests/s", legend_columns=2)
        return _data_uri(figure)
