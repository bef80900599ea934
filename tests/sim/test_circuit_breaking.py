"""Envoy circuit breakers enforced in the simulator: the shape of Istio's circuit-breaking task.

Istio's task (tasks/traffic-management/circuit-breaking) sets ``maxConnections: 1``,
``http1MaxPendingRequests: 1``, ``maxRequestsPerConnection: 1`` on httpbin and loads it with
fortio: one client gets (almost) no 503s; two and three concurrent clients get a clear and
growing share of 503s, each flagged ``UO`` by the client's sidecar
(``upstream_rq_pending_overflow``).
"""

from __future__ import annotations

from otlp_lab import Lab
from otlp_lab.sim import ClosedLoop, Errors, Exponential, Policy, Scenario, Service, run

TASK_POOL = {"max_connections": 1, "max_pending_requests": 1, "max_requests_per_connection": 1}


def fortio(clients: int, policy: Policy, *, duration_s: float = 4.0) -> Scenario:
    return Scenario(
        "circuit_breaking",
        services=(Service("httpbin", concurrency=64, service_time=Exponential(0.002)),),
        workloads=(
            ClosedLoop(
                target="httpbin", users=clients, think_time=Exponential(0.0005), client="fortio", policy="dr"
            ),
        ),
        policies={"dr": policy},
        duration_s=duration_s,
        network_latency_s=0.0005,
    )


def share_503(clients: int, policy: Policy) -> tuple[float, int]:
    r = run(fortio(clients, policy), seed=7)
    row = r.per_service.row(0, named=True)
    return 1.0 - r.succeeded / r.completed, row["overflows"]


def test_istio_circuit_breaking_task_shape():
    policy = Policy(retry=None, connection_pool=TASK_POOL)
    one, uo1 = share_503(1, policy)
    two, uo2 = share_503(2, policy)
    three, uo3 = share_503(3, policy)
    assert one < 0.01 and uo1 == 0
    assert two > 0.2 and three > two + 0.1  # a clear share, growing with concurrency
    assert uo2 > 0 and uo3 > uo2
    # the same load without the pool limits: no 503 at all
    free, _ = share_503(3, Policy(retry=None))
    assert free == 0.0


def test_keep_alive_without_pending_overflow_at_two_clients():
    # with keep-alive and one pending slot, two clients fit: one in flight, one waiting (only while the
    # first connection is being made can the second request find the pending slot taken)
    two, uo = share_503(
        2, Policy(retry=None, connection_pool={"max_connections": 1, "max_pending_requests": 1})
    )
    assert two < 0.002 and uo <= 2


def test_overflow_is_a_local_503_with_the_uo_flag_on_the_span_and_never_reaches_the_host():
    lab = Lab()
    r = run(fortio(3, Policy(retry=None, connection_pool=TASK_POOL), duration_s=1.0), lab=lab, seed=3)
    flagged = lab.sql(
        "SELECT count(*) AS n, min(status_message) AS status, max(duration_ns) AS dur FROM spans "
        "WHERE kind = 'CLIENT' AND attributes['envoy.response_flags']::VARCHAR = 'UO'"
    ).row(0, named=True)
    assert flagged["n"] == r.per_service["overflows"][0] > 0
    assert flagged["status"] == "503" and flagged["dur"] == 0  # answered at once
    counts = lab.sql("SELECT kind, count(*) AS n FROM spans GROUP BY kind").rows_by_key("kind")
    assert counts["SERVER"][0][0] == counts["CLIENT"][0][0] - flagged["n"]  # the host never saw them


def test_max_retries_caps_retries_in_flight():
    # every attempt fails; with max_retries=0 no retry is sent and the first answer stands (Envoy's
    # upstream_rq_retry_overflow), where the same policy without the cap retries
    def scenario(pool: dict) -> Scenario:
        retry = {"max_attempts": 3, "initial_backoff_s": 0.001, "retryable_status_codes": ["UNAVAILABLE"]}
        return Scenario(
            "retries",
            services=(Service("api", concurrency=8, service_time=Exponential(0.002)),),
            workloads=(ClosedLoop(target="api", users=4, think_time=Exponential(0.01), policy="p"),),
            faults=(Errors(service="api", error_rate=1.0, at_s=0.0),),
            policies={"p": Policy(retry=retry, connection_pool=pool)},
            duration_s=1.0,
        )

    capped = run(scenario({"max_retries": 0}), seed=1).per_service.row(0, named=True)
    assert capped["retries"] == 0 and capped["retry_overflows"] > 0
    free = run(scenario({"max_retries": 100}), seed=1).per_service.row(0, named=True)
    assert free["retries"] > 0 and free["retry_overflows"] == 0
