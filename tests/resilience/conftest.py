"""Helpers for the resilience tests: run a policy against a scripted server in SimPy virtual time, and
the SimPy driver loop as it was before its fast path, to hold the real one to its decisions."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from otlp_lab.resilience import Cancel, Done, GiveUp, Outcome, Send, Wait, simpy_call

simpy = pytest.importorskip("simpy")


@dataclass
class Run:
    """What a scripted run did: the final decision, when it ended, and each attempt's start and fate."""

    final: Done | GiveUp
    ended_at_s: float
    sent_at_s: dict[int, float] = field(default_factory=dict)
    cancelled: list[int] = field(default_factory=list)


def run_script(
    target,
    script: Mapping[int, tuple[float, Outcome]] | Callable[[int], tuple[float, Outcome]],
) -> Run:
    """Run ``target`` (a policy, stack or started machine at t=0) where attempt n takes
    ``script[n][0]`` seconds and returns ``script[n][1]``."""
    env = simpy.Environment()
    sent: dict[int, float] = {}
    cancelled: list[int] = []
    box: list[tuple[Done | GiveUp, float]] = []

    def attempt(n: int):
        sent[n] = env.now
        duration_s, outcome = script(n) if callable(script) else script[n]
        try:
            yield env.timeout(duration_s)
        except simpy.Interrupt:
            cancelled.append(n)
            return Outcome.failure("CANCELLED")
        return outcome

    def client():
        final = yield from simpy_call(env, target, attempt)
        box.append((final, env.now))

    env.process(client())
    env.run()  # also lets cancelled attempts' pending timeouts drain
    return Run(box[0][0], box[0][1], sent, cancelled)


def _cancel(proc) -> None:
    if proc.is_alive:
        proc.defused = True
        proc.interrupt("cancelled")


def reference_simpy_call(env, call, attempt_fn):
    """``simpy_call`` before its fast path: a process per attempt, an ``any_of`` per wait (``call``
    is a started machine). The simple loop that the real driver must decide exactly like."""
    procs = {}
    try:
        while True:
            decision = call.next(env.now)
            if isinstance(decision, Send):
                procs[decision.attempt] = env.process(attempt_fn(decision.attempt))
            elif isinstance(decision, Wait):
                events = list(procs.values())
                if not math.isinf(decision.delay_s):
                    events.append(env.timeout(decision.delay_s))
                yield env.any_of(events)
                for attempt in [a for a, p in procs.items() if p.triggered]:
                    call.on_outcome(env.now, attempt, procs.pop(attempt).value)
            elif isinstance(decision, Cancel):
                for attempt in decision.attempts:
                    _cancel(procs.pop(attempt))
            else:
                for attempt in decision.cancel:
                    _cancel(procs.pop(attempt))
                return decision
    finally:
        call.abort(env.now)
        for proc in procs.values():  # e.g. an attempt whose timeout ended the call
            _cancel(proc)
