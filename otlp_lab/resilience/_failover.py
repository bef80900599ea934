"""Which hosts a balancer may pick from: priorities, overprovisioning, panic, locality failover.

Envoy splits a cluster into priority levels (0 is the most preferred). Each level gets a share
of the traffic from its *health*, scaled by the overprovisioning factor, so a level that loses
a few hosts keeps all its traffic and only a level that loses many spills over to the next::

    health[p]  = min(100, 140 * healthy[p] // total[p])            # overprovisioning factor 1.4
    NTA        = min(100, sum(health))                             # normalized total availability
    load[p]    = min(left, health[p] * 100 // NTA), left -= load[p]   (rounding -> first available)

Panic threshold (Envoy default 50 %): while ``NTA < 100``, a level whose healthy share is below
the threshold is *in panic* and its traffic goes to all of its hosts, healthy or not; when every
level is in panic, the load is split by host count instead. With a threshold of 0 panic is off
and a level with no healthy host yields :class:`~otlp_lab.errors.NoHealthyUpstreamError`.

Locality failover (Istio ``localityLbSetting``) is priorities derived from where the endpoints
are: :func:`locality_priorities` puts the caller's zone at priority 0, the rest of its region at
1, the failover region at 2 and everything else after, and the load math above spills over by
health. The functions here are pure; they work on any object with ``id``, ``weight``,
``priority``, ``healthy``, ``zone`` and ``region`` (an :class:`~otlp_lab.resilience.Endpoint`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from otlp_lab.errors import NoHealthyUpstreamError
from otlp_lab.resilience._core import check, check_number

if TYPE_CHECKING:
    from otlp_lab.resilience._balancers import Endpoint, HashKey, LoadBalancer

__all__ = [
    "DEFAULT_OVERPROVISIONING_FACTOR",
    "DEFAULT_PANIC_THRESHOLD_PERCENT",
    "HostSelection",
    "LocalityFailoverBalancer",
    "PriorityLoad",
    "locality_priorities",
    "priority_load",
    "select_hosts",
    "with_health",
]

#: Envoy's default overprovisioning factor (``load_assignment.policy.overprovisioning_factor`` 140).
DEFAULT_OVERPROVISIONING_FACTOR = 1.4
#: Envoy's default ``common_lb_config.healthy_panic_threshold`` (percent).
DEFAULT_PANIC_THRESHOLD_PERCENT = 50.0


def check_host_selection(owner: str, panic_threshold_percent: float, overprovisioning_factor: float) -> None:
    """Validate the two host-selection settings shared by balancers and configs."""
    check_number(owner, "panic_threshold_percent", panic_threshold_percent, high=100.0)
    check_number(owner, "overprovisioning_factor", overprovisioning_factor, low=1.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class PriorityLoad:
    """How traffic splits across priority levels (all numbers are integer percentages, as in Envoy).

    Attributes
    ----------
    priorities : tuple of int
        The priority levels present, most preferred first.
    health_percent : tuple of int
        ``min(100, overprovisioning * healthy // total)`` per level.
    load_percent : tuple of int
        Share of requests per level; sums to 100.
    panic : tuple of bool
        Levels whose picks go to all of their hosts.
    normalized_total_availability : int
        ``min(100, sum(health_percent))``.
    """

    priorities: tuple[int, ...]
    health_percent: tuple[int, ...]
    load_percent: tuple[int, ...]
    panic: tuple[bool, ...]
    normalized_total_availability: int


@dataclass(frozen=True, slots=True)
class HostSelection:
    """The hosts one pick may use: one priority level, its healthy hosts or, in panic, all of them."""

    priority: int
    hosts: tuple[Any, ...]
    panic: bool


class _EndpointLike(Protocol):
    id: str
    priority: int
    healthy: bool


def _levels(endpoints: Sequence[_EndpointLike]) -> dict[int, list[Any]]:
    levels: dict[int, list[Any]] = {}
    for ep in endpoints:
        levels.setdefault(ep.priority, []).append(ep)
    return dict(sorted(levels.items()))


def priority_load(
    endpoints: Sequence[_EndpointLike],
    *,
    overprovisioning_factor: float = DEFAULT_OVERPROVISIONING_FACTOR,
    panic_threshold_percent: float = DEFAULT_PANIC_THRESHOLD_PERCENT,
) -> PriorityLoad:
    """Split traffic across the endpoints' priority levels the way Envoy does.

    Parameters
    ----------
    endpoints : sequence of Endpoint
        All endpoints, healthy or not; ``priority`` and ``healthy`` are read.
    overprovisioning_factor : float, default 1.4
        Envoy's factor: a level at 1/1.4 = 72 % healthy still counts as fully available.
    panic_threshold_percent : float, default 50.0
        Below this healthy share a level balances across all of its hosts (0 turns panic off).

    Returns
    -------
    PriorityLoad

    Examples
    --------
    >>> from otlp_lab.resilience import Endpoint
    >>> eps = [Endpoint(f"p0-{i}", healthy=i < 5) for i in range(10)]
    >>> eps += [Endpoint(f"p1-{i}", priority=1) for i in range(10)]
    >>> priority_load(eps).load_percent    # 5/10 healthy * 1.4 = 70 % stays at P0
    (70, 30)
    """
    levels = _levels(endpoints)
    if not levels:
        return PriorityLoad(
            priorities=(), health_percent=(), load_percent=(), panic=(), normalized_total_availability=0
        )
    factor_percent = round(overprovisioning_factor * 100)
    health: list[int] = []
    healthy_share: list[float] = []
    for hosts in levels.values():
        healthy = sum(1 for ep in hosts if ep.healthy)
        health.append(min(100, factor_percent * healthy // len(hosts)))
        healthy_share.append(100.0 * healthy / len(hosts))
    nta = min(100, sum(health))
    n = len(levels)
    load = [0] * n
    panic = [False] * n
    if nta == 0 and panic_threshold_percent == 0:
        # Envoy's corner case: no host available and panic disabled -> P0 takes the (failing) load.
        load[0] = 100
    else:
        if nta > 0:
            left = 100
            for i, h in enumerate(health):
                load[i] = min(left, h * 100 // nta)
                left -= load[i]
            first = next(i for i, h in enumerate(health) if h > 0)
            load[first] += left
        if nta < 100:
            # Never panic while the levels together are fully available (NTA == 100).
            panic = [share < panic_threshold_percent for share in healthy_share]
        if all(panic):
            total = sum(len(hosts) for hosts in levels.values())
            load = [100 * len(hosts) // total for hosts in levels.values()]
            load[0] += 100 - sum(load)
    return PriorityLoad(
        priorities=tuple(levels),
        health_percent=tuple(health),
        load_percent=tuple(load),
        panic=tuple(panic),
        normalized_total_availability=nta,
    )


def select_hosts(
    endpoints: Sequence[_EndpointLike],
    *,
    draw: Callable[[], int],
    overprovisioning_factor: float = DEFAULT_OVERPROVISIONING_FACTOR,
    panic_threshold_percent: float = DEFAULT_PANIC_THRESHOLD_PERCENT,
) -> HostSelection:
    """Choose the priority level for one request and the hosts a balancer may pick from.

    Parameters
    ----------
    endpoints : sequence of Endpoint
        All endpoints of the cluster.
    draw : callable returning int
        Called (only when more than one level has load) for a number in ``[0, 100)`` that
        selects the level: a random draw, or the request hash for consistent hashing.
    overprovisioning_factor, panic_threshold_percent
        See :func:`priority_load`.

    Returns
    -------
    HostSelection

    Raises
    ------
    NoHealthyUpstreamError
        No endpoints, or the chosen level has no healthy host and is not in panic.
    """
    if not endpoints:
        raise NoHealthyUpstreamError("no healthy upstream: the balancer was given no endpoints")
    # Fast path: one level, every host healthy (the common case in a simulation loop).
    first = endpoints[0].priority
    if all(ep.healthy and ep.priority == first for ep in endpoints):
        return HostSelection(first, tuple(endpoints), False)
    plan = priority_load(
        endpoints,
        overprovisioning_factor=overprovisioning_factor,
        panic_threshold_percent=panic_threshold_percent,
    )
    index = 0
    if sum(1 for share in plan.load_percent if share > 0) > 1:
        point, acc = draw() % 100, 0
        for index, share in enumerate(plan.load_percent):  # noqa: B007 - index is used after the loop
            acc += share
            if point < acc:
                break
    else:
        index = next((i for i, share in enumerate(plan.load_percent) if share > 0), 0)
    priority = plan.priorities[index]
    in_level = [ep for ep in endpoints if ep.priority == priority]
    if plan.panic[index]:
        return HostSelection(priority, tuple(in_level), True)
    healthy = tuple(ep for ep in in_level if ep.healthy)
    if not healthy:
        n_healthy = sum(1 for ep in endpoints if ep.healthy)
        raise NoHealthyUpstreamError(
            f"no healthy upstream: {n_healthy} of {len(endpoints)} endpoints healthy and panic mode is off "
            f"(panic_threshold_percent={panic_threshold_percent})",
            total=len(endpoints),
            healthy=n_healthy,
        )
    return HostSelection(priority, healthy, False)


def locality_priorities(
    endpoints: Sequence[Endpoint],
    *,
    region: str,
    zone: str | None = None,
    failover: Sequence[tuple[str, str]] = (),
) -> tuple[Endpoint, ...]:
    """Give each endpoint the priority Istio's locality failover would (a copy; inputs untouched).

    Priority 0: same region and zone as the caller; 1: same region; 2: a region that
    ``failover`` names for the caller's region (Istio ``failover: [{from, to}]``); then every
    other region. Levels with no endpoint are skipped, so priorities stay dense.

    Parameters
    ----------
    endpoints : sequence of Endpoint
    region : str
        The caller's region.
    zone : str, optional
        The caller's zone (None: the whole region is priority 0).
    failover : sequence of (from_region, to_region)
        Istio ``localityLbSetting.failover`` pairs.

    Examples
    --------
    >>> from otlp_lab.resilience import Endpoint
    >>> eps = [Endpoint("a", region="us", zone="us-1"), Endpoint("b", region="us", zone="us-2"),
    ...        Endpoint("c", region="eu", zone="eu-1")]
    >>> [ep.priority for ep in locality_priorities(eps, region="us", zone="us-1")]
    [0, 1, 2]
    """
    targets = {to for frm, to in failover if frm == region}

    def rank(ep: Endpoint) -> int:
        if ep.region == region:
            return 0 if zone is None or ep.zone == zone else 1
        return 2 if ep.region in targets else 3

    ranks = [rank(ep) for ep in endpoints]
    dense = {r: i for i, r in enumerate(sorted(set(ranks)))}
    return tuple(
        ep if ep.priority == dense[r] else dataclasses.replace(ep, priority=dense[r])
        for ep, r in zip(endpoints, ranks, strict=True)
    )


class LocalityFailoverBalancer:
    """Wrap a balancer so endpoints get Istio locality priorities before each pick.

    Parameters
    ----------
    inner : LoadBalancer
        Picks within the chosen priority level (and applies health, panic and spill-over).
    region, zone, failover
        The caller's locality and Istio failover pairs; see :func:`locality_priorities`.

    Examples
    --------
    >>> from otlp_lab.resilience import Endpoint, RoundRobin
    >>> lb = LocalityFailoverBalancer(RoundRobin(), region="us", zone="us-1")
    >>> eps = [Endpoint("far", region="eu"), Endpoint("near", region="us", zone="us-1")]
    >>> lb.pick(0.0, eps).id
    'near'
    """

    def __init__(
        self,
        inner: LoadBalancer,
        *,
        region: str,
        zone: str | None = None,
        failover: Sequence[tuple[str, str]] = (),
    ) -> None:
        check(
            isinstance(region, str) and bool(region),
            type(self).__name__,
            "region",
            "a non-empty string",
            region,
        )
        self.inner = inner
        self.region = region
        self.zone = zone
        self.failover = tuple((str(a), str(b)) for a, b in failover)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, region={self.region!r}, zone={self.zone!r})"

    def pick(self, now: float, endpoints: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """Re-prioritise ``endpoints`` by locality, then let the inner balancer pick."""
        ranked = locality_priorities(endpoints, region=self.region, zone=self.zone, failover=self.failover)
        return self.inner.pick(now, ranked, key)

    def on_start(self, now: float, endpoint: Endpoint) -> None:
        """Forward to the inner balancer."""
        self.inner.on_start(now, endpoint)

    def on_finish(self, now: float, endpoint: Endpoint) -> None:
        """Forward to the inner balancer."""
        self.inner.on_finish(now, endpoint)


class _HealthSource(Protocol):
    def is_healthy(self, endpoint_id: str, default: bool = True) -> bool: ...


class _EjectionSource(Protocol):
    def is_ejected(self, endpoint_id: str) -> bool: ...


def with_health(
    endpoints: Sequence[Endpoint],
    *,
    health: _HealthSource | None = None,
    outlier: _EjectionSource | None = None,
) -> tuple[Endpoint, ...]:
    """Copies of ``endpoints`` whose ``healthy`` flag folds in active health checks and ejections.

    An endpoint stays healthy only if it was, the :class:`~otlp_lab.resilience.HealthChecker`
    (when given) does not hold it unhealthy, and the
    :class:`~otlp_lab.resilience.OutlierDetector` (when given) has not ejected it, which is how
    Envoy combines ``FAILED_ACTIVE_HC`` and ``FAILED_OUTLIER_CHECK``.
    """
    out = []
    for ep in endpoints:
        ok = ep.healthy
        ok = ok and (health is None or health.is_healthy(ep.id, True))
        ok = ok and (outlier is None or not outlier.is_ejected(ep.id))
        out.append(ep if ok == ep.healthy else dataclasses.replace(ep, healthy=ok))
    return tuple(out)
