"""Workloads: open loop (Poisson, with a time-varying rate) and closed loop (users with think time)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from otlp_lab._config import fail
from otlp_lab.errors import ScenarioError
from otlp_lab.sim._dist import Distribution, Exponential

__all__ = ["Rate", "Steady", "Steps", "Burst", "Diurnal", "OpenLoop", "ClosedLoop", "Workload"]


def _number(key: str, v: Any, *, positive: bool = False, lo: float = 0.0, hi: float = math.inf) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
    if ok and positive:
        ok = v > 0
    if not ok:
        if positive:
            what = "a positive number"
        elif hi < math.inf:
            what = f"a number between {lo:g} and {hi:g}"
        else:
            what = "a non-negative number"
        raise fail(ScenarioError, key, what, v)


# ---------------------------------------------------------------- rates


class Rate:
    """A request rate over simulated time (requests per second)."""

    __slots__ = ()
    kind = ""

    def rate_at(self, t_s: float) -> float:  # pragma: no cover
        raise NotImplementedError

    @property
    def max_rps(self) -> float:  # pragma: no cover
        raise NotImplementedError

    def check(self, key: str) -> None:  # pragma: no cover
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for f in self.__dataclass_fields__:  # type: ignore[attr-defined]
            v = getattr(self, f)
            d[f] = [list(x) for x in v] if isinstance(v, tuple) else v
        return d

    def arrivals(self, rng: random.Random) -> Iterator[float]:
        """Arrival times of a Poisson process with this rate (thinning, Lewis & Shedler 1979)."""
        top = self.max_rps
        if top <= 0:
            return
        rate_at, expo, uni = self.rate_at, rng.expovariate, rng.random
        t = 0.0
        while True:
            t += expo(top)
            r = rate_at(t)
            if r >= top or uni() * top < r:
                yield t


@dataclass(frozen=True, slots=True)
class Steady(Rate):
    """A constant rate."""

    rps: float
    kind = "steady"

    def rate_at(self, t_s: float) -> float:
        return self.rps

    @property
    def max_rps(self) -> float:
        return self.rps

    def check(self, key: str) -> None:
        _number(f"{key}.rps", self.rps)

    def arrivals(self, rng: random.Random) -> Iterator[float]:
        if self.rps <= 0:
            return
        expo, rate, t = rng.expovariate, self.rps, 0.0
        while True:
            t += expo(rate)
            yield t


@dataclass(frozen=True, slots=True)
class Steps(Rate):
    """``base_rps``, then each ``(at_s, rps)`` of ``steps`` from its time on."""

    base_rps: float
    steps: tuple[tuple[float, float], ...] = ()
    kind = "steps"

    def rate_at(self, t_s: float) -> float:
        r = self.base_rps
        for at_s, rps in self.steps:
            if t_s < at_s:
                break
            r = rps
        return r

    @property
    def max_rps(self) -> float:
        return max([self.base_rps, *(s[1] for s in self.steps)])

    def check(self, key: str) -> None:
        _number(f"{key}.base_rps", self.base_rps)
        last = -math.inf
        for n, step in enumerate(self.steps):
            if not isinstance(step, (tuple, list)) or len(step) != 2:
                raise ScenarioError(
                    f"scenario key '{key}.steps[{n}]' must be a pair [at_s, rps]. Got {step!r} instead.",
                    key=f"{key}.steps",
                )
            _number(f"{key}.steps[{n}].at_s", step[0])
            _number(f"{key}.steps[{n}].rps", step[1])
            if step[0] <= last:
                raise ScenarioError(
                    f"scenario key '{key}.steps' must be in increasing time order. Got {step[0]!r} after {last!r}.",
                    key=f"{key}.steps",
                )
            last = step[0]


@dataclass(frozen=True, slots=True)
class Burst(Rate):
    """``base_rps``, except ``burst_rps`` from ``start_s`` for ``duration_s`` (a load spike)."""

    base_rps: float
    burst_rps: float
    start_s: float
    duration_s: float
    kind = "burst"

    def rate_at(self, t_s: float) -> float:
        return self.burst_rps if self.start_s <= t_s < self.start_s + self.duration_s else self.base_rps

    @property
    def max_rps(self) -> float:
        return max(self.base_rps, self.burst_rps)

    def check(self, key: str) -> None:
        _number(f"{key}.base_rps", self.base_rps)
        _number(f"{key}.burst_rps", self.burst_rps)
        _number(f"{key}.start_s", self.start_s)
        _number(f"{key}.duration_s", self.duration_s, positive=True)


@dataclass(frozen=True, slots=True)
class Diurnal(Rate):
    """``mean_rps * (1 + amplitude * sin(2 pi (t + phase_s) / period_s))``: a day compressed to ``period_s``."""

    mean_rps: float
    amplitude: float = 0.5
    period_s: float = 86_400.0
    phase_s: float = 0.0
    kind = "diurnal"

    def rate_at(self, t_s: float) -> float:
        return self.mean_rps * (
            1.0 + self.amplitude * math.sin(2.0 * math.pi * (t_s + self.phase_s) / self.period_s)
        )

    @property
    def max_rps(self) -> float:
        return self.mean_rps * (1.0 + self.amplitude)

    def check(self, key: str) -> None:
        _number(f"{key}.mean_rps", self.mean_rps)
        _number(f"{key}.amplitude", self.amplitude, hi=1.0)
        _number(f"{key}.period_s", self.period_s, positive=True)
        _number(f"{key}.phase_s", self.phase_s)


RATE_KINDS: dict[str, type[Rate]] = {c.kind: c for c in (Steady, Steps, Burst, Diurnal)}


# ---------------------------------------------------------------- workloads


@dataclass(frozen=True, slots=True)
class _WorkloadBase:
    target: str
    _: KW_ONLY
    deadline_s: float | None = None
    client: str = "loadgen"
    keys: int | None = None
    policy: str | None = None

    def check_common(self, key: str) -> None:
        if not isinstance(self.target, str) or not self.target:
            raise ScenarioError(
                f"scenario key '{key}.target' must name an endpoint as 'service' or 'service/endpoint'. Got {self.target!r} instead.",
                key=f"{key}.target",
            )
        if self.deadline_s is not None:
            _number(f"{key}.deadline_s", self.deadline_s, positive=True)
        if not isinstance(self.client, str) or not self.client:
            raise ScenarioError(
                f"scenario key '{key}.client' must be a service name. Got {self.client!r} instead.",
                key=f"{key}.client",
            )
        if self.keys is not None and (
            isinstance(self.keys, bool) or not isinstance(self.keys, int) or self.keys < 1
        ):
            raise ScenarioError(
                f"scenario key '{key}.keys' must be a positive integer. Got {self.keys!r} instead.",
                key=f"{key}.keys",
            )


@dataclass(frozen=True, slots=True)
class OpenLoop(_WorkloadBase):
    """Requests arrive as a Poisson process whatever the fleet does (an open system).

    Parameters
    ----------
    target : str
        ``"service"`` (its first endpoint) or ``"service/endpoint"``.
    rate : float or Rate
        Requests per second, or a :class:`Steady` / :class:`Steps` / :class:`Burst` / :class:`Diurnal` profile.
    deadline_s : float, optional
        Each request's deadline, propagated down the call graph.
    client : str
        The service name of the load generator's spans (``"loadgen"``).
    keys : int, optional
        Each request carries a key drawn uniformly from ``keys`` values (for ring-hash balancing).
    policy : str, optional
        The load generator's policy stack (a name in ``Scenario.policies``); the scenario's
        ``default_policy`` when omitted.
    """

    rate: float | Rate = 10.0
    kind = "open"

    @property
    def profile(self) -> Rate:
        return self.rate if isinstance(self.rate, Rate) else Steady(float(self.rate))

    def check(self, key: str) -> None:
        self.check_common(key)
        if isinstance(self.rate, Rate):
            self.rate.check(f"{key}.rate")
        else:
            _number(f"{key}.rate", self.rate)

    def offered_rps(self, t_s: float) -> float:
        return self.profile.rate_at(t_s)


@dataclass(frozen=True, slots=True)
class ClosedLoop(_WorkloadBase):
    """``users`` users, each sending a request, waiting for its answer, then thinking (a closed system)."""

    users: int = 10
    think_time: Distribution = field(default_factory=lambda: Exponential(1.0))
    kind = "closed"

    def check(self, key: str) -> None:
        self.check_common(key)
        if isinstance(self.users, bool) or not isinstance(self.users, int) or self.users < 1:
            raise ScenarioError(
                f"scenario key '{key}.users' must be a positive integer. Got {self.users!r} instead.",
                key=f"{key}.users",
            )
        if not isinstance(self.think_time, Distribution):
            raise ScenarioError(
                f"scenario key '{key}.think_time' must be a distribution such as Exponential(1.0). Got {self.think_time!r} instead.",
                key=f"{key}.think_time",
            )
        self.think_time.check(f"{key}.think_time")


Workload = OpenLoop | ClosedLoop
