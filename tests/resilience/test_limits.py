"""Bulkhead (Envoy thresholds), token bucket, load shedder and deadlines."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otlp_lab.errors import ConfigError, RejectedError, ResilienceError
from otlp_lab.resilience import (
    Bulkhead,
    Deadline,
    LoadShedder,
    LoadShedderConfig,
    TokenBucket,
    current_deadline,
    deadline_scope,
)


def test_bulkhead_counts_each_kind_independently():
    b = Bulkhead(max_connections=1, max_pending_requests=0, max_requests=2, max_retries=1)
    assert [b.try_acquire("requests") for _ in range(3)] == [True, True, False]
    assert b.try_acquire("retries") and not b.try_acquire("retries")
    assert not b.try_acquire("pending_requests")
    assert b.try_acquire("connections")
    assert b.rejected == {"connections": 0, "pending_requests": 1, "requests": 1, "retries": 1}
    b.release("requests")
    assert b.remaining("requests") == 1 and b.try_acquire("requests")
    err = b.overflow_error("requests")
    assert isinstance(err, RejectedError) and err.policy == "bulkhead" and "max_requests=2" in str(err)


def test_bulkhead_misuse_is_loud():
    b = Bulkhead()
    with pytest.raises(ResilienceError, match="without a matching try_acquire"):
        b.release("retries")
    with pytest.raises(ConfigError, match="kind must be one of"):
        b.try_acquire("sockets")
    with pytest.raises(ConfigError, match="max_requests must be an integer >= 0"):
        Bulkhead(max_requests=-1)


def test_bulkhead_from_envoy_cluster_config():
    cb = {
        "thresholds": [
            {"priority": "HIGH", "max_requests": 9},
            {
                "max_connections": 10,
                "max_pending_requests": 5,
                "max_requests": 20,
                "max_retries": 2,
                "max_connection_pools": 7,
            },
        ]
    }
    assert Bulkhead.from_envoy(cb).limits == {
        "connections": 10,
        "pending_requests": 5,
        "requests": 20,
        "retries": 2,
    }
    assert Bulkhead.from_envoy(cb, priority="high").limits["requests"] == 9
    assert Bulkhead.from_envoy({}).limits["retries"] == 3  # Envoy defaults


def test_token_bucket_exact_sequence():
    tb = TokenBucket(rate_per_s=10.0, burst=3)
    got = [tb.try_acquire(t) for t in (0.0, 0.0, 0.0, 0.0, 0.05, 0.1, 0.1, 10.0, 10.0, 10.0, 10.0)]
    assert got == [True, True, True, False, False, True, False, True, True, True, False]
    assert tb.rejected == 4
    assert tb.wait_time_s(10.0) == pytest.approx(0.1)
    assert tb.wait_time_s(10.0, n=5) == math.inf
    assert not tb.try_acquire(9.0)  # time going backwards adds nothing
    assert tb.rejected_error().policy == "rate_limiter"


@given(
    st.lists(st.tuples(st.floats(0, 5), st.floats(0.1, 4)), max_size=100),
    st.floats(0.1, 100),
    st.floats(1, 50),
)
def test_token_bucket_never_exceeds_burst_nor_goes_negative(steps, rate, burst):
    tb = TokenBucket(rate_per_s=rate, burst=burst)
    now = 0.0
    for dt, n in steps:
        now += dt
        tb.try_acquire(now, n)
        assert 0.0 <= tb.tokens(now) <= burst


@given(st.lists(st.floats(0, 2), min_size=1, max_size=60), st.floats(0.5, 20), st.integers(1, 10))
def test_token_bucket_admits_at_most_burst_plus_rate_times_elapsed(gaps, rate, burst):
    tb = TokenBucket(rate_per_s=rate, burst=burst)
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        admitted += sum(tb.try_acquire(now) for _ in range(3))
    assert admitted <= burst + rate * now + 1e-9


def test_load_shedder_sheds_low_priority_first():
    ls = LoadShedder(LoadShedderConfig(max_in_flight=4, priority_thresholds=(1.0, 0.5)))
    admitted = [ls.admit(0.0, priority=p) for p in (1, 1, 1, 0, 0, 0, 2)]
    assert admitted == [True, True, False, True, True, False, False]
    assert ls.shed == {1: 1, 0: 1, 2: 1} and ls.in_flight == 4
    ls.on_finish(1.0, 0.2)
    assert ls.admit(1.0, priority=0)
    assert ls.shed_error(2).policy == "load_shedder"


def test_load_shedder_latency_pressure():
    ls = LoadShedder(
        LoadShedderConfig(
            max_in_flight=100, latency_target_s=0.1, latency_ewma_alpha=0.5, priority_thresholds=(1.0, 0.8)
        )
    )
    assert all(ls.admit(0.0, priority=1) for _ in range(3))
    for latency_s in (0.05, 0.2, 0.2):
        ls.on_finish(1.0, latency_s)  # EWMA 0.05 -> 0.125 -> 0.1625
    assert ls.latency_ewma_s == pytest.approx(0.1625) and ls.pressure() == pytest.approx(1.625)
    assert not ls.admit(3, priority=1) and not ls.admit(3, priority=0)
    with pytest.raises(ResilienceError):
        LoadShedder().on_finish(0.0, 0.1)
    with pytest.raises(ConfigError, match="non-increasing"):
        LoadShedderConfig(priority_thresholds=(0.5, 0.9))


def test_deadline_child_and_remaining():
    parent = Deadline.after(100.0, 2.0)
    assert parent.remaining_s(101.5) == 0.5 and parent.remaining_s(103) == 0.0
    assert parent.child(100.0, 5.0, margin_s=0.25) == Deadline(101.75)
    assert parent.child(100.0, 0.5) == Deadline(100.5)
    assert Deadline().child(0.0, 1.0) == Deadline(1.0)
    assert not Deadline().is_set and Deadline().remaining_s(1e9) == math.inf
    assert min(Deadline(5.0), Deadline(3.0)) == Deadline(3.0)
    with pytest.raises(ConfigError):
        Deadline.after(0.0, -1.0)


@pytest.mark.parametrize(
    ("remaining", "header"),
    [(0.25, "250000u"), (2.0, "2000000u"), (3600.0, "3600000m"), (1e-9, "1n"), (1e8, "1666667M")],
)
def test_grpc_timeout_header_roundtrip(remaining, header):
    d = Deadline.after(0.0, remaining)
    assert d.to_grpc_timeout(0.0) == header
    assert Deadline.from_grpc_timeout(0.0, header).expires_at_s >= d.expires_at_s
    assert Deadline().to_grpc_timeout(0.0) is None
    with pytest.raises(ConfigError, match="grpc-timeout"):
        Deadline.from_grpc_timeout(0.0, "123456789S")


def test_deadline_scope_sets_the_current_deadline():
    assert not current_deadline().is_set
    with deadline_scope(Deadline(7.0)):
        assert current_deadline() == Deadline(7.0)
    assert not current_deadline().is_set
