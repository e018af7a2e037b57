"""Load tests of Llama API endpoints with Locust: raw per-request records, metrics from them, scenarios, baselines.

Layout: `locustfile` (users) -> `records` (JSONL) -> `metrics` (load summary) -> reports; `runner`/`cli` drive
Locust for `llamacert load`.
"""

__all__: list[str] = []
