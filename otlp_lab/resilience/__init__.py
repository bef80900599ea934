"""Resilience policies as pure state machines, with asyncio and SimPy drivers.

API contract
============
Every policy is a *pure state machine*: it never sleeps, never reads a clock and does no
I/O. The caller passes ``now`` (float seconds on one monotonic clock: SimPy ``env.now`` or
asyncio ``loop.time()``) and outcomes; the policy returns a decision. Randomness (jitter)
comes from an injected ``random.Random``. The SAME objects run under SimPy and asyncio.
Config objects are frozen keyword-only dataclasses with ``from_dict``; bad values raise
:class:`otlp_lab.errors.ConfigError`. Times are seconds (``*_s``), rates are ``*_per_s``,
percentages are 0-100.

Outcomes (what one attempt produced)
    ``Outcome.success(value=None)``, ``Outcome.failure(status, *, retry_after_s=None,
    error=None, value=None)``. ``status`` is a gRPC status *name* (``"UNAVAILABLE"``) or an
    HTTP status *int* (``503``). ``retry_after_s`` is server pushback: ``None`` = none;
    ``>= 0`` = wait exactly that long before the next attempt (replaces the backoff, which
    then restarts from ``initial_backoff_s``); negative or NaN = do not retry (gRPC).
    ``parse_grpc_pushback(header)`` / ``parse_retry_after(header)`` turn headers into it.
    Local refusals are outcomes with ``local=True`` and status ``"CIRCUIT_OPEN"``,
    ``"OVERFLOW"`` (bulkhead) or ``"RATE_LIMITED"``; ``error`` holds the CircuitOpenError /
    RejectedError. They are not retried unless their status is listed as retryable.

Retry and hedging: one per-call machine (``RetryCall``)
    ``call = policy.start(now, rng=rng, budget=None, throttle=None, deadline=None)`` where
    ``policy`` is a ``RetryPolicy`` or a ``HedgingPolicy``. Then loop on ``d = call.next(now)``:

    ``Send(attempt, timeout_s)``  start attempt ``attempt`` (1-based) *without waiting for
        it* (``timeout_s`` is informative: the machine enforces it), then call ``next`` again.
    ``Wait(delay_s)``  sleep up to ``delay_s`` (may be ``math.inf``), waking early when a
        running attempt finishes; report every finished attempt with
        ``call.on_outcome(now, attempt, outcome)``, then call ``next`` again.
    ``Cancel(attempts)``  stop these running attempts (per-try timeout; the machine has
        already recorded them as ``"DEADLINE_EXCEEDED"``); do not report them. Loop.
    ``Done(outcome, attempts, cancel)``  final answer (a success, or a failure that is not
        retried, e.g. a non-retryable status or a local refusal): cancel the attempts in
        ``cancel`` (losing hedges) and stop.
    ``GiveUp(reason, outcome, attempts, cancel)``  retrying stopped; ``outcome`` is the last
        one (or None); ``reason`` is ``"exhausted"``, ``"deadline"``, ``"budget"``,
        ``"throttled"`` or ``"pushback"`` (``"cancelled"`` after ``call.abort(now)``, which a
        driver calls when it is itself cancelled: it releases slots, permits and budget).
        Cancel ``cancel`` and stop.

    Backoff before retry n (n = 1, 2, ...): ``b = min(max_backoff_s, initial_backoff_s *
    backoff_multiplier ** (n - 1))``; jitter (AWS "Exponential Backoff And Jitter"):
    ``"none"`` b; ``"full"`` U(0, b); ``"equal"`` b/2 + U(0, b/2); ``"decorrelated"``
    min(max_backoff_s, U(initial_backoff_s, 3 * previous)). Per-try timeouts are always
    retryable. A backoff that would end after the deadline gives up at once ("deadline").
    Hedging (gRPC A6): send attempt k+1 ``hedging_delay_s`` after attempt k, or at once when
    an attempt fails with a non-fatal status; first success wins, the rest are cancelled; a
    fatal status ends the call.

    Shared per-client objects (pass the same instance to many calls):
    ``RetryBudget(budget_percent=20.0, min_retry_concurrency=3)`` (Envoy: concurrent retries
    <= max(min_retry_concurrency, budget_percent% of active requests)) and
    ``RetryThrottle(max_tokens=10, token_ratio=0.1)`` (gRPC: failure -1 token, success
    +token_ratio, retries and hedges off while tokens <= max_tokens / 2).

Circuit breaker (resilience4j semantics)
    ``cb = CircuitBreaker(CircuitBreakerConfig(...), listener=None)``;
    ``cb.try_acquire(now) -> bool``; after the call ``cb.on_success(now, duration_s)`` or
    ``cb.on_error(now, duration_s)`` (slow = duration_s > slow_call_duration_threshold_s);
    a permitted call that never ran: ``cb.release_permission(epoch)`` with the ``cb.epoch``
    read when it was permitted. ``cb.state`` (``CircuitState.CLOSED/OPEN/HALF_OPEN``),
    ``cb.poll(now)`` applies timed transitions, ``cb.next_transition_at_s`` (when automatic
    OPEN -> HALF_OPEN is due; schedule a wake-up there), ``cb.transitions`` (list of
    ``Transition(at_s, from_state, to_state)``); ``listener(transition)`` is called on each.

Limits
    ``Bulkhead(max_connections=1024, max_pending_requests=1024, max_requests=1024,
    max_retries=3)`` (Envoy circuit_breakers thresholds, concurrent counts; also
    ``Bulkhead.from_envoy(cluster["circuit_breakers"])``): ``try_acquire(kind) -> bool`` /
    ``release(kind)`` with kind in ``"connections"``, ``"pending_requests"``, ``"requests"``,
    ``"retries"``; refusals are counted in ``rejected[kind]``.
    ``TokenBucket(rate_per_s=..., burst=...)`` (starts full): ``try_acquire(now, n=1)``,
    ``wait_time_s(now, n=1)``. ``LoadShedder(LoadShedderConfig(...))``:
    ``admit(now, priority=0) -> bool`` (0 = most critical; an admitted request counts as in
    flight) then ``on_finish(now, latency_s)``; shed counts in ``shed[priority]``.
    ``ConnectionPool(ConnectionPoolConfig(max_connections=..., max_pending_requests=...,
    max_requests=..., max_retries=..., max_requests_per_connection=None, http2=False))``: an
    Envoy cluster's connection pools and circuit breakers as Envoy enforces them (a host always
    gets one connection; pending while connecting; overflow = local 503 ``UO``):
    ``request(host) -> (stream, effects)``, ``connected(conn)``, ``finish(stream)``,
    ``cancel(stream)``; the simulator drives it per caller sidecar and upstream service.
    ``Deadline.after(now, timeout_s)`` (``Deadline()`` = none): ``remaining_s(now)``,
    ``expired(now)``, ``child(now, timeout_s=None, margin_s=0.0)`` = min(own timeout,
    parent remaining - margin); ``to_grpc_timeout(now)`` / ``Deadline.from_grpc_timeout``.
    ``current_deadline()`` is the deadline of the asyncio attempt the code runs in (the
    driver sets it; ``with deadline_scope(d):`` sets it by hand); stacks start from it.

Graceful degradation
    ``Degrader(DegradationConfig(...))``: ``observe(now, *, error_rate=None, latency_s=None,
    utilisation=None, breaker_state=None) -> int`` level (0 = normal), stepping up when the
    pressure reaches ``enter_thresholds[level]`` and down (after ``min_dwell_s``) when it falls
    below ``exit_thresholds[level - 1]``; ``allows(skip_from_level)`` says whether a call that
    is skipped from that level on may run. ``Fallback(default=..., cache=FallbackCache(...))``
    serves fresh-cached / stale-cached / default values after a failure.

Config importers
    ``import_all(path)`` (every policy of an Istio, Envoy, resilience4j or gRPC file, keyed by
    host/subset, cluster, instance or method) and ``import_yaml(path, name=...)`` return
    :class:`ImportedPolicies`; ``otlp_lab.sim.Policy.from_imported`` simulates one.

Composition and drivers
    ``stack = PolicyStack(retry=..., breaker=..., bulkhead=..., rate_limiter=...,
    timeout_s=..., budget=..., throttle=..., rng=...)``. Order, outermost first:
    deadline -> retry (budget, throttle) -> circuit breaker -> bulkhead -> rate limiter ->
    the call. One stack serves any number of overlapping calls: the breaker, limits, budget
    and throttle are shared, and what each call's attempts hold is kept by that call. ``await stack.call(fetch, url)`` returns the value, or raises the call's own
    exception (non-retryable, or a single attempt with no retries configured),
    CircuitOpenError / RejectedError (local refusal), DeadlineExceededError, or
    RetryExhaustedError (``.last_outcome``, ``.attempts``, ``.reason``).
    ``stack.start(now, deadline=None)`` returns the pure ``RetryCall`` for one call.
    Drivers run any started machine: ``await drive_async(call, attempt_fn)`` where
    ``attempt_fn(attempt)`` is ``async`` and returns an ``Outcome``; in SimPy,
    ``final = yield from simpy_call(env, stack_or_policy_or_call, attempt_fn)`` where
    ``attempt_fn(attempt)`` is a process generator returning an ``Outcome`` (cancelled
    attempts receive ``simpy.Interrupt``); a retry attempt runs inline in the calling
    process, a hedge in a process of its own. Both return the final ``Done`` / ``GiveUp``;
    ``raise_for_final(final)`` turns it into a value or the exception ``call`` would raise.
    ``await stack.call_with_fallback(fallback, key, fetch, url)`` serves the fallback on any
    failure. ``classify_exception(exc)`` is the default exception -> ``Outcome`` mapping
    (``.status`` / ``.status_code`` / ``.code()``; TimeoutError -> DEADLINE_EXCEEDED,
    ConnectionError -> UNAVAILABLE); a breaker counts every non-local failure except
    ``PolicyStack(breaker_ignores=...)``.

Autoscaling (the Kubernetes HorizontalPodAutoscaler, ``autoscaling/v2``)
    ``hpa = HorizontalPodAutoscaler(AutoscalerConfig(min_replicas=2, max_replicas=10,
    metrics=[{"kind": "cpu", "target": 0.6}]))`` or ``AutoscalerConfig.from_manifest("hpa.yaml")``;
    every sync period (15 s) the driver calls ``hpa.recommend(now, current=n, ready={"cpu":
    [per ready pod]}, unready=k)`` and gets a ``ScaleDecision`` (``desired``, ``reason``):
    ``ceil(ready_pods * mean / target)`` outside the 10 % tolerance (pods not ready count as
    idle when scaling up), held within the stabilisation windows (scale-down 300 s), limited by
    the ``behavior`` policies (default up: max(4 pods, 100 %) per 15 s) and min/max replicas.
    The simulator owns the pods: they join the balancers ``pod_startup_s`` after the decision.
"""

