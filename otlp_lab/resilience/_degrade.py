"""Graceful degradation: fallbacks (cached, stale, default) and degradation levels with hysteresis.

Level transitions (recorded as :class:`Transition` where they happen)::

    level L --(pressure >= enter_thresholds[k] for some k >= L)--> level k + 1   at once, may skip levels
    level L --(pressure < exit_thresholds[L - 1] and min_dwell_s at L)--> level L - 1   one step at a time
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from otlp_lab.resilience._breaker import CircuitState
from otlp_lab.resilience._core import ConfigBase, StateRecorder, Transition, check, check_int, check_number

__all__ = ["DegradationConfig", "Degrader", "Fallback", "FallbackCache", "FallbackResult"]

_MISSING: Any = object()


class FallbackResult(NamedTuple):
    """A value served instead of a failed call, and where it came from."""

    value: Any
    source: Literal["fresh", "stale", "default"]


class FallbackCache(ConfigBase):
    """Last good responses by key: fresh for ``fresh_for_s``, then stale until ``stale_for_s``.

    Least recently written entries are evicted beyond ``max_entries`` (counted in ``evicted``).

    Examples
    --------
    >>> c = FallbackCache(fresh_for_s=10, stale_for_s=60)
    >>> c.put("cfg", {"v": 1}, now=0.0)
    >>> c.get("cfg", 5.0), c.get("cfg", 30.0), c.get("cfg", 61.0)
    (FallbackResult(value={'v': 1}, source='fresh'), FallbackResult(value={'v': 1}, source='stale'), None)
    """

    __slots__ = ("_entries", "evicted", "fresh_for_s", "max_entries", "stale_for_s")

    def __init__(
        self, *, fresh_for_s: float = 0.0, stale_for_s: float = math.inf, max_entries: int = 1024
    ) -> None:
        check_number("FallbackCache", "fresh_for_s", fresh_for_s)
        check_number("FallbackCache", "stale_for_s", stale_for_s, low=fresh_for_s)
        check_int("FallbackCache", "max_entries", max_entries)
        self.fresh_for_s = float(fresh_for_s)
        self.stale_for_s = float(stale_for_s)
        self.max_entries = max_entries
        self.evicted = 0
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def put(self, key: Hashable, value: Any, now: float) -> None:
        """Remember ``value`` for ``key`` as of ``now``."""
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evicted += 1

    def get(self, key: Hashable, now: float) -> FallbackResult | None:
        """The cached value with its freshness, or None when absent or too old."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = now - entry[0]
        if age <= self.fresh_for_s:
            return FallbackResult(entry[1], "fresh")
        if age <= self.stale_for_s:
            return FallbackResult(entry[1], "stale")
        return None


class Fallback:
    """What to serve when a call fails: a cached (fresh, then stale) value, else a default.

    Parameters
    ----------
    cache : FallbackCache, optional
        Where successful results are remembered (``remember``) and served from.
    default : object, optional
        Served when the cache has nothing; without it, :meth:`serve` re-raises.

    Attributes
    ----------
    served : dict
        Counts of fallbacks served by source.
    """

    def __init__(self, *, cache: FallbackCache | None = None, default: Any = _MISSING) -> None:
        self.cache = cache
        self.default = default
        self.served: dict[str, int] = {"fresh": 0, "stale": 0, "default": 0}

    def remember(self, key: Hashable, value: Any, now: float) -> None:
        """Record a good result (no-op without a cache)."""
        if self.cache is not None:
            self.cache.put(key, value, now)

    def lookup(self, key: Hashable, now: float) -> FallbackResult | None:
        """The fallback for ``key`` at ``now`` (and count it), or None when there is none."""
        found = self.cache.get(key, now) if self.cache is not None else None
        if found is None and self.default is not _MISSING:
            found = FallbackResult(self.default, "default")
        if found is not None:
            self.served[found.source] += 1
        return found

    def serve(self, key: Hashable, now: float, error: BaseException) -> FallbackResult:
        """The fallback for a call that failed with ``error``; re-raise ``error`` when there is none."""
        found = self.lookup(key, now)
        if found is None:
            raise error
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class DegradationConfig(ConfigBase):
    """Thresholds of a :class:`Degrader`. Pressure is the largest of the normalized signals.

    Parameters
    ----------
    enter_thresholds : tuple of float
        Pressure at which levels 1, 2, ... are entered (non-decreasing).
    exit_thresholds : tuple of float
        Pressure below which level k+1 drops to k; each below its enter threshold (hysteresis).
    min_dwell_s : float
        Time at a level before stepping down.
    error_rate_threshold : float
        Error rate (percent) that counts as pressure 1.
    latency_target_s : float
        Latency that counts as pressure 1.
    half_open_pressure, open_pressure : float
        Pressure of a HALF_OPEN / OPEN circuit breaker (CLOSED is 0).
    """

    enter_thresholds: tuple[float, ...] = (0.7, 0.85, 1.0)
    exit_thresholds: tuple[float, ...] = (0.5, 0.7, 0.85)
    min_dwell_s: float = 10.0
    error_rate_threshold: float = 50.0
    latency_target_s: float = 1.0
    half_open_pressure: float = 0.7
    open_pressure: float = 1.0

    def __post_init__(self) -> None:
        name = "DegradationConfig"
        enter, exit_ = tuple(self.enter_thresholds), tuple(self.exit_thresholds)
        object.__setattr__(self, "enter_thresholds", enter)
        object.__setattr__(self, "exit_thresholds", exit_)
        ok = bool(enter) and all(a <= b for a, b in zip(enter, enter[1:], strict=False))
        check(ok, name, "enter_thresholds", "a non-empty, non-decreasing tuple", enter)
        ok = len(exit_) == len(enter) and all(x < e for x, e in zip(exit_, enter, strict=True))
        check(ok, name, "exit_thresholds", f"{len(enter)} numbers, each below its enter threshold", exit_)
        check_number(name, "min_dwell_s", self.min_dwell_s)
        check_number(name, "error_rate_threshold", self.error_rate_threshold, high=100.0, open_low=True)
        check_number(name, "latency_target_s", self.latency_target_s, open_low=True)
        check_number(name, "half_open_pressure", self.half_open_pressure)
        check_number(name, "open_pressure", self.open_pressure)


