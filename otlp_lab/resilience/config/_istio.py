"""Istio: ``DestinationRule`` and ``VirtualService``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otlp_lab.errors import ImportConfigError
from otlp_lab.resilience._balancers import LoadBalancerConfig
from otlp_lab.resilience._failover import DEFAULT_PANIC_THRESHOLD_PERCENT
from otlp_lab.resilience._limits import Bulkhead
from otlp_lab.resilience._outlier import OutlierDetectionConfig
from otlp_lab.resilience._pool import ConnectionPoolConfig
from otlp_lab.resilience._retry import RetryPolicy
from otlp_lab.resilience.config._base import _UNLIMITED, FaultInjection, ImportedPolicies, _Issues, _Node
from otlp_lab.resilience.config._envoy import _ENVOY_BACKOFF_BASE_S, _envoy_style_retry

_ISTIO_CONNECT_TIMEOUT_S = 10.0

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
    destination_rule: Mapping[str, Any] | None,
    virtual_service: Mapping[str, Any] | None = None,
    *,
    subset: str | None = None,
    port: int | None = None,
    route_name: str | None = None,
    host: str | None = None,
    strict: bool = True,
) -> ImportedPolicies:
    """Import an Istio DestinationRule (and the VirtualService routing to its host).

    Parameters
    ----------
    destination_rule : mapping or None
        The parsed ``DestinationRule`` (``apiVersion``/``kind``/``metadata``/``spec``), or
        just its ``spec``. None: only a VirtualService (Istio's defaults for the host).
    virtual_service : mapping, optional
        The ``VirtualService``; its ``http`` route to the host gives the retries, timeout,
        fault injection and weighted subsets. Without one, Istio's defaults apply (2 retries,
        no timeout).
    subset : str, optional
        A subset of the DestinationRule: its ``trafficPolicy`` overrides the host's, field by
        field (``connectionPool``, ``loadBalancer``, ``outlierDetection``, ``portLevelSettings``),
        as Istio merges them.
    port : int, optional
        Apply the ``portLevelSettings`` entry of this port over the (subset's) policy.
    route_name : str, optional
        Which ``http`` route to import: its ``name``, or ``"http[i]"``. Default: the first
        route without ``match`` that sends to the host (the catch-all), else the first that
        sends to it (its ``match`` is noted, not evaluated).
    host : str, optional
        With only a VirtualService: which destination host.
    strict : bool, default True
        Raise on keys otlp_lab does not model; False reports them in ``warnings``.

    Returns
    -------
    ImportedPolicies
        ``balancer``, ``connection_pool`` and ``limits`` (Istio's unlimited defaults unless
        set), ``outlier`` (when ``outlierDetection`` is present), ``retry``, ``timeout_s``,
        ``fault``, ``routes``, ``connect_timeout_s``.

    Raises
    ------
    ImportConfigError
        An unmodelled key (strict), a bad value, an unknown subset or port, or a
        VirtualService with no route to the host.

    Notes
    -----
    The deprecated ``outlierDetection.consecutiveErrors`` is mapped as Istio maps it
    (``applyOutlierDetection``, istio/api#617): Envoy's ``consecutive_gateway_failure`` with
    enforcement 100 % and ``consecutive_5xx`` enforcement 0 %, so only 502/503/504 count.

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
    tp = _TrafficPolicy()
    if destination_rule is not None:
        spec = _istio_spec(_Node(destination_rule, "", issues), "DestinationRule")
        host = spec.text("host")
        if not host:
            issues.invalid(spec.at("host"), host, "the service host name")
        spec.ignore("exportTo", "workloadSelector")  # which namespaces / proxies see the rule
        top, top_ports = _traffic_policy(spec.child("trafficPolicy"))
        ports = top_ports
        tp = top
        subsets: dict[str, tuple[_TrafficPolicy, dict[int, _TrafficPolicy]]] = {}
        for node in spec.children("subsets"):
            name = node.text("name")
            if not name:
                issues.invalid(node.at("name"), name, "the subset name")
            node.ignore("labels")  # which instances: every simulated instance serves every subset
            subsets[name] = _traffic_policy(node.child("trafficPolicy"))  # type: ignore[index]
            node.done()
        spec.done()
        if subset is not None:
            if subset not in subsets:
                issues.invalid("spec.subsets", sorted(subsets), f"a list with a subset named {subset!r}")
            sub, sub_ports = subsets[subset]
            tp = sub.over(top)
            ports = sub_ports or top_ports
        if port is not None:
            if port not in ports:
                issues.invalid(
                    "spec.trafficPolicy.portLevelSettings", sorted(ports), f"settings for port {port}"
                )
            tp = ports[port].over(tp)
    elif host is None and virtual_service is None:
        raise TypeError("from_istio needs a DestinationRule or a VirtualService")

    route = _Route()
    routes: list[_Route] = []
    if virtual_service is not None:
        vs_issues = _Issues("VirtualService", strict=strict)
        routes = _vs_routes(virtual_service, vs_issues)
        if host is None:
            host = next((d[0] for r in routes for d in r.dests), None)
        route = _pick_route(routes, host, subset, route_name, vs_issues)  # type: ignore[arg-type]
        issues.warnings.extend(vs_issues.warnings)
        issues.notes.extend(vs_issues.notes)
    outlier, panic = tp.outlier if tp.outlier is not None else (None, 0.0)
    if tp.outlier is None:
        panic = DEFAULT_PANIC_THRESHOLD_PERCENT
    balancer = _istio_balancer(tp.lb, panic, outlier is not None, issues)
    limits, pool, connect_timeout_s = tp.pool if tp.pool is not None else _istio_pool_defaults()
    if subset is None and len(route.dests) > 1:
        weighted = tuple((d[1] or d[0], float(d[2])) for d in route.dests)
    else:
        weighted = ()
    name = host if subset is None else f"{host}/{subset}"
    if route.match and route_name is not None:
        name = f"{name}@{route.label}"  # this route applies only to the requests it matches
    return ImportedPolicies(
        source="istio",
        name=name if port is None else f"{name}:{port}",
        retry=route.retry,
        limits=limits,
        connection_pool=pool,
        outlier=outlier,
        balancer=balancer,
        timeout_s=route.timeout_s,
        connect_timeout_s=connect_timeout_s,
        fault=route.fault,
        routes=weighted,
        notes=tuple(issues.notes),
        warnings=tuple(issues.warnings),
    )


@dataclass
class _TrafficPolicy:
    """One ``trafficPolicy`` as read; None: not set at this level (inherits, as Istio merges)."""

    outlier: tuple[OutlierDetectionConfig, float] | None = None
    lb: tuple[dict[str, Any], bool | None, str] | None = None
    pool: tuple[Bulkhead, ConnectionPoolConfig, float] | None = None

    def over(self, base: _TrafficPolicy) -> _TrafficPolicy:
        return _TrafficPolicy(
            outlier=self.outlier if self.outlier is not None else base.outlier,
            lb=self.lb if self.lb is not None else base.lb,
            pool=self.pool if self.pool is not None else base.pool,
        )


def _traffic_policy(
    node: _Node | None, *, nested: bool = False
) -> tuple[_TrafficPolicy, dict[int, _TrafficPolicy]]:
    tp = _TrafficPolicy()
    ports: dict[int, _TrafficPolicy] = {}
    if node is None:
        return tp, ports
    if (od := node.child("outlierDetection")) is not None:
        tp.outlier = _istio_outlier(od)
    if (lb := node.child("loadBalancer")) is not None:
        tp.lb = _istio_lb(lb)
    if (pool := node.child("connectionPool")) is not None:
        tp.pool = _istio_pool(pool)
    if node.has("tls"):
        node.raw("tls")
        node.issues.note(f"{node.at('tls')}: TLS settings do not change the simulated traffic")
    if nested:
        node.ignore("port")
    else:
        for entry in node.children("portLevelSettings"):
            number = None
            if (p := entry.child("port")) is not None:
                number = p.integer("number", minimum=1)
                p.done()
            if number is None:
                node.issues.invalid(entry.at("port"), entry.data.get("port"), "a port with a number")
            ports[number] = _traffic_policy(entry, nested=True)[0]  # type: ignore[index]
    node.done()
    return tp, ports


def _istio_pool_defaults() -> tuple[Bulkhead, ConnectionPoolConfig, float]:
    return (
        Bulkhead(
            max_connections=_UNLIMITED,
            max_pending_requests=_UNLIMITED,
            max_requests=_UNLIMITED,
            max_retries=_UNLIMITED,
        ),
        ConnectionPoolConfig(
            max_connections=_UNLIMITED,
            max_pending_requests=_UNLIMITED,
            max_requests=_UNLIMITED,
            max_retries=_UNLIMITED,
        ),
        _ISTIO_CONNECT_TIMEOUT_S,
    )


def _istio_outlier(node: _Node) -> tuple[OutlierDetectionConfig, float]:
    """Istio's translation (``applyOutlierDetection``) onto Envoy's outlier detection."""
    kw: dict[str, Any] = {"enforcing_success_rate": 0.0}  # Istio turns success-rate ejection off
    legacy = node.integer("consecutiveErrors")
    if legacy:  # deprecated: Istio listens to gateway errors only (istio/api#617)
        kw.update(
            consecutive_gateway_failure=legacy,
            enforcing_consecutive_gateway_failure=100.0,
            enforcing_consecutive_5xx=0.0,
        )
        node.issues.note(
            f"{node.at('consecutiveErrors')}: deprecated; mapped as Istio maps it, to "
            f"consecutive_gateway_failure={legacy} (502/503/504 only) with consecutive 5xx ejection off"
        )
    for key, count, enforcing in (
        ("consecutive5xxErrors", "consecutive_5xx", "enforcing_consecutive_5xx"),
        ("consecutiveGatewayErrors", "consecutive_gateway_failure", "enforcing_consecutive_gateway_failure"),
    ):
        value = node.integer(key)
        if value is not None:
            kw[count] = value
            kw[enforcing] = 100.0 if value > 0 else 0.0
    for key, attr in (("interval", "interval_s"), ("baseEjectionTime", "base_ejection_time_s")):
        value = node.duration(key)
        if value is not None:
            kw[attr] = value
    percent = node.integer("maxEjectionPercent")
    if percent:  # Istio only sets it when > 0
        kw["max_ejection_percent"] = float(percent)
    panic = float(node.integer("minHealthPercent", 0))  # Istio: panic threshold = minHealthPercent
    node.allow("splitExternalLocalOriginErrors", False)
    node.done()
    return node.issues.build(node.path, OutlierDetectionConfig, **kw), panic


def _istio_lb(node: _Node) -> tuple[dict[str, Any], bool | None, str]:
    """A ``loadBalancer`` as read: settings, ``localityLbSetting.enabled`` (None: not given), its path."""
    kw: dict[str, Any] = {}
    locality: bool | None = None
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
        locality = bool(setting.boolean("enabled", True))
        pairs = []
        for rule in setting.children("failover"):
            pairs.append((rule.text("from", ""), rule.text("to", "")))
            rule.done()
        kw["failover"] = tuple(pairs)
        setting.done()
    node.done()
    return kw, locality, node.path


def _istio_balancer(
    lb: tuple[dict[str, Any], bool | None, str] | None, panic: float, has_outlier: bool, issues: _Issues
) -> LoadBalancerConfig:
    kw: dict[str, Any] = {"policy": "least_request", "panic_threshold_percent": panic}
    # Locality failover is on mesh-wide by default and takes effect with outlier detection.
    locality = has_outlier
    path = "spec.trafficPolicy.loadBalancer"
    if lb is not None:
        given, enabled, path = lb
        kw.update(given)
        if enabled is not None:
            locality = has_outlier and enabled
    kw["locality_failover"] = locality
    return issues.build(path, LoadBalancerConfig, **kw)


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


def _istio_pool(pool: _Node) -> tuple[Bulkhead, ConnectionPoolConfig, float]:
    """``connectionPool`` -> Envoy's circuit-breaker thresholds, as Istio sets them (unset: max uint32)."""
    kw = dict.fromkeys(("max_connections", "max_pending_requests", "max_requests", "max_retries"), _UNLIMITED)
    per_connection = None
    http2 = False
    connect_timeout_s = _ISTIO_CONNECT_TIMEOUT_S
    if (tcp := pool.child("tcp")) is not None:
        kw["max_connections"] = tcp.integer("maxConnections", _UNLIMITED, minimum=1)
        connect_timeout_s = tcp.duration("connectTimeout", connect_timeout_s)
        if tcp.has("tcpKeepalive"):
            tcp.raw("tcpKeepalive")
            tcp.issues.note(
                f"{tcp.at('tcpKeepalive')}: keep-alive probes do not change the simulated traffic"
            )
        tcp.done()
    if (http := pool.child("http")) is not None:
        kw["max_pending_requests"] = http.integer("http1MaxPendingRequests", _UNLIMITED, minimum=1)
        kw["max_requests"] = http.integer("http2MaxRequests", _UNLIMITED, minimum=1)
        kw["max_retries"] = http.integer("maxRetries", _UNLIMITED)
        per_connection = http.integer("maxRequestsPerConnection", minimum=0) or None  # 0: unlimited
        upgrade = http.text("h2UpgradePolicy", "DEFAULT")
        if upgrade not in ("DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"):
            http.issues.invalid(http.at("h2UpgradePolicy"), upgrade, "DEFAULT, DO_NOT_UPGRADE or UPGRADE")
        http2 = upgrade == "UPGRADE"
        http.done()
    pool.done()
    limits = pool.issues.build(pool.path, Bulkhead, **kw)
    config = pool.issues.build(
        pool.path, ConnectionPoolConfig, **kw, max_requests_per_connection=per_connection, http2=http2
    )
    return limits, config, connect_timeout_s  # type: ignore[return-value]


@dataclass
class _Route:
    """One ``http`` route of a VirtualService, as read."""

    label: str = ""
    match: bool = False
    dests: list[tuple[str, str | None, float]] = field(default_factory=list)
    retry: RetryPolicy | None = ISTIO_DEFAULT_RETRY
    timeout_s: float | None = None
    fault: FaultInjection | None = None


# route keys that rewrite or decorate requests without changing how they are retried or limited
_VS_INERT = ("rewrite", "headers", "corsPolicy")


def _vs_routes(virtual_service: Mapping[str, Any], issues: _Issues) -> list[_Route]:
    spec = _istio_spec(_Node(virtual_service, "", issues), "VirtualService")
    spec.ignore("hosts", "gateways", "exportTo")  # which requests and proxies: selectors
    if spec.has("tcp") or spec.has("tls"):
        for key in ("tcp", "tls"):
            if spec.has(key):
                issues.unmodelled(spec.at(key), spec.raw(key), why="only http routes are modelled")
    out: list[_Route] = []
    for i, node in enumerate(spec.children("http")):
        r = _Route(label=node.text("name") or f"http[{i}]")
        if node.has("match"):
            r.match = True
            issues.note(
                f"{node.at('match')}: route {r.label!r} applies only to requests matching {node.raw('match')!r}"
                " (not evaluated: import it by name to simulate it)"
            )
        for key in _VS_INERT:
            if node.has(key):
                node.raw(key)
                issues.note(f"{node.at(key)}: does not change the simulated traffic")
        dests = node.children("route")
        for dest in dests:
            d = dest.child("destination")
            if d is None:
                issues.invalid(dest.path, dest.data, "a route with a destination")
            h = d.text("host")
            sub = d.text("subset")
            d.ignore("port")
            d.done()
            weight = dest.number("weight", 100.0 if len(dests) == 1 else 0.0, high=100.0)
            dest.ignore("headers")
            dest.done()
            r.dests.append((h, sub, weight))  # type: ignore[arg-type]
        r.timeout_s = node.duration("timeout")
        if r.timeout_s == 0:
            r.timeout_s = None  # Istio: 0s disables the timeout
        if (retries := node.child("retries")) is not None:
            attempts = retries.integer("attempts", 2)
            per_try = retries.duration("perTryTimeout")
            retry_on = retries.raw("retryOn", _ISTIO_DEFAULT_RETRY_ON)
            retries.ignore("retryRemoteLocalities")  # which hosts a retry may pick
            if attempts == 0:
                r.retry = None
            else:
                r.retry = _envoy_style_retry(
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
        if (fault := node.child("fault")) is not None:
            r.fault = _istio_fault(fault)
        node.done()
        out.append(r)
    spec.done()
    return out


def _percent(node: _Node) -> float:
    """Istio ``percentage: {value}`` or the deprecated integer ``percent``; 100 when neither is given."""
    if (pc := node.child("percentage")) is not None:
        value = pc.number("value", 0.0, high=100.0)
        pc.done()
        return value  # type: ignore[return-value]
    return float(node.integer("percent", 100))  # type: ignore[arg-type]


def _istio_fault(node: _Node) -> FaultInjection:
    kw: dict[str, Any] = {}
    if (delay := node.child("delay")) is not None:
        kw["delay_percent"] = _percent(delay)
        kw["delay_s"] = delay.duration("fixedDelay", 0.0)
        delay.done()
    if (abort := node.child("abort")) is not None:
        kw["abort_percent"] = _percent(abort)
        status = abort.integer("httpStatus", minimum=100)
        grpc = abort.text("grpcStatus")
        kw["abort_status"] = status if status is not None else grpc
        if kw["abort_status"] is None:
            abort.issues.invalid(abort.path, abort.data, "an abort with httpStatus or grpcStatus")
        abort.done()
    node.done()
    return node.issues.build(node.path, FaultInjection, **kw)


def _pick_route(
    routes: list[_Route], host: str, subset: str | None, name: str | None, issues: _Issues
) -> _Route:
    def sends(r: _Route) -> bool:
        return any(_same_host(h, host) and (subset is None or s == subset) for h, s, _ in r.dests)

    if name is not None:
        chosen = next((r for r in routes if r.label == name), None)
        if chosen is None:
            issues.invalid(
                "spec.http", [r.label for r in routes], f"a list with an http route named {name!r}"
            )
        return chosen  # type: ignore[return-value]
    to_host = [r for r in routes if sends(r)]
    if not to_host:
        issues.invalid(
            "spec.http",
            [[f"{h}/{s}" if s else h for h, s, _ in r.dests] for r in routes],
            f"a list with an http route to host {host!r}" + (f" subset {subset!r}" if subset else ""),
        )
    catch_all = [r for r in to_host if not r.match]
    for r in catch_all[1:]:
        issues.warn(
            f"VirtualService route {r.label!r} also sends every request to {host!r} but is never reached"
            f" (Istio takes the first matching route, {catch_all[0].label!r})"
        )
    return catch_all[0] if catch_all else to_host[0]


def istio_policies(documents: list[Mapping[str, Any]], *, strict: bool = True) -> dict[str, ImportedPolicies]:
    """Every policy of a set of DestinationRule and VirtualService documents, keyed by host.

    Keys: ``host`` (the rule's top-level policy), ``host/subset``, ``host:port`` and
    ``host/subset:port`` (``portLevelSettings``), and ``...@route`` for a VirtualService route
    with a ``match`` (it applies only to the requests it matches). A VirtualService host with no
    DestinationRule gets Istio's defaults. Two DestinationRules for one host are an error, as
    ``istioctl analyze`` reports it (never "last one wins").
    """
    drs: dict[str, Mapping[str, Any]] = {}
    vss: list[Mapping[str, Any]] = []
    for doc in documents:
        spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
        if doc.get("kind") == "DestinationRule":
            host = spec.get("host")  # type: ignore[union-attr]
            clash = next((h for h in drs if isinstance(host, str) and _same_host(h, host)), None)
            if clash is not None:
                raise ImportConfigError(
                    f"DestinationRule host {host!r} is given twice (also as {clash!r}); Istio would apply only"
                    " one of them. Keep one rule per host.",
                    source="DestinationRule",
                    path="spec.host",
                    value=host,
                )
            drs[str(host)] = doc
        else:
            vss.append(doc)
    out: dict[str, ImportedPolicies] = {}

    def vs_for(host: str) -> Mapping[str, Any] | None:
        for vs in vss:
            for r in (vs.get("spec") or {}).get("http") or []:
                for d in r.get("route") or [] if isinstance(r, Mapping) else []:
                    dest = d.get("destination") if isinstance(d, Mapping) else None
                    if isinstance(dest, Mapping) and _same_host(str(dest.get("host", "")), host):
                        return vs
        return None

    for host, dr in drs.items():
        spec = dr.get("spec") or {}
        vs = vs_for(host)
        subsets = [s.get("name") for s in spec.get("subsets") or [] if isinstance(s, Mapping)]
        tp = spec.get("trafficPolicy") or {}
        ports = [p.get("port", {}).get("number") for p in tp.get("portLevelSettings") or []]
        for sub in [None, *subsets]:
            sub_vs = vs if vs is not None and _routes_to(vs, host, sub) else None
            key = host if sub is None else f"{host}/{sub}"
            out[key] = from_istio(dr, sub_vs, subset=sub, strict=strict)
            for port in ports:
                out[f"{key}:{port}"] = from_istio(dr, sub_vs, subset=sub, port=port, strict=strict)
    for vs in vss:
        issues = _Issues("VirtualService", strict=strict)
        for r in _vs_routes(vs, issues):
            hosts = list(dict.fromkeys(h for h, _, _ in r.dests))
            targets = [(h, None) for h in hosts] + [(h, s) for h, s, _ in r.dests if s is not None]
            for h, sub in targets:
                dr_host = next((k for k in drs if _same_host(k, h)), None)
                base = dr_host or h
                key = base if sub is None else f"{base}/{sub}"
                if r.match:
                    key += f"@{r.label}"
                elif dr_host is not None or key in out:
                    continue  # done with its DestinationRule above, or an unreachable later catch-all
                out[key] = from_istio(
                    drs.get(dr_host) if dr_host else None,
                    vs,
                    subset=sub,
                    host=base,
                    route_name=r.label if r.match else None,
                    strict=strict,
                )
    return out


def _routes_to(vs: Mapping[str, Any], host: str, subset: str | None) -> bool:
    for r in (vs.get("spec") or {}).get("http") or []:
        for d in r.get("route") or [] if isinstance(r, Mapping) else []:
            dest = d.get("destination") if isinstance(d, Mapping) else None
            if (
                isinstance(dest, Mapping)
                and _same_host(str(dest.get("host", "")), host)
                and (subset is None or dest.get("subset") == subset)
            ):
                return True
    return False
