"""resilience4j: Spring Boot ``resilience4j.*`` properties (YAML)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import yaml

from otlp_lab.errors import ImportConfigError
from otlp_lab.resilience._breaker import CircuitBreakerConfig
from otlp_lab.resilience._limits import Bulkhead, TokenBucket
from otlp_lab.resilience._retry import RetryPolicy
from otlp_lab.resilience.config._base import _UNLIMITED, ImportedPolicies, _canon, _Issues, _join, _Node

# Spring Boot operational keys that change no call behaviour.
_R4J_INERT = (
    "failAfterMaxAttempts",
    "registerHealthIndicator",
    "eventConsumerBufferSize",
    "allowHealthIndicatorToFail",
    "writableStackTraceEnabled",
)
_R4J_MS = 1e-3  # Spring Duration properties without a unit are milliseconds


def from_resilience4j(
    source: str | Mapping[str, Any], *, instance: str | None = None, strict: bool = True
) -> ImportedPolicies:
    """Import one resilience4j instance from Spring Boot YAML (text or parsed).

    Reads ``resilience4j.circuitbreaker``, ``retry``, ``timelimiter``, ``bulkhead``,
    ``thread-pool-bulkhead`` and ``ratelimiter``: the instance's settings over its
    ``baseConfig`` (or ``configs.default``) over resilience4j's defaults. Keys that say *which*
    exceptions count (``recordExceptions``, ``ignoreExceptions``, predicates) are accepted and
    listed in ``notes``; keys of other Spring settings (``spring``, ``server``...) are not
    resilience4j's and are left alone.

    Parameters
    ----------
    source : str or mapping
        The YAML text, or its parsed form (with or without the top-level ``resilience4j`` key).
    instance : str, optional
        The instance name; default: the only one configured (or ``"default"`` from
        ``configs.default`` when there are no instances).
    strict : bool, default True
        Raise on keys otlp_lab does not model (``maxWaitDuration`` > 0...); False warns.

    Returns
    -------
    ImportedPolicies
        ``breaker`` (CircuitBreakerConfig), ``retry`` (RetryPolicy: ``maxAttempts``,
        ``waitDuration``, exponential backoff, randomized wait), ``timeout_s``, ``limits``
        (bulkhead or thread-pool bulkhead), ``rate_limiter``.

    Examples
    --------
    >>> text = '''
    ... resilience4j.retry.instances.backendA:
    ...   maxAttempts: 4
    ...   waitDuration: 200ms
    ...   enableExponentialBackoff: true
    ...   exponentialBackoffMultiplier: 2
    ... '''
    >>> p = from_resilience4j(text)
    >>> p.retry.max_attempts, p.retry.initial_backoff_s, p.retry.backoff_multiplier
    (4, 0.2, 2.0)
    """
    issues = _Issues("resilience4j", strict=strict)
    root, names = _r4j_root(source, issues)
    if instance is None:
        if len(names) > 1:
            issues.invalid("resilience4j", names, "a config of one instance (or call with instance=<name>)")
        instance = names[0] if names else "default"
    sections = {key: root.child(key) for key in _SECTIONS}
    for key in list(root.data):
        if _canon(str(key)) not in {_canon(k) for k in _SECTIONS}:
            root.raw(str(key))
            issues.note(f"{root.at(str(key))}: not a call policy (left alone)")
    root.done()
    breaker = retry = timeout_s = limits = limiter = None
    for key, section in sections.items():
        if section is None:
            continue
        merged = _r4j_instance(section, instance)
        if merged is None:
            continue
        for sel in _R4J_SELECTORS:
            if merged.has(sel):
                merged.raw(sel)
                issues.note(
                    f"{merged.at(sel)}: selects which outcomes count (not evaluated: every failure counts)"
                )
        if key == "circuitbreaker":
            breaker = _r4j_breaker(merged)
        elif key == "retry":
            retry = _r4j_retry(merged)
        elif key == "timelimiter":
            timeout_s = merged.duration("timeoutDuration", 1.0, bare_unit_s=_R4J_MS)
            if merged.has("cancelRunningFuture"):
                merged.raw("cancelRunningFuture")
                issues.note(f"{merged.at('cancelRunningFuture')}: a timed-out call is abandoned either way")
        elif key == "bulkhead":
            limits = _r4j_limit(merged, merged.integer("maxConcurrentCalls", 25))
            if merged.duration("maxWaitDuration", 0.0, bare_unit_s=_R4J_MS):
                issues.unmodelled(
                    merged.at("maxWaitDuration"),
                    merged.raw("maxWaitDuration"),
                    why="the bulkhead refuses at once; waiting for a permit is not modelled",
                )
        elif key == "thread-pool-bulkhead":
            threads = merged.integer("maxThreadPoolSize", 8, minimum=1)
            queue = merged.integer("queueCapacity", 100)
            merged.ignore("coreThreadPoolSize", "keepAliveDuration", "contextPropagators")  # thread lifecycle
            limits = _r4j_limit(merged, threads + queue)  # type: ignore[operator]
            if queue:
                issues.changed(
                    merged.at("queueCapacity"),
                    queue,
                    f"{threads + queue} concurrent calls (maxThreadPoolSize + queueCapacity: queued calls start"  # type: ignore[operator]
                    " at once instead of waiting for a thread)",
                )
        else:
            limiter = _r4j_rate_limiter(merged)
        merged.ignore(*_R4J_INERT)
        merged.done()
    if breaker is None and retry is None and timeout_s is None and limits is None and limiter is None:
        issues.invalid("resilience4j", names, f"a configuration with an instance named {instance!r}")
    return ImportedPolicies(
        source="resilience4j",
        name=instance,
        retry=retry,
        breaker=breaker,
        limits=limits,
        rate_limiter=limiter,
        timeout_s=timeout_s,
        notes=tuple(issues.notes),
        warnings=tuple(issues.warnings),
    )


def resilience4j_policies(
    source: str | Mapping[str, Any], *, strict: bool = True
) -> dict[str, ImportedPolicies]:
    """Every resilience4j instance of a Spring Boot file, by name (all sections merged per instance)."""
    _, names = _r4j_root(source, _Issues("resilience4j", strict=strict))
    return {n: from_resilience4j(source, instance=n, strict=strict) for n in names or ["default"]}


_SECTIONS = ("circuitbreaker", "retry", "timelimiter", "bulkhead", "thread-pool-bulkhead", "ratelimiter")
# which exceptions or results count: selectors, as Istio's match is
_R4J_SELECTORS = (
    "recordExceptions",
    "ignoreExceptions",
    "recordFailurePredicate",
    "ignoreExceptionPredicate",
    "recordResultPredicate",
    "retryExceptions",
    "retryExceptionPredicate",
    "resultPredicate",
    "retryOnResultPredicate",
    "retryOnExceptionPredicate",
)


def _r4j_root(source: str | Mapping[str, Any], issues: _Issues) -> tuple[_Node, list[str]]:
    data = yaml.safe_load(source) if isinstance(source, str) else source
    root = _Node(_unflatten(data if isinstance(data, Mapping) else {}), "", issues)
    if root.has("resilience4j"):
        for key in list(root.data):
            if _canon(str(key)) != "resilience4j":
                root.raw(str(key))  # spring, server, management...: other settings of the application
        root = root.child("resilience4j")  # type: ignore[assignment]
    names: set[str] = set()
    for key, section in root.data.items():
        if _canon(str(key)) in {_canon(k) for k in _SECTIONS} and isinstance(section, Mapping):
            for alias in _INSTANCES:
                names |= set(section.get(alias) or {})
    return root, sorted(names)


_INSTANCES = ("instances", "backends", "limiters")  # 'backends' / 'limiters': older spellings


def _r4j_limit(n: _Node, max_calls: int | None) -> Bulkhead:
    return n.issues.build(
        n.path,
        Bulkhead,
        max_requests=max_calls,
        max_connections=_UNLIMITED,
        max_pending_requests=_UNLIMITED,
        max_retries=_UNLIMITED,
    )


def _r4j_rate_limiter(n: _Node) -> TokenBucket:
    limit = n.integer("limitForPeriod", 50, minimum=1)
    period = n.duration("limitRefreshPeriod", 500e-9, bare_unit_s=_R4J_MS)
    wait = n.duration("timeoutDuration", 5.0, bare_unit_s=_R4J_MS)
    if wait:
        n.issues.unmodelled(
            n.at("timeoutDuration"),
            n.raw("timeoutDuration") if n.has("timeoutDuration") else "5s (resilience4j default)",
            why="waiting for a permit is not modelled (the limiter refuses at once)",
        )
    n.ignore("subscribeForEvents", "drainPermissionsOnResult")
    n.issues.note(
        f"{n.path}: {limit} permits per {period:g}s window simulated as a token bucket of the same rate and burst"
    )
    return n.issues.build(n.path, TokenBucket, rate_per_s=limit / period, burst=float(limit))  # type: ignore[operator]


def _unflatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Spring allows dotted keys (``resilience4j.retry.instances.a.maxAttempts: 3``): nest them."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        value = _unflatten(value) if isinstance(value, Mapping) else value
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ImportConfigError(
                    f"resilience4j key {key!r} clashes with a value set above it",
                    source="resilience4j",
                    path=str(key),
                    value=value,
                )
        last = parts[-1]
        if isinstance(node.get(last), dict) and isinstance(value, dict):
            node[last] = {**node[last], **value}
        else:
            node[last] = value
    return out


def _r4j_instance(section: _Node, name: str) -> _Node | None:
    """The instance's settings merged over its base config; paths name where each key came from."""
    configs = section.child("configs")
    alias = next((a for a in _INSTANCES if section.has(a)), "instances")
    instances = section.child(alias)
    for stale in set(section.data) - {"configs", alias}:
        section.raw(stale)
        if stale == "tags" or _canon(str(stale)).endswith("aspectorder"):
            continue  # metrics tags and Spring AOP ordering: no effect on a call
        section.issues.unmodelled(section.at(stale), section.data[stale])
    inst = instances.child(name) if instances is not None and instances.has(name) else None
    base_name = (inst.text("baseConfig") if inst is not None else None) or "default"
    base = configs.child(base_name) if configs is not None and configs.has(base_name) else None
    if inst is not None and inst.has("baseConfig") and base is None:
        section.issues.invalid(inst.at("baseConfig"), base_name, "the name of an entry under configs")
    if inst is None and (base is None or name != "default"):
        return None
    layers = [n for n in (base, inst) if n is not None]
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for layer in layers:
        for key, value in layer.data.items():
            if _canon(str(key)) == "baseconfig":
                continue
            merged[str(key)] = value
            origin[str(key)] = layer.at(str(key))
    for n in (configs, instances):
        if n is not None:
            n.ignore(*n.data)
    return _MergedNode(merged, (inst or base).path, section.issues, origin)  # type: ignore[union-attr]


