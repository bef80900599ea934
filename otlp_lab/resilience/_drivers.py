"""Drivers: run one :class:`RetryCall` state machine on an asyncio loop or in a SimPy environment.

Both loops are the same: ask ``call.next(now)``; on ``Send`` start the attempt concurrently;
on ``Wait`` sleep, waking early when an attempt finishes, and report it; on ``Cancel``
stop attempts; on ``Done``/``GiveUp`` cancel the losers and return the decision.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol

from otlp_lab.errors import ResilienceError
from otlp_lab.resilience._core import Outcome
from otlp_lab.resilience._retry import Cancel, Done, GiveUp, RetryCall, Send, Wait
from otlp_lab.resilience._timeout import Deadline, deadline_scope

__all__ = ["drive_async", "simpy_call"]


class _Startable(Protocol):
    def start(self, now: float) -> RetryCall: ...


def _machine(target: RetryCall | _Startable, now: float) -> RetryCall:
    """A started machine: ``target`` itself, or ``target.start(now)`` (a PolicyStack or a policy)."""
    return target if isinstance(target, RetryCall) else target.start(now)


def _nothing_to_wait_for(call: RetryCall) -> ResilienceError:  # pragma: no cover - a machine bug
    return ResilienceError(f"{call!r} asked to wait forever with no attempt running")


async def drive_async(
    call: RetryCall,
    attempt_fn: Callable[[int], Awaitable[Outcome]],
    *,
    clock: Callable[[], float] | None = None,
) -> Done | GiveUp:
    """Run ``call`` with ``attempt_fn(attempt) -> Outcome`` coroutines; return the final decision.

    Each attempt runs as its own task, inside :func:`deadline_scope` of its timeout, so a
    nested :class:`PolicyStack` sees the remaining time. Cancelled attempts get
    ``asyncio.CancelledError``. An exception raised by ``attempt_fn`` propagates.

    Parameters
    ----------
    call : RetryCall
        A started machine (``policy.start(now)`` or ``stack.start(now)`` on the same clock).
    attempt_fn : callable
        ``async def attempt_fn(attempt: int) -> Outcome``.
    clock : callable, optional
        The clock ``call`` was started on; ``loop.time`` by default.
    """
    clock = clock or asyncio.get_running_loop().time
    tasks: dict[int, asyncio.Task[Outcome]] = {}
    try:
        while True:
            now = clock()
            decision = call.next(now)
            if isinstance(decision, Send):
                with deadline_scope(Deadline(now + decision.timeout_s)):
                    tasks[decision.attempt] = asyncio.ensure_future(attempt_fn(decision.attempt))
            elif isinstance(decision, Wait):
                timeout = None if math.isinf(decision.delay_s) else decision.delay_s
                if tasks:
                    await asyncio.wait(tasks.values(), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                elif timeout is None:  # pragma: no cover - a machine bug
                    raise _nothing_to_wait_for(call)
                else:
                    await asyncio.sleep(timeout)
                for attempt in [a for a, t in tasks.items() if t.done()]:
                    call.on_outcome(clock(), attempt, tasks.pop(attempt).result())
            elif isinstance(decision, Cancel):
                for attempt in decision.attempts:
                    tasks.pop(attempt).cancel()
            else:
                for attempt in decision.cancel:
                    tasks[attempt].cancel()
                return decision
    finally:
        call.abort(clock())  # a no-op after Done/GiveUp; releases slots if we are being cancelled
        leftovers = list(tasks.values())
        for task in leftovers:
            task.cancel()
        if leftovers:  # collect them so no "exception was never retrieved" is left behind
            await asyncio.gather(*leftovers, return_exceptions=True)


def simpy_call(
    env: Any,
    target: RetryCall | _Startable,
    attempt_fn: Callable[[int], Generator[Any, Any, Outcome]],
) -> Generator[Any, Any, Done | GiveUp]:
    """SimPy process body: run a call under ``target``; ``yield from`` it, get ``Done``/``GiveUp``.

    ``Wait`` becomes ``env.timeout(delay_s)`` raced against the running attempts.

    Parameters
    ----------
    env : simpy.Environment
    target : PolicyStack or RetryPolicy or HedgingPolicy or RetryCall
        Anything with ``start(now)``, or an already started machine.
    attempt_fn : callable
        ``attempt_fn(attempt)`` returns a process generator whose return value is an
        :class:`Outcome`. Cancelled attempts receive ``simpy.Interrupt`` (catch it to clean
        up; if uncaught it is swallowed).

    Examples
    --------
    >>> import simpy
    >>> from otlp_lab.resilience import Outcome, RetryPolicy, simpy_call
    >>> env = simpy.Environment()
    >>> def attempt(n):
    ...     yield env.timeout(1.0)
    ...     return Outcome.success(n) if n == 2 else Outcome.failure("UNAVAILABLE")
    >>> def client(env, out):
    ...     policy = RetryPolicy(initial_backoff_s=0.5, jitter="none")
    ...     out.append((yield from simpy_call(env, policy, attempt)))
    >>> out = []; _ = env.process(client(env, out)); env.run()
    >>> out[0].outcome.value, env.now
    (2, 2.5)
    """
    call = _machine(target, env.now)
    procs: dict[int, Any] = {}
    try:
        while True:
            decision = call.next(env.now)
            if isinstance(decision, Send):
                procs[decision.attempt] = env.process(attempt_fn(decision.attempt))
            elif isinstance(decision, Wait):
                events = list(procs.values())
                if not math.isinf(decision.delay_s):
                    events.append(env.timeout(decision.delay_s))
                if not events:  # pragma: no cover - a machine bug
                    raise _nothing_to_wait_for(call)
                yield env.any_of(events)
                for attempt in [a for a, p in procs.items() if p.triggered]:
                    proc = procs.pop(attempt)
                    if not proc.ok:  # the attempt crashed: fail loudly, as SimPy would
                        proc.defused = True
                        raise proc.value
                    call.on_outcome(env.now, attempt, proc.value)
            elif isinstance(decision, Cancel):
                for attempt in decision.attempts:
                    _interrupt(procs.pop(attempt))
            else:
                for attempt in decision.cancel:
                    _interrupt(procs.pop(attempt))
                return decision
    finally:
        call.abort(env.now)
        for proc in procs.values():
            _interrupt(proc)


def _interrupt(proc: Any) -> None:
    """Interrupt a SimPy attempt process; an uncaught Interrupt in it is defused, not raised."""
    if proc.is_alive:
        proc.defused = True
        proc.interrupt("cancelled")