from __future__ import annotations

from typing import Any

from otlp_lab.resilience._autoscale import (
    AutoscalerConfig,
    HorizontalPodAutoscaler,
    HpaMetric,
    HpaScalingPolicy,
    HpaScalingRules,
    ScaleDecision,
)
from otlp_lab.resilience._balancers import (
    Endpoint,
    LoadBalancer,
    LoadBalancerConfig,
)
from otlp_lab.resilience._breaker import (
    CircuitBreaker,
    CircuitBreakerConfig,
    CircuitState,
)
from otlp_lab.resilience._compose import (
    PolicyStack,
    classify_exception,
    raise_for_final,
)
from otlp_lab.resilience._core import (
    Outcome,
    parse_grpc_pushback,
    parse_retry_after,
)
from otlp_lab.resilience._degrade import (
    DegradationConfig,
    Degrader,
    Fallback,
    FallbackCache,
)
from otlp_lab.resilience._drivers import (
    drive_async,
    simpy_call,
)
from otlp_lab.resilience._health import (
    HealthCheckConfig,
    HealthChecker,
)
from otlp_lab.resilience._limits import (
    Bulkhead,
    LoadShedder,
    LoadShedderConfig,
    TokenBucket,
)
from otlp_lab.resilience._outlier import (
    OutlierDetectionConfig,
    OutlierDetector,
)
from otlp_lab.resilience._pool import (
    ConnectionPool,
    ConnectionPoolConfig,
)
from otlp_lab.resilience._retry import (
    Cancel,
    Done,
    GiveUp,
    HedgingPolicy,
    RetryBudget,
    RetryPolicy,
    RetryThrottle,
    Send,
    Wait,
)
from otlp_lab.resilience._timeout import (
    Deadline,
    current_deadline,
    deadline_scope,
)
from otlp_lab.resilience.config import (
    EXAMPLES_DIR,
    ImportedPolicies,
    from_envoy_cluster,
    from_grpc_service_config,
    from_istio,
    from_resilience4j,
    import_all,
    import_yaml,
)