class _MergedNode(_Node):
    """A node whose keys come from several layers; :meth:`at` names the layer each key came from."""

    def __init__(
        self, data: Mapping[str, Any], path: str, issues: _Issues, origin: Mapping[str, str]
    ) -> None:
        super().__init__(data, path, issues)
        self._origin = {_canon(k): v for k, v in origin.items()}

    def at(self, key: str) -> str:
        return self._origin.get(_canon(key), super().at(key))

    def done(self) -> None:
        for canon, key in self._keys.items():
            if canon not in self._used:
                self.issues.unmodelled(self._origin.get(canon, _join(self.path, str(key))), self.data[key])


def _r4j_breaker(n: _Node) -> CircuitBreakerConfig:
    kw: dict[str, Any] = {}
    n.allow("initialState", "CLOSED")  # METRICS_ONLY / DISABLED / FORCED_OPEN are not modelled
    n.allow("transitionToStateAfterWaitDuration", "OPEN")  # what maxWaitDurationInHalfOpenState leads to
    for key, field in (
        ("failureRateThreshold", "failure_rate_threshold"),
        ("slowCallRateThreshold", "slow_call_rate_threshold"),
    ):
        if (value := n.number(key, high=100.0)) is not None:
            kw[field] = value
    for key, field in (
        ("slidingWindowSize", "sliding_window_size"),
        ("minimumNumberOfCalls", "minimum_number_of_calls"),
        ("permittedNumberOfCallsInHalfOpenState", "permitted_number_of_calls_in_half_open_state"),
    ):
        if (value := n.integer(key, minimum=1)) is not None:
            kw[field] = value
    for key, field in (
        ("slowCallDurationThreshold", "slow_call_duration_threshold_s"),
        ("waitDurationInOpenState", "wait_duration_in_open_state_s"),
        ("maxWaitDurationInHalfOpenState", "max_wait_duration_in_half_open_state_s"),
    ):
        if (value := n.duration(key, bare_unit_s=_R4J_MS)) is not None:
            kw[field] = value
    if (kind := n.text("slidingWindowType")) is not None:
        kw["sliding_window_type"] = kind
    if (auto := n.boolean("automaticTransitionFromOpenToHalfOpenEnabled")) is not None:
        kw["automatic_transition_from_open_to_half_open_enabled"] = auto
    return n.issues.build(n.path, CircuitBreakerConfig, **kw)


