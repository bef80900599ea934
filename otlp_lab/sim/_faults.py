"""Faults on a timeline: what breaks, where, from when, for how long.

Each fault is a frozen config object. While it is active it changes the state of the
instances it targets (down, slower, added latency, failing a share of requests) or, for a
partition, the path between two services. Every fault is also a row of the ground-truth
``faults`` table the run writes into the Lab.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from otlp_lab.errors import ScenarioError

__all__ = [
    "Fault",
    "Crash",
    "Latency",
    "Errors",
    "ZoneOutage",
    "Partition",
    "Brownout",
    "CpuContention",
    "FAULT_KINDS",
]


def _bad(key: str, what: str, v: Any) -> ScenarioError:
    return ScenarioError(f"scenario key '{key}' must be {what}. Got {v!r} instead.", key=key)


def _num(key: str, v: Any, *, lo: float = 0.0, hi: float = math.inf, positive: bool = False) -> None:
    ok = (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and lo <= v <= hi
        and (v > 0 or not positive)
    )
    if not ok:
        what = (
            "a positive number"
            if positive
            else (f"a number between {lo:g} and {hi:g}" if hi < math.inf else "a non-negative number")
        )
        raise _bad(key, what, v)


@dataclass(frozen=True, slots=True)
class Effect:
    """What an active fault does to one instance (combined across overlapping faults by the engine)."""

    down: bool = False
    factor: float = 1.0
    delay_s: float = 0.0
    error_rate: float = 0.0
    status: str | int = "UNAVAILABLE"
    before_work: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """Base of the faults: active from ``at_s`` for ``duration_s`` seconds (None: to the end of the run)."""

    at_s: float = 0.0
    duration_s: float | None = None
    kind: ClassVar[str] = ""
    _params: ClassVar[tuple[str, ...]] = ()

    @property
    def end_s(self) -> float:
        return math.inf if self.duration_s is None else self.at_s + self.duration_s

    def params(self) -> dict[str, Any]:
        """The kind-specific settings (the ``params`` column of the ``faults`` table)."""
        return {p: getattr(self, p) for p in self._params}

    def effect(self) -> Effect | None:
        """The change to each targeted instance (None for faults on a path, not an instance)."""
        return None

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        _num(f"{key}.at_s", self.at_s)
        if self.duration_s is not None:
            _num(f"{key}.duration_s", self.duration_s, positive=True)

    def _check_service(self, key: str, name: Any, services: Callable[[str], Any]) -> Any:
        svc = services(name) if isinstance(name, str) else None
        if svc is None:
            raise ScenarioError(
                f"scenario key '{key}' must name a service of the scenario. Got {name!r} instead.", key=key
            )
        return svc

    def targets(
        self, fleet: dict[str, int], zone_of: Callable[[str, int], str | None]
    ) -> list[tuple[str, int]]:
        """``(service, instance index)`` pairs this fault acts on, given instances per service."""
        return []


@dataclass(frozen=True, slots=True, kw_only=True)
class _OnInstances(Fault):
    """A fault on one instance of a service, or on all of them (``instance=None``)."""

    service: str
    instance: int | None = None

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        Fault.check(self, key, services, zones)
        svc = self._check_service(f"{key}.service", self.service, services)
        i = self.instance
        if i is not None and (isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < svc.instances):
            raise _bad(
                f"{key}.instance", f"an instance index from 0 to {svc.instances - 1} (or null for all)", i
            )

    def targets(
        self, fleet: dict[str, int], zone_of: Callable[[str, int], str | None]
    ) -> list[tuple[str, int]]:
        n = fleet[self.service]
        return [(self.service, i) for i in (range(n) if self.instance is None else (self.instance,))]


@dataclass(frozen=True, slots=True, kw_only=True)
class Crash(_OnInstances):
    """Instances crash at ``at_s`` and restart ``duration_s`` later, empty.

    Requests in flight or queued there fail at once (connection reset); new ones are refused
    (``UNAVAILABLE``) until the restart.
    """

    kind: ClassVar[str] = "crash"

    def effect(self) -> Effect:
        return Effect(down=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency(_OnInstances):
    """Every request served by the instances takes ``delay_s`` longer.

    The worker stays busy meanwhile (a slow disk, a lock, a stalled dependency inside the
    process), so the instance's capacity drops too.
    """

    delay_s: float = 0.1
    kind: ClassVar[str] = "latency"
    _params: ClassVar[tuple[str, ...]] = ("delay_s",)

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        _OnInstances.check(self, key, services, zones)
        _num(f"{key}.delay_s", self.delay_s)

    def effect(self) -> Effect:
        return Effect(delay_s=self.delay_s)


@dataclass(frozen=True, slots=True, kw_only=True)
class Errors(_OnInstances):
    """A share ``error_rate`` of the requests fail with ``status``.

    ``before_work=True`` (Istio's fault abort) fails them on arrival; ``False`` after the work is done.
    """

    error_rate: float = 0.5
    status: str | int = "UNAVAILABLE"
    before_work: bool = True
    kind: ClassVar[str] = "errors"
    _params: ClassVar[tuple[str, ...]] = ("error_rate", "status", "before_work")

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        _OnInstances.check(self, key, services, zones)
        _num(f"{key}.error_rate", self.error_rate, hi=1.0)
        if isinstance(self.status, bool) or not isinstance(self.status, (str, int)):
            raise _bad(f"{key}.status", "a gRPC status name or an HTTP status code", self.status)
        if not isinstance(self.before_work, bool):
            raise _bad(f"{key}.before_work", "true or false", self.before_work)

    def effect(self) -> Effect:
        return Effect(error_rate=self.error_rate, status=self.status, before_work=self.before_work)


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuContention(_OnInstances):
    """The instances work ``factor`` times slower (a noisy neighbour, a throttled CPU)."""

    factor: float = 2.0
    kind: ClassVar[str] = "cpu"
    _params: ClassVar[tuple[str, ...]] = ("factor",)

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        _OnInstances.check(self, key, services, zones)
        _num(f"{key}.factor", self.factor, positive=True)

    def effect(self) -> Effect:
        return Effect(factor=self.factor)


@dataclass(frozen=True, slots=True, kw_only=True)
class Brownout(Fault):
    """A dependency degrades as a whole: every instance of ``service`` slower by ``delay_s`` and failing ``error_rate``."""

    service: str
    delay_s: float = 0.2
    error_rate: float = 0.1
    status: str | int = "UNAVAILABLE"
    kind: ClassVar[str] = "brownout"
    _params: ClassVar[tuple[str, ...]] = ("delay_s", "error_rate", "status")

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        Fault.check(self, key, services, zones)
        self._check_service(f"{key}.service", self.service, services)
        _num(f"{key}.delay_s", self.delay_s)
        _num(f"{key}.error_rate", self.error_rate, hi=1.0)

    def targets(
        self, fleet: dict[str, int], zone_of: Callable[[str, int], str | None]
    ) -> list[tuple[str, int]]:
        return [(self.service, i) for i in range(fleet[self.service])]

    def effect(self) -> Effect:
        return Effect(delay_s=self.delay_s, error_rate=self.error_rate, status=self.status, before_work=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ZoneOutage(Fault):
    """Every instance in ``zone`` is down (as a crash) for the duration."""

    zone: str
    kind: ClassVar[str] = "zone_outage"
    _params: ClassVar[tuple[str, ...]] = ("zone",)

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        Fault.check(self, key, services, zones)
        if self.zone not in zones:
            raise _bad(f"{key}.zone", f"one of the scenario's zones {sorted(zones)}", self.zone)

    def targets(
        self, fleet: dict[str, int], zone_of: Callable[[str, int], str | None]
    ) -> list[tuple[str, int]]:
        return [(s, i) for s, n in fleet.items() for i in range(n) if zone_of(s, i) == self.zone]

    def effect(self) -> Effect:
        return Effect(down=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Partition(Fault):
    """The network between ``service`` and ``peer`` fails (both directions).

    ``mode="drop"``: requests vanish; callers wait for their timeout (or, with none, until the
    partition heals and the connection resets). ``mode="reject"``: they fail at once (``UNAVAILABLE``).
    """

    service: str
    peer: str
    mode: str = "drop"
    kind: ClassVar[str] = "partition"
    _params: ClassVar[tuple[str, ...]] = ("peer", "mode")

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        Fault.check(self, key, services, zones)
        self._check_service(f"{key}.service", self.service, services)
        self._check_service(f"{key}.peer", self.peer, services)
        if self.peer == self.service:
            raise _bad(f"{key}.peer", "another service than 'service'", self.peer)
        if self.mode not in ("drop", "reject"):
            raise _bad(f"{key}.mode", "'drop' or 'reject'", self.mode)


FAULT_KINDS: dict[str, type[Fault]] = {
    c.kind: c for c in (Crash, Latency, Errors, CpuContention, Brownout, ZoneOutage, Partition)
}
