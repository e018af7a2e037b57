"""Scrape an endpoint's Prometheus /metrics while a load test runs, and turn the scrapes into server-side series.

A background thread GETs /metrics every `interval_s` and keeps each scrape's samples (parsed with
prometheus_client's text parser). Afterwards `server_series` derives plot-ready series for the metrics it
knows: the reference server's (llamacert_*), vLLM's (vllm:*) and llama.cpp server's (llamacpp:*). Gauges are
plotted as scraped; counters as their rate between scrapes; histograms as the mean of the observations that
fell between two scrapes. An endpoint without /metrics (404, refused) is noted once and not asked again.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final, Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from spec.load_summary import ServerMetrics, ServerSeries

__all__ = ["KNOWN_SERIES", "Scrape", "Scraper", "SeriesRecipe", "parse_scrape", "server_series"]


@dataclass(frozen=True)
class Scrape:
    """One scrape: when (epoch seconds) and each sample's value summed over its labels."""

    at: float
    samples: dict[str, float]


def parse_scrape(text: str, at: float) -> Scrape:
    """A /metrics text page's samples, each summed over its label sets (`requests_total` over all routes)."""
    samples: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name] += sample.value
    return Scrape(at, dict(samples))


@dataclass(frozen=True)
class SeriesRecipe:
    """A series to derive: the first candidate metric present in the scrapes is used."""

    name: str
    unit: str
    kind: Literal["gauge", "rate", "histogram_mean"]
    candidates: tuple[str, ...]
    """Sample names: a gauge's, a counter's `_total`, or a histogram's base name (its _sum and _count)."""
    scale: float = 1.0


KNOWN_SERIES: Final[tuple[SeriesRecipe, ...]] = (
    SeriesRecipe(
        "running requests",
        "requests",
        "gauge",
        ("llamacert_requests_running", "vllm:num_requests_running", "llamacpp:requests_processing"),
    ),
    SeriesRecipe(
        "waiting requests",
        "requests",
        "gauge",
        ("llamacert_requests_waiting", "vllm:num_requests_waiting", "llamacpp:requests_deferred"),
    ),
    SeriesRecipe("requests answered/s", "requests/s", "rate", ("llamacert_requests_total",)),
    SeriesRecipe(
        "generated tokens/s",
        "tokens/s",
        "rate",
        ("llamacert_generation_tokens_total", "vllm:generation_tokens_total", "llamacpp:tokens_predicted_total"),
    ),
    SeriesRecipe(
        "server TTFT (mean)",
        "ms",
        "histogram_mean",
        ("llamacert_time_to_first_token_seconds", "vllm:time_to_first_token_seconds"),
        scale=1000.0,
    ),
    SeriesRecipe(
        "server inter-token latency (mean)",
        "ms",
        "histogram_mean",
        (
            "llamacert_inter_token_latency_seconds",
            "vllm:inter_token_latency_seconds",
            "vllm:time_per_output_token_seconds",
        ),
        scale=1000.0,
    ),
    SeriesRecipe("rate limiter: requests left", "requests", "gauge", ("llamacert_rate_limit_remaining_requests",)),
    SeriesRecipe("rate limiter: tokens left", "tokens", "gauge", ("llamacert_rate_limit_remaining_tokens",)),
    SeriesRecipe("429s/s", "requests/s", "rate", ("llamacert_rate_limit_rejections_total",)),
)


def _derive(recipe: SeriesRecipe, scrapes: list[Scrape], origin: float) -> ServerSeries | None:
    for candidate in recipe.candidates:
        if recipe.kind == "histogram_mean":
            present = [s for s in scrapes if f"{candidate}_sum" in s.samples and f"{candidate}_count" in s.samples]
        else:
            present = [s for s in scrapes if candidate in s.samples]
        if len(present) < (1 if recipe.kind == "gauge" else 2):
            continue
        times: list[float] = []
        values: list[float] = []
        if recipe.kind == "gauge":
            for scrape in present:
                times.append(scrape.at - origin)
                values.append(scrape.samples[candidate] * recipe.scale)
        else:
            for earlier, later in itertools.pairwise(present):
                elapsed = later.at - earlier.at
                if elapsed <= 0:
                    continue
                if recipe.kind == "rate":
                    delta = later.samples[candidate] - earlier.samples[candidate]
                    value = max(0.0, delta) / elapsed
                else:
                    count = later.samples[f"{candidate}_count"] - earlier.samples[f"{candidate}_count"]
                    if count <= 0:
                        continue
                    value = (later.samples[f"{candidate}_sum"] - earlier.samples[f"{candidate}_sum"]) / count
                times.append((earlier.at + later.at) / 2 - origin)
                values.append(value * recipe.scale)
        source = candidate if recipe.kind != "histogram_mean" else f"{candidate} (_sum/_count between scrapes)"
        if recipe.kind == "rate":
            source = f"rate({candidate})"
        return ServerSeries(name=recipe.name, unit=recipe.unit, source=source, t=times, values=values)
    return None


def server_series(scrapes: list[Scrape], origin: float) -> list[ServerSeries]:
    """The known series found in the scrapes, times in seconds since `origin` (the measured window's start)."""
    return [series for recipe in KNOWN_SERIES if (series := _derive(recipe, scrapes, origin)) is not None]


@dataclass
class Scraper:
    """Scrapes `url` every `interval_s` in a daemon thread between `start()` and `stop()`."""

    url: str
    interval_s: float = 1.0
    headers: dict[str, str] = field(default_factory=dict)
    scrapes: list[Scrape] = field(default_factory=list)
    failures: int = 0
    note: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="llamacert-metrics-scraper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.interval_s + 10)

    def _loop(self) -> None:
        with httpx.Client(headers=self.headers, timeout=max(2.0, self.interval_s)) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                if not self.scrape_once(client):
                    return
                self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def scrape_once(self, client: httpx.Client) -> bool:
        """One scrape; False when the endpoint has no /metrics (the loop then stops asking)."""
        try:
            response = client.get(self.url)
        except httpx.HTTPError as error:
            self.failures += 1
            if not self.scrapes and self.failures >= 3:
                self.note = f"{self.url} did not answer ({type(error).__name__}): no server-side series"
                return False
            return True
        at = time.time()
        if response.status_code in (401, 403, 404, 405):
            self.note = f"{self.url} answered {response.status_code}: no server-side series"
            return False
        if response.status_code != 200:
            self.failures += 1
            return True
        try:
            self.scrapes.append(parse_scrape(response.text, at))
        except ValueError as error:
            self.failures += 1
            self.note = f"{self.url} is not in the Prometheus text format: {error}"
            return False
        return True

    def result(self, origin: float) -> ServerMetrics:
        series = server_series(self.scrapes, origin)
        note = self.note
        if note is None and self.scrapes and not series:
            note = "the endpoint's /metrics has none of the series llamacert knows (llamacert_*, vllm:*, llamacpp:*)"
        return ServerMetrics(
            url=self.url,
            interval_s=self.interval_s,
            scrapes=len(self.scrapes),
            failed_scrapes=self.failures,
            series=series,
            note=note,
        )