def _r4j_retry(n: _Node) -> RetryPolicy:
    """resilience4j retry -> RetryPolicy (resilience4j defaults: 3 attempts, 500 ms, x1.5, ±50 %)."""
    attempts = n.integer("maxAttempts", None, minimum=1)
    if attempts is None:
        attempts = n.integer("maxRetryAttempts", 3, minimum=1)  # the spelling before resilience4j 1.2
    wait_s = n.duration("waitDuration", 0.5, bare_unit_s=_R4J_MS)
    exponential = n.boolean("enableExponentialBackoff", False)
    multiplier = n.number("exponentialBackoffMultiplier", 1.5, low=1.0)
    max_wait_s = n.duration("exponentialMaxWaitDuration", math.inf, bare_unit_s=_R4J_MS)
    randomized = n.boolean("enableRandomizedWait", False)
    factor = n.number("randomizedWaitFactor", 0.5, high=1.0)
    if not exponential:
        multiplier, max_wait_s = 1.0, wait_s
        if n.has("exponentialBackoffMultiplier") or n.has("exponentialMaxWaitDuration"):
            n.issues.warn(
                "resilience4j exponential backoff settings have no effect: enableExponentialBackoff is false"
            )
    jitter, scale = "none", 1.0
    if randomized:
        # resilience4j waits U[w(1 - f), w(1 + f)]. Exact equivalents: f = 1 is full jitter over
        # [0, 2w]; f = 1/3 is equal jitter over [2w/3, 4w/3]. Other factors are approximated.
        if math.isclose(factor, 1.0):
            jitter, scale = "full", 2.0
        else:
            jitter, scale = "equal", 1.0 + factor
            if not math.isclose(factor, 1 / 3, rel_tol=1e-3):
                given = n.has("randomizedWaitFactor")
                n.issues.unmodelled(
                    n.at("randomizedWaitFactor" if given else "enableRandomizedWait"),
                    factor if given else True,
                    why=f"a randomized wait of +-{factor:g} (resilience4j{'' if given else ' default'} "
                    "randomizedWaitFactor) has no exact RetryPolicy jitter (only factors 1 and 1/3 do); "
                    "approximated by jitter='equal' over [w(1+f)/2, w(1+f)]",
                )
    return n.issues.build(
        n.path,
        RetryPolicy,
        max_attempts=attempts,
        initial_backoff_s=wait_s * scale,
        max_backoff_s=max_wait_s * scale,
        backoff_multiplier=multiplier,
        jitter=jitter,
    )
