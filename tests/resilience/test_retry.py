"""Retry and hedging: exact decision sequences, jitter definitions, pushback, budget, throttle."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otlp_lab.errors import ConfigError, ResilienceError
from otlp_lab.resilience import (
    Cancel,
    Deadline,
    Done,
    GiveUp,
    HedgingPolicy,
    Outcome,
    RetryBudget,
    RetryPolicy,
    RetryThrottle,
    Send,
    Wait,
    parse_grpc_pushback,
    parse_retry_after,
)

from .conftest import run_script

UNAVAILABLE = Outcome.failure("UNAVAILABLE")
OK = Outcome.success("ok")


def backoffs(policy: RetryPolicy, seed: int, n: int) -> list[float]:
    rng, prev, out = random.Random(seed), None, []
    for k in range(1, n + 1):
        prev = policy.backoff_s(k, rng, prev)
        out.append(prev)
    return out


# -- backoff and jitter (AWS "Exponential Backoff And Jitter") -------------------------------------


def test_no_jitter_is_capped_exponential():
    p = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, backoff_multiplier=2.0, jitter="none")
    assert backoffs(p, 0, 6) == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


@pytest.mark.parametrize(
    ("jitter", "expected"),
    [
        ("full", [0.063943, 0.005002, 0.110012, 0.178569, 0.736471]),
        ("equal", [0.081971, 0.102501, 0.255006, 0.489284, 0.868236]),
        ("decorrelated", [0.227885, 0.114598, 0.167050, 0.189541, 0.445128]),
    ],
)
def test_jitter_golden_sequences(jitter, expected):
    p = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, jitter=jitter)
    assert backoffs(p, 42, 5) == pytest.approx(expected, abs=1e-6)


def test_jitter_definitions_against_the_raw_random_stream():
    u = random.Random(42).random()  # the first draw every policy below sees; ceiling for retry 1 = 0.1

    def first(jitter):
        return RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, jitter=jitter).backoff_s(
            1, random.Random(42)
        )

    assert first("full") == pytest.approx(u * 0.1)  # U(0, b)
    assert first("equal") == pytest.approx(0.05 + u * 0.05)  # b/2 + U(0, b/2)
    assert first("decorrelated") == pytest.approx(0.1 + u * (0.3 - 0.1))  # U(base, 3 * previous)


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(1e-3, 10.0),
    cap=st.floats(1e-3, 100.0),
    mult=st.floats(1.0, 10.0),
    retry=st.integers(1, 2000),
    jitter=st.sampled_from(["none", "full", "equal", "decorrelated"]),
    seed=st.integers(0, 2**32),
)
def test_backoff_never_exceeds_cap_and_jitter_stays_in_its_range(initial, cap, mult, retry, jitter, seed):
    p = RetryPolicy(initial_backoff_s=initial, max_backoff_s=cap, backoff_multiplier=mult, jitter=jitter)
    rng = random.Random(seed)
    d = p.backoff_s(retry, rng, previous_s=initial * mult)
    assert 0.0 <= d <= cap
    try:
        ceiling = min(cap, initial * mult ** (retry - 1))
    except OverflowError:
        ceiling = cap
    if jitter == "full":
        assert 0.0 <= d <= ceiling
    elif jitter == "equal":
        assert ceiling / 2 - 1e-12 <= d <= ceiling + 1e-12
    elif jitter == "none":
        assert d == ceiling
    else:
        assert min(initial, cap) <= d <= cap


# -- the per-call machine ------------------------------------------------------------------------


def test_retry_decision_sequence_with_per_try_timeout_and_pushback():
    p = RetryPolicy(
        max_attempts=4,
        initial_backoff_s=1.0,
        max_backoff_s=3.0,
        jitter="none",
        per_try_timeout_s=2.0,
        retryable_status_codes={"UNAVAILABLE", 503},
    )
    c = p.start(0.0, rng=random.Random(1))
    seen = [c.next(0.0), c.next(0.0)]
    c.on_outcome(0.5, 1, UNAVAILABLE)
    seen += [c.next(0.5), c.next(1.5), c.next(3.5), c.next(3.5), c.next(5.5)]
    c.on_outcome(5.6, 3, Outcome.failure(503, retry_after_s=0.2))  # pushback replaces the backoff
    seen += [c.next(5.6), c.next(5.8)]
    c.on_outcome(6.0, 4, Outcome.failure(503))
    seen.append(c.next(6.0))
    assert seen[:-1] == [
        Send(1, 2.0),
        Wait(2.0),  # attempt 1, its per-try timeout is the wake-up
        Wait(1.0),
        Send(2, 2.0),  # backoff 1 s
        Cancel((2,)),
        Wait(2.0),
        Send(3, 2.0),  # attempt 2 timed out at 3.5; backoff 2 s
        Wait(pytest.approx(0.2)),
        Send(4, 2.0),
    ]
    assert seen[-1] == GiveUp("exhausted", Outcome.failure(503), 4)
    assert [o.status for _, o in c.outcomes] == ["UNAVAILABLE", "DEADLINE_EXCEEDED", 503, 503]


def test_pushback_resets_the_backoff_exponent():
    p = RetryPolicy(max_attempts=5, initial_backoff_s=1.0, max_backoff_s=100.0, jitter="none")
    script = {
        1: (0.0, UNAVAILABLE),
        2: (0.0, UNAVAILABLE),
        3: (0.0, Outcome.failure(503, retry_after_s=5.0)),
        4: (0.0, UNAVAILABLE),
        5: (0.0, OK),
    }
    run = run_script(p, script)
    assert run.final.ok
    # backoffs: 1, 2, then pushback 5, then the exponent restarts at 1
    assert run.sent_at_s == {1: 0.0, 2: 1.0, 3: 3.0, 4: 8.0, 5: 9.0}


@pytest.mark.parametrize("pushback", [-1.0, math.nan, parse_grpc_pushback("garbage")])
def test_negative_or_garbage_pushback_means_do_not_retry(pushback):
    c = RetryPolicy(max_attempts=5).start(0.0)
    assert c.next(0.0) == Send(1)
    c.on_outcome(1.0, 1, Outcome.failure("UNAVAILABLE", retry_after_s=pushback))
    final = c.next(1.0)
    assert isinstance(final, GiveUp) and final.reason == "pushback" and final.attempts == 1


def test_pushback_header_parsers():
    assert parse_grpc_pushback(None) is None
    assert parse_grpc_pushback(b"1500") == 1.5
    assert parse_grpc_pushback("-5") == -1.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None  # a date needs now_unix_s
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now_unix_s=1445412470.0) == 10.0
    assert parse_retry_after("later", now_unix_s=0.0) is None


def test_non_retryable_failure_is_the_final_answer():
    c = RetryPolicy(max_attempts=5).start(0.0)
    c.next(0.0)
    c.on_outcome(0.1, 1, Outcome.failure(400))
    assert c.next(0.1) == Done(Outcome.failure(400), 1)


def test_backoff_past_the_deadline_gives_up_at_once():
    p = RetryPolicy(max_attempts=5, initial_backoff_s=2.0, jitter="none")
    c = p.start(0.0, deadline=Deadline(1.5))
    assert c.next(0.0) == Send(1, 1.5)
    c.on_outcome(0.2, 1, UNAVAILABLE)
    assert c.next(0.2) == GiveUp("deadline", UNAVAILABLE, 1)


def test_deadline_cancels_the_running_attempt():
    c = RetryPolicy().start(0.0, deadline=Deadline.after(0.0, 1.0))
    assert c.next(0.0) == Send(1, 1.0)
    assert c.next(0.0) == Wait(1.0)
    assert c.next(1.0) == GiveUp("deadline", None, 1, cancel=(1,))
    c.on_outcome(1.1, 1, OK)  # too late: counted, ignored
    assert c.late_outcomes == 1
    assert c.next(2.0) == GiveUp("deadline", None, 1, cancel=(1,))


def test_outcome_for_an_attempt_never_sent_is_an_error():
    c = RetryPolicy().start(0.0)
    with pytest.raises(ResilienceError, match="never sent"):
        c.on_outcome(0.0, 3, OK)


# -- shared budget and throttle ----------------------------------------------------------------------


def test_grpc_throttle_token_arithmetic():
    t = RetryThrottle(max_tokens=10, token_ratio=0.1)
    for _ in range(5):
        t.on_failure()
    assert (t.tokens, t.allows_retry) == (5.0, False)  # <= max/2 disables retries
    t.on_success()
    assert (t.tokens, t.allows_retry) == (5.1, True)
    for _ in range(100):
        t.on_success()
    assert t.tokens == 10.0
    for _ in range(30):
        t.on_failure()
    assert t.tokens == 0.0


@given(st.lists(st.booleans(), max_size=300), st.floats(0.001, 1000), st.floats(0.001, 5))
def test_throttle_tokens_stay_within_bounds(events, max_tokens, ratio):
    t = RetryThrottle(max_tokens=max_tokens, token_ratio=ratio)
    for ok in events:
        t.on_success() if ok else t.on_failure()
        assert 0.0 <= t.tokens <= t.max_tokens
        assert t.allows_retry == (t.tokens > t.max_tokens / 2)


def test_throttled_client_stops_retrying():
    throttle = RetryThrottle(max_tokens=2, token_ratio=0.5)
    c = RetryPolicy(max_attempts=5, jitter="none").start(0.0, throttle=throttle)
    c.next(0.0)
    c.on_outcome(0.1, 1, UNAVAILABLE)  # 2 -> 1 token: 1 <= 2/2
    assert c.next(0.1) == GiveUp("throttled", UNAVAILABLE, 1)


def test_throttle_counts_only_retryable_failures_and_successes():
    throttle = RetryThrottle(max_tokens=10, token_ratio=0.5)
    c = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, jitter="none").start(0.0, throttle=throttle)
    c.next(0.0)
    c.on_outcome(0.0, 1, UNAVAILABLE)
    c.next(0.1), c.next(0.1)
    c.on_outcome(0.1, 2, Outcome.failure(400))  # fatal: not a throttling failure
    assert throttle.tokens == 9.0


def test_retry_budget_envoy_formula():
    b = RetryBudget(budget_percent=20.0, min_retry_concurrency=2)
    for _ in range(20):
        b.on_request_start()
    assert b.max_retries == 4
    assert [b.try_acquire_retry() for _ in range(5)] == [True, True, True, True, False]
    assert b.rejected == 1


def test_retry_budget_refusal_ends_the_call_and_slots_are_returned():
    budget = RetryBudget(budget_percent=0.0, min_retry_concurrency=1)
    p = RetryPolicy(max_attempts=3, initial_backoff_s=1.0, jitter="none")
    first, second = p.start(0.0, budget=budget), p.start(0.0, budget=budget)
    assert budget.active_requests == 2
    for c in (first, second):
        c.next(0.0)
        c.on_outcome(0.0, 1, UNAVAILABLE)
    assert first.next(1.0) == Send(2)  # takes the only retry slot
    assert second.next(1.0) == GiveUp("budget", UNAVAILABLE, 1)
    first.on_outcome(1.5, 2, OK)
    assert first.next(1.5).ok
    assert (budget.active_requests, budget.active_retries, budget.rejected) == (0, 0, 1)


@settings(max_examples=150, deadline=None)
@given(
    statuses=st.lists(st.sampled_from(["UNAVAILABLE", 503, 400, "OK", None]), min_size=1, max_size=12),
    max_attempts=st.integers(1, 6),
    hedge=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_machine_never_sends_more_than_max_attempts_and_always_ends(statuses, max_attempts, hedge, seed):
    if hedge:
        p = HedgingPolicy(
            max_attempts=max_attempts, hedging_delay_s=0.3, non_fatal_status_codes={"UNAVAILABLE", 503}
        )
    else:
        p = RetryPolicy(
            max_attempts=max_attempts, initial_backoff_s=0.1, retryable_status_codes={"UNAVAILABLE", 503}
        )
    budget = RetryBudget()

    def script(n):
        s = statuses[(n - 1) % len(statuses)]
        return (0.5 + 0.1 * n, OK if s == "OK" else Outcome.failure(s, retry_after_s=None))

    run = run_script(p.start(0.0, rng=random.Random(seed), budget=budget), script)
    assert 1 <= run.final.attempts <= max_attempts
    assert len(run.sent_at_s) == run.final.attempts
    assert budget.active_requests == 0 and budget.active_retries == 0


# -- hedging -------------------------------------------------------------------------------------------


def test_hedging_first_success_wins_and_the_rest_are_cancelled():
    p = HedgingPolicy(max_attempts=3, hedging_delay_s=1.0)
    run = run_script(p, {1: (10.0, OK), 2: (1.5, Outcome.success("fast")), 3: (10.0, OK)})
    assert run.sent_at_s == {1: 0.0, 2: 1.0, 3: 2.0}
    assert run.final == Done(Outcome.success("fast"), 3, cancel=(1, 3))
    assert run.ended_at_s == 2.5 and sorted(run.cancelled) == [1, 3]


def test_hedging_non_fatal_failure_sends_the_next_hedge_at_once():
    p = HedgingPolicy(max_attempts=3, hedging_delay_s=5.0, non_fatal_status_codes={"UNAVAILABLE"})
    run = run_script(p, {1: (0.5, UNAVAILABLE), 2: (0.5, UNAVAILABLE), 3: (0.5, OK)})
    assert run.sent_at_s == {1: 0.0, 2: 0.5, 3: 1.0}
    assert run.final.ok and run.final.attempts == 3


def test_hedging_fatal_failure_ends_the_call():
    p = HedgingPolicy(max_attempts=3, hedging_delay_s=1.0, non_fatal_status_codes={"UNAVAILABLE"})
    run = run_script(p, {1: (5.0, OK), 2: (0.5, Outcome.failure("INVALID_ARGUMENT"))})
    assert run.final == Done(Outcome.failure("INVALID_ARGUMENT"), 2, cancel=(1,))
    assert run.ended_at_s == 1.5


def test_hedging_all_non_fatal_failures_exhaust():
    p = HedgingPolicy(max_attempts=2, hedging_delay_s=0.0, non_fatal_status_codes={"UNAVAILABLE"})
    run = run_script(p, {1: (1.0, UNAVAILABLE), 2: (2.0, UNAVAILABLE)})
    assert run.sent_at_s == {1: 0.0, 2: 0.0}
    assert run.final == GiveUp("exhausted", UNAVAILABLE, 2)


# -- configuration -----------------------------------------------------------------------------------


def test_from_grpc_service_config():
    cfg = {
        "methodConfig": [{}],
        "retryPolicy": {
            "MaxAttempts": 7,
            "InitialBackoff": ".01s",
            "MaxBackoff": "0.5s",
            "BackoffMultiplier": 1.5,
            "RetryableStatusCodes": ["unavailable", 4],
        },
    }
    p = RetryPolicy.from_grpc_service_config(cfg)
    assert (p.max_attempts, p.initial_backoff_s, p.max_backoff_s, p.backoff_multiplier, p.jitter) == (
        5,
        0.01,
        0.5,
        1.5,
        "full",
    )
    assert p.retryable_status_codes == {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
    h = HedgingPolicy.from_grpc_service_config(
        {"hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.5s", "nonFatalStatusCodes": [14]}}
    )
    assert (h.max_attempts, h.hedging_delay_s, h.non_fatal_status_codes) == (3, 0.5, {"UNAVAILABLE"})
    t = RetryThrottle.from_grpc_service_config({"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}})
    assert (t.max_tokens, t.tokens) == (10.0, 10.0)


def test_from_grpc_service_config_errors():
    with pytest.raises(ConfigError, match="maxAttempts must be an integer >= 2"):
        RetryPolicy.from_grpc_service_config({"maxAttempts": 1})
    with pytest.raises(ConfigError, match="initialbackoff"):
        RetryPolicy.from_grpc_service_config({"maxAttempts": 2})
    with pytest.raises(ConfigError, match="maxTokens and tokenRatio"):
        RetryThrottle.from_grpc_service_config({"maxTokens": 3})


def test_config_validation_and_from_dict():
    p = RetryPolicy.from_dict(
        {"max_attempts": 4, "initial_backoff_s": "100ms", "retryable_status_codes": ["503", 429]}
    )
    assert p.initial_backoff_s == pytest.approx(0.1) and p.retryable_status_codes == {503, 429}
    with pytest.raises(
        ConfigError, match=r"RetryPolicy.max_attempts must be an integer >= 1. Got 0 instead."
    ):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError, match="jitter must be one of"):
        RetryPolicy(jitter="random")
    with pytest.raises(ConfigError, match="has no setting 'max_retries'"):
        RetryPolicy.from_dict({"max_retries": 3})
    with pytest.raises(ConfigError, match="must be seconds or a duration such as"):
        RetryPolicy.from_dict({"initial_backoff_s": "soon"})
    with pytest.raises(ConfigError):
        RetryThrottle(max_tokens=1001)
    with pytest.raises(ConfigError):
        RetryBudget(budget_percent=120)
    assert RetryBudget.from_dict({"budget_percent": 50}).budget_percent == 50.0
