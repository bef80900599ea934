"""Import traffic policies from Istio, Envoy, resilience4j and gRPC service configs.

One module per format (``_istio``, ``_envoy``, ``_resilience4j``, ``_grpc``) on a shared base
(``_base``: the result type, strict key-by-key reading, durations). Each importer returns
:class:`ImportedPolicies` built from otlp_lab's own policy classes, with the *source system's*
defaults filled in: Istio's when importing Istio, Envoy's when importing Envoy.

Reading a file: :func:`import_all` returns every policy a file holds, keyed by what it applies
to (an Istio host, ``host/subset``, ``host:port``; an Envoy cluster; a resilience4j instance; a
gRPC ``service/method``); :func:`import_yaml` returns one of them (``name=``). Files are read as
they are: JSON (tabs allowed) or YAML, multi-document files, ``kubectl get -o yaml`` Lists,
whole Envoy bootstraps, Spring Boot ``application.yml`` files.

Nothing is dropped quietly. A key that otlp_lab does not model raises
:class:`~otlp_lab.errors.ImportConfigError` naming the full key path and its value::

    DestinationRule key 'spec.trafficPolicy.connectionPool.http.idleTimeout' is not modelled by
    otlp_lab (value '30s'); remove it or ignore it with strict=False

With ``strict=False`` the same sentences are collected in ``ImportedPolicies.warnings``, each
saying what the simulation uses instead. Values that are wrong (a negative count, a malformed
duration) always raise. Keys that only select *which* requests a policy applies to (Istio
``match``, resilience4j ``recordExceptions``) or that do not change the simulated traffic
(TLS, DNS, health indicators) are listed in ``ImportedPolicies.notes``. Keys are matched as
the source systems do: camelCase, PascalCase, snake_case and Spring's kebab-case spellings of
a field are the same field.

How sources map onto otlp_lab (the choices that are not one-to-one):

* Envoy/Istio ``ROUND_ROBIN`` is weighted in Envoy, so it becomes ``"weighted_round_robin"``.
  Istio's default is ``LEAST_REQUEST``.
* Istio ``connectionPool`` / Envoy ``circuit_breakers`` become a
  :class:`~otlp_lab.resilience.ConnectionPoolConfig`, enforced in the simulator as Envoy
  enforces it (503 ``UO`` on overflow).
* Transport failures (``connect-failure``, ``reset``, ``refused-stream``) are outcomes with
  status ``"UNAVAILABLE"``, so ``retryOn`` lists map onto status sets; ``5xx`` means 500-599
  plus ``"UNAVAILABLE"``. Per-try timeouts are always retried.
* Envoy's retry backoff (base 25 ms, cap 10x base, full jitter) becomes
  ``RetryPolicy(initial_backoff_s=0.025, max_backoff_s=0.25, backoff_multiplier=2, jitter="full")``.
* Istio with ``outlierDetection`` sets Envoy's panic threshold to ``minHealthPercent``
  (default 0: panic off), disables success-rate ejection, and turns on locality failover.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from otlp_lab.errors import ConfigFileNotFoundError, ConfigKindError, ConfigSyntaxError, ImportConfigError
from otlp_lab.resilience.config._base import (
    EXAMPLES_DIR,
    FaultInjection,
    ImportedPolicies,
    _canon,
    parse_config_duration_s,
)
from otlp_lab.resilience.config._envoy import envoy_policies, from_envoy_cluster
from otlp_lab.resilience.config._grpc import from_grpc_service_config, grpc_policies
from otlp_lab.resilience.config._istio import ISTIO_DEFAULT_RETRY, from_istio, istio_policies
from otlp_lab.resilience.config._resilience4j import from_resilience4j, resilience4j_policies

__all__ = [
    "EXAMPLES_DIR",
    "ISTIO_DEFAULT_RETRY",
    "FaultInjection",
    "ImportedPolicies",
    "envoy_policies",
    "from_envoy_cluster",
    "from_grpc_service_config",
    "from_istio",
    "from_resilience4j",
    "grpc_policies",
    "import_all",
    "import_yaml",
    "istio_policies",
    "load_documents",
    "parse_config_duration_s",
    "resilience4j_policies",
]

_ISTIO_KINDS = {"DestinationRule", "VirtualService"}
_KNOWN = (
    "Istio DestinationRule / VirtualService (networking.istio.io), an Envoy bootstrap (static_resources)"
    " or Cluster, resilience4j properties, or a gRPC service config (methodConfig)"
)


def load_documents(source: str | Path) -> tuple[list[Mapping[str, Any]], str]:
    """The documents of a config file (or text), and a label for messages.

    JSON is read as JSON (tabs are valid there, not in YAML), anything else as (multi-document)
    YAML; a Kubernetes ``List`` (``kubectl get -o yaml``) becomes its items.

    Raises
    ------
    ConfigFileNotFoundError
        ``source`` names a file that does not exist.
    ConfigSyntaxError
        Neither JSON nor YAML (with line and column).
    ConfigKindError
        No document is a mapping.
    """
    if isinstance(source, Path) or ("\n" not in str(source) and not str(source).lstrip().startswith("{")):
        path = Path(source)
        if not path.is_file():
            if isinstance(source, Path) or any(ch in str(source) for ch in "/\\.") and ":" not in str(source):
                raise ConfigFileNotFoundError(
                    f"config file {str(path)!r} does not exist (or is not a file); give the path of an Istio,"
                    " Envoy, resilience4j or gRPC config",
                    source="file",
                    path=str(path),
                )
            text, label = str(source), "config text"
        else:
            text, label = path.read_text(encoding="utf-8"), str(path)
    else:
        text, label = str(source), "config text"
    docs: list[Any]
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            docs = [json.loads(text)]
        except json.JSONDecodeError as exc:
            try:
                docs = [d for d in yaml.safe_load_all(text) if d is not None]
            except yaml.YAMLError:
                raise ConfigSyntaxError(
                    f"{label} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                    source="json",
                    path=label,
                ) from exc
    else:
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigSyntaxError(
                f"{label} is neither JSON nor valid YAML: {problem}{where}", source="yaml", path=label
            ) from exc
    out: list[Mapping[str, Any]] = []
    for d in docs:
        if (
            isinstance(d, Mapping)
            and d.get("kind") == "List"
            or (isinstance(d, Mapping) and str(d.get("kind", "")).endswith("List") and "items" in d)
        ):
            out.extend(i for i in d.get("items") or [] if isinstance(i, Mapping))
        elif isinstance(d, Mapping):
            out.append(d)
        else:
            raise ConfigKindError(
                f"{label} holds a {type(d).__name__} where a config mapping was expected; it must be {_KNOWN}",
                source="file",
                path=label,
                value=d,
            )
    if not out:
        raise ConfigKindError(f"{label} is empty; it must be {_KNOWN}", source="file", path=label)
    return out, label


def _format(doc: Mapping[str, Any]) -> str | None:
    kind = doc.get("kind")
    api = str(doc.get("apiVersion", ""))
    if kind in _ISTIO_KINDS and (not api or api.startswith("networking.istio.io/")):
        return "istio"
    if kind is not None or doc.get("apiVersion") is not None:
        return None  # another Kubernetes kind
    keys = {_canon(str(k)).split(".")[0] for k in doc}
    if "staticresources" in keys:
        return "envoy-bootstrap"
    if "resilience4j" in keys:
        return "resilience4j"
    if keys & {"methodconfig", "retrythrottling", "loadbalancingconfig", "loadbalancingpolicy"}:
        return "grpc"
    if "name" in doc and keys & {
        "connecttimeout",
        "lbpolicy",
        "circuitbreakers",
        "outlierdetection",
        "loadassignment",
        "type",
        "healthchecks",
    }:
        return "envoy-cluster"
    if "match" in doc or "route" in doc or "retrypolicy" in keys:
        return "envoy-route"
    return None


def import_all(source: str | Path, *, strict: bool = True) -> dict[str, ImportedPolicies]:
    """Every policy in a config file (or text), keyed by what it applies to.

    Keys: Istio ``host``, ``host/subset``, ``host:port`` (and ``...@route`` for a
    VirtualService route with a ``match``); Envoy cluster names (``cluster@route`` when several
    routes with different settings reach one cluster); resilience4j instance names; gRPC
    ``service/method``, ``service`` or ``"*"``.

    Raises
    ------
    ConfigFileNotFoundError, ConfigSyntaxError, ConfigKindError, ImportConfigError

    Examples
    --------
    >>> sorted(import_all(EXAMPLES_DIR / "istio-reviews.yaml"))[:1]
    ['reviews.prod.svc.cluster.local']
    """
    docs, label = load_documents(source)
    formats = [_format(d) for d in docs]
    known = [f for f in formats if f is not None]
    if not known:
        kinds = sorted({f"{d.get('kind')} ({d.get('apiVersion')})" if d.get("kind") else "?" for d in docs})
        first = docs[0]
        what = ", ".join(kinds) if first.get("kind") else f"a mapping with keys {sorted(map(str, first))[:6]}"
        raise ConfigKindError(
            f"{label} holds {what}, not a config otlp_lab imports; it must be {_KNOWN}",
            source="file",
            path=label,
            value=first.get("kind"),
        )
    if len(set(known) - {"envoy-route"}) > 1:
        raise ImportConfigError(
            f"{label} mixes config formats ({', '.join(sorted(set(known)))}); import one format per file",
            source="file",
            path=label,
        )
    fmt = known[0]
    if fmt == "istio":
        return istio_policies([d for d, f in zip(docs, formats, strict=True) if f == "istio"], strict=strict)
    if fmt == "envoy-bootstrap":
        return envoy_policies(docs[formats.index(fmt)], strict=strict)
    if fmt == "resilience4j":
        return resilience4j_policies(docs[formats.index(fmt)], strict=strict)
    if fmt == "grpc":
        return grpc_policies(docs[formats.index(fmt)], strict=strict)
    clusters = [d for d, f in zip(docs, formats, strict=True) if f == "envoy-cluster"]
    routes = [d for d, f in zip(docs, formats, strict=True) if f == "envoy-route"]
    if not clusters:
        raise ConfigKindError(
            f"{label} holds only Envoy routes; add the Cluster they route to", source="file", path=label
        )
    out: dict[str, ImportedPolicies] = {}
    for c in clusters:
        name = c.get("name")
        mine = [r for r in routes if (r.get("route") or r).get("cluster") in (None, name)]
        out[str(name)] = from_envoy_cluster(c, mine[0] if mine else None, strict=strict)
    return out


def _short(key: str) -> str:
    """``reviews.prod.svc.cluster.local/v2`` -> ``reviews/v2`` (Istio's short host names)."""
    host, sep, rest = key.partition("/")
    return host.split(".")[0] + sep + rest


def import_yaml(
    source: str | Path, *, name: str | None = None, strict: bool = True, **selector: Any
) -> ImportedPolicies:
    """One policy from a config file (or text) in any supported format, recognised by its content.

    Parameters
    ----------
    source : str or Path
        A path, or the text itself.
    name : str, optional
        Which policy (a key of :func:`import_all`; Istio hosts also by their short name,
        ``"reviews/v2"``). Default: the only one, or the only top-level one (an Istio host
        without subset, port or route).
    strict : bool, default True
    **selector
        Passed to the format's importer instead (``route_name``, ``instance``,
        ``service``/``method``, ``subset``, ``port``): the older per-format selection.

    Raises
    ------
    ConfigFileNotFoundError, ConfigSyntaxError, ConfigKindError
        The file is missing, not JSON/YAML, or of no kind otlp_lab imports.
    ImportConfigError
        An unmodelled key (strict), a bad value, or no (single) policy of that name.

    Examples
    --------
    >>> p = import_yaml(EXAMPLES_DIR / "istio-reviews.yaml")
    >>> p.source, p.name, p.balancer.policy
    ('istio', 'reviews.prod.svc.cluster.local', 'least_request')
    """
    if selector:
        docs, label = load_documents(source)
        kinds = {d.get("kind"): d for d in docs}
        if "DestinationRule" in kinds or "VirtualService" in kinds:
            return from_istio(
                kinds.get("DestinationRule"), kinds.get("VirtualService"), strict=strict, **selector
            )
        fmt = _format(docs[0])
        if fmt == "resilience4j":
            return from_resilience4j(docs[0], strict=strict, **selector)
        if fmt == "grpc":
            return from_grpc_service_config(docs[0], strict=strict, **selector)
        raise TypeError(f"selector {sorted(selector)} does not apply to {label}")
    policies = import_all(source, strict=strict)
    if name is not None:
        if name in policies:
            return policies[name]
        matches = [k for k in policies if _short(k) == name or _short(k) == _short(name)]
        if len(matches) == 1:
            return policies[matches[0]]
        raise ImportConfigError(
            f"{source if isinstance(source, Path) or chr(10) not in str(source) else 'the config text'} has no"
            f" single policy named {name!r}; it has {sorted(policies)}",
            source="file",
            path="",
            value=name,
        )
    if len(policies) == 1:
        return next(iter(policies.values()))
    tops = [k for k in policies if not any(c in k for c in "/:@")]
    if len(tops) == 1:
        return policies[tops[0]]
    raise ImportConfigError(
        f"the config holds {len(policies)} policies: {sorted(policies)}; pick one with name=... (FILE#NAME on the"
        " command line)",
        source="file",
        path="",
        value=sorted(policies),
    )
