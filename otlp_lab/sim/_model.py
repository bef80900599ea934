"""The fleet model: services, their instances and endpoints, and the call graph between them.

All config objects are frozen, slotted, keyword-only dataclasses (the name may be positional).
They are checked as a whole by :class:`~otlp_lab.sim.Scenario`, whose errors name the key
path (``services.cart.instances``) and the bad value.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from otlp_lab._config import check_int, fail
from otlp_lab.errors import ConfigError, ScenarioError
from otlp_lab.resilience import (
    AutoscalerConfig,
    Bulkhead,
    CircuitBreakerConfig,
    ConnectionPoolConfig,
    HealthCheckConfig,
    HedgingPolicy,
    LoadBalancerConfig,
    OutlierDetectionConfig,
    RetryBudget,
    RetryPolicy,
    RetryThrottle,
    TokenBucket,
    parse_duration_s,
)
from otlp_lab.sim._dist import Distribution, Exponential

__all__ = ["Call", "Parallel", "OneOf", "Step", "Endpoint", "Service", "Policy", "split_target"]


def _bad(key: str, what: str, v: Any) -> ScenarioError:
    return fail(ScenarioError, key, what, v)  # type: ignore[return-value]


def check_positive_int(key: str, v: Any, *, zero_ok: bool = False) -> None:
    check_int(v, key, minimum=0 if zero_ok else 1, error=ScenarioError)


def check_seconds(key: str, v: Any, *, positive: bool = False, optional: bool = False) -> None:
    if v is None and optional:
        return
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or not math.isfinite(v)
        or v < 0
        or (positive and v == 0)
    ):
        raise _bad(key, "a positive number of seconds" if positive else "a non-negative number of seconds", v)


def _tuples(obj: Any, *names: str) -> None:
    """Lists given to a frozen config become tuples (hashable, and equal whichever was given)."""
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, list):
            object.__setattr__(obj, name, tuple(v))


def _autoscaler(d: dict[str, Any]) -> AutoscalerConfig:
    """``{"manifest": path, "pod_startup_s": .., "name": ..}`` or the settings of an AutoscalerConfig."""
    if "manifest" in d:
        extra = sorted(set(d) - {"manifest", "pod_startup_s", "name"})
        if extra:
            raise ConfigError(
                f"with 'manifest', only 'pod_startup_s' and 'name' may be given. Got {extra} too."
            )
        kw = {k: d[k] for k in ("pod_startup_s", "name") if k in d}
        if isinstance(kw.get("pod_startup_s"), str):
            kw["pod_startup_s"] = parse_duration_s(kw["pod_startup_s"], name="autoscaler.pod_startup_s")
        return AutoscalerConfig.from_manifest(Path(d["manifest"]), **kw)
    return AutoscalerConfig.from_dict(d)


def split_target(target: str) -> tuple[str, str | None]:
    """``"cart/get"`` -> ``("cart", "get")``; ``"cart"`` -> ``("cart", None)`` (its first endpoint)."""
    svc, _, ep = target.partition("/")
    return svc, (ep or None)


@dataclass(frozen=True, slots=True)
class Call:
    """A call to a downstream endpoint through a policy stack.

    Parameters
    ----------
    to : str
        ``"service"`` (its first endpoint) or ``"service/endpoint"``.
    policy : str, optional
        Name of a policy stack of the scenario (``Scenario.policies``); the scenario's
        ``default_policy`` when omitted.
    critical : bool, default True
        Whether a failure of this call fails the caller. A non-critical call's failure is
        absorbed (a degraded answer).
    probability : float, default 1.0
        Share of the endpoint's requests that make this call at all (a branch of the code
        taken only sometimes); a fitted twin learns it from the capture.
    count : float, default 1.0
        Calls made per request when the call is made, one after the other (inside a
        :class:`Parallel`, side by side); a fraction is drawn per request (2.3 means 2 calls,
        and a third 30 % of the time).
    """

    to: str
    _: KW_ONLY
    policy: str | None = None
    critical: bool = True
    probability: float = 1.0
    count: float = 1.0

    @property
    def plain(self) -> bool:
        """Made exactly once per request (no probability, no repeats)."""
        return self.probability == 1.0 and self.count == 1.0

    def check(self, key: str) -> None:
        if not isinstance(self.to, str) or not self.to or self.to.startswith("/"):
            raise _bad(f"{key}.to", "a target 'service' or 'service/endpoint'", self.to)
        if self.policy is not None and not isinstance(self.policy, str):
            raise _bad(f"{key}.policy", "the name of a policy stack", self.policy)
        if not isinstance(self.critical, bool):
            raise _bad(f"{key}.critical", "true or false", self.critical)
        p = self.probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
            raise _bad(f"{key}.probability", "a number in (0, 1]", p)
        n = self.count
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not 1.0 <= n <= 1000.0:
            raise _bad(f"{key}.count", "a number of calls between 1 and 1000", n)


@dataclass(frozen=True, slots=True)
class Parallel:
    """Calls sent at the same time (fan-out); the step ends when all of them have answered."""

    calls: tuple[Call, ...]

    def __post_init__(self) -> None:
        _tuples(self, "calls")

    def check(self, key: str) -> None:
        if not isinstance(self.calls, (tuple, list)) or not self.calls:
            raise _bad(f"{key}.parallel", "a non-empty list of calls", self.calls)
        for n, c in enumerate(self.calls):
            if not isinstance(c, Call):
                raise _bad(f"{key}.parallel[{n}]", "a Call", c)
            c.check(f"{key}.parallel[{n}]")


@dataclass(frozen=True, slots=True)
class OneOf:
    """Exactly one of several calls per request, drawn with ``weights`` (classes of requests).

    A fitted twin uses it where one endpoint serves several kinds of request, each with its own
    calls (a gateway routing to different services): independent call probabilities would mix
    them into requests no client sends.
    """

    calls: tuple[Call, ...]
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _tuples(self, "calls", "weights")

    def check(self, key: str) -> None:
        if not isinstance(self.calls, (tuple, list)) or not self.calls:
            raise _bad(f"{key}.one_of", "a non-empty list of calls", self.calls)
        for n, c in enumerate(self.calls):
            if not isinstance(c, Call):
                raise _bad(f"{key}.one_of[{n}]", "a Call", c)
            c.check(f"{key}.one_of[{n}]")
        w = self.weights
        if w and (
            len(w) != len(self.calls)
            or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not x >= 0 for x in w)
            or not sum(w) > 0
        ):
            raise _bad(f"{key}.weights", f"{len(self.calls)} non-negative weights, not all zero", w)


Step = Call | Parallel | OneOf


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An operation of a service: local work, then its downstream calls in order.

    Parameters
    ----------
    name : str
        The operation (the server span's name), e.g. ``"GET /cart"``.
    service_time : Distribution, optional
        The local work per request; the service's ``service_time`` when omitted.
    calls : sequence of Call or Parallel
        Downstream steps, run one after the other (a :class:`Parallel` fans out).
    error_rate : float, default 0.0
        Share of requests the endpoint fails by itself (``INTERNAL``) after its local work and
        before its calls: the errors a fitted twin sees in a capture that no downstream call explains.
    operation : str, optional
        The server span's name, when it differs from ``name`` (a fitted twin names the classes of
        requests one operation serves ``"GET /x"``, ``"GET /x #2"``, ... and keeps the span name).
    """

    name: str
    _: KW_ONLY
    service_time: Distribution | None = None
    calls: tuple[Step, ...] = ()
    error_rate: float = 0.0
    operation: str | None = None

    def __post_init__(self) -> None:
        _tuples(self, "calls")

    def check(self, key: str) -> None:
        if self.service_time is not None:
            if not isinstance(self.service_time, Distribution):
                raise _bad(
                    f"{key}.service_time", "a distribution such as Exponential(0.01)", self.service_time
                )
            self.service_time.check(f"{key}.service_time")
        if not isinstance(self.calls, (tuple, list)):
            raise _bad(f"{key}.calls", "a list of calls", self.calls)
        if self.operation is not None and (not isinstance(self.operation, str) or not self.operation):
            raise _bad(f"{key}.operation", "a span name", self.operation)
        e = self.error_rate
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0.0 <= e <= 1.0:
            raise _bad(f"{key}.error_rate", "a share between 0 and 1", e)
        for n, step in enumerate(self.calls):
            if not isinstance(step, (Call, Parallel, OneOf)):
                raise _bad(f"{key}.calls[{n}]", "a Call, a Parallel or a OneOf", step)
            step.check(f"{key}.calls[{n}]")

    def all_calls(self) -> list[Call]:
        out: list[Call] = []
        for step in self.calls:
            out.extend(step.calls if isinstance(step, (Parallel, OneOf)) else (step,))
        return out


