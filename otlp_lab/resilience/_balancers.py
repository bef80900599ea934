"""Load balancers: pure pickers over a list of endpoints, with Envoy's host selection in front.

Every balancer has one entry point, ``pick(now, endpoints, key=None) -> Endpoint``:

1. :func:`~otlp_lab.resilience._failover.select_hosts` picks a priority level and its healthy
   hosts (or, in panic, all of its hosts), as Envoy does for every load-balancing policy;
2. the balancer's own :meth:`LoadBalancer.choose` picks one of those.

``on_start(now, endpoint)`` / ``on_finish(now, endpoint)`` tell load-aware balancers
(:class:`LeastRequest`, :class:`PowerOfTwoChoices`) about this client's own requests in flight;
they are no-ops elsewhere. No balancer reads a clock or sleeps; randomness comes from the
injected ``random.Random`` (default ``random.Random(0)``, so runs reproduce).

Hashing (:class:`RingHash`, :class:`Maglev`, the request ``key``) uses :func:`stable_hash64`
(BLAKE2b, 64 bits) instead of Envoy's xxHash64, so tables and rings have the same structure and
statistics as Envoy's but not its exact bytes. Python's ``hash()`` is never used: it is salted
per process.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, Literal

from otlp_lab.errors import ConfigError, NoHealthyUpstreamError
from otlp_lab.resilience._core import ConfigBase, check, check_int, check_number
from otlp_lab.resilience._failover import (
    DEFAULT_OVERPROVISIONING_FACTOR,
    DEFAULT_PANIC_THRESHOLD_PERCENT,
    LocalityFailoverBalancer,
    check_host_selection,
    select_hosts,
)

__all__ = [
    "BALANCER_POLICIES",
    "Endpoint",
    "HashKey",
    "LeastRequest",
    "LoadBalancer",
    "LoadBalancerConfig",
    "Maglev",
    "Passthrough",
    "PowerOfTwoChoices",
    "RandomBalancer",
    "RingHash",
    "RoundRobin",
    "SmoothWeightedRoundRobin",
    "stable_hash64",
]

#: What a request may be hashed by: a header value, a user id, a source IP, ...
HashKey = str | bytes | int

_CACHE_SIZE = 8  # ring / table builds kept per balancer (membership changes are rare)


def stable_hash64(key: HashKey, *, seed: int = 0) -> int:
    """A 64-bit hash of ``key`` that is the same in every process (BLAKE2b, salted by ``seed``).

    Examples
    --------
    >>> stable_hash64("user-42") == stable_hash64(b"user-42")
    True
    >>> stable_hash64("x", seed=1) != stable_hash64("x")
    True
    """
    if isinstance(key, str):
        data = key.encode()
    elif isinstance(key, int) and not isinstance(key, bool):
        data = str(key).encode()
    elif isinstance(key, (bytes, bytearray, memoryview)):
        data = bytes(key)
    else:
        raise ConfigError(f"a hash key must be str, bytes or int. Got {key!r} instead.")
    digest = hashlib.blake2b(data, digest_size=8, salt=seed.to_bytes(16, "little")).digest()
    return int.from_bytes(digest, "little")


# --------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint(ConfigBase):
    """One upstream host as a balancer sees it (a value: build a new one to change it).

    Parameters
    ----------
    id : str
        Unique name, e.g. ``"10.0.0.7:8080"``; ring hash and Maglev hash it.
    weight : int, default 1
        Envoy ``load_balancing_weight`` (>= 1).
    zone, region : str, default ""
        Locality, for :class:`~otlp_lab.resilience.LocalityFailoverBalancer`.
    priority : int, default 0
        Envoy priority level; 0 is the most preferred.
    healthy : bool, default True
        False for hosts failing active health checks or ejected as outliers
        (see :func:`~otlp_lab.resilience.with_health`).
    active_requests : int, default 0
        Requests in flight known from outside this balancer (e.g. a simulator's snapshot).
        Load-aware balancers add the requests they were told of through ``on_start``; use one
        mechanism or the other, not both.

    Examples
    --------
    >>> Endpoint("a", weight=5, zone="us-east-1a")
    Endpoint(id='a', weight=5, zone='us-east-1a', region='', priority=0, healthy=True, active_requests=0)
    """

    id: str
    _: KW_ONLY
    weight: int = 1
    zone: str = ""
    region: str = ""
    priority: int = 0
    healthy: bool = True
    active_requests: int = 0

    def __post_init__(self) -> None:
        check(isinstance(self.id, str) and bool(self.id), "Endpoint", "id", "a non-empty string", self.id)
        check_int("Endpoint", "weight", self.weight, minimum=1)
        check(isinstance(self.zone, str), "Endpoint", "zone", "a string", self.zone)
        check(isinstance(self.region, str), "Endpoint", "region", "a string", self.region)
        check_int("Endpoint", "priority", self.priority, minimum=0)
        check(isinstance(self.healthy, bool), "Endpoint", "healthy", "a bool", self.healthy)
        check_int("Endpoint", "active_requests", self.active_requests, minimum=0)


# --------------------------------------------------------------------------------------------
# The base class
# --------------------------------------------------------------------------------------------


class LoadBalancer(ABC):
    """Base class: Envoy host selection (priorities, panic) in :meth:`pick`, the policy in :meth:`choose`.

    Parameters
    ----------
    rng : random.Random, optional
        Source of every random choice (default ``random.Random(0)``).
    panic_threshold_percent : float, default 50.0
        Envoy ``healthy_panic_threshold``: below this healthy share a priority level balances
        across all its hosts. 0 disables panic mode.
    overprovisioning_factor : float, default 1.4
        Envoy's overprovisioning factor for spilling load to the next priority level.

    Attributes
    ----------
    picks : int
        Picks made.
    panic_picks : int
        Of those, how many were made in panic mode (over unhealthy hosts too).
    """

    #: Policy name as used by :class:`LoadBalancerConfig`.
    policy: ClassVar[str]

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        panic_threshold_percent: float = DEFAULT_PANIC_THRESHOLD_PERCENT,
        overprovisioning_factor: float = DEFAULT_OVERPROVISIONING_FACTOR,
    ) -> None:
        check_host_selection(type(self).__name__, panic_threshold_percent, overprovisioning_factor)
        self.rng = rng if rng is not None else random.Random(0)
        self.panic_threshold_percent = panic_threshold_percent
        self.overprovisioning_factor = overprovisioning_factor
        self.picks = 0
        self.panic_picks = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()})"

    def _describe(self) -> str:
        return f"panic_threshold_percent={self.panic_threshold_percent}"

    def pick(self, now: float, endpoints: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """Pick the endpoint for one request.

        Parameters
        ----------
        now : float
            Current time in seconds (the caller's clock; balancers never read one).
        endpoints : sequence of Endpoint
            Every endpoint of the cluster, healthy or not.
        key : str, bytes or int, optional
            The request's hash key (consistent-hash balancers; also used to choose the
            priority level so a key sticks to one level). Others ignore it.

        Returns
        -------
        Endpoint

        Raises
        ------
        NoHealthyUpstreamError
            No endpoints, or none healthy with panic mode off.
        """
        key_hash = None if key is None else stable_hash64(key)
        selection = select_hosts(
            endpoints,
            draw=(lambda: self.rng.randrange(100)) if key_hash is None else (lambda: key_hash % 100),
            overprovisioning_factor=self.overprovisioning_factor,
            panic_threshold_percent=self.panic_threshold_percent,
        )
        self.picks += 1
        self.panic_picks += selection.panic
        return self.choose(now, selection.hosts, key)

    @abstractmethod
    def choose(self, now: float, candidates: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """The policy itself: pick one of exactly ``candidates`` (non-empty; health is not looked at)."""

    def on_start(self, now: float, endpoint: Endpoint) -> None:
        """A request to ``endpoint`` started (no-op unless the balancer is load-aware)."""
        return None  # stateless balancers keep no per-request state

    def on_finish(self, now: float, endpoint: Endpoint) -> None:
        """A request to ``endpoint`` finished (no-op unless the balancer is load-aware)."""
        return None  # stateless balancers keep no per-request state


def _equal_weights(candidates: Sequence[Endpoint]) -> bool:
    w = candidates[0].weight
    return all(ep.weight == w for ep in candidates)


def _membership(candidates: Sequence[Endpoint]) -> tuple[tuple[str, int], ...]:
    return tuple((ep.id, ep.weight) for ep in candidates)


class _BuildCache:
    """A small LRU of structures (rings, tables, schedulers) keyed by the candidate membership."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[tuple[str, int], ...], Any] = OrderedDict()

    def get(self, candidates: Sequence[Endpoint], build: Callable[[Sequence[Endpoint]], Any]) -> Any:
        key = _membership(candidates)
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = build(candidates)
            if len(self._items) > _CACHE_SIZE:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return item


# --------------------------------------------------------------------------------------------
# Round robin, smooth weighted round robin, random
# --------------------------------------------------------------------------------------------


class RoundRobin(LoadBalancer):
    """Plain round robin over the candidates, ignoring weights (use :class:`SmoothWeightedRoundRobin` for weights).

    Examples
    --------
    >>> lb = RoundRobin()
    >>> eps = [Endpoint("a"), Endpoint("b"), Endpoint("c")]
    >>> [lb.pick(0.0, eps).id for _ in range(4)]
    ['a', 'b', 'c', 'a']
    """

    policy = "round_robin"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._next = 0

    def choose(self, now: float, candidates: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """The next candidate in turn."""
        ep = candidates[self._next % len(candidates)]
        self._next += 1
        return ep


class SmoothWeightedRoundRobin(LoadBalancer):
    """nginx's smooth weighted round robin: heavy endpoints are interleaved, not bunched.

    Each pick adds every candidate's weight to its ``current`` weight, picks the largest
    (first on ties) and subtracts the total weight from the winner. With equal weights it is
    plain round robin. Endpoints that drop out keep their ``current`` weight, as nginx keeps it
    for peers marked down.

    Examples
    --------
    >>> lb = SmoothWeightedRoundRobin()
    >>> eps = [Endpoint("a", weight=5), Endpoint("b"), Endpoint("c")]
    >>> "".join(lb.pick(0.0, eps).id for _ in range(7))
    'aabacaa'
    """

    policy = "weighted_round_robin"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._current: dict[str, int] = {}

    def choose(self, now: float, candidates: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """The candidate with the largest current weight, after adding every weight once."""
        current = self._current
        total = 0
        best: Endpoint | None = None
        best_weight = 0
        for ep in candidates:
            weight = current.get(ep.id, 0) + ep.weight
            current[ep.id] = weight
            total += ep.weight
            if best is None or weight > best_weight:
                best, best_weight = ep, weight
        assert best is not None
        current[best.id] -= total
        return best


class RandomBalancer(LoadBalancer):
    """A random candidate: uniform when weights are equal (Envoy RANDOM), else weight-proportional."""

    policy = "random"

    def choose(self, now: float, candidates: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """A random candidate."""
        if _equal_weights(candidates):
            return candidates[self.rng.randrange(len(candidates))]
        return self.rng.choices(candidates, weights=[ep.weight for ep in candidates])[0]


# --------------------------------------------------------------------------------------------
# Load-aware: least request, power of two choices
# --------------------------------------------------------------------------------------------


class _LoadAware(LoadBalancer):
    """Tracks this client's requests in flight per endpoint (``on_start`` / ``on_finish``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._in_flight: dict[str, int] = {}

    def active_requests(self, endpoint: Endpoint) -> int:
        """``endpoint.active_requests`` plus the requests this balancer saw start and not finish."""
        return endpoint.active_requests + self._in_flight.get(endpoint.id, 0)

    def on_start(self, now: float, endpoint: Endpoint) -> None:
        """Count a request to ``endpoint`` as in flight."""
        self._in_flight[endpoint.id] = self._in_flight.get(endpoint.id, 0) + 1

    def on_finish(self, now: float, endpoint: Endpoint) -> None:
        """Count a request to ``endpoint`` as finished.

        Raises
        ------
        ConfigError
            More finishes than starts for this endpoint (a caller bug, never hidden).
        """
        n = self._in_flight.get(endpoint.id, 0)
        if n <= 0:
            raise ConfigError(
                f"{type(self).__name__}.on_finish for endpoint {endpoint.id!r} without a matching on_start"
            )
        if n == 1:
            del self._in_flight[endpoint.id]
        else:
            self._in_flight[endpoint.id] = n - 1


class _EdfScheduler:
    """Envoy's earliest-deadline-first scheduler: weight w is due every 1/w; ties go to the oldest entry."""

    __slots__ = ("_heap", "_now", "_seq")

    def __init__(self, weights: Sequence[float]) -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._now = 0.0
        self._seq = 0
        for index, weight in enumerate(weights):
            self._add(index, weight)

    def _add(self, index: int, weight: float) -> None:
        heapq.heappush(self._heap, (self._now + 1.0 / weight, self._seq, index))
        self._seq += 1

    def pick_and_add(self, weight_of: Callable[[int], float]) -> int:
        """Pop the earliest entry and re-add it with its weight as of now (Envoy ``pickAndAdd``)."""
        deadline, _, index = heapq.heappop(self._heap)
        self._now = deadline
        self._add(index, weight_of(index))
        return index


class LeastRequest(_LoadAware):
    """Envoy LEAST_REQUEST.

    With equal weights: sample ``choice_count`` candidates at random (with replacement) and
    take the one with the fewest active requests (P2C for the default 2). With unequal weights:
    an earliest-deadline-first schedule where each endpoint's effective weight is
    ``weight / (active_requests + 1) ** active_request_bias``, recomputed each time it is picked.

    Parameters
    ----------
    choice_count : int, default 2
        Envoy ``least_request_lb_config.choice_count`` (>= 2).
    active_request_bias : float, default 1.0
        Envoy ``active_request_bias``; 0 turns the weighted path into plain weighted round robin.
    **kwargs
        ``rng``, ``panic_threshold_percent``, ``overprovisioning_factor``: see :class:`LoadBalancer`.

    Examples
    --------
    >>> lb = LeastRequest(rng=random.Random(1))
    >>> eps = [Endpoint("busy", active_requests=9), Endpoint("idle")]
    >>> sum(lb.pick(0.0, eps).id == "idle" for _ in range(100)) > 70
    True
    """

    policy = "least_request"

    def __init__(self, *, choice_count: int = 2, active_request_bias: float = 1.0, **kwargs: Any) -> None:
        check_int(type(self).__name__, "choice_count", choice_count, minimum=2)
        check_number(type(self).__name__, "active_request_bias", active_request_bias)
        super().__init__(**kwargs)
        self.choice_count = choice_count
        self.active_request_bias = active_request_bias
        self._schedulers = _BuildCache()

    def _describe(self) -> str:
        return f"choice_count={self.choice_count}, active_request_bias={self.active_request_bias}"

    def _effective_weight(self, ep: Endpoint) -> float:
        return ep.weight / (self.active_requests(ep) + 1) ** self.active_request_bias

    def choose(self, now: float, candidates: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """The least-loaded of ``choice_count`` random samples, or the EDF pick for unequal weights."""
        n = len(candidates)
        if n == 1:
            return candidates[0]
        if _equal_weights(candidates):
            best = candidates[self.rng.randrange(n)]
            for _ in range(self.choice_count - 1):
                sample = candidates[self.rng.randrange(n)]
                if self.active_requests(sample) < self.active_requests(best):
                    best = sample
            return best
        scheduler = self._schedulers.get(
            candidates, lambda cs: _EdfScheduler([self._effective_weight(ep) for ep in cs])
        )
        return candidates[scheduler.pick_and_add(lambda i: self._effective_weight(candidates[i]))]


class PowerOfTwoChoices(_LoadAware):
    """Mitzenmacher's power of two choices: two *distinct* random candidates, the less loaded wins.

    Load is ``(active_requests + 1) / weight``, so weights are honoured; ties go to the first
    sample.
    """

    policy = "power_of_two_choices"

    def _cost(self, ep: Endpoint) -> float:
        return (self.active_requests(ep) + 1) / ep.weight

    def choose(self, now: float, candidates: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """The less loaded of two distinct random candidates."""
        n = len(candidates)
        if n == 1:
            return candidates[0]
        rng = self.rng
        if type(rng) is random.Random:  # randrange(n) for n > 0 is _randbelow(n): the same draws, less work
            i = rng._randbelow(n)
            j = rng._randbelow(n - 1)
        else:
            i = rng.randrange(n)
            j = rng.randrange(n - 1)
        j += j >= i
        a, b = candidates[i], candidates[j]
        if (
            a.weight == 1 and b.weight == 1 and type(self) is PowerOfTwoChoices
        ):  # _cost() without the calls: (in flight + 1) / 1
            get = self._in_flight.get
            return a if a.active_requests + get(a.id, 0) <= b.active_requests + get(b.id, 0) else b
        return a if self._cost(a) <= self._cost(b) else b


# --------------------------------------------------------------------------------------------
# Consistent hashing: ring hash, Maglev
# --------------------------------------------------------------------------------------------


class _HashBalancer(LoadBalancer):
    """Shared by consistent-hash balancers: hash the key (random when there is none, as Envoy does)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._builds = _BuildCache()

    def _key_hash(self, key: HashKey | None) -> int:
        return self.rng.getrandbits(64) if key is None else stable_hash64(key)

    @staticmethod
    def _by_id(candidates: Sequence[Endpoint]) -> list[int]:
        """Candidate indices sorted by id, so a build does not depend on the order given."""
        return sorted(range(len(candidates)), key=lambda i: candidates[i].id)


class RingHash(_HashBalancer):
    """Envoy RING_HASH (Ketama-style consistent hashing).

    Each endpoint gets ``scale * weight / total_weight`` points on a 64-bit ring, where ``scale``
    is chosen as Envoy does so the lightest endpoint gets a whole number of points and the ring
    has at least ``minimum_ring_size`` entries (at most ``maximum_ring_size``). A request goes
    to the first point at or after its key's hash, so removing one of N endpoints moves only
    the ~1/N of keys that it owned.

    Parameters
    ----------
    minimum_ring_size : int, default 1024
    maximum_ring_size : int, default 8388608
    **kwargs
        See :class:`LoadBalancer`.
    """

    policy = "ring_hash"

    def __init__(
        self, *, minimum_ring_size: int = 1024, maximum_ring_size: int = 8_388_608, **kwargs: Any
    ) -> None:
        owner = type(self).__name__
        check_int(owner, "minimum_ring_size", minimum_ring_size, minimum=1)
        check_int(owner, "maximum_ring_size", maximum_ring_size, minimum=1)
        check(
            minimum_ring_size <= maximum_ring_size,
            owner,
            "minimum_ring_size",
            "<= maximum_ring_size",
            minimum_ring_size,
        )
        super().__init__(**kwargs)
        self.minimum_ring_size = minimum_ring_size
        self.maximum_ring_size = maximum_ring_size

    def _describe(self) -> str:
        return f"minimum_ring_size={self.minimum_ring_size}, maximum_ring_size={self.maximum_ring_size}"

    def ring(self, candidates: Sequence[Endpoint]) -> tuple[list[int], list[int]]:
        """The ring for these candidates: sorted point hashes and the candidate index owning each."""
        return self._builds.get(candidates, self._build)

    def _build(self, candidates: Sequence[Endpoint]) -> tuple[list[int], list[int]]:
        total = sum(ep.weight for ep in candidates)
        min_share = min(ep.weight for ep in candidates) / total
        scale = min(math.ceil(min_share * self.minimum_ring_size) / min_share, float(self.maximum_ring_size))
        points: list[tuple[int, int]] = []
        current = 0.0
        target = 0.0
        for index in self._by_id(candidates):
            ep = candidates[index]
            target += scale * ep.weight / total
            i = 0
            while current < target:
                points.append((stable_hash64(f"{ep.id}_{i}"), index))
                i += 1
                current += 1
        points.sort()
        return [h for h, _ in points], [i for _, i in points]

    def choose(self, now: float, candidates: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """The owner of the first ring point at or after the key's hash (wrapping around)."""
        hashes, owners = self.ring(candidates)
        i = bisect.bisect_left(hashes, self._key_hash(key))
        return candidates[owners[i if i < len(hashes) else 0]]


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


class Maglev(_HashBalancer):
    """Envoy MAGLEV: Google's Maglev lookup table (Eisenbud et al., NSDI 2016), with Envoy's weights.

    Each endpoint has a permutation of table slots, ``(offset + j * skip) % M`` with ``offset``
    and ``skip`` from two hashes of its id. Endpoints take turns claiming their next free
    preferred slot until the table is full; an endpoint of weight w takes a turn on w out of
    every ``max_weight`` rounds. With equal weights every endpoint owns M/N slots (+-1), and
    removing one endpoint moves little more than its own share.

    Parameters
    ----------
    table_size : int, default 65537
        Envoy ``maglev_lb_config.table_size``; must be prime.
    **kwargs
        See :class:`LoadBalancer`.
    """

    policy = "maglev"

    def __init__(self, *, table_size: int = 65537, **kwargs: Any) -> None:
        check_int(type(self).__name__, "table_size", table_size, minimum=2)
        check(_is_prime(table_size), type(self).__name__, "table_size", "a prime number", table_size)
        super().__init__(**kwargs)
        self.table_size = table_size

    def _describe(self) -> str:
        return f"table_size={self.table_size}"

    def table(self, candidates: Sequence[Endpoint]) -> list[int]:
        """The lookup table for these candidates: slot -> candidate index."""
        return self._builds.get(candidates, self._build)

    def _build(self, candidates: Sequence[Endpoint]) -> list[int]:
        m = self.table_size
        order = self._by_id(candidates)
        offset = [stable_hash64(candidates[i].id, seed=0) % m for i in order]
        skip = [stable_hash64(candidates[i].id, seed=1) % (m - 1) + 1 for i in order]
        weight = [candidates[i].weight for i in order]
        max_weight = max(weight)
        target = [0] * len(order)
        next_ = [0] * len(order)
        table = [-1] * m
        filled = 0
        iteration = 1
        while filled < m:
            for k in range(len(order)):
                if filled >= m:
                    break
                # A weight-w endpoint claims a slot on w of every max_weight rounds (Envoy).
                if iteration * weight[k] < target[k]:
                    continue
                target[k] += max_weight
                c = (offset[k] + skip[k] * next_[k]) % m
                while table[c] >= 0:
                    next_[k] += 1
                    c = (offset[k] + skip[k] * next_[k]) % m
                table[c] = order[k]
                next_[k] += 1
                filled += 1
            iteration += 1
        return table

    def choose(self, now: float, candidates: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """The owner of slot ``hash(key) % table_size``."""
        return candidates[self.table(candidates)[self._key_hash(key) % self.table_size]]


class Passthrough(LoadBalancer):
    """Istio PASSTHROUGH / Envoy ORIGINAL_DST: the caller already chose; ``key`` is the endpoint id.

    Health, priorities and panic do not apply: the request goes where it was addressed.
    """

    policy = "passthrough"

    def pick(self, now: float, endpoints: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """The endpoint whose id is ``key``."""
        self.picks += 1
        return self.choose(now, endpoints, key)

    def choose(self, now: float, candidates: Sequence[Endpoint], key: HashKey | None = None) -> Endpoint:
        """The candidate whose id is ``key``."""
        if key is None:
            raise ConfigError("Passthrough.pick needs key=<endpoint id>: the original destination")
        wanted = key.decode() if isinstance(key, bytes) else str(key)
        for ep in candidates:
            if ep.id == wanted:
                return ep
        raise NoHealthyUpstreamError(
            f"no healthy upstream: original destination {wanted!r} is not among the {len(candidates)} endpoints",
            total=len(candidates),
        )


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

BalancerPolicy = Literal[
    "round_robin",
    "weighted_round_robin",
    "random",
    "least_request",
    "power_of_two_choices",
    "ring_hash",
    "maglev",
    "passthrough",
]

#: Policy name -> balancer class.
BALANCER_POLICIES: Mapping[str, type[LoadBalancer]] = {
    cls.policy: cls
    for cls in (
        RoundRobin,
        SmoothWeightedRoundRobin,
        RandomBalancer,
        LeastRequest,
        PowerOfTwoChoices,
        RingHash,
        Maglev,
        Passthrough,
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBalancerConfig(ConfigBase):
    """A balancer as configuration (what the importers return); :meth:`build` makes the balancer.

    Parameters
    ----------
    policy : str, default "round_robin"
        One of ``BALANCER_POLICIES``: ``"round_robin"``, ``"weighted_round_robin"`` (smooth,
        nginx), ``"random"``, ``"least_request"``, ``"power_of_two_choices"``, ``"ring_hash"``,
        ``"maglev"``, ``"passthrough"``.
    choice_count : int, default 2
        ``least_request`` only.
    active_request_bias : float, default 1.0
        ``least_request`` only.
    minimum_ring_size, maximum_ring_size : int, default 1024, 8388608
        ``ring_hash`` only.
    table_size : int, default 65537
        ``maglev`` only.
    hash_key : str, optional
        Where consistent-hash keys come from, for the caller to extract: ``"header:x-user"``,
        ``"cookie:session"``, ``"query:user"``, ``"source_ip"``, ``"filter_state:name"``.
    panic_threshold_percent : float, default 50.0
    overprovisioning_factor : float, default 1.4
    locality_failover : bool, default False
        Wrap the balancer in :class:`LocalityFailoverBalancer` (needs the caller's region).
    failover : tuple of (str, str), default ()
        Istio ``localityLbSetting.failover`` ``(from_region, to_region)`` pairs.

    Examples
    --------
    >>> cfg = LoadBalancerConfig(policy="least_request", choice_count=3)
    >>> cfg.build(rng=random.Random(7))
    LeastRequest(choice_count=3, active_request_bias=1.0)
    """

    policy: BalancerPolicy = "round_robin"
    choice_count: int = 2
    active_request_bias: float = 1.0
    minimum_ring_size: int = 1024
    maximum_ring_size: int = 8_388_608
    table_size: int = 65537
    hash_key: str | None = None
    panic_threshold_percent: float = DEFAULT_PANIC_THRESHOLD_PERCENT
    overprovisioning_factor: float = DEFAULT_OVERPROVISIONING_FACTOR
    locality_failover: bool = False
    failover: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        check(
            self.policy in BALANCER_POLICIES,
            "LoadBalancerConfig",
            "policy",
            f"one of {', '.join(BALANCER_POLICIES)}",
            self.policy,
        )
        check(
            self.hash_key is None or isinstance(self.hash_key, str),
            "LoadBalancerConfig",
            "hash_key",
            "a string or None",
            self.hash_key,
        )
        check(
            isinstance(self.locality_failover, bool),
            "LoadBalancerConfig",
            "locality_failover",
            "a bool",
            self.locality_failover,
        )
        pairs = tuple(tuple(p) for p in self.failover)
        check(
            all(len(p) == 2 and all(isinstance(r, str) for r in p) for p in pairs),
            "LoadBalancerConfig",
            "failover",
            "(from_region, to_region) string pairs",
            self.failover,
        )
        object.__setattr__(self, "failover", pairs)
        self.build()  # validates the policy-specific numbers once, with the balancer's own checks

    def build(
        self, rng: random.Random | None = None, *, region: str | None = None, zone: str | None = None
    ) -> LoadBalancer | LocalityFailoverBalancer:
        """Make the balancer.

        Parameters
        ----------
        rng : random.Random, optional
            Its random source (default ``random.Random(0)``).
        region, zone : str, optional
            The caller's locality; with ``locality_failover`` and a region the balancer is wrapped
            in :class:`LocalityFailoverBalancer`.
        """
        common: dict[str, Any] = {
            "rng": rng,
            "panic_threshold_percent": self.panic_threshold_percent,
            "overprovisioning_factor": self.overprovisioning_factor,
        }
        specific: dict[str, Any] = {
            "least_request": {
                "choice_count": self.choice_count,
                "active_request_bias": self.active_request_bias,
            },
            "ring_hash": {
                "minimum_ring_size": self.minimum_ring_size,
                "maximum_ring_size": self.maximum_ring_size,
            },
            "maglev": {"table_size": self.table_size},
        }.get(self.policy, {})
        balancer = BALANCER_POLICIES[self.policy](**common, **specific)
        if self.locality_failover and region:
            return LocalityFailoverBalancer(balancer, region=region, zone=zone, failover=self.failover)
        return balancer
