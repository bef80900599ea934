"""PolicyStack on real async functions: retries, breaker, bulkhead, rate limit, deadlines, hedging, fallback."""

from __future__ import annotations

import asyncio
import enum
import random
import time

import pytest

from otlp_lab.errors import CircuitOpenError, DeadlineExceededError, RejectedError, RetryExhaustedError
from otlp_lab.resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
    Fallback,
    FallbackCache,
    HedgingPolicy,
    Outcome,
    PolicyStack,
    RetryBudget,
    RetryPolicy,
    TokenBucket,
    classify_exception,
    current_deadline,
)

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.005, jitter="full")


class Flaky:
    """An async callable that fails ``failures`` times with ``exc`` and then returns its argument."""

    def __init__(self, failures: int, exc: BaseException | None = None) -> None:
        self.failures = failures
        self.exc = exc if exc is not None else ConnectionResetError("connection reset by peer")
        self.calls = 0

    async def __call__(self, value):
        self.calls += 1
        await asyncio.sleep(0)
        if self.calls <= self.failures:
            raise self.exc
        return value


def run(coro):
    return asyncio.run(coro)


def test_retries_a_function_that_fails_n_times():
    fetch = Flaky(3)
    stack = PolicyStack(FAST, rng=random.Random(7))
    assert run(stack.call(fetch, "/v1/traces")) == "/v1/traces"
    assert fetch.calls == 4


def test_exhaustion_raises_with_the_last_outcome():
    fetch = Flaky(10)
    with pytest.raises(RetryExhaustedError) as info:
        run(PolicyStack(FAST, rng=random.Random(7)).call(fetch, "x"))
    err = info.value
    assert (err.reason, err.attempts, err.last_outcome.status) == ("exhausted", 4, "UNAVAILABLE")
    assert err.__cause__ is fetch.exc and fetch.calls == 4


def test_non_retryable_exception_is_reraised_untouched():
    fetch = Flaky(1, ValueError("bad payload"))
    with pytest.raises(ValueError, match="bad payload"):
        run(PolicyStack(FAST).call(fetch, "x"))
    assert fetch.calls == 1


def test_open_breaker_fails_fast_without_calling():
    cb = CircuitBreaker(
        CircuitBreakerConfig(
            sliding_window_size=2, minimum_number_of_calls=2, wait_duration_in_open_state_s=60.0
        )
    )
    stack = PolicyStack(breaker=cb)
    fetch = Flaky(100)

    async def scenario():
        for _ in range(2):
            with pytest.raises(ConnectionResetError):
                await stack.call(fetch, "x")
        with pytest.raises(CircuitOpenError) as info:
            await stack.call(fetch, "x")
        return info.value

    err = run(scenario())
    assert fetch.calls == 2 and cb.state is CircuitState.OPEN and err.retry_in_s > 59


def test_breaker_inside_retry_counts_every_attempt():
    cb = CircuitBreaker(CircuitBreakerConfig(sliding_window_size=3, minimum_number_of_calls=3))
    fetch = Flaky(100)
    with pytest.raises(CircuitOpenError):  # attempt 4 is refused by the breaker opened by attempts 1-3
        run(PolicyStack(FAST, breaker=cb, rng=random.Random(1)).call(fetch, "x"))
    assert fetch.calls == 3 and cb.not_permitted_calls == 1


def test_bulkhead_rejects_the_overflow_and_releases_its_slots():
    bulkhead = Bulkhead(max_requests=1)
    stack = PolicyStack(bulkhead=bulkhead)
    gate = asyncio.Event

    async def scenario():
        release = gate()

        async def slow():
            await release.wait()
            return "done"

        first = asyncio.create_task(stack.call(slow))
        await asyncio.sleep(0)
        with pytest.raises(RejectedError, match="bulkhead full"):
            await stack.call(slow)
        release.set()
        return await first

    assert run(scenario()) == "done"
    assert bulkhead.in_use["requests"] == 0 and bulkhead.rejected["requests"] == 1


def test_fifty_overlapping_calls_share_one_stack():
    """Regression: the stack's gate kept what attempts hold by attempt number, so a call that
    overlapped another raised ``KeyError: 1``. Half of these fail once and are retried."""
    cb = CircuitBreaker(CircuitBreakerConfig(sliding_window_size=200, minimum_number_of_calls=200))
    bulkhead, budget = Bulkhead(max_requests=100, max_retries=100), RetryBudget(min_retry_concurrency=50)
    stack = PolicyStack(FAST, breaker=cb, bulkhead=bulkhead, budget=budget, rng=random.Random(7))
    rng = random.Random(1)
    peak = [0]

    async def scenario():
        async def one(i):
            tries = []

            async def fetch():
                tries.append(1)
                peak[0] = max(peak[0], bulkhead.in_use["requests"])
                await asyncio.sleep(rng.uniform(0.001, 0.02))
                if i % 2 and len(tries) == 1:
                    raise ConnectionResetError("connection reset by peer")
                return i

            return await stack.call(fetch)

        return await asyncio.gather(*(one(i) for i in range(50)))

    assert run(scenario()) == list(range(50))
    assert peak[0] > 10  # they did overlap
    metrics = cb.metrics(0.0)
    assert (metrics.calls, metrics.failed_calls) == (75, 25) and cb.state is CircuitState.CLOSED
    assert bulkhead.in_use == {"connections": 0, "pending_requests": 0, "requests": 0, "retries": 0}
    assert (budget.active_requests, budget.active_retries) == (0, 0)