class Degrader:
    """Progressive degradation levels (0 = normal) driven by breaker state, errors, latency, load.

    Each ``observe`` updates the signals it is given (the others keep their last value),
    recomputes the pressure and moves the level with hysteresis. Calls declare from which
    level on they are skipped: ``allows(skip_from_level)``.

    Parameters
    ----------
    config : DegradationConfig, optional
    listener : callable, optional
        Called with each level :class:`Transition`.

    Examples
    --------
    >>> d = Degrader(DegradationConfig(min_dwell_s=5.0))
    >>> d.observe(0.0, error_rate=45.0), d.observe(1.0, utilisation=0.2), d.observe(9.0, error_rate=10.0)
    (2, 2, 1)
    >>> d.allows(skip_from_level=1), d.allows(skip_from_level=2)
    (False, True)
    """

    def __init__(
        self, config: DegradationConfig | None = None, *, listener: Callable[[Transition], None] | None = None
    ):
        self.config = config if config is not None else DegradationConfig()
        self._levels = StateRecorder(0, listener)
        self._entered_at_s = -math.inf
        self._signals: dict[str, float] = {}

    @property
    def level(self) -> int:
        """The current level."""
        return self._levels.state

    @property
    def transitions(self) -> list[Transition]:
        """Every level change, ``(at_s, from_level, to_level)``."""
        return self._levels.transitions

    def pressure(self) -> float:
        """The largest normalized signal (0 when none was observed)."""
        return max(self._signals.values(), default=0.0)

    def observe(
        self,
        now: float,
        *,
        error_rate: float | None = None,
        latency_s: float | None = None,
        utilisation: float | None = None,
        breaker_state: CircuitState | None = None,
    ) -> int:
        """Update signals at ``now`` and return the new level.

        Parameters
        ----------
        error_rate : float, optional
            Percent of failing calls.
        latency_s : float, optional
            A latency (e.g. a recent p99).
        utilisation : float, optional
            Fraction of a resource in use (1 = full).
        breaker_state : CircuitState, optional
            The state of the breaker in front of the dependency.
        """
        c = self.config
        if error_rate is not None:
            self._signals["error_rate"] = error_rate / c.error_rate_threshold
        if latency_s is not None:
            self._signals["latency"] = latency_s / c.latency_target_s
        if utilisation is not None:
            self._signals["utilisation"] = utilisation
        if breaker_state is not None:
            by_state = {CircuitState.OPEN: c.open_pressure, CircuitState.HALF_OPEN: c.half_open_pressure}
            self._signals["breaker"] = by_state.get(breaker_state, 0.0)
        p, level = self.pressure(), self.level
        target = sum(1 for threshold in c.enter_thresholds if p >= threshold)
        if target > level:
            self._move(now, target)  # up: at once, to the deepest level whose threshold is reached
        elif level > 0 and p < c.exit_thresholds[level - 1] and now - self._entered_at_s >= c.min_dwell_s:
            self._move(now, level - 1)  # down: one step, after dwelling long enough
        return self.level

    def allows(self, skip_from_level: float = math.inf) -> bool:
        """May a call that is skipped from level ``skip_from_level`` on run now? (inf = critical)."""
        return self.level < skip_from_level

    def _move(self, now: float, level: int) -> None:
        self._entered_at_s = now
        self._levels.move(now, level)

    def __repr__(self) -> str:
        return f"Degrader(level={self.level}, pressure={self.pressure():.2f})"
