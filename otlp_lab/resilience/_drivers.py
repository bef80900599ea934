"""Drivers: run one :class:`RetryCall` state machine on an asyncio loop or in a SimPy environment.

Both loops are the same: ask ``call.next(now)``; on ``Send`` start the attempt concurrently;
on ``Wait`` sleep, waking early when an attempt finishes, and report it; on ``Cancel``
stop attempts; on ``Done``/``GiveUp`` cancel the losers and return the decision.

The SimPy driver is on the simulator's hot path, so it takes a shortcut where the machine
allows one, without changing a decision: an attempt that nothing can overlap (every
:class:`RetryPolicy` attempt) runs inline in the calling process instead of in a process of
its own, and its per-try timer is an entry in one heap per environment instead of a SimPy
event (see :class:`_Timers`). A successful hop then costs the SimPy events of the attempt
itself and nothing more: no process start and end, no ``any_of``, no timeout left in the queue.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Generator
from heapq import heappop, heappush
from typing import Any, Protocol

from otlp_lab.errors import ResilienceError
from otlp_lab.resilience._core import Outcome
from otlp_lab.resilience._retry import Cancel, Decision, Done, GiveUp, HedgingPolicy, RetryCall, Send, Wait
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

    An attempt that cannot overlap another (any :class:`RetryPolicy` attempt) runs inline, in
    the calling process; its per-try timer costs no SimPy event unless it fires. If it fires,
    the machine decides exactly as it would at any wake-up (``Cancel``, or the end of the call)
    and the attempt carries on in a process of its own, where it receives ``simpy.Interrupt``.
    Hedges (attempts that overlap) run as processes from the start. Either way the decisions,
    and the simulated times they are taken at, are those of the process-per-attempt loop.

    Parameters
    ----------
    env : simpy.Environment
    target : PolicyStack or RetryPolicy or HedgingPolicy or RetryCall
        Anything with ``start(now)``, or an already started machine.
    attempt_fn : callable
        ``attempt_fn(attempt)`` returns a process generator whose return value is an
        :class:`Outcome`. Cancelled attempts receive ``simpy.Interrupt`` (catch it to clean
        up; if uncaught it is swallowed) and the call goes on without waiting for them.

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
    if _Interruption is None:
        _import_simpy()
    call = _machine(target, env._now)
    host = env.active_process  # the process running this generator: inline attempts run in it
    watch = None
    if host is not None and not isinstance(call.policy, HedgingPolicy):
        watch = _Watch(host, _Timers.of(env))
    procs: dict[int, Any] = {}
    try:
        decision = call.next(env._now)
        while True:
            if isinstance(decision, Send):
                if watch is not None and not procs and decision.timeout_s > 0.0:
                    decision = yield from _inline(env, call, decision, attempt_fn, watch, procs)
                    continue
                procs[decision.attempt] = env.process(attempt_fn(decision.attempt))
            elif isinstance(decision, Wait):
                delay = decision.delay_s
                if procs:
                    events = list(procs.values())
                    if delay != math.inf:
                        events.append(env.timeout(delay))
                    if len(events) == 1:
                        yield events[0]
                    else:
                        race = env.any_of(events)
                        race.defused = (
                            True  # if this driver is interrupted, a cancelled attempt fails it later
                        )
                        yield race
                    for attempt in [a for a, p in procs.items() if p.triggered]:
                        proc = procs.pop(attempt)
                        if not proc.ok:  # the attempt crashed: fail loudly, as SimPy would
                            proc.defused = True
                            raise proc.value
                        call.on_outcome(env._now, attempt, proc.value)
                elif delay != math.inf:
                    yield env.timeout(delay)
                else:  # pragma: no cover - a machine bug
                    raise _nothing_to_wait_for(call)
            elif isinstance(decision, Cancel):
                for attempt in decision.attempts:
                    _interrupt(procs.pop(attempt))
            else:
                for attempt in decision.cancel:
                    _interrupt(procs.pop(attempt))
                return decision
            decision = call.next(env._now)
    finally:
        if watch is not None:
            watch.disarm()
        call.abort(env._now)
        for proc in procs.values():
            _interrupt(proc)


def _inline(
    env: Any,
    call: RetryCall,
    send: Send,
    attempt_fn: Callable[[int], Generator[Any, Any, Outcome]],
    watch: _Watch,
    procs: dict[int, Any],
) -> Generator[Any, Any, Decision]:
    """Run attempt ``send.attempt`` in the calling process, driving its generator by hand.

    Returns the machine's next decision. If the per-try timer fires first, the machine decides
    then (as the process-per-attempt loop would at that wake-up) and the attempt moves to a
    process of its own in ``procs``, which the caller's loop cancels like any other.
    """
    n = send.attempt
    gen = attempt_fn(n)
    watch.arm(env, send.timeout_s)
    try:
        event = gen.send(None)
        while True:
            try:
                value = yield event
            except _Interrupt as exc:
                cause = exc.cause
                if cause is watch:  # the per-try timer fired with the attempt still out
                    watch.delivered()
                    decision = call.next(env._now)
                    if isinstance(decision, Wait) and n in call.running:  # woke a hair early (rounding)
                        watch.arm(env, decision.delay_s)
                        continue
                    procs[n] = env.process(_adopt(gen, event))
                    return decision
                if type(cause) is not _Watch:  # the caller itself was interrupted
                    watch.disarm()
                    procs[n] = env.process(_adopt(gen, event))  # simpy_call's finally cancels it
                    raise
                event = gen.throw(exc)  # the timer of a call nested inside this attempt
            except GeneratorExit:
                watch.disarm()
                gen.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - a failed event: the attempt's to handle
                event = gen.throw(exc)
            else:
                event = gen.send(value)
    except StopIteration as stop:
        watch.disarm()
        call.on_outcome(env._now, n, stop.value)
    return call.next(env._now)


def _adopt(gen: Generator[Any, Any, Outcome], event: Any) -> Generator[Any, Any, Outcome]:
    """Process body: carry on with an attempt generator that was started inline and waits for ``event``."""
    try:
        while True:
            try:
                value = yield event
            except BaseException as exc:  # noqa: BLE001 - an interrupt, a failed event: the attempt's
                event = gen.throw(exc)
            else:
                event = gen.send(value)
    except StopIteration as stop:
        return stop.value


def _interrupt(proc: Any) -> None:
    """Interrupt a SimPy attempt process; an uncaught Interrupt in it is defused, not raised."""
    if proc.is_alive:
        proc.defused = True
        proc.interrupt("cancelled")


# SimPy is optional (the [lab] extra): its classes are looked up by the first simpy_call.
_Interrupt: Any = None
_Interruption: Any = None


def _import_simpy() -> None:
    global _Interrupt, _Interruption  # noqa: PLW0603 - a lazy import, done once
    from simpy import Interrupt
    from simpy.events import Interruption

    _Interrupt, _Interruption = Interrupt, Interruption


class _Watch:
    """The per-try timer of the attempt one :func:`simpy_call` runs inline, in its host process.

    ``arm`` puts an entry in the environment's :class:`_Timers`; ``ticket`` tells the entry
    that is current from stale ones (every ``arm`` and ``disarm`` moves it on). A current
    entry that comes due interrupts the host with this watch as the cause: only this call's
    driver claims it, and a driver higher up the same process passes it down to its attempt.
    """

    __slots__ = ("_interruption", "host", "ticket", "timers")

    def __init__(self, host: Any, timers: _Timers) -> None:
        self.host = host
        self.timers = timers
        self.ticket = 0
        self._interruption: Any = None

    def arm(self, env: Any, delay_s: float) -> None:
        self.ticket += 1
        if delay_s != math.inf:
            self.timers.add(env, delay_s, self, self.ticket)

    def due(self, env: Any, ticket: int) -> None:
        """The entry ``ticket`` came due: look again once the events already due now have run.

        As with a SimPy timeout raced in an ``any_of``, an answer that was already on its way
        for this very instant still wins; only then is the host interrupted.
        """
        check = env.timeout(0.0, ticket)
        check.callbacks.append(self._check)

    def _check(self, check: Any) -> None:
        if check.value == self.ticket and self.host.is_alive:
            self.ticket += 1
            self._interruption = _Interruption(self.host, self)

    def disarm(self) -> None:
        self.ticket += 1
        pending = self._interruption
        if pending is not None:  # the host woke for another reason first: drop the interrupt
            self._interruption = None
            if pending.callbacks:
                pending.callbacks.clear()

    def delivered(self) -> None:
        """The interrupt of this watch reached its driver."""
        self._interruption = None


class _Timers:
    """The per-try timers of the inline attempts of one environment: a heap and one SimPy timeout.

    An entry is ``(at_s, seq, watch, ticket)``. A timer no longer wanted is not removed: its
    entry goes stale (the watch's ticket moved on) and is dropped when it reaches the top. A
    SimPy timeout is pending only for the earliest entry still current, so the timers of
    attempts that come back in time (nearly all) cost a heap entry each and no SimPy event.
    Entries come due at the exact float time a ``env.timeout(delay_s)`` made at ``arm`` would.
    One instance per environment, kept on it (``of``), so it goes when the environment goes.
    """

    __slots__ = ("heap", "seq", "wake_at", "wakes")

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, _Watch, int]] = []
        self.seq = 0
        self.wake_at = math.inf
        self.wakes = 0

    @staticmethod
    def of(env: Any) -> _Timers:
        timers = getattr(env, "_otlp_lab_timers", None)
        if timers is None:
            timers = _Timers()
            env._otlp_lab_timers = timers
        return timers

    def add(self, env: Any, delay_s: float, watch: _Watch, ticket: int) -> None:
        at = env.now + delay_s
        self.seq += 1
        heappush(self.heap, (at, self.seq, watch, ticket))
        if at < self.wake_at:
            self._wake(env, at)

    def _wake(self, env: Any, at: float) -> None:
        """Schedule a sweep at exactly ``at``; an earlier-scheduled, later sweep is then ignored."""
        now = env.now
        delay = at - now
        while now + delay < at:  # float rounding: land on ``at`` itself
            delay = math.nextafter(delay, math.inf)
        while now + delay > at:
            delay = math.nextafter(delay, -math.inf)
        self.wake_at = at
        self.wakes += 1
        wake = env.timeout(delay, self.wakes)
        wake.callbacks.append(self._sweep)

    def _sweep(self, wake: Any) -> None:
        if wake.value != self.wakes:  # superseded by an earlier one
            return
        env = wake.env
        now = env.now
        heap = self.heap
        self.wake_at = math.inf
        while heap:
            at, _, watch, ticket = heap[0]
            if watch.ticket != ticket:
                heappop(heap)  # stale: the attempt is back, or was re-armed
            elif at <= now:
                heappop(heap)
                watch.due(env, ticket)
            else:
                self._wake(env, at)
                return
