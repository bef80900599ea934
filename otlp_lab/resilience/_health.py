"""Active health checking: one state machine per endpoint, fed with probe outcomes (Envoy semantics).

The checker never sends a probe or reads a clock. The caller (a SimPy process, an asyncio task)
asks what is due, sends probes, and reports what came back::

    hc = HealthChecker(HealthCheckConfig(interval_s=5, timeout_s=1))
    hc.add("a", now)                      # returns when its first probe is due
    for endpoint_id in hc.due(now):
        deadline = hc.start_probe(endpoint_id, now)   # send it; it times out at `deadline`
    ...
    result = hc.record("a", now, "success")   # -> ProbeResult(state, changed, next_probe_at_s)
    hc.expire(now)                        # probes past their deadline count as timeouts
    wake_up_at = hc.next_due_s()

States (:class:`HealthState`) and transitions, as in Envoy's ``HealthCheckerImplBase``:

* ``PENDING`` (added, never checked; routed as unhealthy, like Envoy's ``FAILED_ACTIVE_HC`` +
  ``PENDING_ACTIVE_HC``) -> ``HEALTHY`` on the *first* success (Envoy: "during startup only a
  single successful health check is required"), -> ``UNHEALTHY`` on the first failure.
* ``HEALTHY`` -> ``UNHEALTHY`` after ``unhealthy_threshold`` consecutive timeouts / network /
  retriable failures, or at once on a ``"failure"`` (a response that says unhealthy: Envoy
  ignores the threshold for HTTP statuses outside ``expected_statuses``/``retriable_statuses``).
* ``UNHEALTHY`` -> ``HEALTHY`` after ``healthy_threshold`` consecutive successes.

The next probe is due one interval after the outcome: ``interval_s`` while healthy,
``unhealthy_interval_s`` while unhealthy, and the edge intervals while a change is pending
(a failure seen but the threshold not reached, or successes counting up), plus jitter from the
injected ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Literal, NamedTuple

from otlp_lab.errors import ConfigError
from otlp_lab.resilience._core import ConfigBase, check, check_int, check_number

__all__ = [
    "HealthCheckConfig",
    "HealthChecker",
    "HealthState",
    "HealthTransition",
    "ProbeOutcome",
    "ProbeResult",
]

#: What a probe produced. ``"failure"`` is an answer saying "unhealthy" (immediately unhealthy);
#: the others count towards ``unhealthy_threshold``.
ProbeOutcome = Literal["success", "failure", "retriable_failure", "timeout", "network_failure"]
_OUTCOMES = ("success", "failure", "retriable_failure", "timeout", "network_failure")


class HealthState(Enum):
    """Health of one endpoint as active checks see it."""

    PENDING = "pending"
    """Added and not checked yet; not routed to (Envoy's pending first check)."""
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class HealthTransition(NamedTuple):
    """One endpoint changing health state at ``at_s``."""

    at_s: float
    endpoint_id: str
    from_state: HealthState
    to_state: HealthState


class ProbeResult(NamedTuple):
    """What recording one probe outcome did."""

    endpoint_id: str
    state: HealthState
    changed: bool
    next_probe_at_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckConfig(ConfigBase):
    """Active health check settings (Envoy ``HealthCheck`` field names, in seconds).

    Envoy makes ``interval``, ``timeout`` and both thresholds required; the defaults here are
    the common choice (5 s, 1 s, 3, 2).

    Parameters
    ----------
    interval_s : float, default 5.0
        Between the outcome of one probe and the next, while healthy.
    timeout_s : float, default 1.0
        A probe with no answer after this long is a ``"timeout"``.
    unhealthy_threshold : int, default 3
        Consecutive counted failures before a healthy endpoint is marked unhealthy.
    healthy_threshold : int, default 2
        Consecutive successes before an unhealthy endpoint is marked healthy.
    unhealthy_interval_s : float, optional
        Probe interval while unhealthy (default ``interval_s``).
    unhealthy_edge_interval_s : float, optional
        After a failure that has not yet made the endpoint unhealthy (default
        ``unhealthy_interval_s``).
    healthy_edge_interval_s : float, optional
        After a success that has not yet made the endpoint healthy (default ``interval_s``).
    interval_jitter_s : float, default 0.0
        Add ``U[0, interval_jitter_s)`` to every interval.
    interval_jitter_percent : float, default 0.0
        Add ``U[0, interval * percent / 100)`` to every interval.
    initial_jitter_s : float, default 0.0
        Spread first probes over ``U[0, initial_jitter_s)`` after ``add``.

    Examples
    --------
    >>> HealthCheckConfig.from_dict({"interval_s": "10s", "timeout_s": "500ms"}).timeout_s
    0.5
    """

    interval_s: float = 5.0
    timeout_s: float = 1.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2
    unhealthy_interval_s: float | None = None
    unhealthy_edge_interval_s: float | None = None
    healthy_edge_interval_s: float | None = None
    interval_jitter_s: float = 0.0
    interval_jitter_percent: float = 0.0
    initial_jitter_s: float = 0.0

    def __post_init__(self) -> None:
        owner = "HealthCheckConfig"
        check_number(owner, "interval_s", self.interval_s, open_low=True)
        check_number(owner, "timeout_s", self.timeout_s, open_low=True)
        check_int(owner, "unhealthy_threshold", self.unhealthy_threshold)
        check_int(owner, "healthy_threshold", self.healthy_threshold)
        for name in ("unhealthy_interval_s", "unhealthy_edge_interval_s", "healthy_edge_interval_s"):
            value = getattr(self, name)
            if value is not None:
                check_number(owner, name, value, open_low=True)
        check_number(owner, "interval_jitter_s", self.interval_jitter_s)
        check_number(owner, "interval_jitter_percent", self.interval_jitter_percent, high=100.0)
        check_number(owner, "initial_jitter_s", self.initial_jitter_s)

    @property
    def effective_unhealthy_interval_s(self) -> float:
        """``unhealthy_interval_s`` or, unset, ``interval_s``."""
        return self.interval_s if self.unhealthy_interval_s is None else self.unhealthy_interval_s


class _EndpointHealth:
    """Mutable per-endpoint state (internal)."""

    __slots__ = ("failures", "next_probe_at_s", "probe_deadline_s", "state", "successes")

    def __init__(self, state: HealthState, next_probe_at_s: float) -> None:
        self.state = state
        self.successes = 0
        self.failures = 0
        self.next_probe_at_s = next_probe_at_s
        self.probe_deadline_s: float | None = None


class HealthChecker:
    """Active health checks for a set of endpoints (a pure state machine; see the module docs).

    Parameters
    ----------
    config : HealthCheckConfig, optional
    rng : random.Random, optional
        Jitter source (default ``random.Random(0)``).
    listener : callable, optional
        Called with every :class:`HealthTransition`.

    Attributes
    ----------
    transitions : list of HealthTransition
        Every state change so far, oldest first.

    Examples
    --------
    >>> hc = HealthChecker(HealthCheckConfig(interval_s=5, unhealthy_threshold=2))
    >>> hc.add("a", 0.0, healthy=True)
    0.0
    >>> hc.record("a", 0.1, "timeout")
    ProbeResult(endpoint_id='a', state=<HealthState.HEALTHY: 'healthy'>, changed=False, next_probe_at_s=5.1)
    >>> hc.record("a", 5.2, "timeout").state
    <HealthState.UNHEALTHY: 'unhealthy'>
    """

    def __init__(
        self,
        config: HealthCheckConfig | None = None,
        *,
        rng: random.Random | None = None,
        listener: Callable[[HealthTransition], None] | None = None,
    ) -> None:
        self.config = config if config is not None else HealthCheckConfig()
        self.rng = rng if rng is not None else random.Random(0)
        self.listener = listener
        self.transitions: list[HealthTransition] = []
        self._endpoints: dict[str, _EndpointHealth] = {}

    def __repr__(self) -> str:
        return f"HealthChecker({self.config!r}, endpoints={len(self._endpoints)})"

    # -- membership ---------------------------------------------------------------------------

    def add(self, endpoint_id: str, now: float, *, healthy: bool = False) -> float:
        """Start checking ``endpoint_id``; returns when its first probe is due.

        ``healthy=True`` starts it ``HEALTHY`` instead of ``PENDING`` (e.g. a simulation that
        begins with a warm fleet).
        """
        if endpoint_id in self._endpoints:
            raise ConfigError(f"HealthChecker already checks endpoint {endpoint_id!r}")
        jitter = self.rng.uniform(0.0, self.config.initial_jitter_s) if self.config.initial_jitter_s else 0.0
        state = HealthState.HEALTHY if healthy else HealthState.PENDING
        self._endpoints[endpoint_id] = _EndpointHealth(state, now + jitter)
        return now + jitter

    def remove(self, endpoint_id: str) -> None:
        """Stop checking ``endpoint_id`` (its in-flight probe, if any, is forgotten)."""
        self._get(endpoint_id)
        del self._endpoints[endpoint_id]

    def _get(self, endpoint_id: str) -> _EndpointHealth:
        try:
            return self._endpoints[endpoint_id]
        except KeyError:
            raise ConfigError(
                f"HealthChecker does not check endpoint {endpoint_id!r}; add() it first"
            ) from None

    # -- queries ------------------------------------------------------------------------------

    @property
    def endpoint_ids(self) -> tuple[str, ...]:
        """The endpoints being checked."""
        return tuple(self._endpoints)

    def state(self, endpoint_id: str) -> HealthState:
        """The endpoint's current state."""
        return self._get(endpoint_id).state

    def is_healthy(self, endpoint_id: str, default: bool = True) -> bool:
        """True when ``HEALTHY``; ``default`` for endpoints this checker does not know."""
        entry = self._endpoints.get(endpoint_id)
        return default if entry is None else entry.state is HealthState.HEALTHY

    def next_probe_at(self, endpoint_id: str) -> float:
        """When the endpoint's next probe is due (``inf`` while one is in flight)."""
        entry = self._get(endpoint_id)
        return math.inf if entry.probe_deadline_s is not None else entry.next_probe_at_s

    def next_due_s(self) -> float:
        """The earliest time anything needs the caller: a probe due or a probe timing out."""
        times = [
            e.next_probe_at_s if e.probe_deadline_s is None else e.probe_deadline_s
            for e in self._endpoints.values()
        ]
        return min(times, default=math.inf)

    def due(self, now: float) -> list[str]:
        """Endpoints whose probe is due at ``now`` and not already in flight."""
        return [
            i for i, e in self._endpoints.items() if e.probe_deadline_s is None and e.next_probe_at_s <= now
        ]

    # -- probes -------------------------------------------------------------------------------

    def start_probe(self, endpoint_id: str, now: float) -> float:
        """Mark a probe to ``endpoint_id`` as sent at ``now``; returns its deadline (``now + timeout_s``)."""
        entry = self._get(endpoint_id)
        entry.probe_deadline_s = now + self.config.timeout_s
        return entry.probe_deadline_s

    def expire(self, now: float) -> list[ProbeResult]:
        """Record a ``"timeout"`` for every probe whose deadline has passed."""
        late = [
            i
            for i, e in self._endpoints.items()
            if e.probe_deadline_s is not None and e.probe_deadline_s <= now
        ]
        return [self.record(i, now, "timeout") for i in late]

    def record(
        self, endpoint_id: str, now: float, outcome: ProbeOutcome, *, latency_s: float | None = None
    ) -> ProbeResult:
        """Feed one probe outcome; returns the new state and when the next probe is due.

        Parameters
        ----------
        endpoint_id : str
        now : float
            When the outcome arrived.
        outcome : {"success", "failure", "retriable_failure", "timeout", "network_failure"}
            ``"failure"`` (an answer saying unhealthy) marks a healthy endpoint unhealthy at once;
            the other failures count towards ``unhealthy_threshold``.
        latency_s : float, optional
            The probe's round trip; above ``timeout_s`` the outcome is a ``"timeout"``.
        """
        check(
            outcome in _OUTCOMES, "HealthChecker.record", "outcome", f"one of {', '.join(_OUTCOMES)}", outcome
        )
        entry = self._get(endpoint_id)
        entry.probe_deadline_s = None
        if latency_s is not None and latency_s > self.config.timeout_s:
            outcome = "timeout"
        before = entry.state
        cfg = self.config
        if outcome == "success":
            entry.failures = 0
            if before is HealthState.HEALTHY:
                pending = False
            elif before is HealthState.PENDING:
                entry.state, pending = HealthState.HEALTHY, False
            else:
                entry.successes += 1
                pending = entry.successes < cfg.healthy_threshold
                if not pending:
                    entry.state = HealthState.HEALTHY
            base = (
                cfg.healthy_edge_interval_s
                if pending and cfg.healthy_edge_interval_s is not None
                else cfg.interval_s
            )
        else:
            entry.successes = 0
            pending = False
            if before is HealthState.PENDING:
                entry.state = HealthState.UNHEALTHY
            elif before is HealthState.HEALTHY:
                entry.failures += 1
                if outcome == "failure" or entry.failures >= cfg.unhealthy_threshold:
                    entry.state = HealthState.UNHEALTHY
                else:
                    pending = True
            base = cfg.effective_unhealthy_interval_s
            if pending and cfg.unhealthy_edge_interval_s is not None:
                base = cfg.unhealthy_edge_interval_s
        if entry.state is not before:
            entry.failures = entry.successes = 0
            event = HealthTransition(now, endpoint_id, before, entry.state)
            self.transitions.append(event)
            if self.listener is not None:
                self.listener(event)
        entry.next_probe_at_s = now + self._jittered(base)
        return ProbeResult(endpoint_id, entry.state, entry.state is not before, entry.next_probe_at_s)

    def _jittered(self, base_s: float) -> float:
        cfg = self.config
        extra = 0.0
        if cfg.interval_jitter_percent:
            extra += self.rng.uniform(0.0, base_s * cfg.interval_jitter_percent / 100.0)
        if cfg.interval_jitter_s:
            extra += self.rng.uniform(0.0, cfg.interval_jitter_s)
        return base_s + extra
