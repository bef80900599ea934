"""The SimPy driver (its inline fast path held to the process-per-attempt loop), one stack under
overlapping calls, the same machines under both clocks, and the jitter fidelity experiment."""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otlp_lab.resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
    HedgingPolicy,
    Outcome,
    PolicyStack,
    RetryBudget,
    RetryPolicy,
    drive_async,
    simpy_call,
)

from .conftest import reference_simpy_call, run_script

simpy = pytest.importorskip("simpy")


def test_stack_with_breaker_in_simpy():
    cb = CircuitBreaker(
        CircuitBreakerConfig(
            sliding_window_size=4,
            minimum_number_of_calls=4,
            wait_duration_in_open_state_s=5.0,
            permitted_number_of_calls_in_half_open_state=1,
        )
    )
    stack = PolicyStack(RetryPolicy(max_attempts=3, initial_backoff_s=1.0, jitter="none"), breaker=cb)
    env = simpy.Environment()
    results = []

    def attempt(n):
        yield env.timeout(0.5)
        return Outcome.failure("UNAVAILABLE") if env.now < 12 else Outcome.success(env.now)

    def client():
        for _ in range(4):
            final = yield from simpy_call(env, stack, attempt)
            results.append((env.now, final.ok, final.outcome.status))
            yield env.timeout(4.0)

    env.process(client())
    env.run()
    # call 1: attempts at 0, 1.5, 4.0 fail (3 calls < minimum 4); call 2 at 8.5: its attempt fails at 9.0,
    # the 4th failure -> OPEN; the retry at 10.0 is refused (a local refusal is not retried);
    # call 3 at 14.0 is the HALF_OPEN trial call and succeeds -> CLOSED.
    assert results == [
        (4.5, False, "UNAVAILABLE"),
        (10.0, False, "CIRCUIT_OPEN"),
        (14.5, True, None),
        (19.0, True, None),
    ]
    assert [(t.at_s, t.to_state.name) for t in cb.transitions] == [
        (9.0, "OPEN"),
        (14.0, "HALF_OPEN"),
        (14.5, "CLOSED"),
    ]


def test_same_policy_same_decisions_under_simpy_and_asyncio():
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.002, max_backoff_s=0.01, jitter="decorrelated")
    statuses = {1: "UNAVAILABLE", 2: 503, 3: "UNAVAILABLE", 4: None}

    def outcome(n):
        return Outcome.success(n) if statuses[n] is None else Outcome.failure(statuses[n])

    sim = run_script(policy.start(0.0, rng=random.Random(3)), lambda n: (0.001, outcome(n)))

    async def real():
        loop = asyncio.get_running_loop()
        call = policy.start(loop.time(), rng=random.Random(3))

        async def attempt(n):
            await asyncio.sleep(0.001)
            return outcome(n)

        return await drive_async(call, attempt), call

    final, call = asyncio.run(real())
    assert final == sim.final and final.outcome.value == 4
    assert [o for _, o in call.outcomes] == [outcome(n) for n in (1, 2, 3, 4)]


def test_cancelled_attempts_that_ignore_interrupt_are_defused():
    env = simpy.Environment()

    def attempt(n):
        yield env.timeout(1.0 if n == 2 else 10.0)  # no try/except: the Interrupt is not caught
        return Outcome.success(n)

    box = []

    def client():
        box.append((yield from simpy_call(env, HedgingPolicy(max_attempts=2, hedging_delay_s=0.5), attempt)))

    env.process(client())
    env.run()
    assert box[0].outcome.value == 2 and box[0].cancel == (1,)


def test_an_attempt_that_crashes_fails_the_simulation():
    env = simpy.Environment()

    def attempt(n):
        yield env.timeout(1.0)
        raise RuntimeError("bug in the model")

    env.process(simpy_call(env, RetryPolicy(), attempt))
    with pytest.raises(RuntimeError, match="bug in the model"):
        env.run()


# -- fidelity: AWS "Exponential Backoff And Jitter" ---------------------------------------------------


def contention_calls(jitter: str, seed: int, *, clients: int = 20, call_s: float = 0.01) -> int:
    """Total calls until ``clients`` clients that start together have each won one exclusive
    call on a shared resource. A call that overlaps one already in progress fails (optimistic
    concurrency: the first writer wins) and is retried with ``jitter``."""
    env = simpy.Environment()
    resource = simpy.Resource(env, capacity=1)
    rng = random.Random(seed)
    policy = RetryPolicy(
        max_attempts=100,
        initial_backoff_s=call_s,
        max_backoff_s=2.0,
        jitter=jitter,
        retryable_status_codes={"ABORTED"},
    )
    calls, finals = [0], []

    def attempt(_):
        calls[0] += 1
        if resource.count:  # someone is mid-call: this one collides
            yield env.timeout(call_s)
            return Outcome.failure("ABORTED")
        with resource.request() as req:
            yield req
            yield env.timeout(call_s)
        return Outcome.success()

    def client():
        finals.append((yield from simpy_call(env, policy.start(env.now, rng=rng), attempt)))

    for _ in range(clients):
        env.process(client())
    env.run()
    assert len(finals) == clients and all(f.ok for f in finals)
    return calls[0]