@dataclass(frozen=True, slots=True)
class Service:
    """A service: ``instances`` identical servers behind the callers' load balancers.

    Parameters
    ----------
    name : str
        ``service.name`` of its spans.
    instances : int, default 1
        Number of instances.
    concurrency : int, default 1
        Requests one instance works on at once (worker threads: the c of M/M/c). A worker is
        held for the local work *and* the downstream calls.
    queue_limit : int, optional
        Requests that may wait for a worker per instance; more are refused with
        ``RESOURCE_EXHAUSTED``. Unbounded when omitted.
    service_time : Distribution, default Exponential(0.01)
        Local work per request (an endpoint may override it).
    endpoints : sequence of Endpoint
        Its operations; one endpoint named ``"default"`` when omitted.
    zones : sequence of str
        Instance ``i`` runs in ``zones[i % len(zones)]``.
    sidecar_latency_s : float, default 0
        Added by a sidecar proxy on each side of every hop into or out of this service.
    drop_expired : bool, default False
        Server-side cancellation: skip queued requests whose deadline has already passed
        instead of working on them (False: work on abandoned requests, as most servers do).
    autoscaler : AutoscalerConfig or dict, optional
        A Kubernetes HorizontalPodAutoscaler for the service (``min_replicas``, ``max_replicas``,
        ``metrics``, ``scale_up``/``scale_down`` behaviour, ``pod_startup_s``), or
        ``{"manifest": "hpa.yaml"}`` (a real ``autoscaling/v2`` manifest, plus optional
        ``pod_startup_s`` and ``name``). ``instances`` is then the replica count at time 0; new
        pods join the callers' load balancers once ready, removed pods leave them at once and
        finish what they hold.
    """

    name: str
    _: KW_ONLY
    instances: int = 1
    concurrency: int = 1
    queue_limit: int | None = None
    service_time: Distribution = field(default_factory=lambda: Exponential(0.01))
    endpoints: tuple[Endpoint, ...] = (Endpoint("default"),)
    zones: tuple[str, ...] = ()
    sidecar_latency_s: float = 0.0
    drop_expired: bool = False
    autoscaler: Any = None

    def __post_init__(self) -> None:
        _tuples(self, "endpoints", "zones")
        if isinstance(self.autoscaler, dict):
            try:
                object.__setattr__(self, "autoscaler", _autoscaler(self.autoscaler))
            except (ConfigError, TypeError, AttributeError):
                pass  # kept as given for check() to report

    def check(self, key: str) -> None:
        check_positive_int(f"{key}.instances", self.instances)
        check_positive_int(f"{key}.concurrency", self.concurrency)
        if self.queue_limit is not None:
            check_positive_int(f"{key}.queue_limit", self.queue_limit, zero_ok=True)
        if not isinstance(self.service_time, Distribution):
            raise _bad(f"{key}.service_time", "a distribution such as Exponential(0.01)", self.service_time)
        self.service_time.check(f"{key}.service_time")
        if not isinstance(self.endpoints, (tuple, list)) or not self.endpoints:
            raise _bad(f"{key}.endpoints", "a non-empty list of endpoints", self.endpoints)
        seen: set[str] = set()
        for ep in self.endpoints:
            if not isinstance(ep, Endpoint):
                raise _bad(f"{key}.endpoints", "a list of Endpoint", ep)
            if not isinstance(ep.name, str) or not ep.name:
                raise _bad(f"{key}.endpoints", "a list of endpoints with non-empty names", ep.name)
            if ep.name in seen:
                raise ScenarioError(
                    f"scenario key '{key}.endpoints' names {ep.name!r} twice.", key=f"{key}.endpoints"
                )
            seen.add(ep.name)
            ep.check(f"{key}.endpoints.{ep.name}")
        if not isinstance(self.zones, (tuple, list)) or not all(isinstance(z, str) and z for z in self.zones):
            raise _bad(f"{key}.zones", "a list of zone names", self.zones)
        check_seconds(f"{key}.sidecar_latency_s", self.sidecar_latency_s)
        if not isinstance(self.drop_expired, bool):
            raise _bad(f"{key}.drop_expired", "true or false", self.drop_expired)
        if self.autoscaler is not None:
            if isinstance(self.autoscaler, dict):
                try:
                    _autoscaler(self.autoscaler)
                except (ConfigError, TypeError, AttributeError) as exc:
                    raise ScenarioError(
                        f"scenario key '{key}.autoscaler' is not valid: {exc}", key=f"{key}.autoscaler"
                    ) from None
            if not isinstance(self.autoscaler, AutoscalerConfig):
                raise _bad(
                    f"{key}.autoscaler", "an AutoscalerConfig or a mapping of its settings", self.autoscaler
                )

    def endpoint(self, name: str | None) -> Endpoint | None:
        if name is None:
            return self.endpoints[0]
        return next((e for e in self.endpoints if e.name == name), None)

    def zone_of(self, instance: int) -> str | None:
        return self.zones[instance % len(self.zones)] if self.zones else None

    def instance_id(self, instance: int) -> str:
        return f"{self.name}-{instance}"


