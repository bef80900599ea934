"""What every config importer shares: the result type, strict key-by-key reading, durations, file loading."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from otlp_lab._config import parse_duration_s as _parse_duration_s
from otlp_lab.errors import ConfigError, ImportConfigError
from otlp_lab.resilience._balancers import Endpoint, LoadBalancerConfig
from otlp_lab.resilience._breaker import CircuitBreakerConfig
from otlp_lab.resilience._health import HealthCheckConfig
from otlp_lab.resilience._limits import Bulkhead, TokenBucket
from otlp_lab.resilience._outlier import OutlierDetectionConfig
from otlp_lab.resilience._pool import ConnectionPoolConfig
from otlp_lab.resilience._retry import HedgingPolicy, RetryBudget, RetryPolicy, RetryThrottle

#: The example configs shipped with the package.
EXAMPLES_DIR = Path(__file__).parent.with_name("examples")

_UNLIMITED = 2**32 - 1  # Istio's "no limit" for connection-pool settings (max uint32)

# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportedPolicies:
    """Everything one importer understood, as otlp_lab policy objects.

    A field is None when the source does not configure it *and* the source system has no
    default for it (e.g. Envoy without a route has no retry policy).

    Attributes
    ----------
    source : str
        ``"istio"``, ``"envoy"``, ``"resilience4j"`` or ``"grpc"``.
    name : str or None
        The DestinationRule host, Envoy cluster name, resilience4j instance or gRPC service.
    retry : RetryPolicy or HedgingPolicy or None
        None means "no retries".
    breaker : CircuitBreakerConfig or None
        resilience4j only (Envoy's "circuit breakers" are concurrency limits: ``limits``).
    limits : Bulkhead or None
        Concurrency caps. A fresh, unshared object: hand one per client.
    retry_budget : RetryBudget or None
        Envoy ``circuit_breakers.thresholds[].retry_budget``.
    retry_throttle : RetryThrottle or None
        gRPC ``retryThrottling``.
    outlier : OutlierDetectionConfig or None
    health_check : HealthCheckConfig or None
        Envoy ``health_checks[0]`` timing and thresholds.
    health_check_target : str or None
        What the probe checks, for the driver that sends it: ``"http:/healthz"``,
        ``"grpc:<service>"``, ``"tcp"``.
    balancer : LoadBalancerConfig or None
        Build with ``balancer.build(rng, region=..., zone=...)``.
    endpoints : tuple of Endpoint
        Envoy ``load_assignment`` endpoints (id ``"address:port"``), if any.
    timeout_s : float or None
        Whole-request timeout (route / method / time limiter); None: no timeout.
    connect_timeout_s : float or None
    connection_pool : ConnectionPoolConfig or None
        Istio/Envoy: the client sidecar's connection pool and circuit breakers (enforced in
        the simulator as Envoy enforces them).
    rate_limiter : TokenBucket or None
        resilience4j ``ratelimiter`` (a fresh object: rate and burst).
    fault : FaultInjection or None
        Istio VirtualService ``fault`` of the route.
    routes : tuple of (subset, weight)
        Istio VirtualService weighted destinations of the route (subsets by name).
    notes : tuple of str
        What was read but selects *which* requests a policy applies to (``match``,
        ``recordExceptions``...): accepted, not evaluated, said here.
    warnings : tuple of str
        With ``strict=False``: what was not imported or was changed, one sentence per key,
        saying what the simulation uses instead.
    """

    source: str
    name: str | None = None
    retry: RetryPolicy | HedgingPolicy | None = None
    breaker: CircuitBreakerConfig | None = None
    limits: Bulkhead | None = None
    retry_budget: RetryBudget | None = None
    retry_throttle: RetryThrottle | None = None
    outlier: OutlierDetectionConfig | None = None
    health_check: HealthCheckConfig | None = None
    health_check_target: str | None = None
    balancer: LoadBalancerConfig | None = None
    endpoints: tuple[Endpoint, ...] = ()
    timeout_s: float | None = None
    connect_timeout_s: float | None = None
    connection_pool: ConnectionPoolConfig | None = None
    rate_limiter: TokenBucket | None = None
    fault: FaultInjection | None = None
    routes: tuple[tuple[str, float], ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        """The policy in words, one clause per setting (for reports and the CLI)."""
        out = [f"{self.source} {self.name or ''}".strip() + ":"]
        r = self.retry
        if r is None:
            out.append("no retries")
        elif isinstance(r, HedgingPolicy):
            out.append(f"hedging, up to {r.max_attempts} attempts {r.hedging_delay_s:g}s apart")
        else:
            codes = ", ".join(sorted(str(c) for c in r.retryable_status_codes)) or "nothing"
            per_try = f", {r.per_try_timeout_s:g}s per try" if r.per_try_timeout_s else ""
            out.append(
                f"up to {r.max_attempts - 1} retries on {codes} (backoff {r.initial_backoff_s:g}s"
                f" x{r.backoff_multiplier:g} up to {r.max_backoff_s:g}s, {'no' if r.jitter == 'none' else r.jitter} jitter{per_try})"
            )
        out.append(f"timeout {self.timeout_s:g}s" if self.timeout_s else "no overall timeout")
        if self.connection_pool is not None:
            out.append(self.connection_pool.describe())
        elif self.limits is not None:
            out.append(f"at most {self.limits.limits['requests']} concurrent calls")
        if self.retry_budget is not None:
            b = self.retry_budget
            out.append(f"retry budget {b.budget_percent:g}% (min {b.min_retry_concurrency})")
        if self.retry_throttle is not None:
            t = self.retry_throttle
            out.append(f"retry throttle {t.max_tokens:g} tokens, ratio {t.token_ratio:g}")
        if self.rate_limiter is not None:
            out.append(f"rate limit {self.rate_limiter.rate_per_s:g}/s (burst {self.rate_limiter.burst:g})")
        if self.breaker is not None:
            b = self.breaker
            out.append(
                f"circuit breaker opens at {b.failure_rate_threshold:g}% failures over {b.sliding_window_size}"
                f" {'s' if getattr(b.sliding_window_type, 'value', '') == 'TIME_BASED' else 'calls'},"
                f" open {b.wait_duration_in_open_state_s:g}s"
            )
        if self.outlier is not None:
            o = self.outlier
            parts = []
            if o.enforcing_consecutive_5xx:
                parts.append(f"{o.consecutive_5xx} consecutive 5xx")
            if o.enforcing_consecutive_gateway_failure:
                parts.append(f"{o.consecutive_gateway_failure} consecutive gateway errors")
            out.append(
                f"outlier ejection after {' or '.join(parts) or 'success-rate checks'}"
                f" for {o.base_ejection_time_s:g}s (max {o.max_ejection_percent:g}%)"
            )
        if self.balancer is not None:
            out.append(f"{self.balancer.policy.replace('_', ' ')} balancing")
        if self.fault is not None:
            out.append(self.fault.describe())
        if self.routes:
            out.append("routes " + ", ".join(f"{w:g}% to {s}" for s, w in self.routes))
        return " ".join(out[:1]) + " " + "; ".join(out[1:]) + "."


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultInjection:
    """Istio ``fault`` on a route: delay and/or abort a share of the requests (percentages 0-100)."""

    delay_s: float = 0.0
    delay_percent: float = 0.0
    abort_status: int | str | None = None
    abort_percent: float = 0.0

    def describe(self) -> str:
        parts = []
        if self.delay_percent:
            parts.append(f"delay {self.delay_s:g}s on {self.delay_percent:g}% of requests")
        if self.abort_percent:
            parts.append(f"abort {self.abort_percent:g}% with {self.abort_status}")
        return "fault injection: " + " and ".join(parts)


# --------------------------------------------------------------------------------------------
# Strict reading: every key is either consumed or reported
# --------------------------------------------------------------------------------------------

_MISSING: Any = object()


def _canon(key: str) -> str:
    """One spelling per field: ``maxEjectionPercent`` = ``max_ejection_percent`` = ``max-ejection-percent``."""
    return key.replace("_", "").replace("-", "").lower()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """The scalar leaves under ``value`` with their full key paths."""
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            yield from _leaves(v, _join(path, str(k)))
    elif isinstance(value, list) and any(isinstance(v, (Mapping, list)) for v in value):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value


class _Issues:
    """Raises or collects (``strict=False``) the keys an importer cannot use."""

    def __init__(self, source: str, *, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def unmodelled(self, path: str, value: Any, *, why: str = "") -> None:
        for leaf_path, leaf in _leaves(value, path):
            reason = f": {why}" if why else ""
            message = f"{self.source} key {leaf_path!r} is not modelled by otlp_lab (value {leaf!r}){reason}"
            if self.strict:
                raise ImportConfigError(
                    message + "; remove it or ignore it with strict=False",
                    source=self.source,
                    path=leaf_path,
                    value=leaf,
                )
            self.warnings.append(
                message + "; imported without it (the simulation behaves as if it were absent)"
            )

    def changed(self, path: str, value: Any, became: str) -> None:
        """A value otlp_lab cannot represent exactly: strict raises, else it is reported with what it became."""
        message = f"{self.source} key {path!r} (value {value!r}) cannot be modelled exactly"
        if self.strict:
            raise ImportConfigError(
                message + f"; with strict=False it becomes {became}",
                source=self.source,
                path=path,
                value=value,
            )
        self.warnings.append(message + f"; it became {became}")

    def note(self, message: str) -> None:
        """A selector or an inert setting that was read but not evaluated (kept in ``notes``)."""
        self.notes.append(message)

    def invalid(self, path: str, value: Any, must: str) -> NoReturn:
        raise ImportConfigError(
            f"{self.source} key {path!r} must be {must}. Got {value!r} instead.",
            source=self.source,
            path=path,
            value=value,
        )

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def build(self, path: str, factory: Callable[..., Any], **kwargs: Any) -> Any:
        """Call ``factory(**kwargs)``, naming ``path`` if otlp_lab's own validation refuses a value."""
        try:
            return factory(**kwargs)
        except ConfigError as exc:
            if isinstance(exc, ImportConfigError):
                raise
            raise ImportConfigError(
                f"{self.source} key {path!r}: {exc}", source=self.source, path=path
            ) from exc


