"""Outlier detection (Envoy timeline and defaults) and active health checking."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otlp_lab.errors import ConfigError
from otlp_lab.resilience import (
    EjectionType,
    HealthCheckConfig,
    HealthChecker,
    HealthState,
    Outcome,
    OutlierAction,
    OutlierDetectionConfig,
    OutlierDetector,
    http_status_of,
)

HOSTS = [f"h{i}" for i in range(10)]


def fail(od: OutlierDetector, host: str, at_s: float, n: int = 5, status: object = 500) -> list:
    return [e for _ in range(n) for e in od.record(host, at_s, status)]


def run_ticks(od: OutlierDetector, until_s: float) -> list:
    """Tick at every due interval up to ``until_s``, as a driver would."""
    events = []
    while od.next_tick_at_s <= until_s:
        events += od.tick(od.next_tick_at_s)
    return events


# --------------------------------------------------------------------------------------------
# Outlier detection
# --------------------------------------------------------------------------------------------


def test_envoy_defaults():
    cfg = OutlierDetectionConfig()
    assert (cfg.consecutive_5xx, cfg.interval_s, cfg.base_ejection_time_s, cfg.max_ejection_percent) == (
        5,
        10.0,
        30.0,
        10.0,
    )
    assert (cfg.enforcing_consecutive_5xx, cfg.enforcing_consecutive_gateway_failure) == (100.0, 0.0)
    assert (
        cfg.success_rate_minimum_hosts,
        cfg.success_rate_request_volume,
        cfg.success_rate_stdev_factor,
    ) == (5, 100, 1900)
    assert cfg.effective_max_ejection_time_s == 300.0


def test_ejection_timeline_30s_then_60s_with_envoy_defaults():
    od = OutlierDetector(endpoint_ids=HOSTS)  # first sweep at t=10, then every 10 s
    assert run_ticks(od, 10.0) == []
    assert fail(od, "h0", 10.0, n=4) == []  # 4 consecutive 5xx: not yet
    [event] = od.record("h0", 10.0, 500)
    assert (event.action, event.ejection_type, event.enforced, event.duration_s) == (
        OutlierAction.EJECT,
        EjectionType.CONSECUTIVE_5XX,
        True,
        30.0,
    )
    assert od.is_ejected("h0") and od.ejected_ids == {"h0"}
    assert run_ticks(od, 30.0) == []  # sweeps at 20 and 30: only 10 s and 20 s out
    [back] = run_ticks(od, 40.0)
    assert (back.at_s, back.action, back.duration_s) == (40.0, OutlierAction.UNEJECT, 30.0)
    # Ejected again before the multiplier decays: 2 x 30 s.
    [event] = fail(od, "h0", 40.0)
    assert (event.num_ejections, event.duration_s) == (2, 60.0)
    assert od.ejection_multiplier("h0") == 2
    assert run_ticks(od, 90.0) == []
    [back] = run_ticks(od, 100.0)
    assert (back.at_s, back.duration_s) == (100.0, 60.0)


def test_unejection_waits_for_the_sweep_grid():
    od = OutlierDetector(endpoint_ids=HOSTS)
    fail(od, "h0", 5.0)  # ejected between sweeps
    events = run_ticks(od, 40.0)  # 35 s after ejection is the first sweep with 30 s passed
    assert [(e.at_s, e.duration_s) for e in events] == [(40.0, 35.0)]


def test_multiplier_decays_while_the_host_stays_healthy():
    od = OutlierDetector(endpoint_ids=HOSTS)
    fail(od, "h0", 10.0)
    run_ticks(od, 40.0)  # un-ejected at 40
    run_ticks(od, 50.0)  # healthy for one full interval: multiplier 1 -> 0
    assert od.ejection_multiplier("h0") == 0
    [event] = fail(od, "h0", 55.0)
    assert event.duration_s == 30.0


def test_ejection_time_is_capped_by_max_ejection_time():
    od = OutlierDetector(OutlierDetectionConfig(max_ejection_time_s=70.0), endpoint_ids=HOSTS)
    durations = []
    for _ in range(4):
        [event] = fail(od, "h0", od.next_tick_at_s - 10.0)
        durations.append(event.duration_s)
        while od.is_ejected("h0"):
            od.tick(od.next_tick_at_s)
    assert durations == [30.0, 60.0, 70.0, 70.0]


def test_ejection_jitter_comes_from_the_injected_rng():
    cfg = OutlierDetectionConfig(max_ejection_time_jitter_s=5.0)
    durations = {
        fail(OutlierDetector(cfg, endpoint_ids=HOSTS, rng=random.Random(s)), "h0", 1.0)[0].duration_s
        for s in range(8)
    }
    assert all(30.0 <= d <= 35.0 for d in durations) and len(durations) > 1
    again = fail(OutlierDetector(cfg, endpoint_ids=HOSTS, rng=random.Random(3)), "h0", 1.0)[0].duration_s
    assert (
        again == fail(OutlierDetector(cfg, endpoint_ids=HOSTS, rng=random.Random(3)), "h0", 1.0)[0].duration_s
    )


def test_max_ejection_percent_is_respected():
    od = OutlierDetector(endpoint_ids=HOSTS)  # 10 hosts, 10 %: one ejection at a time
    assert len(fail(od, "h0", 1.0)) == 1
    assert fail(od, "h1", 1.0) == []
    assert od.ejected_ids == {"h0"} and od.stats["ejections_overflow"] == 1
    od = OutlierDetector(OutlierDetectionConfig(max_ejection_percent=30), endpoint_ids=HOSTS)
    for host in HOSTS[:5]:
        fail(od, host, 1.0)
    assert od.ejected_ids == {"h0", "h1", "h2"}


def test_small_clusters_need_always_eject_one_host():
    few = ["a", "b", "c"]
    od = OutlierDetector(endpoint_ids=few)  # 1/3 = 33 % > 10 %: Envoy ejects nothing
    assert fail(od, "a", 1.0) == [] and od.stats["ejections_overflow"] == 1
    od = OutlierDetector(OutlierDetectionConfig(always_eject_one_host=True), endpoint_ids=few)
    assert len(fail(od, "a", 1.0)) == 1
    assert fail(od, "b", 1.0) == []


def test_a_success_resets_the_consecutive_count():
    od = OutlierDetector(endpoint_ids=HOSTS)
    fail(od, "h0", 1.0, n=4)
    od.record("h0", 1.0, 200)
    assert fail(od, "h0", 1.0, n=4) == [] and not od.is_ejected("h0")


def test_gateway_failures_are_detected_but_not_enforced_by_default():
    od = OutlierDetector(OutlierDetectionConfig(consecutive_gateway_failure=3), endpoint_ids=HOSTS)
    [detected] = fail(od, "h0", 1.0, n=3, status=503)
    assert (detected.ejection_type, detected.enforced) == (EjectionType.CONSECUTIVE_GATEWAY_FAILURE, False)
    assert not od.is_ejected("h0")
    [ejected] = fail(od, "h0", 1.0, n=2, status=503)  # the 5th 5xx
    assert ejected.ejection_type is EjectionType.CONSECUTIVE_5XX and ejected.enforced
    cfg = OutlierDetectionConfig(consecutive_gateway_failure=3, enforcing_consecutive_gateway_failure=100)
    od = OutlierDetector(cfg, endpoint_ids=HOSTS)
    [ejected] = fail(od, "h0", 1.0, n=3, status="UNAVAILABLE")
    assert ejected.enforced and od.is_ejected("h0")


def test_enforcement_is_a_seeded_roll():
    cfg = OutlierDetectionConfig(enforcing_consecutive_5xx=50, max_ejection_percent=100)
    hosts = [f"h{i}" for i in range(400)]
    od = OutlierDetector(cfg, endpoint_ids=hosts, rng=random.Random(11))
    enforced = [e.enforced for h in hosts for e in fail(od, h, 1.0)]
    assert len(enforced) == 400 and 160 < sum(enforced) < 240
    od2 = OutlierDetector(cfg, endpoint_ids=hosts, rng=random.Random(11))
    assert enforced == [e.enforced for h in hosts for e in fail(od2, h, 1.0)]


def traffic(od: OutlierDetector, at_s: float, success_percent: dict[str, int], volume: int = 200) -> None:
    """``volume`` responses per host with the failures spread evenly (Bresenham)."""
    for host, percent in success_percent.items():
        failing = 100 - percent
        for k in range(volume):
            od.record(host, at_s, 500 if (k + 1) * failing // 100 > k * failing // 100 else 200)


def test_success_rate_ejection_uses_the_last_interval():
    cfg = OutlierDetectionConfig(max_ejection_percent=50, consecutive_5xx=0)
    od = OutlierDetector(cfg, endpoint_ids=[f"h{i}" for i in range(6)])
    rates = {f"h{i}": 100 for i in range(5)} | {"h5": 50}
    traffic(od, 5.0, rates)
    [event] = od.tick(10.0)  # mean 91.7, stdev 18.6: threshold 56.3 > 50
    assert (event.endpoint_id, event.ejection_type) == ("h5", EjectionType.SUCCESS_RATE)
    assert od.tick(20.0) == []  # nothing recorded in (10, 20]


def test_success_rate_needs_volume_and_enough_hosts():
    cfg = OutlierDetectionConfig(max_ejection_percent=50, consecutive_5xx=0)
    od = OutlierDetector(cfg, endpoint_ids=[f"h{i}" for i in range(6)])
    traffic(od, 5.0, {f"h{i}": 100 for i in range(5)} | {"h5": 50}, volume=99)
    assert od.tick(10.0) == []
    od = OutlierDetector(cfg, endpoint_ids=[f"h{i}" for i in range(4)])
    traffic(od, 5.0, {"h0": 100, "h1": 100, "h2": 100, "h3": 10})
    assert od.tick(10.0) == []


def test_failure_percentage_ejection_when_enforced():
    cfg = OutlierDetectionConfig(
        max_ejection_percent=50, consecutive_5xx=0, enforcing_success_rate=0, enforcing_failure_percentage=100
    )
    od = OutlierDetector(cfg, endpoint_ids=[f"h{i}" for i in range(5)])
    traffic(od, 5.0, {"h0": 100, "h1": 100, "h2": 95, "h3": 100, "h4": 10}, volume=60)
    [event] = od.tick(10.0)
    assert (event.endpoint_id, event.ejection_type) == ("h4", EjectionType.FAILURE_PERCENTAGE)


def test_active_health_check_success_unejects():
    od = OutlierDetector(endpoint_ids=HOSTS)
    fail(od, "h0", 1.0)
    assert od.on_active_health_check("h0", 3.0, healthy=False) == []
    [event] = od.on_active_health_check("h0", 4.0, healthy=True)
    assert event.action is OutlierAction.UNEJECT and not od.is_ejected("h0")


def test_outcomes_map_like_envoy():
    assert [
        http_status_of(s) for s in (200, 503, "UNAVAILABLE", "deadline_exceeded", "INTERNAL", True, False)
    ] == [200, 503, 503, 504, 500, 200, 503]
    assert http_status_of(Outcome.success()) == 200
    assert http_status_of(Outcome.failure("RESOURCE_EXHAUSTED")) == 429
    assert http_status_of(Outcome.failure("CIRCUIT_OPEN", local=True)) is None  # never sent: not counted
    with pytest.raises(ConfigError):
        http_status_of("SLOW")
    od = OutlierDetector(endpoint_ids=HOSTS)
    assert fail(od, "h0", 1.0, status=Outcome.failure("CIRCUIT_OPEN", local=True)) == []


def test_outlier_config_validation_and_membership():
    with pytest.raises(ConfigError, match="max_ejection_time_s"):
        OutlierDetectionConfig(base_ejection_time_s=60, max_ejection_time_s=30)
    with pytest.raises(ConfigError, match="max_ejection_percent"):
        OutlierDetectionConfig(max_ejection_percent=120)
    assert (
        OutlierDetectionConfig.from_dict(
            {"interval_s": "5s", "base_ejection_time_s": "1m"}
        ).base_ejection_time_s
        == 60
    )
    od = OutlierDetector(endpoint_ids=["a"])
    with pytest.raises(ConfigError, match="does not watch endpoint 'b'"):
        od.record("b", 0.0, 500)
    with pytest.raises(ConfigError, match="already watches"):
        od.add("a")


# --------------------------------------------------------------------------------------------
# Active health checks
# --------------------------------------------------------------------------------------------


def test_health_thresholds():
    seen = []
    hc = HealthChecker(HealthCheckConfig(unhealthy_threshold=3, healthy_threshold=2), listener=seen.append)
    hc.add("a", 0.0, healthy=True)
    assert [hc.record("a", t, "timeout").state for t in (1.0, 2.0)] == [HealthState.HEALTHY] * 2
    result = hc.record("a", 3.0, "network_failure")
    assert (result.state, result.changed) == (HealthState.UNHEALTHY, True)
    assert hc.record("a", 4.0, "success").state is HealthState.UNHEALTHY
    assert hc.record("a", 5.0, "success").state is HealthState.HEALTHY
    assert [(t.at_s, t.to_state) for t in seen] == [(3.0, HealthState.UNHEALTHY), (5.0, HealthState.HEALTHY)]
    assert hc.transitions == seen


def test_a_failing_answer_is_unhealthy_at_once():
    hc = HealthChecker(HealthCheckConfig(unhealthy_threshold=3))
    hc.add("a", 0.0, healthy=True)
    assert hc.record("a", 1.0, "failure").state is HealthState.UNHEALTHY
    hc.add("b", 0.0, healthy=True)
    assert hc.record("b", 1.0, "retriable_failure").state is HealthState.HEALTHY


def test_new_endpoints_are_pending_until_the_first_check():
    hc = HealthChecker(HealthCheckConfig(healthy_threshold=3))
    hc.add("a", 0.0)
    hc.add("b", 0.0)
    assert hc.state("a") is HealthState.PENDING and not hc.is_healthy("a")
    assert hc.record("a", 0.1, "success").state is HealthState.HEALTHY  # one success at startup
    assert hc.record("b", 0.1, "timeout").state is HealthState.UNHEALTHY
    assert [hc.record("b", t, "success").state for t in (1.0, 2.0, 3.0)] == [
        HealthState.UNHEALTHY,
        HealthState.UNHEALTHY,
        HealthState.HEALTHY,
    ]
    assert hc.is_healthy("unknown") and not hc.is_healthy("unknown", default=False)


def test_next_probe_intervals_follow_envoy():
    cfg = HealthCheckConfig(
        interval_s=5,
        unhealthy_interval_s=20,
        unhealthy_edge_interval_s=1,
        healthy_edge_interval_s=2,
        unhealthy_threshold=2,
        healthy_threshold=2,
    )
    hc = HealthChecker(cfg)
    hc.add("a", 0.0, healthy=True)
    assert hc.record("a", 10.0, "success").next_probe_at_s == 15.0  # healthy: interval
    assert hc.record("a", 15.0, "timeout").next_probe_at_s == 16.0  # failing, not yet unhealthy: edge
    assert hc.record("a", 16.0, "timeout").next_probe_at_s == 36.0  # unhealthy: unhealthy interval
    assert hc.record("a", 36.0, "success").next_probe_at_s == 38.0  # recovering: healthy edge
    assert hc.record("a", 38.0, "success").next_probe_at_s == 43.0  # healthy again: interval


def test_probe_scheduling_and_timeouts():
    hc = HealthChecker(HealthCheckConfig(interval_s=5, timeout_s=1, unhealthy_threshold=1))
    assert hc.add("a", 0.0, healthy=True) == 0.0
    hc.add("b", 0.0, healthy=True)
    assert hc.due(0.0) == ["a", "b"]
    assert hc.start_probe("a", 0.0) == 1.0
    assert hc.due(0.0) == ["b"] and hc.next_probe_at("a") == float("inf")
    hc.record("b", 0.2, "success", latency_s=0.2)
    assert hc.next_due_s() == 1.0  # a's probe times out then
    [timed_out] = hc.expire(1.0)
    assert (timed_out.endpoint_id, timed_out.state, timed_out.next_probe_at_s) == (
        "a",
        HealthState.UNHEALTHY,
        6.0,
    )
    assert hc.record("b", 5.5, "success", latency_s=1.5).state is HealthState.UNHEALTHY  # too slow = timeout


def test_health_jitter_is_seeded_and_bounded():
    cfg = HealthCheckConfig(
        interval_s=10, interval_jitter_s=2, interval_jitter_percent=10, initial_jitter_s=3
    )
    first = []
    for seed in (1, 1, 2):
        hc = HealthChecker(cfg, rng=random.Random(seed))
        start = hc.add("a", 0.0, healthy=True)
        nxt = hc.record("a", start, "success").next_probe_at_s - start
        assert 0 <= start < 3 and 10 <= nxt < 13
        first.append((start, nxt))
    assert first[0] == first[1] != first[2]


def test_health_checker_validation():
    with pytest.raises(ConfigError, match="interval_s"):
        HealthCheckConfig(interval_s=0)
    with pytest.raises(ConfigError, match="unhealthy_threshold"):
        HealthCheckConfig(unhealthy_threshold=0)
    hc = HealthChecker()
    with pytest.raises(ConfigError, match="does not check endpoint"):
        hc.record("a", 0.0, "success")
    hc.add("a", 0.0)
    with pytest.raises(ConfigError, match="outcome must be one of"):
        hc.record("a", 0.0, "ok")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="already checks"):
        hc.add("a", 0.0)
    hc.remove("a")
    assert hc.endpoint_ids == ()


OUTCOMES = st.sampled_from(["success", "failure", "retriable_failure", "timeout", "network_failure"])


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(OUTCOMES, max_size=40),
    unhealthy=st.integers(min_value=1, max_value=4),
    healthy=st.integers(min_value=1, max_value=4),
)
def test_health_state_machine_matches_a_reference_model(outcomes, unhealthy, healthy):
    hc = HealthChecker(HealthCheckConfig(unhealthy_threshold=unhealthy, healthy_threshold=healthy))
    hc.add("a", 0.0)
    state, fails, oks = "pending", 0, 0
    for t, outcome in enumerate(outcomes):
        if outcome == "success":
            fails = 0
            if state == "pending":
                state = "healthy"
            elif state == "unhealthy":
                oks += 1
                if oks == healthy:
                    state, oks = "healthy", 0
        else:
            oks = 0
            if state == "pending":
                state = "unhealthy"
            elif state == "healthy":
                fails += 1
                if outcome == "failure" or fails == unhealthy:
                    state, fails = "unhealthy", 0
        result = hc.record("a", float(t), outcome)
        assert result.state.value == state
        assert result.next_probe_at_s == t + 5.0
    changes = [tr.to_state.value for tr in hc.transitions]
    assert all(a != b for a, b in zip(changes, changes[1:], strict=False))  # transitions alternate
