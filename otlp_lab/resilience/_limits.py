"""Limits: Envoy-style concurrency thresholds, a token-bucket rate limiter, priority load shedding.

All three count what they refuse (``rejected``): a limit that drops says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from otlp_lab.errors import ConfigError, RejectedError, ResilienceError
from otlp_lab.resilience._core import ConfigBase, check, check_int, check_number

__all__ = ["Bulkhead", "LimitKind", "LoadShedder", "LoadShedderConfig", "TokenBucket"]

LimitKind = Literal["connections", "pending_requests", "requests", "retries"]
_KINDS: tuple[LimitKind, ...] = ("connections", "pending_requests", "requests", "retries")


class Bulkhead(ConfigBase):
    """Envoy ``circuit_breakers`` thresholds: caps on concurrent connections, pending requests,
    requests and retries to one upstream (Envoy's defaults: 1024, 1024, 1024, 3).

    Each kind is an independent counter: ``try_acquire(kind)`` takes one if under the cap,
    ``release(kind)`` gives it back. Refusals are counted per kind in ``rejected`` (Envoy's
    ``upstream_rq_pending_overflow`` and friends).

    Examples
    --------
    >>> b = Bulkhead(max_requests=1)
    >>> b.try_acquire("requests"), b.try_acquire("requests"), b.rejected["requests"]
    (True, False, 1)
    """

    __slots__ = ("in_use", "limits", "rejected")

    def __init__(
        self,
        *,
        max_connections: int = 1024,
        max_pending_requests: int = 1024,
        max_requests: int = 1024,
        max_retries: int = 3,
    ) -> None:
        given = (max_connections, max_pending_requests, max_requests, max_retries)
        for kind, value in zip(_KINDS, given, strict=True):
            check_int("Bulkhead", f"max_{kind}", value, minimum=0)
        self.limits: dict[LimitKind, int] = dict(zip(_KINDS, given, strict=True))
        self.in_use: dict[LimitKind, int] = dict.fromkeys(_KINDS, 0)
        self.rejected: dict[LimitKind, int] = dict.fromkeys(_KINDS, 0)

    @classmethod
    def from_envoy(cls, circuit_breakers: Mapping[str, Any], *, priority: str = "DEFAULT") -> Bulkhead:
        """From an Envoy cluster's ``circuit_breakers`` object: the ``thresholds`` entry for ``priority``."""
        for t in circuit_breakers.get("thresholds", ()):
            if str(t.get("priority", "DEFAULT")).upper() == priority.upper():
                return cls.from_dict(
                    {k: v for k, v in t.items() if k.startswith("max_") and k != "max_connection_pools"}
                )
        return cls()

    def _kind(self, kind: str) -> LimitKind:
        if kind not in self.limits:
            raise ConfigError(f"Bulkhead kind must be one of {_KINDS}. Got {kind!r} instead.")
        return kind  # type: ignore[return-value]

    def remaining(self, kind: LimitKind = "requests") -> int:
        """Free slots of ``kind``."""
        k = self._kind(kind)
        return self.limits[k] - self.in_use[k]

    def try_acquire(self, kind: LimitKind = "requests") -> bool:
        """Take one slot of ``kind`` if any is free; count a refusal otherwise."""
        k = self._kind(kind)
        if self.in_use[k] >= self.limits[k]:
            self.rejected[k] += 1
            return False
        self.in_use[k] += 1
        return True

    def release(self, kind: LimitKind = "requests") -> None:
        """Give back one slot of ``kind``."""
        k = self._kind(kind)
        if self.in_use[k] <= 0:
            raise ResilienceError(f"Bulkhead.release({kind!r}) without a matching try_acquire")
        self.in_use[k] -= 1

    def overflow_error(self, kind: LimitKind = "requests") -> RejectedError:
        """The error describing a refusal of ``kind``."""
        return RejectedError(
            f"bulkhead full: {self.in_use[kind]} of max_{kind}={self.limits[kind]} in use", policy="bulkhead"
        )

    def __repr__(self) -> str:
        return f"Bulkhead(limits={self.limits}, in_use={self.in_use})"


class TokenBucket(ConfigBase):
    """A token-bucket rate limiter: ``rate_per_s`` tokens per second, at most ``burst`` stored.

    Starts full. Refills lazily from the ``now`` values it is given (a ``now`` earlier than
    the last one adds nothing).

    Parameters
    ----------
    rate_per_s : float
        Refill rate (> 0).
    burst : float
        Capacity (>= 1).

    Examples
    --------
    >>> tb = TokenBucket(rate_per_s=2.0, burst=2)
    >>> [tb.try_acquire(0.0) for _ in range(3)], tb.wait_time_s(0.0), tb.try_acquire(0.5)
    ([True, True, False], 0.5, True)
    """

    __slots__ = ("_at_s", "_tokens", "burst", "rate_per_s", "rejected")

    def __init__(self, *, rate_per_s: float, burst: float) -> None:
        check_number("TokenBucket", "rate_per_s", rate_per_s, open_low=True)
        check_number("TokenBucket", "burst", burst, low=1.0)
        check(math.isfinite(burst), "TokenBucket", "burst", "finite", burst)
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._tokens = self.burst
        self._at_s = -math.inf
        self.rejected = 0

    def tokens(self, now: float) -> float:
        """Tokens available at ``now``."""
        if now > self._at_s:
            if math.isfinite(self._at_s):
                self._tokens = min(self.burst, self._tokens + (now - self._at_s) * self.rate_per_s)
            self._at_s = now
        return self._tokens

    def try_acquire(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens at ``now`` if available; count a refusal otherwise."""
        if self.tokens(now) >= n:
            self._tokens -= n
            return True
        self.rejected += 1
        return False

    def wait_time_s(self, now: float, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens are available (``inf`` if ``n`` > burst)."""
        if n > self.burst:
            return math.inf
        return max(0.0, (n - self.tokens(now)) / self.rate_per_s)

    def rejected_error(self) -> RejectedError:
        """The error describing a refusal."""
        return RejectedError(
            f"rate limited: {self.rate_per_s:g}/s with burst {self.burst:g}", policy="rate_limiter"
        )

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_s={self.rate_per_s}, burst={self.burst})"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadShedderConfig(ConfigBase):
    """When to shed, by priority (0 = most critical).

    Pressure is ``max(in_flight / max_in_flight, latency_ewma_s / latency_target_s)``;
    a request of priority p is shed when pressure >= ``priority_thresholds[p]`` (the last
    threshold applies to all higher p).

    Parameters
    ----------
    max_in_flight : int
        Concurrency at which pressure is 1.
    latency_target_s : float or None
        Latency at which pressure is 1 (None: latency ignored).
    latency_ewma_alpha : float
        Weight of the newest latency sample in (0, 1].
    priority_thresholds : tuple of float
        Non-increasing pressures at which priorities 0, 1, ... are shed.
    """

    max_in_flight: int = 100
    latency_target_s: float | None = None
    latency_ewma_alpha: float = 0.2
    priority_thresholds: tuple[float, ...] = (1.0, 0.9, 0.75)

    def __post_init__(self) -> None:
        name = "LoadShedderConfig"
        check_int(name, "max_in_flight", self.max_in_flight)
        if self.latency_target_s is not None:
            check_number(name, "latency_target_s", self.latency_target_s, open_low=True)
        check_number(name, "latency_ewma_alpha", self.latency_ewma_alpha, high=1.0, open_low=True)
        t = tuple(self.priority_thresholds)
        object.__setattr__(self, "priority_thresholds", t)
        ok = bool(t) and all(isinstance(x, (int, float)) and x > 0 for x in t)
        check(
            ok and all(a >= b for a, b in zip(t, t[1:], strict=False)),
            name,
            "priority_thresholds",
            "a non-empty, non-increasing tuple of positive numbers",
            t,
        )


class LoadShedder:
    """Admit or shed requests by priority under concurrency or latency pressure.

    ``admit(now, priority)`` counts an admitted request as in flight; report its end with
    ``on_finish(now, latency_s)``. Shed requests are counted per priority in ``shed``.

    Examples
    --------
    >>> ls = LoadShedder(LoadShedderConfig(max_in_flight=2, priority_thresholds=(1.0, 0.5)))
    >>> ls.admit(0.0, priority=1), ls.admit(0.0, priority=1), ls.admit(0.0, priority=0), ls.shed
    (True, False, True, {1: 1})
    """

    def __init__(self, config: LoadShedderConfig | None = None) -> None:
        self.config = config if config is not None else LoadShedderConfig()
        self.in_flight = 0
        self.latency_ewma_s: float | None = None
        self.shed: dict[int, int] = {}

    def pressure(self) -> float:
        """Current pressure (1 = at the configured limit)."""
        c = self.config
        p = self.in_flight / c.max_in_flight
        if c.latency_target_s is not None and self.latency_ewma_s is not None:
            p = max(p, self.latency_ewma_s / c.latency_target_s)
        return p

    def admit(self, now: float, priority: int = 0) -> bool:
        """Admit (and count as in flight) a request of ``priority`` at ``now``, or shed it."""
        thresholds = self.config.priority_thresholds
        if self.pressure() >= thresholds[min(max(priority, 0), len(thresholds) - 1)]:
            self.shed[priority] = self.shed.get(priority, 0) + 1
            return False
        self.in_flight += 1
        return True

    def on_finish(self, now: float, latency_s: float) -> None:
        """An admitted request finished after ``latency_s``."""
        if self.in_flight <= 0:
            raise ResilienceError("LoadShedder.on_finish without a matching admit")
        self.in_flight -= 1
        a = self.config.latency_ewma_alpha
        prev = self.latency_ewma_s
        self.latency_ewma_s = latency_s if prev is None else a * latency_s + (1 - a) * prev

    def shed_error(self, priority: int = 0) -> RejectedError:
        """The error describing a shed request."""
        return RejectedError(
            f"load shed: priority {priority} at pressure {self.pressure():.2f}", policy="load_shedder"
        )
