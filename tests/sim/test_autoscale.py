"""Autoscaling in the simulator: pods join the balancers when ready, and a slow HPA meets naive retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from otlp_lab import Lab
from otlp_lab.errors import ScenarioError
from otlp_lab.sim import (
    Burst,
    Call,
    Constant,
    Endpoint,
    Exponential,
    OpenLoop,
    Policy,
    Scenario,
    Service,
    run,
    timelines,
)
from otlp_lab.viz import recovery_table

DATA = Path(__file__).resolve().parents[1] / "data" / "hpa"
STARTUP_S = 45.0
SPIKE = (20.0, 5.0)  # start, duration
BUDGET = {"storm": {"budget": {"budget_percent": 20, "min_retry_concurrency": 3}}}


def fleet(**autoscaler) -> Scenario:
    """gateway -> api (1 pod of 4 workers, 20 ms: 200 req/s) at 75 req/s, a 5 s spike to 250 req/s.

    The gateway retries timed-out attempts (250 ms, 4 attempts) and api works on abandoned ones:
    the spike tips it into a retry storm. The HPA (CPU at 60 %) reacts at its next sync, and the
    new pod needs 45 s to become ready.
    """
    hpa = {"min_replicas": 1, "max_replicas": 6, "metrics": [{"kind": "cpu", "target": 0.6}]}
    hpa.update(pod_startup_s=STARTUP_S, **autoscaler)
    return Scenario(
        "hpa_storm",
        duration_s=95,
        network_latency_s=0.0005,
        policies={
            "storm": Policy(
                retry={
                    "max_attempts": 4,
                    "per_try_timeout_s": 0.25,
                    "initial_backoff_s": 0.01,
                    "max_backoff_s": 0.1,
                    "jitter": "full",
                    "retryable_status_codes": ["UNAVAILABLE", "DEADLINE_EXCEEDED"],
                }
            ),
            "edge": Policy(2.0),
        },
        services=[
            Service(
                "gateway",
                concurrency=1024,
                service_time=Constant(0.001),
                endpoints=(Endpoint("proxy", calls=(Call("api/query", policy="storm"),)),),
            ),
            Service(
                "api",
                instances=1,
                concurrency=4,
                service_time=Exponential(0.02),
                endpoints=(Endpoint("query"),),
                autoscaler=hpa,
            ),
        ],
        workloads=[OpenLoop("gateway/proxy", policy="edge", rate=Burst(75, 250, *SPIKE))],
    )


def test_slow_autoscaler_and_naive_retries_turn_a_spike_into_a_long_outage() -> None:
    runs = {
        "naive retries": run(fleet(), seed=1, label="naive retries"),
        "retry budget": run(fleet(), seed=1, policy_overrides=BUDGET, label="retry budget"),
    }
    end = SPIKE[0] + SPIKE[1]
    rec = {
        p: r
        for p, r in recovery_table(timelines(runs), before_s=SPIKE[0], after_s=end)
        .select("policy", "recovery_s")
        .iter_rows()
    }
    naive = runs["naive retries"].scaling()
    # the HPA saw the saturated CPU at its first sync after the spike and asked for a second pod...
    up = naive.filter(reason="ScaleUp").row(0, named=True)
    assert up["t_s"] == 30.0 and up["desired"] == 2
    ready_at = naive.filter(reason="ready")["t_s"].min()
    assert ready_at == up["t_s"] + STARTUP_S
    # ...but with naive retries the fleet stays down until that pod is ready: a 5 s spike, a 50 s outage
    assert rec["naive retries"] is not None and rec["naive retries"] >= ready_at - end - 1
    # a retry budget keeps the same spike a blip, whatever the autoscaler does
    assert rec["retry budget"] is not None and rec["retry budget"] <= 6
    assert runs["retry budget"].goodput_rps > 1.5 * runs["naive retries"].goodput_rps


def test_pods_join_the_balancers_when_ready_and_the_run_records_it(lab: Lab) -> None:
    r = run(fleet(), lab=lab, seed=2, policy_overrides=BUDGET, duration_s=80, label="budget")
    ready_at = r.scaling().filter(reason="ready")["t_s"].min()
    first = lab.sql(
        "SELECT min(epoch(start_time) - epoch(TIMESTAMP '2025-01-01')) AS t FROM spans "
        "WHERE kind = 'SERVER' AND resource_attributes['service.instance.id']::VARCHAR = 'api-1'"
    ).item()
    assert first is not None and ready_at <= first < ready_at + 1
    logs = lab.sql("SELECT body FROM logs WHERE event_name = 'sim.autoscaler.scale'")["body"].to_list()
    assert logs and "autoscaler api: 1 -> 2 replicas (ScaleUp; cpu 0." in logs[0]


def test_autoscaler_from_a_manifest_in_a_scenario_yaml(tmp_path: Path) -> None:
    y = tmp_path / "s.yaml"  # beside a copy of the manifest: the path is relative to the scenario file
    (tmp_path / "php-apache.yaml").write_bytes((DATA / "php-apache.yaml").read_bytes())
    y.write_text(
        """
name: hpa
duration_s: 5
services:
  api:
    instances: 2
    autoscaler: {manifest: php-apache.yaml, pod_startup_s: 20s}
workloads:
  - {kind: open, target: api, rate: 10}
"""
    )
    sc = Scenario.from_yaml(y)
    assert (
        sc.service("api").autoscaler.max_replicas == 10 and sc.service("api").autoscaler.pod_startup_s == 20
    )
    assert run(sc, seed=1).scaling()["reason"].to_list() == ["initial"]
    bad = y.read_text().replace("pod_startup_s: 20s", "warmup: 3")
    y.write_text(bad)
    with pytest.raises(ScenarioError, match=r"services\.api\.autoscaler.*'pod_startup_s' and 'name'"):
        Scenario.from_yaml(y)


def test_request_rate_metric_scales_up_at_once_and_down_after_the_window() -> None:
    from otlp_lab.sim import Steps

    sc = Scenario(
        "rps",
        duration_s=350,
        services=[
            Service(
                "api",
                instances=1,
                concurrency=8,
                service_time=Exponential(0.005),
                autoscaler={
                    "min_replicas": 1,
                    "max_replicas": 5,
                    "metrics": [{"kind": "requests", "target": 30, "name": "http_requests_per_second"}],
                    "pod_startup_s": 5,
                },
            )
        ],
        workloads=[OpenLoop("api", rate=Steps(75, ((30.0, 5.0),)))],
    )
    log = run(sc, seed=3).scaling()
    up = log.filter(reason="ScaleUp").row(0, named=True)
    assert up["t_s"] == 15.0 and up["desired"] == 3  # ceil(1 pod * ~75/s / 30/s per pod)
    assert log.filter(reason="ready")["t_s"].to_list()[:2] == [20.0, 20.0]
    down = log.filter(reason="ScaleDown").row(0, named=True)
    # the last recommendation of 3 came at t = 30 (new pods not yet counted): it holds them for 300 s
    assert down["t_s"] == 30.0 + 300.0 and down["desired"] == 1 and down["ready"] == 1