class _Node:
    """A mapping at a key path. Reading a key consumes it; :meth:`done` reports the rest."""

    def __init__(self, data: Any, path: str, issues: _Issues) -> None:
        if not isinstance(data, Mapping):
            issues.invalid(path or "<top level>", data, "a mapping")
        self.data = data
        self.path = path
        self.issues = issues
        self._keys: dict[str, Any] = {}
        for key in data:
            canon = _canon(str(key))
            if canon in self._keys:
                issues.invalid(
                    _join(path, str(key)), data[key], f"given once (also given as {self._keys[canon]!r})"
                )
            self._keys[canon] = key
        self._used: set[str] = set()

    def at(self, key: str) -> str:
        """The full path of ``key`` as spelled in the input."""
        return _join(self.path, str(self._keys.get(_canon(key), key)))

    def has(self, key: str) -> bool:
        return _canon(key) in self._keys

    def raw(self, key: str, default: Any = None) -> Any:
        canon = _canon(key)
        if canon not in self._keys:
            return default
        self._used.add(canon)
        return self.data[self._keys[canon]]

    def ignore(self, *keys: str) -> None:
        """Consume keys that name or select things and change no behaviour otlp_lab models."""
        for key in keys:
            self.raw(key)

    def child(self, key: str) -> _Node | None:
        value = self.raw(key)
        return None if value is None else _Node(value, self.at(key), self.issues)

    def children(self, key: str) -> list[_Node]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.issues.invalid(self.at(key), value, "a list")
        return [_Node(v, f"{self.at(key)}[{i}]", self.issues) for i, v in enumerate(value)]

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.raw(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, str):
            self.issues.invalid(self.at(key), value, "a string")
        return value

    def integer(self, key: str, default: int | None = None, *, minimum: int = 0) -> int | None:
        value = self.raw(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, Mapping) and set(value) == {"value"}:  # protobuf wrapper written out
            value = value["value"]
        if isinstance(value, str) and value.strip().isdigit():  # proto JSON writes 64-bit ints as strings
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.issues.invalid(self.at(key), value, f"an integer >= {minimum}")
        return value

    def number(
        self, key: str, default: float | None = None, *, low: float = 0.0, high: float = math.inf
    ) -> float | None:
        value = self.raw(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, Mapping) and set(value) <= {
            "value",
            "default_value",
            "defaultValue",
            "runtime_key",
            "runtimeKey",
        }:
            value = next(
                (value[k] for k in ("value", "default_value", "defaultValue") if k in value), _MISSING
            )
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
        if not ok:
            self.issues.invalid(self.at(key), value, f"a number in [{low}, {high}]")
        return float(value)

    def boolean(self, key: str, default: bool | None = None) -> bool | None:
        value = self.raw(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        if not isinstance(value, bool):
            self.issues.invalid(self.at(key), value, "true or false")
        return value

    def duration(
        self, key: str, default: float | None = None, *, bare_unit_s: float | None = None
    ) -> float | None:
        value = self.raw(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        try:
            return parse_config_duration_s(value, bare_unit_s=bare_unit_s)
        except ConfigError:
            unit = "" if bare_unit_s is None else f" or a number of {'ms' if bare_unit_s == 1e-3 else 's'}"
            self.issues.invalid(self.at(key), value, f"a duration such as '1.5s', '100ms', '1m'{unit}")

    def allow(self, key: str, expected: Any) -> None:
        """Accept ``key`` only with the value otlp_lab behaves as (anything else is unmodelled)."""
        value = self.raw(key, _MISSING)
        if value is not _MISSING and value != expected:
            self.issues.unmodelled(self.at(key), value, why=f"only {expected!r} is modelled")

    def done(self) -> None:
        """Report every key nobody read."""
        for canon, key in self._keys.items():
            if canon not in self._used:
                self.issues.unmodelled(_join(self.path, str(key)), self.data[key])


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------


def parse_config_duration_s(value: Any, *, bare_unit_s: float | None = None) -> float:
    """A duration from any of the config dialects, in seconds.

    Accepts protobuf JSON (``"1.5s"``), Go / Istio (``"100ms"``, ``"1m30s"``, ``"1h"``),
    Spring (``"10s"``, ``"2d"``, ISO-8601 ``"PT1M30S"``), Envoy's written-out
    ``{seconds: 1, nanos: 500000000}``, and bare numbers when ``bare_unit_s`` says their unit
    (Spring ``Duration`` properties default to milliseconds: ``bare_unit_s=1e-3``).

    Raises
    ------
    ConfigError
        Anything else, or a negative duration.

    Examples
    --------
    >>> parse_config_duration_s("1m30s"), parse_config_duration_s("PT0.5S"), parse_config_duration_s("100ms")
    (90.0, 0.5, 0.1)
    >>> parse_config_duration_s({"seconds": 2, "nanos": 500000000})
    2.5
    >>> parse_config_duration_s(250, bare_unit_s=1e-3)
    0.25
    """
    return _parse_duration_s(value, key="duration", bare_unit_s=bare_unit_s)