# ---------------------------------------------------------------- per-call policy stacks

_BALANCER_ALIASES = {"p2c": "power_of_two_choices", "rr": "round_robin", "least_requests": "least_request"}


def _retry(v: Any) -> RetryPolicy | HedgingPolicy:
    return HedgingPolicy.from_dict(v) if "hedging_delay_s" in v else RetryPolicy.from_dict(v)


def _balancer(v: Any) -> LoadBalancerConfig:
    d = {"policy": v} if isinstance(v, str) else dict(v)
    d["policy"] = _BALANCER_ALIASES.get(d.get("policy", "round_robin"), d.get("policy", "round_robin"))
    return LoadBalancerConfig.from_dict(d)


# field -> (accepted config types, builder from a dict/str); settings-only fields build the stateful object
_CONFIGS: dict[str, tuple[tuple[type, ...], Any]] = {
    "retry": ((RetryPolicy, HedgingPolicy), _retry),
    "breaker": ((CircuitBreakerConfig,), CircuitBreakerConfig.from_dict),
    "balancer": ((LoadBalancerConfig,), _balancer),
    "outlier_detection": ((OutlierDetectionConfig,), OutlierDetectionConfig.from_dict),
    "health_check": ((HealthCheckConfig,), HealthCheckConfig.from_dict),
    "connection_pool": ((ConnectionPoolConfig,), ConnectionPoolConfig.from_dict),
}
STATEFUL: dict[str, type] = {
    "budget": RetryBudget,
    "throttle": RetryThrottle,
    "bulkhead": Bulkhead,
    "rate_limiter": TokenBucket,
}


