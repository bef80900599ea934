"""Helpers for the resilience tests: run a policy against a scripted server in SimPy virtual time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pytest

from otlp_lab.resilience import Done, GiveUp, Outcome, simpy_call

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
