"""Circuit breaker: resilience4j transitions, windows, half-open permits, timed transitions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otlp_lab.errors import CircuitOpenError, ConfigError
from otlp_lab.resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
    SlidingWindowType,
    Transition,
)

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


def breaker(listener=None, **kw) -> CircuitBreaker:
    defaults = dict(
        sliding_window_size=4,
        minimum_number_of_calls=4,
        failure_rate_threshold=50.0,
        wait_duration_in_open_state_s=10.0,
        permitted_number_of_calls_in_half_open_state=2,
    )
    return CircuitBreaker(CircuitBreakerConfig(**{**defaults, **kw}), listener=listener)


def trip(cb: CircuitBreaker) -> None:
    """Four failed calls at t = 0..3: OPEN at t=3 with the default helper settings."""
    for t in range(4):
        call(cb, t, False)


def call(cb: CircuitBreaker, now: float, ok: bool, duration_s: float = 0.1) -> bool:
    if not cb.try_acquire(now):
        return False
    (cb.on_success if ok else cb.on_error)(now, duration_s)
    return True


def test_full_cycle_exact_transitions_and_listener():
    heard: list[Transition] = []
    cb = breaker(listener=heard.append)
    assert [call(cb, t, ok) for t, ok in [(0, True), (1, False), (2, True)]] == [True, True, True]
    assert cb.state is CLOSED  # 3 calls < minimum_number_of_calls
    call(cb, 3, False)  # 2 of 4 failed = 50 % >= 50 %
    assert cb.state is OPEN and cb.retry_in_s(5.0) == 8.0
    assert call(cb, 12.9, True) is False and cb.not_permitted_calls == 1
    assert call(cb, 13.0, True)  # first call after the wait: HALF_OPEN, permit 1 of 2
    assert cb.state is HALF_OPEN
    call(cb, 13.5, False)  # 1 of 2 failed = 50 % -> OPEN again
    assert cb.state is OPEN
    assert call(cb, 23.5, True) and call(cb, 24.0, True)
    assert cb.state is CLOSED
    expected = [
        (3, CLOSED, OPEN),
        (13.0, OPEN, HALF_OPEN),
        (13.5, HALF_OPEN, OPEN),
        (23.5, OPEN, HALF_OPEN),
        (24.0, HALF_OPEN, CLOSED),
    ]
    assert cb.transitions == expected == heard


def test_closing_starts_a_fresh_window():
    cb = breaker()
    trip(cb)
    call(cb, 20, True), call(cb, 21, True)
    assert cb.state is CLOSED
    assert cb.metrics(21).calls == 0


def test_minimum_number_of_calls_is_capped_at_a_count_window():
    cb = breaker(sliding_window_size=3, minimum_number_of_calls=100)
    for t in range(3):
        call(cb, t, False)
    assert cb.state is OPEN


def test_count_window_forgets_old_calls():
    cb = breaker(sliding_window_size=4, minimum_number_of_calls=4, failure_rate_threshold=75.0)
    for t, ok in enumerate([False, False, True, True, True, False]):
        call(cb, t, ok)
    assert cb.state is CLOSED  # window [T, T, T, F]: 25 %
    m = cb.metrics(5)
    assert (m.calls, m.failed_calls, m.failure_rate) == (4, 1, 25.0)


def test_time_window_forgets_calls_older_than_the_window():
    cb = breaker(sliding_window_type="time_based", sliding_window_size=10, minimum_number_of_calls=3)
    assert cb.config.sliding_window_type is SlidingWindowType.TIME_BASED
    call(cb, 0.5, False), call(cb, 1.5, False)
    call(cb, 10.9, True)  # 1 s buckets 1..10: the call at 0.5 has left; 2 calls < minimum
    assert cb.state is CLOSED and cb.metrics(10.9).calls == 2
    call(cb, 10.95, False)  # [1.5 F, 10.9 T, 10.95 F] = 66 %
    assert cb.state is OPEN
    assert cb.metrics(12.0).calls == 2  # the bucket of second 1 left at t=11


def test_slow_calls_open_the_breaker():
    cb = breaker(
        slow_call_rate_threshold=50.0, slow_call_duration_threshold_s=1.0, failure_rate_threshold=100.0
    )
    for t, d in enumerate([0.5, 1.0, 2.0, 3.0]):  # 1.0 is not slow: slow means longer than the threshold
        call(cb, t, True, duration_s=d)
    assert cb.state is OPEN
    assert cb.transitions[-1].at_s == 3


def test_automatic_transition_happens_at_the_scheduled_time():
    cb = breaker(automatic_transition_from_open_to_half_open_enabled=True)
    trip(cb)
    assert cb.next_transition_at_s == 13.0
    assert cb.poll(40.0) is HALF_OPEN
    assert cb.transitions[-1] == (13.0, OPEN, HALF_OPEN)  # stamped when due, not when observed
    assert cb.next_transition_at_s is None


def test_max_wait_in_half_open_goes_back_to_open():
    cb = breaker(
        max_wait_duration_in_half_open_state_s=5.0, automatic_transition_from_open_to_half_open_enabled=True
    )
    trip(cb)
    assert cb.try_acquire(13.0)  # HALF_OPEN at 13, one trial call never reports
    assert cb.poll(19.0) is OPEN and cb.transitions[-1] == (18.0, HALF_OPEN, OPEN)
    assert cb.poll(28.0) is HALF_OPEN


def test_half_open_permits_and_release():
    cb = breaker(permitted_number_of_calls_in_half_open_state=2)
    trip(cb)
    assert [cb.try_acquire(20.0) for _ in range(3)] == [True, True, False]
    cb.release_permission()
    assert cb.try_acquire(20.0) and not cb.try_acquire(20.0)
    with pytest.raises(CircuitOpenError, match="HALF_OPEN") as info:
        cb.acquire(20.0)
    assert info.value.state == "HALF_OPEN" and info.value.policy == "circuit_breaker"


def test_outcomes_arriving_while_open_are_ignored():
    cb = breaker()
    trip(cb)
    cb.on_success(5.0, 0.1)
    assert cb.ignored_outcomes == 1 and cb.state is OPEN


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["acquire", "ok", "err", "release"]), st.floats(0, 3)), max_size=80),
    st.integers(1, 5),
)
def test_half_open_never_admits_more_than_permitted(ops, permitted):
    cb = breaker(
        permitted_number_of_calls_in_half_open_state=permitted,
        wait_duration_in_open_state_s=1.0,
        sliding_window_size=2,
        minimum_number_of_calls=2,
    )
    now, outstanding, granted = 0.0, [], {}  # granted: HALF_OPEN epoch -> permits in use
    for op, dt in ops:
        now += dt
        if op == "acquire":
            if cb.try_acquire(now):
                outstanding.append(cb.epoch)
                if cb.state is HALF_OPEN:
                    granted[cb.epoch] = granted.get(cb.epoch, 0) + 1
            if cb.state is HALF_OPEN:
                assert granted.get(cb.epoch, 0) <= permitted
        elif outstanding:
            epoch = outstanding.pop(0)
            if op == "release":
                cb.release_permission(epoch)
                if epoch in granted and epoch == cb.epoch and cb.state is HALF_OPEN:
                    granted[epoch] -= 1
            else:
                (cb.on_success if op == "ok" else cb.on_error)(now, 0.1)


def test_config_validation():
    with pytest.raises(ConfigError, match="failure_rate_threshold must be a number in"):
        CircuitBreakerConfig(failure_rate_threshold=0)
    with pytest.raises(ConfigError, match="sliding_window_type must be one of"):
        CircuitBreakerConfig(sliding_window_type="sliding")
    cfg = CircuitBreakerConfig.from_dict(
        {"wait_duration_in_open_state_s": "30s", "sliding_window_type": "TIME_BASED"}
    )
    assert (
        cfg.wait_duration_in_open_state_s == 30.0 and cfg.sliding_window_type is SlidingWindowType.TIME_BASED
    )
