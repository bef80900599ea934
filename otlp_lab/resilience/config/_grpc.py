"""gRPC service config (JSON or YAML): method configs, retry throttling, load balancing."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

from otlp_lab.errors import ImportConfigError
from otlp_lab.resilience._balancers import LoadBalancerConfig
from otlp_lab.resilience._retry import HedgingPolicy, RetryPolicy, RetryThrottle
from otlp_lab.resilience.config._base import ImportedPolicies, _canon, _Issues, _Node

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
            name = _get(names[0], "service")
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


def _get(mapping: Any, key: str) -> Any:
    """``mapping[key]`` in any spelling (``name``/``Name``, ``service``/``Service``)."""
    if not isinstance(mapping, Mapping):
        return None
    return next((v for k, v in mapping.items() if _canon(str(k)) == _canon(key)), None)


def grpc_policies(config: Mapping[str, Any] | str, *, strict: bool = True) -> dict[str, ImportedPolicies]:
    """One policy per method name of a gRPC service config: ``"service/method"``, ``"service"``
    (the service's default) or ``"*"`` (the empty name: every method), as gRPC resolves them."""
    data = yaml.safe_load(config) if isinstance(config, str) else config
    out: dict[str, ImportedPolicies] = {}
    for mc in _get(data, "methodConfig") or []:
        for entry in _get(mc, "name") or [{}]:
            svc, meth = _get(entry, "service") or "", _get(entry, "method") or ""
            key = f"{svc}/{meth}" if meth else (svc or "*")
            if key in out:
                raise ImportConfigError(
                    f"gRPC service config names {key!r} in two methodConfig entries; gRPC rejects such a config.",
                    source="gRPC service config",
                    path="methodConfig",
                    value=key,
                )
            p = from_grpc_service_config(data, service=svc, method=meth or None, strict=strict)
            out[key] = dataclasses.replace(p, name=key)
    if not out:
        out["*"] = from_grpc_service_config(data, strict=strict)
    return out


def _grpc_method_config(configs: list[_Node], service: str | None, method: str | None) -> _Node | None:
    def rank(node: _Node) -> int | None:
        best = None
        for entry in _get(node.data, "name") or [{}]:
            svc, meth = _get(entry, "service") or "", _get(entry, "method") or ""
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
