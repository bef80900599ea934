"""The SimPy driver, the same machines under both clocks, and the jitter fidelity experiment."""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

from otlp_lab.resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    HedgingPolicy,
    Outcome,
    PolicyStack,
    RetryPolicy,
    drive_async,
    simpy_call,
)

from .conftest import run_script

simpy = pytest.importorskip("simpy")


def test_stack_with_breaker_in_simpy():
    cb = CircuitBreaker(CircuitBreakerConfig(sliding_window_size=4, minimum_number_of_calls=4,
                                             wait_duration_in_open_state_s=5.0,
                                             permitted_number_of_calls_in_half_open_state=1))  # fmt: skip
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
    assert results == [(4.5, False, "UNAVAILABLE"), (10.0, False, "CIRCUIT_OPEN"), (14.5, True, None),
                       (19.0, True, None)]  # fmt: skip
    assert [(t.at_s, t.to_state.name) for t in cb.transitions] == [(9.0, "OPEN"), (14.0, "HALF_OPEN"),
                                                                   (14.5, "CLOSED")]  # fmt: skip


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
    policy = RetryPolicy(max_attempts=100, initial_backoff_s=call_s, max_backoff_s=2.0, jitter=jitter,
                         retryable_status_codes={"ABORTED"})  # fmt: skip
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
    mean = {j: statistics.mean(contention_calls(j, seed) for seed in range(6))
            for j in ("none", "full", "decorrelated")}  # fmt: skip
    assert mean["none"] == 210  # lock-step clients: one winner per round, 20 + 19 + ... + 1
    assert mean["full"] < 0.6 * mean["none"]
    assert mean["decorrelated"] < 0.6 * mean["none"]
