"""Outlier detection (passive health checking) with Envoy's fields, defaults and timeline.

Feed every response with :meth:`OutlierDetector.record` and call :meth:`OutlierDetector.tick`
at :attr:`OutlierDetector.next_tick_at_s` (every ``interval_s``), as Envoy's interval timer does.
The detector is a pure state machine: no clock, no sleeping, randomness (enforcement rolls and
ejection jitter) from the injected ``random.Random``.

The algorithm, following Envoy's ``outlier_detection_impl.cc``:

* **Consecutive errors** are detected inline. Each 5xx bumps ``consecutive_5xx``; 502/503/504
  also bump ``consecutive_gateway_failure``; any other status resets both. Reaching a
  threshold *detects* the host; it is ejected if the roll against
  ``enforcing_consecutive_5xx`` / ``enforcing_consecutive_gateway_failure`` passes (100 and 0
  by default). The counter restarts after a detection.
* **Success rate / failure percentage** are computed on each tick from the previous interval's
  requests. Hosts with at least ``success_rate_request_volume`` requests count; with at least
  ``success_rate_minimum_hosts`` of them, a host whose success rate is below
  ``mean - success_rate_stdev_factor / 1000 * stdev`` is detected. Failure percentage ejects
  hosts failing at least ``failure_percentage_threshold`` % (enforcement 0 by default).
* **Max ejection percent**: a host is ejected only if ``100 * (ejected + 1) / hosts <=
  max_ejection_percent`` (or it would be the only ejected host and ``always_eject_one_host``
  is set). Note what follows from Envoy's rule: with the default 10 % a cluster needs at least
  10 hosts before anything is ejected.
* **Ejection time**: ``min(base_ejection_time_s * k, max_ejection_time_s) + jitter``, where k
  is the host's backoff multiplier: +1 at each ejection, -1 at each tick it spends healthy
  more than one interval after its last un-ejection. A host is un-ejected on the first tick at
  which its ejection time has passed (so the real time out rounds up to the interval grid).
  With the defaults: ejected for 30 s, and again within one interval of coming back, 60 s.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple

from otlp_lab.errors import ConfigError
from otlp_lab.resilience._core import GRPC_STATUS_NAMES, ConfigBase, check, check_int, check_number

__all__ = [
    "EjectionType",
    "OutlierAction",
    "OutlierDetectionConfig",
    "OutlierDetector",
    "OutlierEvent",
    "http_status_of",
]

#: Envoy ``Grpc::Utility::grpcToHttpStatus``: how a gRPC status counts for outlier detection.
_GRPC_TO_HTTP = dict(
    zip(
        GRPC_STATUS_NAMES,
        (200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401),
        strict=True,
    )
)
_GATEWAY_ERRORS = frozenset({502, 503, 504})


def http_status_of(result: Any) -> int | None:
    """The HTTP status an outcome counts as for outlier detection (None: not counted).

    Accepts an HTTP status ``int``, a gRPC status name (mapped as Envoy maps them:
    ``"UNAVAILABLE"`` -> 503, ``"DEADLINE_EXCEEDED"`` -> 504, ``"INTERNAL"`` -> 500, ...), a
    bool (True = 200, False = 503, a connect failure) or an ``Outcome`` (``ok`` -> 200, its
    status otherwise, no status -> 503; local refusals were never sent and return None).

    Examples
    --------
    >>> http_status_of(503), http_status_of("unavailable"), http_status_of(True)
    (503, 503, 200)
    """
    if isinstance(result, bool):
        return 200 if result else 503
    if isinstance(result, int):
        return result
    if isinstance(result, str):
        name = result.strip().upper()
        if name.isdigit():
            return int(name)
        if name in _GRPC_TO_HTTP:
            return _GRPC_TO_HTTP[name]
        raise ConfigError(
            f"outlier detection cannot count status {result!r}: not an HTTP code or gRPC status name"
        )
    if hasattr(result, "ok") and hasattr(result, "status"):
        if getattr(result, "local", False):
            return None
        if result.ok:
            return 200
        return 503 if result.status is None else http_status_of(result.status)
    raise ConfigError(
        f"outlier detection needs an HTTP status, gRPC status name, bool or Outcome. Got {result!r} instead."
    )


class EjectionType(Enum):
    """Why a host was ejected (Envoy ``OutlierEjectionType``)."""

    CONSECUTIVE_5XX = "consecutive_5xx"
    CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
    SUCCESS_RATE = "success_rate"
    FAILURE_PERCENTAGE = "failure_percentage"


class OutlierAction(Enum):
    """What an :class:`OutlierEvent` did."""

    EJECT = "eject"
    UNEJECT = "uneject"


class OutlierEvent(NamedTuple):
    """One ejection decision or un-ejection (Envoy's outlier event log).

    ``enforced`` is False for a detection that the enforcement roll did not carry out (the
    host stays in). ``duration_s`` is the planned minimum ejection time for an ``EJECT``, and
    the time spent ejected for an ``UNEJECT``.
    """

    at_s: float
    endpoint_id: str
    action: OutlierAction
    ejection_type: EjectionType | None
    enforced: bool
    num_ejections: int
    duration_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierDetectionConfig(ConfigBase):
    """Envoy ``cluster.outlier_detection`` with its defaults (times in seconds, percentages 0-100).

    Parameters
    ----------
    consecutive_5xx : int, default 5
        Consecutive 5xx before a consecutive-5xx detection (0 disables).
    consecutive_gateway_failure : int, default 5
        Consecutive 502/503/504 before a gateway-failure detection (0 disables).
    interval_s : float, default 10.0
        Between ejection sweeps (success rate, un-ejection).
    base_ejection_time_s : float, default 30.0
        Multiplied by the host's backoff multiplier.
    max_ejection_percent : float, default 10.0
    enforcing_consecutive_5xx : float, default 100.0
        Chance (%) that a consecutive-5xx detection ejects.
    enforcing_consecutive_gateway_failure : float, default 0.0
    enforcing_success_rate : float, default 100.0
    success_rate_minimum_hosts : int, default 5
    success_rate_request_volume : int, default 100
    success_rate_stdev_factor : int, default 1900
        Divided by 1000: 1900 means 1.9 standard deviations.
    failure_percentage_threshold : float, default 85.0
    enforcing_failure_percentage : float, default 0.0
    failure_percentage_minimum_hosts : int, default 5
    failure_percentage_request_volume : int, default 50
    max_ejection_time_s : float, optional
        Cap on one ejection; default ``max(300, base_ejection_time_s)``.
    max_ejection_time_jitter_s : float, default 0.0
        Add ``U[0, jitter]`` to each ejection.
    successful_active_health_check_uneject_host : bool, default True
        A passing active health check un-ejects (see :meth:`OutlierDetector.on_active_health_check`).
    always_eject_one_host : bool, default False
        Eject one host even when that breaks ``max_ejection_percent``.

    Examples
    --------
    >>> OutlierDetectionConfig().effective_max_ejection_time_s
    300.0
    """

    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 5
    interval_s: float = 10.0
    base_ejection_time_s: float = 30.0
    max_ejection_percent: float = 10.0
    enforcing_consecutive_5xx: float = 100.0
    enforcing_consecutive_gateway_failure: float = 0.0
    enforcing_success_rate: float = 100.0
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: int = 1900
    failure_percentage_threshold: float = 85.0
    enforcing_failure_percentage: float = 0.0
    failure_percentage_minimum_hosts: int = 5
    failure_percentage_request_volume: int = 50
    max_ejection_time_s: float | None = None
    max_ejection_time_jitter_s: float = 0.0
    successful_active_health_check_uneject_host: bool = True
    always_eject_one_host: bool = False

    def __post_init__(self) -> None:
        owner = "OutlierDetectionConfig"
        for name in (
            "consecutive_5xx",
            "consecutive_gateway_failure",
            "success_rate_minimum_hosts",
            "success_rate_request_volume",
            "success_rate_stdev_factor",
            "failure_percentage_minimum_hosts",
            "failure_percentage_request_volume",
        ):
            check_int(owner, name, getattr(self, name), minimum=0)
        check_number(owner, "interval_s", self.interval_s, open_low=True)
        check_number(owner, "base_ejection_time_s", self.base_ejection_time_s, open_low=True)
        for name in (
            "max_ejection_percent",
            "enforcing_consecutive_5xx",
            "enforcing_consecutive_gateway_failure",
            "enforcing_success_rate",
            "failure_percentage_threshold",
            "enforcing_failure_percentage",
        ):
            check_number(owner, name, getattr(self, name), high=100.0)
        if self.max_ejection_time_s is not None:
            check_number(
                owner, "max_ejection_time_s", self.max_ejection_time_s, low=self.base_ejection_time_s
            )
        check_number(owner, "max_ejection_time_jitter_s", self.max_ejection_time_jitter_s)
        for name in ("successful_active_health_check_uneject_host", "always_eject_one_host"):
            check(isinstance(getattr(self, name), bool), owner, name, "a bool", getattr(self, name))

    @property
    def effective_max_ejection_time_s(self) -> float:
        """``max_ejection_time_s`` or, unset, Envoy's ``max(300 s, base_ejection_time_s)``."""
        if self.max_ejection_time_s is not None:
            return float(self.max_ejection_time_s)
        return float(max(300.0, self.base_ejection_time_s))


class _HostMonitor:
    """Per-host counters (internal; Envoy ``DetectorHostMonitorImpl``)."""

    __slots__ = (
        "backoff",
        "consecutive_5xx",
        "consecutive_gateway",
        "current",
        "ejected",
        "jitter_s",
        "last_ejection_s",
        "last_unejection_s",
        "num_ejections",
        "previous",
    )

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ejected = False
        self.num_ejections = 0
        self.backoff = 0
        self.jitter_s = 0.0
        self.last_ejection_s: float | None = None
        self.last_unejection_s: float | None = None
        self.current = [0, 0]  # [successes, total] this interval
        self.previous: list[int] | None = None  # the last full interval, read by the sweep


class OutlierDetector:
    """Envoy outlier detection over a set of endpoints (see the module docs for the algorithm).

    Parameters
    ----------
    config : OutlierDetectionConfig, optional
    endpoint_ids : iterable of str
        The cluster's hosts (``max_ejection_percent`` counts them); more with :meth:`add`.
    start_s : float, default 0.0
        Now, when the detector is created; the first sweep is due at ``start_s + interval_s``.
    rng : random.Random, optional
        Enforcement rolls and ejection jitter (default ``random.Random(0)``).
    listener : callable, optional
        Called with every :class:`OutlierEvent`.

    Attributes
    ----------
    events : list of OutlierEvent
        Every ejection decision and un-ejection, oldest first.
    next_tick_at_s : float
        When :meth:`tick` is due next.
    stats : dict of str to int
        Envoy-style counters: ``ejections_detected_<type>``, ``ejections_enforced_<type>``,
        ``ejections_overflow`` (refused by ``max_ejection_percent``).

    Examples
    --------
    >>> od = OutlierDetector(endpoint_ids=[f"h{i}" for i in range(10)])
    >>> [e.action.value for t in range(5) for e in od.record("h0", 1.0 + t, 500)]
    ['eject']
    >>> od.is_ejected("h0"), [e.action.value for e in od.tick(40.0)]
    (True, ['uneject'])
    """

    def __init__(
        self,
        config: OutlierDetectionConfig | None = None,
        *,
        endpoint_ids: Iterable[str] = (),
        start_s: float = 0.0,
        rng: random.Random | None = None,
        listener: Callable[[OutlierEvent], None] | None = None,
    ) -> None:
        self.config = config if config is not None else OutlierDetectionConfig()
        self.rng = rng if rng is not None else random.Random(0)
        self.listener = listener
        self.events: list[OutlierEvent] = []
        self.stats: dict[str, int] = {"ejections_overflow": 0}
        self.next_tick_at_s = start_s + self.config.interval_s
        self._hosts: dict[str, _HostMonitor] = {}
        for endpoint_id in endpoint_ids:
            self.add(endpoint_id)

    def __repr__(self) -> str:
        return f"OutlierDetector(hosts={len(self._hosts)}, ejected={sorted(self.ejected_ids)})"

    # -- membership and queries ---------------------------------------------------------------

    def add(self, endpoint_id: str) -> None:
        """Start watching ``endpoint_id``."""
        if endpoint_id in self._hosts:
            raise ConfigError(f"OutlierDetector already watches endpoint {endpoint_id!r}")
        self._hosts[endpoint_id] = _HostMonitor()

    def remove(self, endpoint_id: str) -> None:
        """Stop watching ``endpoint_id`` (an ejected host leaves the ejected count)."""
        self._get(endpoint_id)
        del self._hosts[endpoint_id]

    def _get(self, endpoint_id: str) -> _HostMonitor:
        try:
            return self._hosts[endpoint_id]
        except KeyError:
            raise ConfigError(
                f"OutlierDetector does not watch endpoint {endpoint_id!r}; add() it first"
            ) from None

    def is_ejected(self, endpoint_id: str) -> bool:
        """True while ``endpoint_id`` is ejected (unknown endpoints are not)."""
        host = self._hosts.get(endpoint_id)
        return host is not None and host.ejected

    @property
    def ejected_ids(self) -> frozenset[str]:
        """The hosts ejected now."""
        return frozenset(i for i, h in self._hosts.items() if h.ejected)

    def num_ejections(self, endpoint_id: str) -> int:
        """How many times ``endpoint_id`` has been ejected."""
        return self._get(endpoint_id).num_ejections

    def ejection_multiplier(self, endpoint_id: str) -> int:
        """The host's backoff multiplier k (ejection time is ``base * k``, capped)."""
        return self._get(endpoint_id).backoff

    # -- inputs -------------------------------------------------------------------------------

    def record(self, endpoint_id: str, now: float, result: Any) -> list[OutlierEvent]:
        """Count one response from ``endpoint_id``; returns the ejection events it caused.

        ``result`` is an HTTP status, a gRPC status name, a bool or an ``Outcome``
        (see :func:`http_status_of`).
        """
        host = self._get(endpoint_id)
        code = http_status_of(result)
        if code is None:
            return []
        cfg = self.config
        host.current[1] += 1
        detected: list[EjectionType] = []
        if 500 <= code <= 599:
            if code in _GATEWAY_ERRORS:
                host.consecutive_gateway += 1
                if host.consecutive_gateway == cfg.consecutive_gateway_failure:
                    detected.append(EjectionType.CONSECUTIVE_GATEWAY_FAILURE)
            else:
                host.consecutive_gateway = 0
            host.consecutive_5xx += 1
            if host.consecutive_5xx == cfg.consecutive_5xx:
                detected.append(EjectionType.CONSECUTIVE_5XX)
        else:
            host.current[0] += 1
            host.consecutive_5xx = host.consecutive_gateway = 0
        events: list[OutlierEvent] = []
        for kind in detected:
            if host.ejected:
                continue  # Envoy ignores detections on an ejected host (its counter keeps counting)
            events += self._eject(endpoint_id, host, now, kind)
            if kind is EjectionType.CONSECUTIVE_5XX:
                host.consecutive_5xx = 0
            else:
                host.consecutive_gateway = 0
        return events

    def on_active_health_check(self, endpoint_id: str, now: float, healthy: bool) -> list[OutlierEvent]:
        """An active health check result: a pass un-ejects the host when
        ``successful_active_health_check_uneject_host`` is set (Envoy's default)."""
        host = self._get(endpoint_id)
        if healthy and host.ejected and self.config.successful_active_health_check_uneject_host:
            return [self._uneject(endpoint_id, host, now)]
        return []

    def poll(self, now: float) -> list[OutlierEvent]:
        """Run :meth:`tick` if it is due (``now >= next_tick_at_s``)."""
        return self.tick(now) if now >= self.next_tick_at_s else []

    def tick(self, now: float) -> list[OutlierEvent]:
        """The interval sweep: un-eject hosts whose time is up, run success-rate and
        failure-percentage ejection on the last interval, decay backoff multipliers, and arm the
        next sweep at ``now + interval_s``."""
        cfg = self.config
        events: list[OutlierEvent] = []
        for endpoint_id, host in self._hosts.items():
            if (
                host.ejected
                and host.last_ejection_s is not None
                and self._ejection_time_s(host) <= now - host.last_ejection_s
            ):
                events.append(self._uneject(endpoint_id, host, now))
            host.previous, host.current = host.current, [0, 0]
        events += self._sweep_success_rate(now)
        for host in self._hosts.values():
            if (
                not host.ejected
                and host.last_unejection_s is not None
                and now - host.last_unejection_s >= cfg.interval_s
                and host.backoff > 0
            ):
                host.backoff -= 1
        self.next_tick_at_s = now + cfg.interval_s
        return events

    # -- internals ----------------------------------------------------------------------------

    def _ejection_time_s(self, host: _HostMonitor) -> float:
        cfg = self.config
        return min(cfg.base_ejection_time_s * host.backoff, cfg.effective_max_ejection_time_s) + host.jitter_s

    def _enforcing_percent(self, kind: EjectionType) -> float:
        cfg = self.config
        return {
            EjectionType.CONSECUTIVE_5XX: cfg.enforcing_consecutive_5xx,
            EjectionType.CONSECUTIVE_GATEWAY_FAILURE: cfg.enforcing_consecutive_gateway_failure,
            EjectionType.SUCCESS_RATE: cfg.enforcing_success_rate,
            EjectionType.FAILURE_PERCENTAGE: cfg.enforcing_failure_percentage,
        }[kind]

    def _roll(self, percent: float) -> bool:
        if percent >= 100.0:
            return True
        return percent > 0.0 and self.rng.random() * 100.0 < percent

    def _count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def _emit(self, event: OutlierEvent) -> OutlierEvent:
        self.events.append(event)
        if self.listener is not None:
            self.listener(event)
        return event

    def _eject(
        self, endpoint_id: str, host: _HostMonitor, now: float, kind: EjectionType
    ) -> list[OutlierEvent]:
        cfg = self.config
        self._count(f"ejections_detected_{kind.value}")
        active = sum(1 for h in self._hosts.values() if h.ejected)
        allowed = 100.0 * (active + 1) / len(self._hosts) <= cfg.max_ejection_percent
        if not allowed and not (cfg.always_eject_one_host and active == 0):
            self._count("ejections_overflow")
            return []
        if not self._roll(self._enforcing_percent(kind)):
            return [
                self._emit(
                    OutlierEvent(now, endpoint_id, OutlierAction.EJECT, kind, False, host.num_ejections, None)
                )
            ]
        self._count(f"ejections_enforced_{kind.value}")
        host.ejected = True
        host.num_ejections += 1
        host.last_ejection_s = now
        jitter_ms = cfg.max_ejection_time_jitter_s * 1000.0
        host.jitter_s = self.rng.randint(0, int(jitter_ms)) / 1000.0 if jitter_ms >= 1.0 else 0.0
        max_s = cfg.effective_max_ejection_time_s
        if host.backoff * cfg.base_ejection_time_s < max_s + cfg.base_ejection_time_s:
            host.backoff += 1
        event = OutlierEvent(
            now, endpoint_id, OutlierAction.EJECT, kind, True, host.num_ejections, self._ejection_time_s(host)
        )
        return [self._emit(event)]

    def _uneject(self, endpoint_id: str, host: _HostMonitor, now: float) -> OutlierEvent:
        host.ejected = False
        host.consecutive_5xx = host.consecutive_gateway = 0
        host.last_unejection_s = now
        out_for = None if host.last_ejection_s is None else now - host.last_ejection_s
        return self._emit(
            OutlierEvent(now, endpoint_id, OutlierAction.UNEJECT, None, True, host.num_ejections, out_for)
        )

    def _sweep_success_rate(self, now: float) -> list[OutlierEvent]:
        cfg = self.config
        n = len(self._hosts)
        if n < cfg.success_rate_minimum_hosts and n < cfg.failure_percentage_minimum_hosts:
            return []
        rates: list[tuple[str, float, int]] = []
        for endpoint_id, host in self._hosts.items():
            if host.ejected or not host.previous or not host.previous[1]:
                continue
            success, total = host.previous
            rates.append((endpoint_id, 100.0 * success / total, total))
        events: list[OutlierEvent] = []
        valid_sr = [(i, r) for i, r, volume in rates if volume >= cfg.success_rate_request_volume]
        if valid_sr and len(valid_sr) >= cfg.success_rate_minimum_hosts:
            values = [r for _, r in valid_sr]
            mean = statistics.fmean(values)
            stdev = math.sqrt(statistics.fmean([(r - mean) ** 2 for r in values]))
            threshold = mean - cfg.success_rate_stdev_factor / 1000.0 * stdev
            for endpoint_id, rate in valid_sr:
                if rate < threshold:
                    events += self._eject(
                        endpoint_id, self._hosts[endpoint_id], now, EjectionType.SUCCESS_RATE
                    )
        valid_fp = [(i, r) for i, r, volume in rates if volume >= cfg.failure_percentage_request_volume]
        if valid_fp and len(valid_fp) >= cfg.failure_percentage_minimum_hosts:
            for endpoint_id, rate in valid_fp:
                host = self._hosts[endpoint_id]
                if not host.ejected and 100.0 - rate >= cfg.failure_percentage_threshold:
                    events += self._eject(endpoint_id, host, now, EjectionType.FAILURE_PERCENTAGE)
        return events
