"""Import traffic policies from Istio, Envoy, resilience4j and gRPC service configs.

Each importer returns one :class:`ImportedPolicies` built from otlp_lab's own policy classes
(:class:`~otlp_lab.resilience.RetryPolicy`, :class:`~otlp_lab.resilience.CircuitBreakerConfig`,
:class:`~otlp_lab.resilience.Bulkhead`, :class:`OutlierDetectionConfig`,
:class:`LoadBalancerConfig`, ...) with the *source system's* defaults filled in: Istio's when
importing Istio, Envoy's when importing Envoy.

Nothing is dropped quietly. A key that otlp_lab does not model raises
:class:`~otlp_lab.errors.ImportConfigError` naming the full key path and its value::

    DestinationRule key 'spec.trafficPolicy.tls.mode' is not modelled by otlp_lab (value
    'ISTIO_MUTUAL'); remove it or ignore it with strict=False

With ``strict=False`` the same sentences are collected in ``ImportedPolicies.warnings`` and
the rest is imported. Values that are wrong (a negative count, a malformed duration) always
raise. Keys are matched as the source systems do: camelCase, snake_case and Spring's
kebab-case spellings of a field are the same field.

How sources map onto otlp_lab (the choices that are not one-to-one):

* Envoy/Istio ``ROUND_ROBIN`` is weighted in Envoy, so it becomes ``"weighted_round_robin"``
  (smooth WRR; plain round robin when weights are equal). Istio's default is
  ``LEAST_REQUEST``.
* Transport failures (``connect-failure``, ``reset``, ``refused-stream``) are outcomes with
  status ``"UNAVAILABLE"`` in otlp_lab, so ``retryOn`` lists map onto status sets; ``5xx``
  means 500-599 plus ``"UNAVAILABLE"``. Per-try timeouts are always retried.
* Envoy's retry backoff (base 25 ms, cap 10x base, full jitter) becomes
  ``RetryPolicy(initial_backoff_s=0.025, max_backoff_s=0.25, backoff_multiplier=2,
  jitter="full")``.
* Istio with ``outlierDetection`` sets Envoy's panic threshold to ``minHealthPercent``
  (default 0: panic off), disables success-rate ejection, and turns on locality failover.
* ``match`` and route/instance names select *which* requests a policy applies to; they are
  accepted but not evaluated.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from otlp_lab._config import parse_duration_s as _parse_duration_s
from otlp_lab.errors import ConfigError, ImportConfigError
from otlp_lab.resilience._balancers import Endpoint, LoadBalancerConfig
from otlp_lab.resilience._breaker import CircuitBreakerConfig
from otlp_lab.resilience._core import Status
from otlp_lab.resilience._failover import DEFAULT_PANIC_THRESHOLD_PERCENT
from otlp_lab.resilience._health import HealthCheckConfig
from otlp_lab.resilience._limits import Bulkhead
from otlp_lab.resilience._outlier import OutlierDetectionConfig
from otlp_lab.resilience._retry import HedgingPolicy, RetryBudget, RetryPolicy, RetryThrottle

__all__ = [
    "EXAMPLES_DIR",
    "ISTIO_DEFAULT_RETRY",
    "ImportedPolicies",
    "from_envoy_cluster",
    "from_grpc_service_config",
    "from_istio",
    "from_resilience4j",
    "import_yaml",
    "parse_config_duration_s",
]

#: The example configs shipped with the package.
EXAMPLES_DIR = Path(__file__).with_name("examples")

_UNLIMITED = 2**32 - 1  # Istio's "no limit" for connection-pool settings (max uint32)
_ENVOY_BACKOFF_BASE_S = 0.025
_ENVOY_ROUTE_TIMEOUT_S = 15.0
_ENVOY_CONNECT_TIMEOUT_S = 5.0
_ISTIO_CONNECT_TIMEOUT_S = 10.0

# Envoy x-envoy-retry-on conditions and gRPC retry-on conditions -> otlp_lab statuses.
_TRANSPORT = frozenset({"UNAVAILABLE"})
_RETRY_ON: dict[str, frozenset[Status]] = {
    "5xx": frozenset(range(500, 600)) | _TRANSPORT,
    "gateway-error": frozenset({502, 503, 504}),
    "reset": _TRANSPORT,
    "reset-before-request": _TRANSPORT,
    "connect-failure": _TRANSPORT,
    "refused-stream": _TRANSPORT,
    "http3-post-connect-failure": _TRANSPORT,
    "retriable-4xx": frozenset({409}),
    "retriable-status-codes": frozenset(),  # the codes come from retriable_status_codes
    "cancelled": frozenset({"CANCELLED"}),
    "deadline-exceeded": frozenset({"DEADLINE_EXCEEDED"}),
    "internal": frozenset({"INTERNAL"}),
    "resource-exhausted": frozenset({"RESOURCE_EXHAUSTED"}),
    "unavailable": frozenset({"UNAVAILABLE"}),
}

#: Istio's retry policy for HTTP routes without ``retries``: 2 retries on
#: ``connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`` (503).
ISTIO_DEFAULT_RETRY = RetryPolicy(
    max_attempts=3,
    initial_backoff_s=_ENVOY_BACKOFF_BASE_S,
    max_backoff_s=10 * _ENVOY_BACKOFF_BASE_S,
    backoff_multiplier=2.0,
    jitter="full",
    retryable_status_codes=frozenset({"UNAVAILABLE", "CANCELLED", 503}),
)
_ISTIO_DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"


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
    warnings : tuple of str
        With ``strict=False``: what was not imported, one sentence per key.
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
    warnings: tuple[str, ...] = ()


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

    def unmodelled(self, path: str, value: Any, *, why: str = "") -> None:
        for leaf_path, leaf in _leaves(value, path):
            reason = f": {why}" if why else ""
            message = (
                f"{self.source} key {leaf_path!r} is not modelled by otlp_lab (value {leaf!r}){reason}; "
                "remove it or ignore it with strict=False"
            )
            if self.strict:
                raise ImportConfigError(message, source=self.source, path=leaf_path, value=leaf)
            self.warnings.append(message)

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


# --------------------------------------------------------------------------------------------
# Pieces shared by Istio and Envoy
# --------------------------------------------------------------------------------------------


def _retry_statuses(node: _Node, key: str, value: Any, extra_codes: Sequence[Any]) -> frozenset[Status]:
    """Envoy/Istio ``retry_on`` conditions (and Istio's bare status codes) -> a status set."""
    if not isinstance(value, str):
        node.issues.invalid(node.at(key), value, "a comma-separated string such as '5xx,reset'")
    statuses: set[Status] = set()
    codes: list[int] = []
    uses_codes = False
    for token in (t.strip() for t in value.split(",")):
        if not token:
            continue
        if token.isdigit():  # Istio: a bare code means retriable-status-codes with that code
            codes.append(int(token))
            uses_codes = True
        elif token in _RETRY_ON:
            statuses |= _RETRY_ON[token]
            uses_codes |= token == "retriable-status-codes"
        else:
            node.issues.unmodelled(node.at(key), token, why="this retry condition has no otlp_lab outcome")
    for i, code in enumerate(extra_codes):
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            node.issues.invalid(f"{node.path}.retriable_status_codes[{i}]", code, "an HTTP status code")
        codes.append(code)
    if extra_codes and not uses_codes:
        node.issues.warn(
            f"{node.issues.source} key {node.path + '.retriable_status_codes'!r} has no effect: "
            f"retry_on does not include 'retriable-status-codes'"
        )
    if uses_codes:
        statuses |= set(codes)
    return frozenset(statuses)


def _envoy_style_retry(
    node: _Node,
    *,
    max_attempts: int,
    retry_on: Any,
    retry_on_key: str,
    codes: Sequence[Any],
    per_try_timeout_s: float | None,
    base_s: float,
    max_s: float | None,
) -> RetryPolicy:
    statuses = _retry_statuses(node, retry_on_key, retry_on, codes)
    return node.issues.build(
        node.path,
        RetryPolicy,
        max_attempts=max_attempts,
        per_try_timeout_s=per_try_timeout_s,
        initial_backoff_s=base_s,
        max_backoff_s=10 * base_s if max_s is None else max_s,
        backoff_multiplier=2.0,
        jitter="full",
        retryable_status_codes=statuses,
    )


def _same_host(a: str, b: str) -> bool:
    """Istio host names: ``reviews`` matches ``reviews.default.svc.cluster.local``."""
    return a == b or ("." not in a or "." not in b) and a.split(".")[0] == b.split(".")[0]


def _check_kind(node: _Node, kind: str) -> None:
    api = node.text("apiVersion")
    if api is not None and not api.startswith("networking.istio.io/"):
        node.issues.invalid(node.at("apiVersion"), api, "networking.istio.io/v1, v1beta1 or v1alpha3")
    got = node.text("kind", kind)
    if got != kind:
        node.issues.invalid(node.at("kind"), got, repr(kind))


def _istio_spec(top: _Node, kind: str) -> _Node:
    """The ``spec`` of a full Istio resource (its kind checked, metadata ignored), or ``top`` when given a bare spec."""
    if not top.has("spec"):
        return top
    _check_kind(top, kind)
    top.ignore("metadata")
    spec = top.child("spec")
    top.done()
    return spec  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Istio
# --------------------------------------------------------------------------------------------

_ISTIO_SIMPLE = {
    "ROUND_ROBIN": "weighted_round_robin",
    "LEAST_REQUEST": "least_request",
    "LEAST_CONN": "least_request",  # deprecated alias
    "RANDOM": "random",
    "PASSTHROUGH": "passthrough",
    "UNSPECIFIED": "least_request",  # "Istio will select an appropriate default": LEAST_REQUEST
}


def from_istio(
    destination_rule: Mapping[str, Any],
    virtual_service: Mapping[str, Any] | None = None,
    *,
    route_name: str | None = None,
    strict: bool = True,
) -> ImportedPolicies:
    """Import an Istio DestinationRule (and the VirtualService routing to its host).

    Parameters
    ----------
    destination_rule : mapping
        The parsed ``DestinationRule`` (``apiVersion``/``kind``/``metadata``/``spec``), or
        just its ``spec``.
    virtual_service : mapping, optional
        The ``VirtualService``; its ``http`` route to the DestinationRule's host gives the
        retries and timeout. Without one, Istio's defaults apply (2 retries, no timeout).
    route_name : str, optional
        Which ``http`` route (by ``name``) to import; default: the first routing to the host.
    strict : bool, default True
        Raise on keys otlp_lab does not model; False collects them in ``warnings``.

    Returns
    -------
    ImportedPolicies
        ``balancer``, ``limits`` (Istio's unlimited defaults unless set), ``outlier`` (when
        ``outlierDetection`` is present), ``retry``, ``timeout_s``, ``connect_timeout_s``.

    Raises
    ------
    ImportConfigError
        An unmodelled key (strict), a bad value, or a VirtualService with no route to the host.

    Examples
    --------
    >>> dr = {"spec": {"host": "reviews", "trafficPolicy": {
    ...     "loadBalancer": {"simple": "RANDOM"},
    ...     "outlierDetection": {"consecutive5xxErrors": 3, "baseEjectionTime": "1m"}}}}
    >>> p = from_istio(dr)
    >>> p.balancer.policy, p.outlier.consecutive_5xx, p.outlier.base_ejection_time_s, p.retry.max_attempts
    ('random', 3, 60.0, 3)
    """
    issues = _Issues("DestinationRule", strict=strict)
    spec = _istio_spec(_Node(destination_rule, "", issues), "DestinationRule")
    host = spec.text("host")
    if not host:
        issues.invalid(spec.at("host"), host, "the service host name")
    policy = spec.child("trafficPolicy")
    balancer = LoadBalancerConfig(policy="least_request")
    limits = Bulkhead(
        max_connections=_UNLIMITED,
        max_pending_requests=_UNLIMITED,
        max_requests=_UNLIMITED,
        max_retries=_UNLIMITED,
    )
    outlier: OutlierDetectionConfig | None = None
    connect_timeout_s = _ISTIO_CONNECT_TIMEOUT_S
    if policy is not None:
        outlier_node = policy.child("outlierDetection")
        panic = DEFAULT_PANIC_THRESHOLD_PERCENT
        if outlier_node is not None:
            outlier, panic = _istio_outlier(outlier_node)
        balancer = _istio_balancer(policy.child("loadBalancer"), panic, outlier is not None)
        pool = policy.child("connectionPool")
        if pool is not None:
            limits, connect_timeout_s = _istio_pool(pool)
        policy.done()
    spec.done()

    retry: RetryPolicy | None = ISTIO_DEFAULT_RETRY
    timeout_s: float | None = None
    vs_warnings: list[str] = []
    if virtual_service is not None:
        retry, timeout_s, vs_warnings = _istio_route(virtual_service, host, route_name, strict=strict)
    return ImportedPolicies(
        source="istio",
        name=host,
        retry=retry,
        limits=limits,
        outlier=outlier,
        balancer=balancer,
        timeout_s=timeout_s,
        connect_timeout_s=connect_timeout_s,
        warnings=(*issues.warnings, *vs_warnings),
    )


def _istio_outlier(node: _Node) -> tuple[OutlierDetectionConfig, float]:
    """Istio's translation (``applyOutlierDetection``) onto Envoy's outlier detection."""
    kw: dict[str, Any] = {"enforcing_success_rate": 0.0}  # Istio turns success-rate ejection off
    for key, count, enforcing in (
        ("consecutive5xxErrors", "consecutive_5xx", "enforcing_consecutive_5xx"),
        ("consecutiveGatewayErrors", "consecutive_gateway_failure", "enforcing_consecutive_gateway_failure"),
    ):
        value = node.integer(key)
        if value is not None:
            kw[count] = value
            kw[enforcing] = 100.0 if value > 0 else 0.0
    for key, field in (("interval", "interval_s"), ("baseEjectionTime", "base_ejection_time_s")):
        value = node.duration(key)
        if value is not None:
            kw[field] = value
    percent = node.integer("maxEjectionPercent")
    if percent:  # Istio only sets it when > 0
        kw["max_ejection_percent"] = float(percent)
    panic = float(node.integer("minHealthPercent", 0))  # Istio: panic threshold = minHealthPercent
    node.allow("splitExternalLocalOriginErrors", False)
    node.done()
    return node.issues.build(node.path, OutlierDetectionConfig, **kw), panic


def _istio_balancer(node: _Node | None, panic: float, has_outlier: bool) -> LoadBalancerConfig:
    kw: dict[str, Any] = {"policy": "least_request", "panic_threshold_percent": panic}
    # Locality failover is on mesh-wide by default and takes effect with outlier detection.
    locality = has_outlier
    if node is not None:
        simple = node.text("simple")
        ch = node.child("consistentHash")
        if simple is not None and ch is not None:
            node.issues.invalid(node.path, node.data, "either 'simple' or 'consistentHash', not both")
        if simple is not None:
            if simple not in _ISTIO_SIMPLE:
                node.issues.invalid(node.at("simple"), simple, f"one of {', '.join(_ISTIO_SIMPLE)}")
            kw["policy"] = _ISTIO_SIMPLE[simple]
        if ch is not None:
            kw.update(_istio_consistent_hash(ch))
        setting = node.child("localityLbSetting")
        if setting is not None:
            locality = has_outlier and bool(setting.boolean("enabled", True))
            pairs = []
            for rule in setting.children("failover"):
                pairs.append((rule.text("from", ""), rule.text("to", "")))
                rule.done()
            kw["failover"] = tuple(pairs)
            setting.done()
        node.done()
    kw["locality_failover"] = locality
    return (
        node.issues.build(node.path, LoadBalancerConfig, **kw)
        if node is not None
        else LoadBalancerConfig(**kw)
    )


def _istio_consistent_hash(ch: _Node) -> dict[str, Any]:
    keys: list[str] = []
    if (header := ch.text("httpHeaderName")) is not None:
        keys.append(f"header:{header}")
    if (cookie := ch.child("httpCookie")) is not None:
        keys.append(f"cookie:{cookie.text('name', '')}")
        cookie.done()
    if ch.boolean("useSourceIp"):
        keys.append("source_ip")
    if (param := ch.text("httpQueryParameterName")) is not None:
        keys.append(f"query:{param}")
    if len(keys) != 1:
        ch.issues.invalid(
            ch.path, ch.data, "exactly one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName"
        )
    kw: dict[str, Any] = {"policy": "ring_hash", "hash_key": keys[0]}
    if (size := ch.integer("minimumRingSize", minimum=1)) is not None:  # deprecated spelling
        kw["minimum_ring_size"] = size
    if (ring := ch.child("ringHash")) is not None:
        if (size := ring.integer("minimumRingSize", minimum=1)) is not None:
            kw["minimum_ring_size"] = size
        ring.done()
    if (maglev := ch.child("maglev")) is not None:
        kw["policy"] = "maglev"
        if (size := maglev.integer("tableSize", minimum=2)) is not None:
            kw["table_size"] = size
        maglev.done()
    ch.done()
    return kw


def _istio_pool(pool: _Node) -> tuple[Bulkhead, float]:
    kw = dict.fromkeys(("max_connections", "max_pending_requests", "max_requests", "max_retries"), _UNLIMITED)
    connect_timeout_s = _ISTIO_CONNECT_TIMEOUT_S
    if (tcp := pool.child("tcp")) is not None:
        kw["max_connections"] = tcp.integer("maxConnections", _UNLIMITED, minimum=1)
        connect_timeout_s = tcp.duration("connectTimeout", connect_timeout_s)
        tcp.done()
    if (http := pool.child("http")) is not None:
        kw["max_pending_requests"] = http.integer("http1MaxPendingRequests", _UNLIMITED, minimum=1)
        kw["max_requests"] = http.integer("http2MaxRequests", _UNLIMITED, minimum=1)
        kw["max_retries"] = http.integer("maxRetries", _UNLIMITED)
        http.done()
    pool.done()
    return pool.issues.build(pool.path, Bulkhead, **kw), connect_timeout_s  # type: ignore[return-value]


def _istio_route(
    virtual_service: Mapping[str, Any], host: str, route_name: str | None, *, strict: bool
) -> tuple[RetryPolicy | None, float | None, list[str]]:
    issues = _Issues("VirtualService", strict=strict)
    spec = _istio_spec(_Node(virtual_service, "", issues), "VirtualService")
    spec.ignore("hosts")
    routes = spec.children("http")
    chosen: _Node | None = None
    seen: list[str] = []
    for route in routes:
        dests = route.data.get("route") or []
        targets = [
            d["destination"].get("host", "")
            for d in dests
            if isinstance(d, Mapping) and isinstance(d.get("destination"), Mapping)
        ]
        seen.append(str(route.data.get("name") if route_name is not None else targets))
        wanted = (
            route.data.get("name") == route_name
            if route_name is not None
            else any(_same_host(t, host) for t in targets)
        )
        if wanted and chosen is None:
            chosen = route
        elif wanted:
            issues.warn(
                f"VirtualService route {route.path!r} also routes to {host!r}; only {chosen.path!r} was imported"
            )
    if chosen is None:
        which = f"named {route_name!r}" if route_name is not None else f"to host {host!r}"
        issues.invalid(spec.at("http"), seen, f"a list with an http route {which}")
    for route in routes:
        if route is not chosen:
            route.ignore(*route.data)  # other routes are other traffic: not imported, not reported
    spec.done()

    chosen.ignore("name", "match")
    destinations = chosen.children("route")
    for dest in destinations:
        if (d := dest.child("destination")) is not None:
            d.ignore("host", "port")
            d.done()
        if len(destinations) == 1:
            dest.allow("weight", 100)  # a single destination takes all the traffic anyway
        dest.done()
    timeout_s = chosen.duration("timeout")
    retry: RetryPolicy | None = ISTIO_DEFAULT_RETRY
    if (retries := chosen.child("retries")) is not None:
        attempts = retries.integer("attempts", 2)
        per_try = retries.duration("perTryTimeout")
        retry_on = retries.raw("retryOn", _ISTIO_DEFAULT_RETRY_ON)
        if attempts == 0:
            retry = None
        else:
            retry = _envoy_style_retry(
                retries,
                max_attempts=attempts + 1,
                retry_on=retry_on,
                retry_on_key="retryOn",
                codes=[503] if "retryOn" not in retries.data else [],
                per_try_timeout_s=per_try,
                base_s=_ENVOY_BACKOFF_BASE_S,
                max_s=None,
            )
        retries.done()
    if timeout_s == 0:
        timeout_s = None  # Istio: 0s disables the timeout
    chosen.done()
    return retry, timeout_s, issues.warnings


# --------------------------------------------------------------------------------------------
# Envoy
# --------------------------------------------------------------------------------------------

_ENVOY_LB = {
    "ROUND_ROBIN": "weighted_round_robin",
    "LEAST_REQUEST": "least_request",
    "RANDOM": "random",
    "RING_HASH": "ring_hash",
    "MAGLEV": "maglev",
    "CLUSTER_PROVIDED": "passthrough",  # with type ORIGINAL_DST
}
_ENVOY_OUTLIER_COUNTS = (
    "consecutive_5xx",
    "consecutive_gateway_failure",
    "success_rate_minimum_hosts",
    "success_rate_request_volume",
    "success_rate_stdev_factor",
    "failure_percentage_minimum_hosts",
    "failure_percentage_request_volume",
)
_ENVOY_OUTLIER_PERCENTS = (
    "max_ejection_percent",
    "enforcing_consecutive_5xx",
    "enforcing_consecutive_gateway_failure",
    "enforcing_success_rate",
    "failure_percentage_threshold",
    "enforcing_failure_percentage",
)
_ENVOY_OUTLIER_DURATIONS = ("interval", "base_ejection_time", "max_ejection_time", "max_ejection_time_jitter")
_ENVOY_HC_DURATIONS = (
    "interval",
    "timeout",
    "unhealthy_interval",
    "unhealthy_edge_interval",
    "healthy_edge_interval",
    "interval_jitter",
    "initial_jitter",
)


def from_envoy_cluster(
    cluster: Mapping[str, Any], route: Mapping[str, Any] | None = None, *, strict: bool = True
) -> ImportedPolicies:
    """Import an Envoy ``Cluster`` (v3, YAML/JSON as parsed) and optionally the route to it.

    Parameters
    ----------
    cluster : mapping
        ``name``, ``type``, ``connect_timeout``, ``lb_policy`` (+ ``least_request_lb_config``,
        ``ring_hash_lb_config``, ``maglev_lb_config``), ``common_lb_config.healthy_panic_threshold``,
        ``circuit_breakers.thresholds`` (``DEFAULT`` priority), ``outlier_detection`` (every
        field but the local-origin ones), ``health_checks[0]`` and ``load_assignment``.
    route : mapping, optional
        A ``Route`` (``match`` + ``route``) or its ``RouteAction``: ``timeout`` (default 15 s;
        ``0s`` = none) and ``retry_policy`` (``retry_on``, ``num_retries`` (default 1),
        ``per_try_timeout``, ``retriable_status_codes``, ``retry_back_off``).
    strict : bool, default True
        Raise on keys otlp_lab does not model; False collects them in ``warnings``.

    Returns
    -------
    ImportedPolicies

    Examples
    --------
    >>> p = from_envoy_cluster({"name": "cart", "lb_policy": "MAGLEV",
    ...                         "outlier_detection": {"consecutive_5xx": 3}},
    ...                        {"timeout": "2s", "retry_policy": {"retry_on": "5xx", "num_retries": 2}})
    >>> p.balancer.policy, p.outlier.consecutive_5xx, p.timeout_s, p.retry.max_attempts
    ('maglev', 3, 2.0, 3)
    """
    issues = _Issues("Envoy cluster", strict=strict)
    c = _Node(cluster, "", issues)
    name = c.text("name")
    kind = c.text("type", "EDS")
    if kind not in {"STATIC", "STRICT_DNS", "LOGICAL_DNS", "EDS", "ORIGINAL_DST"}:
        issues.invalid(c.at("type"), kind, "STATIC, STRICT_DNS, LOGICAL_DNS, EDS or ORIGINAL_DST")
    connect_timeout_s = c.duration("connect_timeout", _ENVOY_CONNECT_TIMEOUT_S)
    balancer_kw = _envoy_balancer(c)
    limits, budget = _envoy_limits(c.child("circuit_breakers"))
    outlier = None
    if (od := c.child("outlier_detection")) is not None:
        outlier = _envoy_outlier(od)
    health_check, target = None, None
    checks = c.children("health_checks")
    if checks:
        health_check, target = _envoy_health_check(checks[0])
        for extra in checks[1:]:
            issues.unmodelled(extra.path, extra.data, why="one active health check per cluster is modelled")
            extra.ignore(*extra.data)
    endpoints: tuple[Endpoint, ...] = ()
    if (assignment := c.child("load_assignment")) is not None:
        endpoints, factor = _envoy_endpoints(assignment)
        if factor is not None:
            balancer_kw["overprovisioning_factor"] = factor
    c.done()
    balancer = issues.build("lb_policy", LoadBalancerConfig, **balancer_kw)

    retry, timeout_s, route_warnings = None, None, []
    if route is not None:
        retry, timeout_s, route_warnings = _envoy_route(route, name, strict=strict)
    return ImportedPolicies(
        source="envoy",
        name=name,
        retry=retry,
        limits=limits,
        retry_budget=budget,
        outlier=outlier,
        health_check=health_check,
        health_check_target=target,
        balancer=balancer,
        endpoints=endpoints,
        timeout_s=timeout_s,
        connect_timeout_s=connect_timeout_s or None,
        warnings=(*issues.warnings, *route_warnings),
    )


def _envoy_balancer(c: _Node) -> dict[str, Any]:
    lb = c.text("lb_policy", "ROUND_ROBIN")
    if lb not in _ENVOY_LB:
        if lb == "LOAD_BALANCING_POLICY_CONFIG":
            c.issues.unmodelled(c.at("lb_policy"), lb, why="use one of the built-in lb_policy values")
            lb = "ROUND_ROBIN"
        else:
            c.issues.invalid(c.at("lb_policy"), lb, f"one of {', '.join(_ENVOY_LB)}")
    kw: dict[str, Any] = {"policy": _ENVOY_LB[lb]}
    if (cfg := c.child("least_request_lb_config")) is not None:
        kw["choice_count"] = cfg.integer("choice_count", 2, minimum=2)
        kw["active_request_bias"] = cfg.number("active_request_bias", 1.0)
        cfg.done()
    if (cfg := c.child("ring_hash_lb_config")) is not None:
        kw["minimum_ring_size"] = cfg.integer("minimum_ring_size", 1024, minimum=1)
        kw["maximum_ring_size"] = cfg.integer("maximum_ring_size", 8_388_608, minimum=1)
        cfg.allow("hash_function", "XX_HASH")
        cfg.done()
    if (cfg := c.child("maglev_lb_config")) is not None:
        kw["table_size"] = cfg.integer("table_size", 65537, minimum=2)
        cfg.done()
    if (common := c.child("common_lb_config")) is not None:
        kw["panic_threshold_percent"] = common.number(
            "healthy_panic_threshold", DEFAULT_PANIC_THRESHOLD_PERCENT, high=100
        )
        common.done()
    return kw


def _envoy_limits(node: _Node | None) -> tuple[Bulkhead, RetryBudget | None]:
    if node is None:
        return Bulkhead(), None  # Envoy's defaults apply to every cluster
    kw: dict[str, Any] = {}
    budget = None
    for t in node.children("thresholds"):
        if t.text("priority", "DEFAULT") != "DEFAULT":
            t.issues.unmodelled(
                t.path, t.data, why="request priorities are not modelled; only DEFAULT thresholds are"
            )
            t.ignore(*t.data)
            continue
        for key in ("max_connections", "max_pending_requests", "max_requests", "max_retries"):
            if (value := t.integer(key)) is not None:
                kw[key] = value
        if (rb := t.child("retry_budget")) is not None:
            budget = rb.issues.build(
                rb.path,
                RetryBudget,
                budget_percent=rb.number("budget_percent", 20.0, high=100.0),
                min_retry_concurrency=rb.integer("min_retry_concurrency", 3),
            )
            rb.done()
        t.ignore("track_remaining")  # statistics only
        t.done()
    node.done()
    return node.issues.build(node.path, Bulkhead, **kw), budget


def _envoy_outlier(od: _Node) -> OutlierDetectionConfig:
    kw: dict[str, Any] = {}
    for key in _ENVOY_OUTLIER_COUNTS:
        if (value := od.integer(key)) is not None:
            kw[key] = value
    for key in _ENVOY_OUTLIER_PERCENTS:
        if (value := od.number(key, high=100.0)) is not None:
            kw[key] = value
    for key in _ENVOY_OUTLIER_DURATIONS:
        if (value := od.duration(key)) is not None:
            kw[f"{key}_s"] = value
    for key in ("successful_active_health_check_uneject_host", "always_eject_one_host"):
        if (flag := od.boolean(key)) is not None:
            kw[key] = flag
    od.allow("split_external_local_origin_errors", False)
    od.done()
    return od.issues.build(od.path, OutlierDetectionConfig, **kw)


def _envoy_health_check(hc: _Node) -> tuple[HealthCheckConfig, str | None]:
    kw: dict[str, Any] = {}
    for key in _ENVOY_HC_DURATIONS:
        if (value := hc.duration(key)) is not None:
            kw[f"{key}_s"] = value
    for key in ("unhealthy_threshold", "healthy_threshold"):
        if (value := hc.integer(key, minimum=1)) is not None:
            kw[key] = value
    if (pct := hc.integer("interval_jitter_percent")) is not None:
        kw["interval_jitter_percent"] = float(pct)
    target = None
    if (http := hc.child("http_health_check")) is not None:
        target = f"http:{http.text('path', '/')}"
        http.ignore("host")
        http.done()
    if (grpc := hc.child("grpc_health_check")) is not None:
        target = f"grpc:{grpc.text('service_name', '')}"
        grpc.ignore("authority")
        grpc.done()
    if (tcp := hc.child("tcp_health_check")) is not None:
        target = "tcp"
        tcp.done()
    hc.done()
    return hc.issues.build(hc.path, HealthCheckConfig, **kw), target


_ENVOY_UNHEALTHY = {"UNHEALTHY", "DRAINING", "TIMEOUT"}


def _envoy_endpoints(assignment: _Node) -> tuple[tuple[Endpoint, ...], float | None]:
    assignment.ignore("cluster_name")
    out: list[Endpoint] = []
    for group in assignment.children("endpoints"):
        region = zone = ""
        if (loc := group.child("locality")) is not None:
            region, zone = loc.text("region", ""), loc.text("zone", "")
            loc.allow("sub_zone", "")
            loc.done()
        priority = group.integer("priority", 0)
        for lb_ep in group.children("lb_endpoints"):
            ep = lb_ep.child("endpoint")
            if ep is None:
                lb_ep.issues.invalid(lb_ep.path, lb_ep.data, "an lb_endpoint with an 'endpoint'")
            sock_node = ep.child("address")
            sock = sock_node.child("socket_address") if sock_node is not None else None
            if sock is None:
                ep.issues.invalid(
                    ep.at("address"), ep.data.get("address"), "an address with a socket_address"
                )
            address = f"{sock.text('address', '')}:{sock.integer('port_value', 0)}"
            sock.allow("protocol", "TCP")
            sock.done()
            sock_node.done()  # type: ignore[union-attr]
            ep.ignore("hostname")
            ep.done()
            status = lb_ep.text("health_status", "UNKNOWN")
            if status == "DEGRADED":
                lb_ep.issues.unmodelled(
                    lb_ep.at("health_status"), status, why="degraded hosts are not modelled"
                )
            weight = lb_ep.integer("load_balancing_weight", 1, minimum=1)
            out.append(
                lb_ep.issues.build(
                    lb_ep.path,
                    Endpoint,
                    id=address,
                    weight=weight,
                    zone=zone,
                    region=region,
                    priority=priority,
                    healthy=status not in _ENVOY_UNHEALTHY,
                )
            )
            lb_ep.done()
        group.done()
    factor = None
    if (policy := assignment.child("policy")) is not None:
        percent = policy.integer("overprovisioning_factor", 140, minimum=100)
        factor = percent / 100.0  # type: ignore[operator]
        policy.done()
    assignment.done()
    return tuple(out), factor


def _envoy_route(
    route: Mapping[str, Any], cluster_name: str | None, *, strict: bool
) -> tuple[Any, Any, list[str]]:
    issues = _Issues("Envoy route", strict=strict)
    top = _Node(route, "", issues)
    action = top
    if top.has("route") and isinstance(route.get("route"), Mapping):
        top.ignore("name", "match")  # a Route: the match selects requests; the action is what we import
        action = top.child("route")  # type: ignore[assignment]
        top.done()
    target = action.text("cluster")
    if target is not None and cluster_name is not None and target != cluster_name:
        issues.invalid(action.at("cluster"), target, f"the imported cluster {cluster_name!r}")
    timeout_s = action.duration("timeout", _ENVOY_ROUTE_TIMEOUT_S)
    retry = None
    if (rp := action.child("retry_policy")) is not None:
        codes = rp.raw("retriable_status_codes", [])
        if not isinstance(codes, list):
            issues.invalid(rp.at("retriable_status_codes"), codes, "a list of HTTP status codes")
        base_s, max_s = _ENVOY_BACKOFF_BASE_S, None
        if (backoff := rp.child("retry_back_off")) is not None:
            base_s = backoff.duration("base_interval", base_s)
            max_s = backoff.duration("max_interval")
            backoff.done()
        retry = _envoy_style_retry(
            rp,
            max_attempts=rp.integer("num_retries", 1) + 1,
            retry_on=rp.raw("retry_on", ""),
            retry_on_key="retry_on",
            codes=codes,
            per_try_timeout_s=rp.duration("per_try_timeout") or None,
            base_s=base_s,
            max_s=max_s,
        )
        rp.done()
    action.done()
    return retry, (timeout_s or None), issues.warnings


# --------------------------------------------------------------------------------------------
# resilience4j
# --------------------------------------------------------------------------------------------

# Spring Boot operational keys that change no call behaviour.
_R4J_INERT = (
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

    Reads ``resilience4j.circuitbreaker``, ``resilience4j.retry``, ``resilience4j.timelimiter``
    and ``resilience4j.bulkhead``: the instance's settings over its ``baseConfig`` (or
    ``configs.default``) over resilience4j's defaults.

    Parameters
    ----------
    source : str or mapping
        The YAML text, or its parsed form (with or without the top-level ``resilience4j`` key).
    instance : str, optional
        The instance name; default: the only one configured (or ``"default"`` from
        ``configs.default`` when there are no instances).
    strict : bool, default True
        Raise on keys otlp_lab does not model (``recordExceptions``, ...); False warns.

    Returns
    -------
    ImportedPolicies
        ``breaker`` (CircuitBreakerConfig), ``retry`` (RetryPolicy: ``maxAttempts``,
        ``waitDuration``, exponential backoff, randomized wait), ``timeout_s``, ``limits``.

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
    data = yaml.safe_load(source) if isinstance(source, str) else source
    root = _Node(_unflatten(data if isinstance(data, Mapping) else {}), "", issues)
    if root.has("resilience4j"):
        root = root.child("resilience4j")  # type: ignore[assignment]
    sections = {key: root.child(key) for key in ("circuitbreaker", "retry", "timelimiter", "bulkhead")}
    root.done()
    names = sorted({n for s in sections.values() if s is not None for n in (s.data.get("instances") or {})})
    if instance is None:
        if len(names) > 1:
            issues.invalid("resilience4j", names, "a config of one instance (or call with instance=<name>)")
        instance = names[0] if names else "default"
    breaker = retry = timeout_s = limits = None
    for key, section in sections.items():
        if section is None:
            continue
        merged = _r4j_instance(section, instance)
        if merged is None:
            continue
        if key == "circuitbreaker":
            breaker = _r4j_breaker(merged)
        elif key == "retry":
            retry = _r4j_retry(merged)
        elif key == "timelimiter":
            timeout_s = merged.duration("timeoutDuration", 1.0, bare_unit_s=_R4J_MS)
            merged.allow("cancelRunningFuture", True)
        else:
            limits = merged.issues.build(
                merged.path,
                Bulkhead,
                max_requests=merged.integer("maxConcurrentCalls", 25),
                max_connections=_UNLIMITED,
                max_pending_requests=_UNLIMITED,
                max_retries=_UNLIMITED,
            )
            if merged.duration("maxWaitDuration", 0.0, bare_unit_s=_R4J_MS):
                issues.unmodelled(
                    merged.at("maxWaitDuration"),
                    merged.raw("maxWaitDuration"),
                    why="Bulkhead refuses at once; waiting for a permit is not modelled",
                )
        merged.ignore(*_R4J_INERT)
        merged.done()
    if breaker is None and retry is None and timeout_s is None and limits is None:
        issues.invalid("resilience4j", names, f"a configuration with an instance named {instance!r}")
    return ImportedPolicies(
        source="resilience4j",
        name=instance,
        retry=retry,
        breaker=breaker,
        limits=limits,
        timeout_s=timeout_s,
        warnings=tuple(issues.warnings),
    )


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
    instances = section.child("instances")
    for stale in set(section.data) - {"configs", "instances"}:
        section.raw(stale)
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
    attempts = n.integer("maxAttempts", 3, minimum=1)
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


# --------------------------------------------------------------------------------------------
# gRPC service config
# --------------------------------------------------------------------------------------------

_GRPC_LB = {"round_robin": "round_robin"}


def from_grpc_service_config(
    config: Mapping[str, Any] | str,
    *,
    service: str | None = None,
    method: str | None = None,
    strict: bool = True,
) -> ImportedPolicies:
    """Import a gRPC service config (JSON text or parsed) for one method.

    Parameters
    ----------
    config : mapping or str
        ``methodConfig[]`` (``name``, ``timeout``, ``retryPolicy`` or ``hedgingPolicy``),
        ``retryThrottling``, ``loadBalancingConfig`` / ``loadBalancingPolicy``.
    service, method : str, optional
        Which method config applies, by gRPC's rules: exact service+method, then the
        service's default, then the empty-name default. Without ``service``: the first.
    strict : bool, default True
        Raise on keys otlp_lab does not model (``waitForReady``, message size limits, ...).

    Returns
    -------
    ImportedPolicies
        ``retry`` (RetryPolicy or HedgingPolicy; ``perAttemptRecvTimeout`` becomes
        ``per_try_timeout_s``), ``retry_throttle``, ``timeout_s``, ``balancer``.

    Examples
    --------
    >>> sc = {"methodConfig": [{"name": [{"service": "otlp.Trace"}], "timeout": "5s",
    ...        "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "1s",
    ...                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}],
    ...       "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}}
    >>> p = from_grpc_service_config(sc)
    >>> p.retry.max_attempts, p.retry.retryable_status_codes, p.timeout_s, p.retry_throttle.max_tokens
    (4, frozenset({'UNAVAILABLE'}), 5.0, 10.0)
    """
    issues = _Issues("gRPC service config", strict=strict)
    data = yaml.safe_load(config) if isinstance(config, str) else config  # JSON is YAML
    root = _Node(data, "", issues)
    chosen = _grpc_method_config(root.children("methodConfig"), service, method)
    retry: RetryPolicy | HedgingPolicy | None = None
    timeout_s = None
    name = service
    if chosen is not None:
        names = chosen.raw("name") or []
        if name is None and names and isinstance(names[0], Mapping):
            name = names[0].get("service")
        timeout_s = chosen.duration("timeout")
        rp, hp = chosen.child("retryPolicy"), chosen.child("hedgingPolicy")
        if rp is not None and hp is not None:
            issues.invalid(
                chosen.path, "retryPolicy and hedgingPolicy", "only one of retryPolicy, hedgingPolicy"
            )
        if rp is not None:
            per_try = rp.duration("perAttemptRecvTimeout")
            fields = {
                k: rp.raw(k)
                for k in (
                    "maxAttempts",
                    "initialBackoff",
                    "maxBackoff",
                    "backoffMultiplier",
                    "retryableStatusCodes",
                )
            }
            retry = issues.build(rp.path, RetryPolicy.from_grpc_service_config, config=_present(fields))
            if per_try is not None:
                retry = dataclasses.replace(retry, per_try_timeout_s=per_try)
            rp.done()
        if hp is not None:
            fields = {k: hp.raw(k) for k in ("maxAttempts", "hedgingDelay", "nonFatalStatusCodes")}
            retry = issues.build(hp.path, HedgingPolicy.from_grpc_service_config, config=_present(fields))
            hp.done()
        chosen.done()
    throttle = None
    if (rt := root.child("retryThrottling")) is not None:
        fields = {k: rt.raw(k) for k in ("maxTokens", "tokenRatio")}
        throttle = issues.build(rt.path, RetryThrottle.from_grpc_service_config, config=_present(fields))
        rt.done()
    balancer = _grpc_balancer(root)
    root.done()
    return ImportedPolicies(
        source="grpc",
        name=name,
        retry=retry,
        retry_throttle=throttle,
        balancer=balancer,
        timeout_s=timeout_s,
        warnings=tuple(issues.warnings),
    )


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _grpc_method_config(configs: list[_Node], service: str | None, method: str | None) -> _Node | None:
    def rank(node: _Node) -> int | None:
        best = None
        for entry in node.data.get("name") or [{}]:
            svc, meth = entry.get("service", ""), entry.get("method", "")
            if svc == service and meth and meth == method:
                score = 0
            elif svc == service and svc and not meth:
                score = 1
            elif not svc and not meth:
                score = 2
            else:
                continue
            best = score if best is None else min(best, score)
        return best

    if service is None:
        chosen = configs[0] if configs else None
    else:
        ranked = [(r, i) for i, n in enumerate(configs) if (r := rank(n)) is not None]
        chosen = configs[min(ranked)[1]] if ranked else None
    for node in configs:
        if node is not chosen:
            node.ignore(*node.data)  # other methods' settings: not imported, not reported
    return chosen


def _grpc_balancer(root: _Node) -> LoadBalancerConfig | None:
    configs = root.raw("loadBalancingConfig")
    legacy = root.text("loadBalancingPolicy")
    if configs is None and legacy is None:
        return None
    if configs is not None:
        if not isinstance(configs, list) or not all(isinstance(c, Mapping) and len(c) == 1 for c in configs):
            root.issues.invalid(root.at("loadBalancingConfig"), configs, "a list of single-key objects")
        for entry in configs:
            [(policy, settings)] = entry.items()
            if policy in _GRPC_LB and not settings:
                return LoadBalancerConfig(policy=_GRPC_LB[policy])  # type: ignore[arg-type]
        root.issues.unmodelled(root.at("loadBalancingConfig"), configs, why="only round_robin is modelled")
        return None
    if legacy.lower() in _GRPC_LB:  # type: ignore[union-attr]
        return LoadBalancerConfig(policy=_GRPC_LB[legacy.lower()])  # type: ignore[union-attr,arg-type]
    root.issues.unmodelled(root.at("loadBalancingPolicy"), legacy, why="only round_robin is modelled")
    return None


# --------------------------------------------------------------------------------------------
# Any YAML file
# --------------------------------------------------------------------------------------------


def import_yaml(source: str | Path, *, strict: bool = True, **selector: Any) -> ImportedPolicies:
    """Import a YAML (or JSON) file or text in any supported dialect, recognised by its content.

    * documents with ``kind: DestinationRule`` (+ an optional ``VirtualService``) -> :func:`from_istio`;
    * a ``resilience4j`` key -> :func:`from_resilience4j`;
    * a ``methodConfig`` key -> :func:`from_grpc_service_config`;
    * otherwise an Envoy ``Cluster`` document, optionally followed by a ``Route`` document
      (one with ``match``) -> :func:`from_envoy_cluster`.

    ``selector`` is passed on (``route_name``, ``instance``, ``service``/``method``).

    Examples
    --------
    >>> p = import_yaml(EXAMPLES_DIR / "istio-reviews.yaml")
    >>> p.source, p.name, p.balancer.policy
    ('istio', 'reviews.prod.svc.cluster.local', 'least_request')
    """
    path = (
        Path(source)
        if isinstance(source, Path) or "\n" not in str(source) and Path(str(source)).is_file()
        else None
    )
    text = path.read_text() if path is not None else str(source)
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ImportConfigError(
            f"{path or 'config text'} is not valid YAML: {exc}", source="yaml", path=""
        ) from exc
    if not docs or not all(isinstance(d, Mapping) for d in docs):
        raise ImportConfigError(f"{path or 'config text'} must hold YAML mappings", source="yaml", path="")
    kinds = {d.get("kind"): d for d in docs}
    if "DestinationRule" in kinds:
        return from_istio(kinds["DestinationRule"], kinds.get("VirtualService"), strict=strict, **selector)
    first = docs[0]
    if any(str(k).split(".")[0] == "resilience4j" for k in first):
        return from_resilience4j(first, strict=strict, **selector)
    if "methodConfig" in first or "method_config" in first:
        return from_grpc_service_config(first, strict=strict, **selector)
    routes = [d for d in docs[1:] if "match" in d or "retry_policy" in d or "retryPolicy" in d]
    return from_envoy_cluster(first, routes[0] if routes else None, strict=strict)