@dataclass(frozen=True, slots=True)
class Policy:
    """A client-side policy stack for calls to one upstream service (the scenario's ``policies``).

    Everything is off (None) by default except round-robin balancing. Stateful pieces (budget,
    throttle, bulkhead, rate limiter) are given as settings: every caller instance gets its own
    objects per upstream service, as every Envoy sidecar has its own.

    Parameters
    ----------
    timeout_s : float, optional
        Overall time allowed for the call (all attempts), within the caller's own deadline.
    retry : RetryPolicy or HedgingPolicy or dict, optional
        gRPC-style retries (``max_attempts``, ``initial_backoff_s``, ``max_backoff_s``,
        ``backoff_multiplier``, ``jitter``, ``per_try_timeout_s``, ``retryable_status_codes``);
        a dict with ``hedging_delay_s`` makes a :class:`~otlp_lab.resilience.HedgingPolicy`.
    budget : dict, optional
        :class:`~otlp_lab.resilience.RetryBudget` settings (``budget_percent``, ``min_retry_concurrency``).
    throttle : dict, optional
        :class:`~otlp_lab.resilience.RetryThrottle` settings (``max_tokens``, ``token_ratio``).
    breaker : CircuitBreakerConfig or dict, optional
        resilience4j circuit breaker settings.
    bulkhead : dict, optional
        :class:`~otlp_lab.resilience.Bulkhead` settings (``max_requests``, ``max_pending_requests``, ...).
    rate_limiter : dict, optional
        :class:`~otlp_lab.resilience.TokenBucket` settings (``rate_per_s``, ``burst``).
    balancer : LoadBalancerConfig or dict or str, default "round_robin"
        ``"round_robin"``, ``"random"``, ``"least_request"``, ``"power_of_two_choices"`` (``"p2c"``),
        ``"ring_hash"``, ``"maglev"``, ... or the settings of a
        :class:`~otlp_lab.resilience.LoadBalancerConfig`.
    outlier_detection : OutlierDetectionConfig or dict, optional
        Envoy outlier ejection (``consecutive_5xx``, ``interval_s``, ``base_ejection_time_s``, ...).
    health_check : HealthCheckConfig or dict, optional
        Active health checks of every upstream instance (``interval_s``, ``timeout_s``, thresholds).
    connection_pool : ConnectionPoolConfig or dict, optional
        The caller's sidecar connection pool with Envoy's circuit breakers, enforced as Envoy
        does (``max_connections``, ``max_pending_requests``, ``max_requests``, ``max_retries``,
        ``max_requests_per_connection``, ``http2``): an overflow is answered at once with a
        local 503 (response flag ``UO`` on the span), a new connection takes one network
        round trip. None: connections are not modelled.

    Examples
    --------
    >>> Policy(1.0, retry={"max_attempts": 3, "per_try_timeout_s": 0.3}, balancer="p2c").balancer.policy
    'power_of_two_choices'
    """

    timeout_s: float | None = None
    _: KW_ONLY
    retry: Any = None
    budget: dict[str, Any] | None = None
    throttle: dict[str, Any] | None = None
    breaker: Any = None
    bulkhead: dict[str, Any] | None = None
    rate_limiter: dict[str, Any] | None = None
    balancer: Any = "round_robin"
    outlier_detection: Any = None
    health_check: Any = None
    connection_pool: Any = None

    def __post_init__(self) -> None:
        # settings given as a dict or a name become config objects; a bad one is kept for check() to report
        for name, (_, build) in _CONFIGS.items():
            v = getattr(self, name)
            if isinstance(v, (dict, str)):
                try:
                    object.__setattr__(self, name, build(v))
                except (ConfigError, TypeError, AttributeError):
                    pass

    def check(self, key: str) -> None:
        """Raise :class:`ScenarioError` naming ``key`` if a setting is invalid."""
        if self.timeout_s is not None:
            check_seconds(f"{key}.timeout_s", self.timeout_s, positive=True)
        for name, (types, build) in _CONFIGS.items():
            v = getattr(self, name)
            if v is None or isinstance(v, types):
                continue
            try:
                build(v) if isinstance(v, (dict, str)) else None
            except (ConfigError, TypeError, AttributeError) as exc:
                raise ScenarioError(
                    f"scenario key '{key}.{name}' is not valid: {exc}", key=f"{key}.{name}"
                ) from None
            names = " or ".join(t.__name__ for t in types)
            raise _bad(f"{key}.{name}", f"a {names} or a mapping of its settings", v)
        for name, cls in STATEFUL.items():
            v = getattr(self, name)
            if v is None:
                continue
            if not isinstance(v, dict):
                raise _bad(f"{key}.{name}", f"a mapping of {cls.__name__} settings", v)
            try:
                cls.from_dict(v)
            except (ConfigError, TypeError) as exc:
                raise ScenarioError(
                    f"scenario key '{key}.{name}' is not valid: {exc}", key=f"{key}.{name}"
                ) from None

    @classmethod
    def from_imported(cls, imported: Any, *, timeout_s: float | None = None) -> Policy:
        """The policy stack for what a config importer understood (Istio, Envoy, resilience4j, gRPC).

        Parameters
        ----------
        imported : ImportedPolicies or str or Path
            From :func:`otlp_lab.resilience.import_yaml`; or a path ``"FILE"`` /
            ``"FILE#NAME"`` (imported strictly, ``NAME`` as in :func:`~otlp_lab.resilience.import_all`).
        timeout_s : float, optional
            Overrides the imported whole-call timeout.

        Returns
        -------
        Policy
            Retry (or hedging), circuit breaker, Envoy connection pool and circuit breakers
            (``connection_pool``, enforced as Envoy does), resilience4j bulkhead, retry budget,
            retry throttle, rate limiter, load balancer, outlier detection, active health checks
            and timeout. Istio fault injection is not a client policy: the CLI turns it into
            scenario faults (see :func:`fault_from_imported`).

        Examples
        --------
        >>> from otlp_lab.resilience import EXAMPLES_DIR
        >>> p = Policy.from_imported(f"{EXAMPLES_DIR / 'istio-reviews.yaml'}")
        >>> p.connection_pool.max_connections, p.retry.max_attempts
        (100, 4)
        """
        from otlp_lab.resilience import ImportedPolicies, import_yaml

        if isinstance(imported, (str, os.PathLike)):
            path, _, name = str(imported).partition("#")
            imported = import_yaml(
                path if not isinstance(imported, os.PathLike) else imported, name=name or None
            )
        if not isinstance(imported, ImportedPolicies):
            raise ConfigError(
                "imported must be an ImportedPolicies (import_yaml(...)) or a 'FILE[#NAME]' path."
                f" Got {type(imported).__name__} instead."
            )
        bulkhead = None
        if imported.connection_pool is None and imported.limits is not None:
            bulkhead = {"max_requests": imported.limits.limits["requests"]}  # resilience4j's concurrent calls
        budget = None
        if imported.retry_budget is not None:
            b = imported.retry_budget
            budget = {"budget_percent": b.budget_percent, "min_retry_concurrency": b.min_retry_concurrency}
        throttle = None
        if imported.retry_throttle is not None:
            t = imported.retry_throttle
            throttle = {"max_tokens": t.max_tokens, "token_ratio": t.token_ratio}
        limiter = None
        if imported.rate_limiter is not None:
            limiter = {"rate_per_s": imported.rate_limiter.rate_per_s, "burst": imported.rate_limiter.burst}
        kw: dict[str, Any] = {
            "retry": imported.retry,
            "breaker": imported.breaker,
            "bulkhead": bulkhead,
            "connection_pool": imported.connection_pool,
            "budget": budget,
            "throttle": throttle,
            "rate_limiter": limiter,
            "outlier_detection": imported.outlier,
            "health_check": imported.health_check,
        }
        if imported.balancer is not None:
            kw["balancer"] = imported.balancer
        return cls(imported.timeout_s if timeout_s is None else timeout_s, **kw)

    def replace(self, **changes: Any) -> Policy:
        """A copy with some fields changed (``None`` turns a piece off)."""
        return dataclasses.replace(self, **changes)
