"""Envoy: a ``Cluster`` (and the route to it), or a whole bootstrap's ``static_resources``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from otlp_lab.resilience._balancers import Endpoint, LoadBalancerConfig
from otlp_lab.resilience._core import Status
from otlp_lab.resilience._failover import DEFAULT_PANIC_THRESHOLD_PERCENT
from otlp_lab.resilience._health import HealthCheckConfig
from otlp_lab.resilience._limits import Bulkhead
from otlp_lab.resilience._outlier import OutlierDetectionConfig
from otlp_lab.resilience._pool import ConnectionPoolConfig
from otlp_lab.resilience._retry import RetryBudget, RetryPolicy
from otlp_lab.resilience.config._base import ImportedPolicies, _Issues, _Node

_ENVOY_BACKOFF_BASE_S = 0.025
_ENVOY_ROUTE_TIMEOUT_S = 15.0
_ENVOY_CONNECT_TIMEOUT_S = 5.0

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
    per_connection, http2 = _envoy_protocol(c)
    for key in _CLUSTER_INERT:
        if c.has(key):
            c.raw(key)
            issues.note(f"{c.at(key)}: does not change the simulated traffic")
    c.ignore("eds_cluster_config", "dns_resolvers")  # where endpoints come from
    c.done()
    balancer = issues.build("lb_policy", LoadBalancerConfig, **balancer_kw)
    lim = limits.limits
    pool = issues.build(
        "circuit_breakers",
        ConnectionPoolConfig,
        max_connections=lim["connections"],
        max_pending_requests=lim["pending_requests"],
        max_requests=lim["requests"],
        max_retries=lim["retries"],
        max_requests_per_connection=per_connection,
        http2=http2,
    )

    retry, timeout_s, route_warnings, route_notes = None, None, [], []
    if route is not None:
        retry, timeout_s, route_warnings, route_notes = _envoy_route(route, name, strict=strict)
    return ImportedPolicies(
        source="envoy",
        name=name,
        retry=retry,
        limits=limits,
        connection_pool=pool,
        notes=(*issues.notes, *route_notes),
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


# route-action keys that rewrite requests or pick a host without changing retries, timeouts or limits
_ROUTE_INERT = (
    "host_rewrite_literal",
    "auto_host_rewrite",
    "host_rewrite_header",
    "prefix_rewrite",
    "regex_rewrite",
    "path_rewrite_policy",
    "hash_policy",
    "cors",
    "upgrade_configs",
)
# Route keys besides the action: selectors and decorations
_ROUTE_SELECTORS = (
    "name",
    "match",
    "decorator",
    "metadata",
    "typed_per_filter_config",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
)


def _envoy_route(
    route: Mapping[str, Any],
    cluster_name: str | None,
    *,
    strict: bool,
    path: str = "",
    default_retry: Mapping[str, Any] | None = None,
) -> tuple[Any, Any, list[str], list[str]]:
    """A Route (or its RouteAction): retry policy (the virtual host's when the route has none) and timeout."""
    issues = _Issues("Envoy route", strict=strict)
    top = _Node(route, path, issues)
    action = top
    if top.has("route") and isinstance(route.get("route"), Mapping):
        top.ignore(*_ROUTE_SELECTORS)  # the match selects requests; the action is what we import
        action = top.child("route")  # type: ignore[assignment]
        top.done()
    target = action.text("cluster")
    if target is None and action.has("weighted_clusters"):
        action.raw("weighted_clusters")  # the caller bound this route to one of them
    if target is not None and cluster_name is not None and target != cluster_name:
        issues.invalid(action.at("cluster"), target, f"the imported cluster {cluster_name!r}")
    timeout_s = action.duration("timeout", _ENVOY_ROUTE_TIMEOUT_S)
    for key in _ROUTE_INERT:
        if action.has(key):
            action.raw(key)
            issues.note(f"{action.at(key)}: does not change the simulated traffic")
    retry = None
    rp = action.child("retry_policy")
    if rp is None and default_retry is not None:
        rp = _Node(default_retry, f"{path}<virtual host>.retry_policy", issues)
    if rp is not None:
        codes = rp.raw("retriable_status_codes", [])
        if not isinstance(codes, list):
            issues.invalid(rp.at("retriable_status_codes"), codes, "a list of HTTP status codes")
        base_s, max_s = _ENVOY_BACKOFF_BASE_S, None
        if (backoff := rp.child("retry_back_off")) is not None:
            base_s = backoff.duration("base_interval", base_s)
            max_s = backoff.duration("max_interval")
            backoff.done()
        rp.ignore("retry_host_predicate", "retry_priority", "host_selection_retry_max_attempts")  # which host
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
    return retry, (timeout_s or None), issues.warnings, issues.notes


def _envoy_protocol(c: _Node) -> tuple[int | None, bool]:
    """``max_requests_per_connection`` and HTTP/2, from the cluster's (old or new) protocol options."""
    per_connection = c.integer("max_requests_per_connection", minimum=1)
    http2 = c.has("http2_protocol_options")
    if http2:
        c.raw("http2_protocol_options")
    if (opts := c.child("typed_extension_protocol_options")) is not None:
        for key in list(opts.data):
            hpo = opts.child(str(key))
            if hpo is None:
                continue
            hpo.ignore("@type")
            if (common := hpo.child("common_http_protocol_options")) is not None:
                value = common.integer("max_requests_per_connection", minimum=1)
                per_connection = value if value is not None else per_connection
                common.ignore("idle_timeout")
                common.done()
            if (explicit := hpo.child("explicit_http_config")) is not None:
                http2 = explicit.has("http2_protocol_options")
                explicit.ignore("http2_protocol_options", "http_protocol_options")
                explicit.done()
            hpo.done()
        opts.done()
    return per_connection, http2


# cluster keys that change how Envoy finds or secures hosts, not how requests are limited or retried
_CLUSTER_INERT = (
    "dns_lookup_family",
    "dns_refresh_rate",
    "respect_dns_ttl",
    "transport_socket",
    "upstream_connection_options",
    "per_connection_buffer_limit_bytes",
    "track_cluster_stats",
    "metadata",
)


def _http_managers(listener: _Node) -> list[_Node]:
    """The HTTP connection managers of a listener (their route configs)."""
    out = []
    for chain in listener.children("filter_chains"):
        for f in chain.children("filters"):
            typed = f.child("typed_config")
            if typed is not None and "HttpConnectionManager" in str(typed.data.get("@type", "")):
                out.append(typed)
            elif typed is not None:
                typed.ignore(*typed.data)
            f.ignore(*f.data)
            f.done()
        chain.ignore(*chain.data)
        chain.done()
    listener.ignore(*listener.data)
    listener.done()
    return out


def envoy_policies(
    bootstrap: Mapping[str, Any],
    *,
    clusters: Sequence[str] | None = None,
    strict: bool = True,
) -> dict[str, ImportedPolicies]:
    """Every cluster of an Envoy bootstrap (``static_resources``), with the routes to it.

    Each route's ``retry_policy`` (or its virtual host's) and ``timeout`` are bound to the
    cluster it routes to (``cluster``, or each of ``weighted_clusters``). A cluster reached by
    several routes with different settings gets one entry per route: ``cluster`` for the first
    and ``cluster@route`` for the others (never "last one wins"). A cluster no route reaches
    has no retries and no timeout, as in Envoy. Keys outside clusters and route configurations
    (admin, node, listeners' addresses and filters, stats) are the proxy's own settings.

    Parameters
    ----------
    bootstrap : mapping
        The parsed bootstrap.
    clusters : sequence of str, optional
        Names of the clusters to import (all by default).
    strict : bool, default True
    """
    issues = _Issues("Envoy bootstrap", strict=strict)
    top = _Node(bootstrap, "", issues)
    static = top.child("static_resources")
    top.ignore(*bootstrap)  # admin, node, layered_runtime, stats...: the proxy's own settings
    if static is None:
        issues.invalid("static_resources", None, "the bootstrap's static_resources")
    raw_clusters = static.raw("clusters") or []  # type: ignore[union-attr]
    if not isinstance(raw_clusters, list):
        issues.invalid("static_resources.clusters", raw_clusters, "a list of clusters")
    by_name = {c.get("name"): (i, c) for i, c in enumerate(raw_clusters) if isinstance(c, Mapping)}
    bound: dict[str, list[tuple[str, Mapping[str, Any], Mapping[str, Any] | None]]] = {}
    for listener in static.children("listeners"):  # type: ignore[union-attr]
        for hcm in _http_managers(listener):
            rc = hcm.data.get("route_config")
            if isinstance(rc, Mapping):
                for vi, vh in enumerate(rc.get("virtual_hosts") or []):
                    for ri, r in enumerate(vh.get("routes") or []):
                        action = r.get("route") if isinstance(r, Mapping) else None
                        if not isinstance(action, Mapping):
                            continue  # redirect / direct_response: no upstream
                        names = (
                            [action["cluster"]]
                            if "cluster" in action
                            else [
                                w.get("name")
                                for w in (action.get("weighted_clusters") or {}).get("clusters") or []
                            ]
                        )
                        path = f"{hcm.path}.route_config.virtual_hosts[{vi}].routes[{ri}]"
                        label = r.get("name") or f"{vh.get('name', vi)}/routes[{ri}]"
                        for n in names:
                            bound.setdefault(n, []).append((path + f" ({label})", r, vh.get("retry_policy")))
            hcm.ignore(*hcm.data)
            hcm.done()
    static.ignore(*static.data)  # type: ignore[union-attr]
    static.done()  # type: ignore[union-attr]
    wanted = list(by_name) if clusters is None else list(clusters)
    out: dict[str, ImportedPolicies] = {}
    for name in wanted:
        if name not in by_name:
            issues.invalid(
                "static_resources.clusters",
                sorted(map(str, by_name)),
                f"a list with a cluster named {name!r}",
            )
        i, cluster = by_name[name]
        base = from_envoy_cluster(cluster, None, strict=strict)
        base = dataclasses.replace(
            base, notes=tuple(f"static_resources.clusters[{i}].{n}" for n in base.notes)
        )
        routes = bound.get(name, [])
        if not routes:
            out[name] = base
            continue
        seen: dict[tuple[Any, Any], str] = {}
        for path, r, vh_retry in routes:
            retry, timeout_s, warnings, notes = _envoy_route(
                {**r, "route": {**r["route"], "cluster": name}} if "cluster" not in r["route"] else r,
                name,
                strict=strict,
                path=path.split(" (")[0],
                default_retry=vh_retry,
            )
            if (retry, timeout_s) in seen:
                continue
            key = name if not seen else f"{name}@{path.split(' (')[1][:-1]}"
            seen[(retry, timeout_s)] = key
            out[key] = dataclasses.replace(
                base,
                name=key,
                retry=retry,
                timeout_s=timeout_s,
                warnings=(*base.warnings, *warnings),
                notes=(*base.notes, *notes),
            )
    return out
