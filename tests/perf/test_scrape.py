"""perf.scrape: Prometheus text parsed with prometheus_client, turned into server-side series on the run's axis."""

from __future__ import annotations

import httpx
import pytest

from perf.scrape import Scraper, parse_scrape, server_series

_PAGE = """# TYPE llamacert_requests_running gauge
llamacert_requests_running {running}
# TYPE llamacert_generation_tokens counter
llamacert_generation_tokens_total {tokens}
# TYPE llamacert_requests counter
llamacert_requests_total{{route="/v1/completions",status="200"}} {ok}
llamacert_requests_total{{route="/v1/completions",status="429"}} 1
# TYPE llamacert_time_to_first_token_seconds histogram
llamacert_time_to_first_token_seconds_bucket{{le="+Inf"}} {count}
llamacert_time_to_first_token_seconds_sum {ttft_sum}
llamacert_time_to_first_token_seconds_count {count}
"""


def _page(running: int, tokens: int, ok: int, count: int, ttft_sum: float) -> str:
    return _PAGE.format(running=running, tokens=tokens, ok=ok, count=count, ttft_sum=ttft_sum)


def test_gauges_rates_and_histogram_means() -> None:
    scrapes = [
        parse_scrape(_page(2, 100, 9, 10, 1.0), at=100.0),
        parse_scrape(_page(4, 300, 19, 20, 1.5), at=102.0),
    ]
    assert scrapes[0].samples["llamacert_requests_total"] == 10  # summed over routes and statuses
    series = {item.name: item for item in server_series(scrapes, origin=99.0)}
    assert series["running requests"].t == [1.0, 3.0] and series["running requests"].values == [2.0, 4.0]
    assert series["generated tokens/s"].values == [pytest.approx(100.0)] and series["generated tokens/s"].t == [2.0]
    assert series["requests answered/s"].values == [pytest.approx(5.0)]
    # 10 requests between the scrapes took 0.5 s in all: 50 ms each
    assert series["server TTFT (mean)"].values == [pytest.approx(50.0)]
    assert "waiting requests" not in series


def test_vllm_names_are_known() -> None:
    text = '# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name="m"} 3\n'
    [series] = server_series([parse_scrape(text, at=5.0)], origin=0.0)
    assert (series.name, series.source, series.values) == ("waiting requests", "vllm:num_requests_waiting", [3.0])


def _scraper_against(handler: httpx.MockTransport) -> tuple[Scraper, bool]:
    scraper = Scraper("http://endpoint/metrics")
    with httpx.Client(transport=handler) as client:
        keep_going = scraper.scrape_once(client)
    return scraper, keep_going


def test_an_endpoint_without_metrics_is_noted_and_not_asked_again() -> None:
    scraper, keep_going = _scraper_against(httpx.MockTransport(lambda request: httpx.Response(404)))
    assert not keep_going and scraper.note == "http://endpoint/metrics answered 404: no server-side series"
    assert scraper.result(0.0).series == []


def test_a_page_that_is_not_prometheus_text_is_noted() -> None:
    scraper, keep_going = _scraper_against(
        httpx.MockTransport(lambda request: httpx.Response(200, text="<html>{not metrics}</html>"))
    )
    assert not keep_going and scraper.note is not None and "not in the Prometheus text format" in scraper.note