def test_jitter_needs_far_fewer_calls_than_plain_exponential_backoff():
    mean = {
        j: statistics.mean(contention_calls(j, seed) for seed in range(6))
        for j in ("none", "full", "decorrelated")
    }
    assert mean["none"] == 210  # lock-step clients: one winner per round, 20 + 19 + ... + 1
    assert mean["full"] < 0.6 * mean["none"]
    assert mean["decorrelated"] < 0.6 * mean["none"]


# -- one stack, many overlapping calls ----------------------------------------------------------------


def test_overlapping_calls_share_one_stack():
    """Regression: the stack's gate kept what attempts hold by attempt number, so a second call that
    overlapped the first raised ``KeyError: 1``. Now each call's gate is its own; the gates are shared."""
    cb = CircuitBreaker(CircuitBreakerConfig(sliding_window_size=200, minimum_number_of_calls=200))
    bulkhead = Bulkhead(max_requests=100, max_retries=100)
    budget = RetryBudget(budget_percent=100.0, min_retry_concurrency=50)
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.05, per_try_timeout_s=1.0)
    stack = PolicyStack(policy, breaker=cb, bulkhead=bulkhead, budget=budget, rng=random.Random(1))
    env = simpy.Environment()
    rng = random.Random(2)
    finals, peak = {}, [0]

    def client(i):
        def attempt(n):
            peak[0] = max(peak[0], bulkhead.in_use["requests"])
            hang = n == 1 and i % 5 == 0  # timed out by the per-try timeout, then retried
            yield env.timeout(5.0 if hang else rng.uniform(0.1, 0.5))
            return Outcome.failure("UNAVAILABLE") if n == 1 and i % 2 else Outcome.success(i)

        yield env.timeout(i * 0.01)
        finals[i] = yield from simpy_call(env, stack, attempt)

    for i in range(50):
        env.process(client(i))
    env.run()
    assert peak[0] > 10  # the calls did overlap
    assert sorted(finals) == list(range(50)) and all(f.ok and f.outcome.value == i for i, f in finals.items())
    retried = sum(1 for i in range(50) if i % 2 or i % 5 == 0)
    assert sum(f.attempts for f in finals.values()) == 50 + retried
    metrics = cb.metrics(env.now)
    assert (metrics.calls, metrics.failed_calls) == (
        50 + retried,
        retried,
    ) and cb.state is CircuitState.CLOSED
    assert bulkhead.in_use == {"connections": 0, "pending_requests": 0, "requests": 0, "retries": 0}
    assert (budget.active_requests, budget.active_retries) == (0, 0)


def test_half_open_permits_of_overlapping_calls_are_their_own():
    """Calls overlap in HALF_OPEN with two permits: a and b take them and c is refused. a's status
    is ignored, so it hands its permit back without a verdict; d takes it, and with b that makes
    the two successful trial calls that close the breaker."""
    cb = CircuitBreaker(
        CircuitBreakerConfig(
            sliding_window_size=2,
            minimum_number_of_calls=2,
            wait_duration_in_open_state_s=1.0,
            permitted_number_of_calls_in_half_open_state=2,
        )
    )
    stack = PolicyStack(breaker=cb, breaker_ignores={400})
    env = simpy.Environment()
    script = {
        "a": (1.0, 0.2, Outcome.failure(400)),
        "b": (1.0, 0.4, Outcome.success("b")),
        "c": (1.1, 0.1, Outcome.success("c")),
        "d": (1.3, 0.3, Outcome.success("d")),
    }
    finals = {}

    def client(name):
        at, duration, outcome = script[name]

        def attempt(n):
            yield env.timeout(duration)
            return outcome

        yield env.timeout(at)
        finals[name] = (yield from simpy_call(env, stack, attempt)), env.now

    cb.on_error(0.0, 0.1)
    cb.on_error(0.0, 0.1)  # OPEN at 0, HALF_OPEN from 1.0
    for name in script:
        env.process(client(name))
    env.run()
    assert finals["a"][0].outcome.status == 400 and finals["b"][0].ok and finals["d"][0].ok
    assert finals["c"][0].outcome.status == "CIRCUIT_OPEN" and finals["c"][1] == 1.1  # both permits were out
    assert [(t.at_s, t.to_state.name) for t in cb.transitions] == [
        (0.0, "OPEN"),
        (1.0, "HALF_OPEN"),
        (1.6, "CLOSED"),
    ]