__all__ = [
    # outcomes
    "Outcome",
    "parse_grpc_pushback",
    "parse_retry_after",
    # retry and hedging
    "Cancel",
    "Done",
    "GiveUp",
    "HedgingPolicy",
    "RetryBudget",
    "RetryPolicy",
    "RetryThrottle",
    "Send",
    "Wait",
    # circuit breaker
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitState",
    # limits, connection pool, deadlines
    "Bulkhead",
    "LoadShedder",
    "LoadShedderConfig",
    "TokenBucket",
    "ConnectionPool",
    "ConnectionPoolConfig",
    "Deadline",
    "current_deadline",
    "deadline_scope",
    # degradation
    "DegradationConfig",
    "Degrader",
    "Fallback",
    "FallbackCache",
    # composition and drivers
    "PolicyStack",
    "classify_exception",
    "raise_for_final",
    "drive_async",
    "simpy_call",
    # load balancing, outlier detection, health checks
    "Endpoint",
    "LoadBalancer",
    "LoadBalancerConfig",
    "OutlierDetectionConfig",
    "OutlierDetector",
    "HealthCheckConfig",
    "HealthChecker",
    # config importers (Istio, Envoy, resilience4j, gRPC)
    "EXAMPLES_DIR",
    "ImportedPolicies",
    "from_envoy_cluster",
    "from_grpc_service_config",
    "from_istio",
    "from_resilience4j",
    "import_all",
    "import_yaml",
    # autoscaling: the Kubernetes HorizontalPodAutoscaler as a state machine
    "AutoscalerConfig",
    "HorizontalPodAutoscaler",
    "HpaMetric",
    "HpaScalingPolicy",
    "HpaScalingRules",
    "ScaleDecision",
]

