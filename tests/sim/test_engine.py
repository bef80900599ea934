"""The engine's hot path: SimPy events per hop, and the fast SimPy driver changing no result."""

from __future__ import annotations

import polars as pl
import pytest

import otlp_lab.sim._engine as engine
from otlp_lab.sim import Scenario, run, scenario_path
from otlp_lab.sim._engine import Simulation
from tests.resilience.conftest import reference_simpy_call


def events_per_hop(sc: Scenario, *, seed: int = 1) -> float:
    """SimPy events processed over attempts sent, for a run of ``sc`` without output."""
    sim = Simulation(
        sc, seed=seed, duration_s=sc.duration_s, emitter_factory=None, run_id="test", label="test"
    )
    step, events = sim.env.step, [0]

    def counting_step() -> None:
        events[0] += 1
        step()

    sim.env.step = counting_step  # type: ignore[method-assign]
    sim.start()
    sim.run_until(sc.duration_s)
    return events[0] / sim.hops


def test_a_hop_costs_few_simpy_events() -> None:
    """shop without faults: every call goes through retry (with a per-try timeout), budget, breaker
    and P2C. A hop's own events are three (arrival, work done, answer back); processes for roots,
    endpoints that call on and parallel fan-out add the rest. With a process, an ``any_of`` and a
    leftover timeout per attempt it was 9.3."""
    sc = Scenario.from_yaml(scenario_path("shop")).replace(duration_s=10.0, warmup_s=0.0, faults=())
    assert events_per_hop(sc) < 5.5


def _frames(r) -> dict[str, object]:
    summary = r.summary()
    summary.pop("run_id")
    return {
        "summary": summary,
        "per_service": r.per_service,
        "timeline": r.timeline(),
        "breakers": r._breakers,
    }


@pytest.mark.parametrize(
    ("scenario", "duration_s", "overrides"),
    [
        ("shop", 45.0, None),  # P2C everywhere; inventory-1 crashes at 40 s
        ("retry_storm", 35.0, None),  # thousands of per-try timeouts
        # per-try timeouts on the slow instance eject it (the ejection draws from the policy rng)
        (
            "slow_instance",
            15.0,
            {"backend": {"outlier_detection": {"consecutive_5xx": 3, "interval_s": 1.0}}},
        ),
    ],
)
def test_the_fast_driver_changes_no_result(monkeypatch, scenario, duration_s, overrides) -> None:
    """The same run with the process-per-attempt loop the driver had before: the same numbers."""
    fast = _frames(run(scenario, seed=3, duration_s=duration_s, policy_overrides=overrides))
    monkeypatch.setattr(engine, "simpy_call", reference_simpy_call)
    slow = _frames(run(scenario, seed=3, duration_s=duration_s, policy_overrides=overrides))
    assert fast["summary"] == slow["summary"]
    for name in ("per_service", "timeline", "breakers"):
        assert isinstance(fast[name], pl.DataFrame) and fast[name].equals(slow[name]), name
