"""A stepped sweep as a Locust LoadTestShape: hold each user count of --steps for --step-duration seconds.

Kept out of perf/locustfile.py because Locust uses any shape class a locustfile defines; add this file to -f
(`-f perf/locustfile.py,perf/shapes.py`) to sweep. A sweep of request rates is a sweep of open-loop users,
each at a fixed --user-rate, which `llamacert load` works out from the scenario's rates.
"""

from __future__ import annotations

from locust import LoadTestShape

from perf.settings import parse_steps

__all__ = ["StepShape"]


class StepShape(LoadTestShape):
    """Users per step from --steps, each held for --step-duration; the test stops after the last step."""

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None, "Locust attaches the runner before the first tick"
        options = self.runner.environment.parsed_options
        steps = parse_steps(str(getattr(options, "steps", "") or ""))
        step_duration = float(getattr(options, "step_duration", 0) or 0)
        if not steps or step_duration <= 0:
            return None
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]  # locust leaves it unannotated
        index = int(elapsed // step_duration)
        if index >= len(steps):
            # with --stop-after the master ends the test itself, once its workers' last records are in
            return (steps[-1], float(max(steps))) if float(getattr(options, "stop_after", 0) or 0) > 0 else None
        # Reach each step within about a second, so the step's whole duration runs at its load.
        spawn_rate = max(1.0, float(max(steps)))
        return steps[index], spawn_rate