# -- the inline fast path: same decisions, fewer events -------------------------------------------


class CountingEnvironment(simpy.Environment):
    """Counts the events it processes."""

    def __init__(self) -> None:
        super().__init__()
        self.events = 0

    def step(self) -> None:
        self.events += 1
        super().step()


def test_a_successful_call_costs_its_attempts_events_and_next_to_nothing_more():
    """A retry-policy attempt runs inline and its per-try timer is no SimPy event unless it fires: a
    call whose attempt waits on one event costs about one event (it was five: the attempt's process
    start and end, the any_of, the per-try timeout left in the queue, and the attempt's own)."""
    env = CountingEnvironment()
    cb = CircuitBreaker(CircuitBreakerConfig())
    stack = PolicyStack(
        RetryPolicy(max_attempts=3, per_try_timeout_s=0.5),
        breaker=cb,
        timeout_s=2.0,
        budget=RetryBudget(),
        rng=random.Random(1),
    )
    calls = 2000

    def attempt(n):
        yield env.timeout(0.01)
        return Outcome.success(n)

    def client():
        for _ in range(calls // 20):
            final = yield from simpy_call(env, stack, attempt)
            assert final.ok

    for _ in range(20):  # overlapping clients, one stack
        env.process(client())
    env.run()
    per_call = (env.events - 2 * 20) / calls  # less each client's own start and end
    assert per_call < 1.05, per_call


def test_a_per_try_timeout_interrupts_an_inline_attempt_and_the_call_moves_on():
    env = simpy.Environment()
    log = []

    def attempt(n):
        try:
            yield env.timeout(5.0 if n == 1 else 0.1)
        except simpy.Interrupt as exc:
            log.append((n, env.now, exc.cause))
            yield env.timeout(10.0)  # a slow clean-up does not hold up the retry
            log.append((n, env.now, "cleaned up"))
            return Outcome.failure("CANCELLED")
        return Outcome.success(n)

    call = RetryPolicy(max_attempts=2, per_try_timeout_s=1.0, initial_backoff_s=0.5, jitter="none").start(0.0)
    box = []

    def client():
        box.append(((yield from simpy_call(env, call, attempt)), env.now))

    env.process(client())
    env.run()
    final, ended_at = box[0]
    assert final.ok and final.outcome.value == 2 and ended_at == pytest.approx(1.6)
    assert call.outcomes[0] == (1, Outcome.timeout()) and call.late_outcomes == 0
    assert log == [(1, 1.0, "cancelled"), (1, 11.0, "cleaned up")]


def test_an_answer_due_at_the_same_instant_as_the_per_try_timeout_wins():
    """As with a timeout raced in an any_of: an answer already scheduled for that instant is taken."""
    policy = RetryPolicy(max_attempts=2, per_try_timeout_s=1.0)
    run = run_script(policy, {1: (1.0, Outcome.success(1))})
    assert run.final.ok and run.ended_at_s == 1.0 and run.cancelled == []


def test_interrupting_the_caller_cancels_its_inline_attempt_and_releases_everything():
    env = simpy.Environment()
    bulkhead, budget = Bulkhead(max_requests=1), RetryBudget()
    stack = PolicyStack(RetryPolicy(per_try_timeout_s=5.0), bulkhead=bulkhead, budget=budget)
    seen = []

    def attempt(n):
        try:
            yield env.timeout(3.0)
        except simpy.Interrupt as exc:
            seen.append(("attempt", env.now, exc.cause))
            raise
        return Outcome.success(n)

    def client():
        try:
            yield from simpy_call(env, stack, attempt)
        except simpy.Interrupt as exc:
            seen.append(("caller", env.now, exc.cause))
        yield env.timeout(10.0)  # no stale per-try timeout may reach the process afterwards (due at 5.0)
        seen.append(("caller", env.now, "done"))

    proc = env.process(client())

    def shutdown():
        yield env.timeout(1.0)
        proc.interrupt("shutdown")

    env.process(shutdown())
    env.run()
    assert seen == [("caller", 1.0, "shutdown"), ("attempt", 1.0, "cancelled"), ("caller", 11.0, "done")]
    assert bulkhead.in_use["requests"] == 0 and (budget.active_requests, budget.active_retries) == (0, 0)


def test_interrupting_a_caller_that_races_hedges_does_not_crash_the_simulation():
    """The race the driver abandons is failed later by the cancelled hedges (their Interrupt
    uncaught); that failure is nobody's to raise."""
    env = simpy.Environment()
    seen = []

    def attempt(n):
        yield env.timeout(5.0)
        return Outcome.success(n)

    def client():
        try:
            yield from simpy_call(env, HedgingPolicy(max_attempts=3, hedging_delay_s=0.1), attempt)
        except simpy.Interrupt as exc:
            seen.append((env.now, exc.cause))

    proc = env.process(client())

    def shutdown():
        yield env.timeout(1.0)
        proc.interrupt("shutdown")

    env.process(shutdown())
    env.run()
    assert seen == [(1.0, "shutdown")]


def test_nested_inline_calls_each_get_their_own_per_try_timeout():
    """A stack inside an attempt of another stack, both inline in one process: the inner per-try
    timeout (0.3 s) retries the inner call; the outer one (1.0 s) cancels the whole outer attempt."""
    env = simpy.Environment()
    inner_policy = RetryPolicy(max_attempts=5, per_try_timeout_s=0.3, initial_backoff_s=0.05, jitter="none")
    outer_policy = RetryPolicy(max_attempts=2, per_try_timeout_s=1.0, initial_backoff_s=0.1, jitter="none")
    inner_calls = []

    def inner_attempt(n):
        yield env.timeout(0.5 if env.now < 1.0 else 0.1)  # too slow for 0.3 s until t = 1.0
        return Outcome.success(env.now)

    def outer_attempt(n):
        call = inner_policy.start(env.now)
        inner_calls.append(call)
        final = yield from simpy_call(env, call, inner_attempt)
        return final.outcome if final.ok else Outcome.failure("UNAVAILABLE")

    box = []

    def client():
        box.append(((yield from simpy_call(env, outer_policy, outer_attempt)), env.now))

    env.process(client())
    env.run()
    final, ended_at = box[0]
    # outer 1: inner tries at 0, 0.35, 0.75 time out at 0.3, 0.65, 1.0 - the outer timeout at 1.0 cancels it;
    # outer 2 at 1.1: the inner try is fast now and answers at 1.2
    first, second = inner_calls
    assert [o.status for _, o in first.outcomes] == [
        "DEADLINE_EXCEEDED"
    ] * 2 and first.final.reason == "cancelled"
    assert final.ok and final.attempts == 2 and final.outcome.value == pytest.approx(1.2)
    assert ended_at == pytest.approx(1.2) and second.attempts == 1


ATTEMPT = st.tuples(st.floats(0.01, 2.0), st.sampled_from([None, "UNAVAILABLE", 503, "INVALID_ARGUMENT"]))


@settings(max_examples=60, deadline=None)
@given(
    clients=st.lists(
        st.tuples(st.floats(0.0, 1.0), st.lists(ATTEMPT, min_size=5, max_size=5)), min_size=1, max_size=6
    ),
    per_try=st.sampled_from([None, 0.3, 0.7]),
    timeout=st.sampled_from([None, 1.5, 4.0]),
    hedge=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_the_inline_driver_decides_like_the_process_per_attempt_loop(clients, per_try, timeout, hedge, seed):
    """Same clients against one stack (breaker, bulkhead, budget, jitter) under both drivers:
    the same decisions at the same times, the same attempts cancelled, the same shared state after.
    (Hedges are not run inline, but their waits changed too: no any_of for a single event.)"""
    if hedge:
        policy = HedgingPolicy(
            max_attempts=4,
            hedging_delay_s=0.2,
            per_try_timeout_s=per_try,
            non_fatal_status_codes={"UNAVAILABLE", 503},
        )
    else:
        policy = RetryPolicy(max_attempts=4, initial_backoff_s=0.1, per_try_timeout_s=per_try)

    def simulate(driver):
        env = simpy.Environment()
        cb = CircuitBreaker(
            CircuitBreakerConfig(
                sliding_window_size=4, minimum_number_of_calls=4, wait_duration_in_open_state_s=0.5
            )
        )
        stack = PolicyStack(
            policy,
            breaker=cb,
            bulkhead=Bulkhead(max_requests=4),
            budget=RetryBudget(min_retry_concurrency=2),
            timeout_s=timeout,
            rng=random.Random(seed),
        )
        seen = []

        def client(k, start, script):
            def attempt(n):
                seen.append(("send", k, n, env.now))
                duration, status = script[n - 1]
                try:
                    yield env.timeout(duration)
                except simpy.Interrupt:
                    seen.append(("cancelled", k, n, env.now))
                    return Outcome.failure("CANCELLED")
                return Outcome.success((k, n)) if status is None else Outcome.failure(status)

            yield env.timeout(start)
            call = stack.start(env.now)
            final = yield from driver(env, call, attempt)
            outcomes = [
                (n, o.status, o.value, o.local) for n, o in call.outcomes
            ]  # errors compare by identity
            seen.append(("final", k, type(final), final.attempts, final.cancel, outcomes, env.now))

        for k, (start, script) in enumerate(clients):
            env.process(client(k, start, script))
        env.run()
        return seen, cb.transitions, stack.bulkhead.in_use, stack.budget.active_requests

    assert simulate(simpy_call) == simulate(reference_simpy_call)