def test_cancelling_the_caller_releases_slots_permits_and_budget():
    bulkhead, budget = Bulkhead(max_requests=1), RetryBudget()
    cb = CircuitBreaker(CircuitBreakerConfig(permitted_number_of_calls_in_half_open_state=1))
    stack = PolicyStack(FAST, bulkhead=bulkhead, budget=budget, breaker=cb)

    async def hang():
        await asyncio.sleep(10)

    async def scenario():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stack.call(hang), timeout=0.02)

    run(scenario())
    assert bulkhead.in_use["requests"] == 0 and budget.active_requests == 0 and budget.active_retries == 0


def test_rate_limiter_rejects_beyond_the_burst():
    stack = PolicyStack(rate_limiter=TokenBucket(rate_per_s=0.001, burst=1))
    fetch = Flaky(0)

    async def scenario():
        assert await stack.call(fetch, 1) == 1
        with pytest.raises(RejectedError, match="rate limited"):
            await stack.call(fetch, 2)

    run(scenario())
    assert fetch.calls == 1


def test_overall_timeout_cancels_the_call():
    cancelled = []

    async def hang():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    t0 = time.perf_counter()
    with pytest.raises(DeadlineExceededError) as info:
        run(PolicyStack(FAST, timeout_s=0.05).call(hang))
    assert time.perf_counter() - t0 < 1.0 and cancelled == [True]
    assert isinstance(info.value, TimeoutError) and info.value.attempts == 1


def test_per_try_timeout_retries_a_hung_attempt():
    calls = []

    async def sometimes_hangs():
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(10)
        return "second try"

    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, per_try_timeout_s=0.05)
    assert run(PolicyStack(policy, timeout_s=2.0).call(sometimes_hangs)) == "second try"
    assert len(calls) == 2


def test_hedging_returns_the_first_success_and_cancels_the_slow_attempt():
    started, cancelled = [], []

    async def replica():
        n = len(started) + 1
        started.append(n)
        try:
            await asyncio.sleep(5.0 if n == 1 else 0.01)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return f"replica {n}"

    t0 = time.perf_counter()
    stack = PolicyStack(HedgingPolicy(max_attempts=3, hedging_delay_s=0.02))
    assert run(stack.call(replica)) == "replica 2"
    assert time.perf_counter() - t0 < 1.0
    assert started == [1, 2] and cancelled == [1]


def test_deadline_propagates_to_nested_stacks():
    seen = []

    async def inner():
        seen.append(current_deadline().remaining_s(asyncio.get_running_loop().time()))
        return "ok"

    async def outer():
        return await PolicyStack(timeout_s=30.0, deadline_margin_s=0.1).call(inner)  # the parent's 0.5 s wins

    assert run(PolicyStack(timeout_s=0.5).call(outer)) == "ok"
    assert 0.0 < seen[0] <= 0.4


def test_call_with_fallback_serves_cache_then_default():
    fb = Fallback(cache=FallbackCache(fresh_for_s=60.0), default="default")
    stack = PolicyStack()

    async def scenario():
        good = await stack.call_with_fallback(fb, "cfg", Flaky(0), "v1")
        cached = await stack.call_with_fallback(fb, "cfg", Flaky(5), "v2")
        default = await stack.call_with_fallback(fb, "other", Flaky(5), "v3")
        return good, cached, default

    assert run(scenario()) == ("v1", "v1", "default")
    assert fb.served == {"fresh": 1, "stale": 0, "default": 1}


class FakeCode(enum.Enum):
    UNAVAILABLE = 14


class FakeRpcError(Exception):
    def __init__(self, retry_after_s=None):
        self.retry_after_s = retry_after_s

    def code(self):
        return FakeCode.UNAVAILABLE


class HttpError(Exception):
    status_code = 429


def test_classify_exception():
    exc = FakeRpcError(0.5)
    assert classify_exception(exc) == Outcome.failure("UNAVAILABLE", retry_after_s=0.5, error=exc)
    assert classify_exception(HttpError()).status == 429
    assert classify_exception(TimeoutError()).status == "DEADLINE_EXCEEDED"
    assert classify_exception(KeyError("k")).status == "KEYERROR"


def test_classified_results_are_retried_and_a_final_failure_is_returned():
    responses = iter([503, 503, 200, 400])

    async def post():
        await asyncio.sleep(0)
        return next(responses)

    stack = PolicyStack(
        FAST,
        classify_result=lambda code: (
            Outcome.success(code) if code < 400 else Outcome.failure(code, value=code)
        ),
    )
    assert run(stack.call(post)) == 200
    assert run(stack.call(post)) == 400  # non-retryable answer: returned, not raised
