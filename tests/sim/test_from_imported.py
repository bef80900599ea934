"""From a real config file to a simulation: Policy.from_imported."""

from __future__ import annotations

from pathlib import Path

import pytest

from otlp_lab.errors import ConfigError
from otlp_lab.resilience import EXAMPLES_DIR, import_yaml
from otlp_lab.sim import Policy, run

CONFIGS = Path(__file__).parents[1] / "data" / "configs"


def test_policy_from_imported_carries_the_istio_settings_into_a_run() -> None:
    imported = import_yaml(EXAMPLES_DIR / "istio-reviews.yaml")
    pol = Policy.from_imported(imported)
    assert isinstance(pol, Policy)
    assert pol.timeout_s == 3.0
    assert pol.retry == imported.retry and pol.retry.max_attempts == 4
    assert pol.balancer.policy == "least_request"
    assert pol.outlier_detection.consecutive_gateway_failure == 3
    pool = pol.connection_pool  # the sidecar's circuit breakers, enforced in the run
    assert (pool.max_connections, pool.max_pending_requests, pool.max_requests, pool.max_retries) == (
        100,
        64,
        256,
        8,
    )
    assert pol.bulkhead is None and pol.budget is None and pol.breaker is None
    assert Policy.from_imported(imported, timeout_s=1.0).timeout_s == 1.0
    r = run("slow_instance", policy_overrides={"backend": pol}, seed=1, duration_s=6, label="istio")
    assert r.label == "istio" and r.requests > 500 and r.error_rate < 0.05


def test_policy_from_imported_envoy_budget_and_health_checks() -> None:
    pol = Policy.from_imported(import_yaml(EXAMPLES_DIR / "envoy-cart-cluster.yaml"))
    assert pol.budget == {"budget_percent": 20.0, "min_retry_concurrency": 3}
    assert pol.connection_pool.max_retries == 3
    assert pol.health_check.interval_s == 5.0
    assert pol.balancer.panic_threshold_percent == 50.0
    with pytest.raises(ConfigError, match="ImportedPolicies"):
        Policy.from_imported({"retry": None})


def test_from_imported_takes_a_file_and_a_name():
    pol = Policy.from_imported(f"{CONFIGS / 'istio' / 'circuit-breaking-httpbin.yaml'}#httpbin")
    pool = pol.connection_pool
    assert (pool.max_connections, pool.max_pending_requests, pool.max_requests_per_connection) == (1, 1, 1)
    # deprecated consecutiveErrors, mapped as Istio maps it: gateway errors only
    od = pol.outlier_detection
    assert (od.consecutive_gateway_failure, od.enforcing_consecutive_gateway_failure) == (1, 100.0)
    assert od.enforcing_consecutive_5xx == 0.0
    grpc = Policy.from_imported(CONFIGS / "grpc" / "hedging_service_config.json")
    assert grpc.retry.hedging_delay_s == 1.0 and grpc.throttle == {"max_tokens": 10.0, "token_ratio": 0.1}


def test_istio_task_file_simulates_with_its_circuit_breakers():
    # the Istio task's own DestinationRule, read from the file, reproduces the task's 503s
    from otlp_lab.sim import ClosedLoop, Exponential, Scenario, Service

    pol = Policy.from_imported(CONFIGS / "istio" / "circuit-breaking-httpbin.yaml").replace(retry=None)

    def share(clients: int) -> float:
        sc = Scenario(
            "cb",
            services=(Service("httpbin", concurrency=64, service_time=Exponential(0.002)),),
            workloads=(
                ClosedLoop(target="httpbin", users=clients, think_time=Exponential(0.0005), policy="dr"),
            ),
            policies={"dr": pol},
            duration_s=3.0,
            network_latency_s=0.0005,
        )
        r = run(sc, seed=2)
        return 1 - r.succeeded / r.completed

    assert share(1) < 0.01 < 0.2 < share(2) < share(3)


def test_with_imported_routes_calls_to_a_service_and_turns_an_abort_into_a_fault():
    from otlp_lab.sim import Errors, with_imported

    sc, imported, notes = with_imported(
        "slow_instance", {"backend": f"{CONFIGS / 'istio' / 'circuit-breaking-httpbin.yaml'}"}
    )
    calls = [c for s in sc.services for e in s.endpoints for c in e.calls if c.to.startswith("backend")]
    assert calls and all(c.policy == "imported:backend" for c in calls)
    assert sc.policies["imported:backend"].connection_pool.max_connections == 1
    abort = f"{CONFIGS / 'istio' / 'virtual-service-ratings-test-abort.yaml'}#ratings/v1@http[0]"
    sc, _, notes = with_imported("slow_instance", {"backend": abort})
    assert Errors(service="backend", error_rate=1.0, status=500, before_work=True) in sc.faults
    assert "abort 100% with 500" in notes[0]
    delay = f"{CONFIGS / 'istio' / 'virtual-service-ratings-test-delay.yaml'}#ratings/v1@http[0]"
    _, _, notes = with_imported("slow_instance", {"backend": delay})
    assert "delay 7s on 100% is not simulated" in notes[0]