# Building blocks kept importable from here for code written against the older, longer list; their
# homes are the private modules named below (balancer classes, host selection, enums, constants).
_ELSEWHERE = {
    "Admission": "otlp_lab.resilience._retry",
    "BALANCER_POLICIES": "otlp_lab.resilience._balancers",
    "BreakerMetrics": "otlp_lab.resilience._breaker",
    "ConfigBase": "otlp_lab.resilience._core",
    "DEFAULT_OVERPROVISIONING_FACTOR": "otlp_lab.resilience._failover",
    "DEFAULT_PANIC_THRESHOLD_PERCENT": "otlp_lab.resilience._failover",
    "Decision": "otlp_lab.resilience._retry",
    "EjectionType": "otlp_lab.resilience._outlier",
    "FallbackResult": "otlp_lab.resilience._degrade",
    "GRPC_STATUS_NAMES": "otlp_lab.resilience._core",
    "HashKey": "otlp_lab.resilience._balancers",
    "HealthState": "otlp_lab.resilience._health",
    "HealthTransition": "otlp_lab.resilience._health",
    "HostSelection": "otlp_lab.resilience._failover",
    "ISTIO_DEFAULT_RETRY": "otlp_lab.resilience.config",
    "Jitter": "otlp_lab.resilience._retry",
    "LeastRequest": "otlp_lab.resilience._balancers",
    "LimitKind": "otlp_lab.resilience._limits",
    "LocalityFailoverBalancer": "otlp_lab.resilience._failover",
    "Maglev": "otlp_lab.resilience._balancers",
    "OutlierAction": "otlp_lab.resilience._outlier",
    "OutlierEvent": "otlp_lab.resilience._outlier",
    "Passthrough": "otlp_lab.resilience._balancers",
    "PowerOfTwoChoices": "otlp_lab.resilience._balancers",
    "PriorityLoad": "otlp_lab.resilience._failover",
    "ProbeOutcome": "otlp_lab.resilience._health",
    "ProbeResult": "otlp_lab.resilience._health",
    "RandomBalancer": "otlp_lab.resilience._balancers",
    "RetryCall": "otlp_lab.resilience._retry",
    "RingHash": "otlp_lab.resilience._balancers",
    "RoundRobin": "otlp_lab.resilience._balancers",
    "SlidingWindowType": "otlp_lab.resilience._breaker",
    "SmoothWeightedRoundRobin": "otlp_lab.resilience._balancers",
    "Status": "otlp_lab.resilience._core",
    "Transition": "otlp_lab.resilience._core",
    "http_status_of": "otlp_lab.resilience._outlier",
    "locality_priorities": "otlp_lab.resilience._failover",
    "parse_config_duration_s": "otlp_lab.resilience.config",
    "parse_duration_s": "otlp_lab.resilience._core",
    "priority_load": "otlp_lab.resilience._failover",
    "select_hosts": "otlp_lab.resilience._failover",
    "stable_hash64": "otlp_lab.resilience._balancers",
    "DEFAULT_SCALE_DOWN": "otlp_lab.resilience._autoscale",
    "DEFAULT_SCALE_UP": "otlp_lab.resilience._autoscale",
    "with_health": "otlp_lab.resilience._failover",
}


def __getattr__(name: str) -> Any:
    module = _ELSEWHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'otlp_lab.resilience' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
