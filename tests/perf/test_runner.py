"""perf.runner's pure parts: how a scenario and overrides become Locust users, rates and command lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from perf.runner import LOCUSTFILE, SHAPEFILE, LoadRequest, PlanError, locust_commands, plan_run
from perf.scenarios import Scenario, load_scenario
from perf.workload import LengthRange


def _request(scenario: str | Scenario, **overrides: Any) -> LoadRequest:
    loaded = load_scenario(scenario) if isinstance(scenario, str) else scenario
    return LoadRequest(endpoint="http://127.0.0.1:9", scenario=loaded, out_dir=Path("out"), **overrides)


def test_fixed_users_run_closed_loop() -> None:
    plan = plan_run(_request("throughput", users=4, duration_s=30.0))
    assert (plan.users, plan.spawn_rate, plan.run_time_s, plan.steps) == (4, 4.0, 30.0, ())
    assert plan.settings.arrival == "closed" and plan.offered_rate is None and plan.rate_limit is None


def test_poisson_divides_the_rate_among_users() -> None:
    plan = plan_run(_request("poisson", rate=8.0))
    assert plan.settings.arrival == "poisson" and plan.users == 32
    assert plan.settings.user_rate == pytest.approx(8.0 / 32) and plan.offered_rate == 8.0


def test_rate_limit_offers_a_multiple_of_the_tighter_limit() -> None:
    # 120/min allows 2 requests/s; 100,000 tokens/min at 32 tokens a request allows 52/s: RPM binds.
    plan = plan_run(_request("rate-limit"), limits=(120, 100_000))
    assert plan.offered_rate == pytest.approx(2 * 2.0)
    assert plan.rate_limit is not None and (plan.rate_limit.limit_rpm, plan.rate_limit.limit_tpm) == (120, 100_000)
    # 1,920 tokens/min at 32 tokens a request allows 1 request/s: TPM binds.
    plan = plan_run(_request("rate-limit-under"), limits=(None, 1920))
    assert plan.offered_rate == pytest.approx(0.5 * 1.0)
    assert plan.rate_limit is not None and plan.rate_limit.mode == "under"
    with pytest.raises(PlanError, match="none is known"):
        plan_run(_request("rate-limit"))


def test_user_steps_and_rate_steps() -> None:
    plan = plan_run(_request("sweep", duration_s=50.0))
    assert plan.steps == (1, 2, 4, 8, 16) and plan.users == 16
    assert plan.run_time_s == 50.0 and plan.settings.step_duration == 10.0
    rates = Scenario.model_validate(
        {"name": "rates", "users": 10, "shape": "steps", "steps": [{"rate": 1}, {"rate": 2.5}, {"rate": 5}],
         "step_arrival": "poisson"}
    )  # fmt: skip
    plan = plan_run(_request(rates))
    # 5 requests/s from 10 users: 0.5 each, so 1 and 2.5 requests/s take 2 and 5 users
    assert plan.steps == (2, 5, 10) and plan.settings.user_rate == pytest.approx(0.5)
    assert plan.settings.arrival == "poisson"


def test_rate_is_refused_for_closed_loops() -> None:
    with pytest.raises(PlanError, match="open-loop"):
        plan_run(_request("throughput", rate=3.0))


def test_overrides_reach_the_settings() -> None:
    plan = plan_run(
        _request("smoke", output_tokens=LengthRange(3, 3), honour_retry_after=False, request_timeout_s=5.0, seed=9)
    )
    settings = plan.settings
    assert settings.output_tokens == LengthRange(3, 3) and not settings.honour_retry_after
    assert settings.request_timeout == 5.0 and settings.seed == 9


def test_headless_command() -> None:
    request = _request("smoke", api_key="secret", duration_s=12.5)
    [command] = locust_commands(plan_run(request), request, csv_prefix=Path("o/locust"), records_dir=Path("o/r"))
    assert command[:5] == [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    text = " ".join(command)
    for part in ("--headless", "--only-summary", "-u 2", "--stop-after=12.5", "--csv o/locust", "--records-dir=o/r",
                 "--exit-code-on-error 0", "--stop-timeout 120", "--host http://127.0.0.1:9"):  # fmt: skip
        assert part in text
    assert "secret" not in text


def test_sweep_and_workers_and_web() -> None:
    request = _request("sweep", workers=2, web=True, web_port=8090)
    main, *workers = locust_commands(
        plan_run(request), request, csv_prefix=Path("o/locust"), records_dir=Path("o/r"), master_port=5600
    )
    assert main[4] == f"{LOCUSTFILE},{SHAPEFILE}"
    assert "-u" not in main and "--headless" not in main and "--autostart" in main and "8090" in main
    assert main[main.index("--expect-workers") + 1] == "2" and main[main.index("--master-bind-port") + 1] == "5600"
    assert len(workers) == 2
    assert workers[0][-5:] == ["--worker", "--master-host", "127.0.0.1", "--master-port", "5600"]
