"""Zipkin v2 JSON (a JSON array of spans, as ``POST /api/v2/spans`` takes and the UI downloads)
-> an OTLP/JSON traces request.

``GET /api/v2/traces`` answers a list of traces, each a list of spans: that is accepted too.

The mapping is the OpenTelemetry Collector's Zipkin v2 translator
(``pkg/translator/zipkin/zipkinv2/to_translator.go`` in opentelemetry-collector-contrib, with
the receiver's default ``parse_string_tags: false``):

* spans grouped by ``localEndpoint.serviceName`` (one resource each, ``service.name``; none
  when absent) and by the ``otel.library.name`` / ``otel.library.version`` tags (the scope);
  tags named like resource semantic conventions (``host.name``, ``k8s.pod.name``...) go to the
  resource from the group's first span and never to span attributes;
* ids: hex, zero-padded on the left (64-bit trace ids -> 128-bit with leading zeros);
  ``parentId`` equal to ``id`` is no parent;
* ``kind`` CLIENT/SERVER/PRODUCER/CONSUMER -> span kind; without it a ``span.kind`` tag is
  removed, and ``internal`` -> INTERNAL;
* ``otel.status_code`` tag (``STATUS_CODE_*`` or ``Unset``/``Ok``/``Error``; anything else is
  UNSET) -> status, with ``otel.status_description`` as message (both removed); any ``error``
  tag -> ERROR (removed only when it is ``"true"``);
* ``w3c.tracestate`` tag -> trace state; ``otlp.link.N`` tags -> links (both removed);
* tags -> string attributes; ``localEndpoint`` ipv4/ipv6/port -> ``net.host.ip`` /
  ``net.host.port``; ``remoteEndpoint`` serviceName/ipv4/ipv6/port -> ``peer.service`` /
  ``net.peer.ip`` / ``net.peer.port``;
* ``timestamp``/``duration`` (microseconds) -> start/end; no timestamp -> start 0 and the
  attribute ``otel.zipkin.absentField.startTime = true``;
* annotations -> events (``name|{json attributes}|dropped`` values are split as the
  Collector's Zipkin exporter writes them).
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any

import orjson

from otlp_lab.errors import DecodeError, UnsupportedFormatError
from otlp_lab.otlp._jaeger import NO_SERVICE_NAME, _kv, _list, _micros, _obj, _show, _str

_HEX = re.compile(r"[0-9a-fA-F]+")
_KINDS = {"CLIENT": 3, "SERVER": 2, "PRODUCER": 4, "CONSUMER": 5}
_STATUS = {
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": 2,
    "Unset": 0,
    "Ok": 1,
    "Error": 2,
}
ABSENT_START = "otel.zipkin.absentField.startTime"
SERVICE_NAME_SOURCE = "otlp.service.name.source"
LIB_NAME, LIB_VERSION = "otel.library.name", "otel.library.version"

# Resource semantic conventions (semconv v1.6.1, the translator's list), plus the keys it adds.
_RESOURCE_KEYS = frozenset(
    """
    cloud.provider cloud.account.id cloud.region cloud.availability_zone cloud.platform
    aws.ecs.container.arn aws.ecs.cluster.arn aws.ecs.launchtype aws.ecs.task.arn aws.ecs.task.family
    aws.ecs.task.revision aws.eks.cluster.arn aws.log.group.names aws.log.group.arns aws.log.stream.names
    aws.log.stream.arns container.name container.id container.runtime container.image.name
    container.image.tag deployment.environment device.id device.model.identifier device.model.name
    faas.name faas.id faas.version faas.instance faas.max_memory host.id host.name host.type host.arch
    host.image.name host.image.id host.image.version k8s.cluster.name k8s.node.name k8s.node.uid
    k8s.namespace.name k8s.pod.uid k8s.pod.name k8s.container.name k8s.container.restart_count
    k8s.replicaset.uid k8s.replicaset.name k8s.deployment.uid k8s.deployment.name k8s.statefulset.uid
    k8s.statefulset.name k8s.daemonset.uid k8s.daemonset.name k8s.job.uid k8s.job.name k8s.cronjob.uid
    k8s.cronjob.name os.type os.description os.name os.version process.pid process.executable.name
    process.executable.path process.command process.command_line process.command_args process.owner
    process.runtime.name process.runtime.version process.runtime.description service.name
    service.namespace service.instance.id service.version telemetry.sdk.name telemetry.sdk.language
    telemetry.sdk.version telemetry.auto.version webengine.name webengine.version webengine.description
    opencensus.starttime opencensus.exporterversion opencensus.resourcetype
    """.split()
)
_NON_SPAN = _RESOURCE_KEYS | {SERVICE_NAME_SOURCE, LIB_NAME, LIB_VERSION}


def is_zipkin(doc: Any) -> bool:
    """Whether a parsed JSON document is a Zipkin span list (or a list of traces)."""
    if not isinstance(doc, list):
        return False
    if not doc:
        return True  # an empty span list, as Zipkin accepts
    first = doc[0]
    if isinstance(first, list):
        first = first[0] if first else {}
        return isinstance(first, dict) and ("traceId" in first or not first)
    return isinstance(first, dict) and "traceId" in first


def zipkin_id(raw: Any, digits: int, what: str) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > digits or not _HEX.fullmatch(raw):
        raise DecodeError(
            f"{what} must be a hex id of 1 to {digits} digits (Zipkin ids are lower-hex). Got {_show(raw)} instead."
        )
    return raw.lower().rjust(digits, "0")


def _ip(raw: Any, version: int, what: str) -> str | None:
    if raw is None or raw == "":
        return None
    try:
        addr = ipaddress.ip_address(raw) if isinstance(raw, str) else None
    except ValueError:
        addr = None
    if addr is None:
        raise DecodeError(f"{what} must be an IPv{version} address. Got {_show(raw)} instead.")
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)  # Go prints v4-in-v6 addresses dotted
    return str(addr)


def _endpoint(raw: Any, what: str) -> dict | None:
    if raw is None:
        return None
    ep = _obj(raw, what)
    port = ep.get("port")
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise DecodeError(f"{what}.port must be a port number (0 to 65535). Got {_show(port)} instead.")
    return {
        "serviceName": _str(ep, "serviceName", what),
        "ipv4": _ip(ep.get("ipv4"), 4, f"{what}.ipv4"),
        "ipv6": _ip(ep.get("ipv6"), 6, f"{what}.ipv6"),
        "port": port or 0,
    }


def _json_attrs(text: str) -> list[dict] | None:
    """The Collector's ``jsonMapToAttributeMap``: strings, whole numbers as ints, numbers, bools."""
    try:
        m = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(m, dict):
        return None
    out = []
    for k, v in m.items():
        if isinstance(v, str):
            out.append({"key": k, "value": {"stringValue": v}})
        elif isinstance(v, bool):
            out.append({"key": k, "value": {"boolValue": v}})
        elif isinstance(v, (int, float)):
            if math.isfinite(v) and float(v) == int(v):
                out.append({"key": k, "value": {"intValue": str(int(v))}})
            else:
                out.append({"key": k, "value": {"doubleValue": float(v)}})
    return out


def _split_encoded(value: str, head: int) -> tuple[list[str], str | None, int | None] | None:
    """``a|b|...|{json}|dropped`` as written by the Collector's Zipkin exporter, or None."""
    parts = value.split("|")
    if len(parts) < head + 2:
        return None
    dropped = parts[-1]
    if not dropped.isdigit() or int(dropped) >= 2**32:
        return None
    return parts[:head], "|".join(parts[head:-1]), int(dropped)


def _links(tags: dict[str, str], p: str) -> list[dict]:
    links = []
    for i in range(128):
        key = f"otlp.link.{i}"
        if key not in tags:
            break
        val = tags.pop(key)
        got = _split_encoded(val, 3)
        if val.count("|") < 4:
            continue
        if got is None:
            raise DecodeError(
                f"{p}.tags.{key} is not 'traceId|spanId|traceState|{{json}}|dropped'. Got {_show(val)}."
            )
        (tid, sid, state), attrs_text, dropped = got
        attrs = _json_attrs(attrs_text or "")
        if attrs is None:
            raise DecodeError(f"{p}.tags.{key} attributes are not a JSON object. Got {_show(attrs_text)}.")
        link: dict[str, Any] = {
            "traceId": zipkin_id(tid, 32, f"{p}.tags.{key} trace id") if tid else "",
            "spanId": zipkin_id(sid, 16, f"{p}.tags.{key} span id") if sid else "",
            "traceState": state,
            "droppedAttributesCount": dropped,
        }
        if len(tid) not in (0, 32) or len(sid) not in (0, 16):
            raise DecodeError(f"{p}.tags.{key} ids must be 32 and 16 hex digits. Got {_show(val)}.")
        if attrs:
            link["attributes"] = attrs
        links.append(link)
    return links


def _events(annotations: Any, p: str) -> list[dict]:
    events = []
    for i, a in enumerate(_list(annotations, f"{p}.annotations")):
        ap = f"{p}.annotations[{i}]"
        a = _obj(a, ap)
        value = _str(a, "value", ap)
        ev: dict[str, Any] = {
            "timeUnixNano": str(_micros(a.get("timestamp"), f"{ap}.timestamp")),
            "name": value.split("|")[0],
        }
        parts = value.split("|")
        if len(parts) >= 3:
            attrs = _json_attrs("|".join(parts[1:-1]))
            if attrs is None or not parts[-1].isdigit():
                # The Collector refuses the whole request here; a plain annotation that happens to
                # contain two '|' is kept whole as the event name instead.
                ev["name"] = value
            else:
                if attrs:
                    ev["attributes"] = attrs
                ev["droppedAttributesCount"] = int(parts[-1])
        events.append(ev)
    return events


def _span(sp: dict, p: str, tags: dict[str, str]) -> dict:
    trace_id = zipkin_id(sp.get("traceId"), 32, f"{p}.traceId")
    span_id = zipkin_id(sp.get("id"), 16, f"{p}.id")
    out: dict[str, Any] = {"traceId": trace_id, "spanId": span_id, "name": _str(sp, "name", p)}
    if "w3c.tracestate" in tags:
        out["traceState"] = tags.pop("w3c.tracestate")
    parent = sp.get("parentId")
    if parent not in (None, ""):
        parent = zipkin_id(parent, 16, f"{p}.parentId")
        if parent != span_id:
            out["parentSpanId"] = parent
    kind = sp.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise DecodeError(
            f"{p}.kind must be CLIENT, SERVER, PRODUCER or CONSUMER. Got {_show(kind)} instead."
        )
    k = _KINDS.get(kind or "", 0)
    if not k and "span.kind" in tags:
        k = 1 if tags.pop("span.kind") == "internal" else 0
    out["kind"] = k

    status: dict[str, Any] = {}
    if "otel.status_code" in tags:
        status["code"] = _STATUS.get(tags.pop("otel.status_code"), 0)
        if "otel.status_description" in tags:
            status["message"] = tags.pop("otel.status_description")
    if "error" in tags:
        status["code"] = 2
        if tags["error"] == "true":
            del tags["error"]
    if status:
        out["status"] = status
    links = _links(tags, p)

    attrs: dict[str, dict] = {k2: {"stringValue": v} for k2, v in tags.items() if k2 not in _NON_SPAN}
    local = _endpoint(sp.get("localEndpoint"), f"{p}.localEndpoint")
    remote = _endpoint(sp.get("remoteEndpoint"), f"{p}.remoteEndpoint")
    if local:
        for ip in (local["ipv4"], local["ipv6"]):
            if ip:
                attrs["net.host.ip"] = {"stringValue": ip}
        if local["port"] > 0:
            attrs["net.host.port"] = {"intValue": str(local["port"])}
    if remote:
        if remote["serviceName"]:
            attrs["peer.service"] = {"stringValue": remote["serviceName"]}
        for ip in (remote["ipv4"], remote["ipv6"]):
            if ip:
                attrs["net.peer.ip"] = {"stringValue": ip}
        if remote["port"] > 0:
            attrs["net.peer.port"] = {"intValue": str(remote["port"])}
    duration = _micros(sp.get("duration"), f"{p}.duration")
    ts = sp.get("timestamp")
    start = _micros(ts, f"{p}.timestamp")
    if not start:
        attrs[ABSENT_START] = {"boolValue": True}
    out["startTimeUnixNano"] = str(start)
    out["endTimeUnixNano"] = str(start + duration)
    if attrs:
        out["attributes"] = _kv(attrs)
    events = _events(sp.get("annotations"), p)
    if events:
        out["events"] = events
    if links:
        out["links"] = links
    return out


def _tags(sp: dict, p: str) -> dict[str, str]:
    raw = sp.get("tags")
    if raw is None:
        return {}
    tags = _obj(raw, f"{p}.tags")
    for k, v in tags.items():
        if not isinstance(v, str):
            raise DecodeError(
                f"{p}.tags.{k} must be a string (Zipkin tag values are strings). Got {_show(v)} instead."
            )
    return dict(tags)


def zipkin_to_otlp(doc: Any) -> dict:
    """An OTLP/JSON ``ExportTraceServiceRequest`` dict for a Zipkin v2 JSON span list.

    Raises :class:`DecodeError` naming the field path (``[3].traceId``, ``[0][2].id``).
    """
    if not isinstance(doc, list):
        raise UnsupportedFormatError(
            f"Zipkin v2 JSON must be a list of spans. Got a JSON {type(doc).__name__} instead."
        )
    flat: list[tuple[str, dict]] = []
    for i, item in enumerate(doc):
        if isinstance(item, list):  # GET /api/v2/traces: a list of traces
            flat.extend((f"[{i}][{j}]", _obj(sp, f"[{i}][{j}]")) for j, sp in enumerate(item))
        else:
            flat.append((f"[{i}]", _obj(item, f"[{i}]")))
    for p, sp in flat:
        if "binaryAnnotations" in sp:
            raise UnsupportedFormatError(
                f"{p} has 'binaryAnnotations': this is Zipkin v1 JSON; only Zipkin v2 JSON (tags, "
                "localEndpoint) is read. Zipkin's server converts v1 to v2 (GET /api/v2/trace/<id>)"
            )

    def service(sp: dict) -> str:
        ep = sp.get("localEndpoint")
        name = ep.get("serviceName") if isinstance(ep, dict) else None
        return name if isinstance(name, str) and name else NO_SERVICE_NAME

    def library(sp: dict) -> str:
        tags = sp.get("tags")
        lib = tags.get(LIB_NAME, "") if isinstance(tags, dict) else ""
        return lib if isinstance(lib, str) else ""

    flat.sort(key=lambda ps: (service(ps[1]), library(ps[1])))
    resource_spans: list[dict] = []
    prev_service, prev_lib, spans = None, None, None
    for p, sp in flat:
        tags = _tags(sp, p)
        svc = service(sp)
        if svc != prev_service:
            prev_service, prev_lib = svc, None
            attrs: dict[str, dict] = {}
            if svc != NO_SERVICE_NAME:
                source = tags.pop(SERVICE_NAME_SOURCE, "") or "service.name"
                attrs[source] = {"stringValue": svc}
                for key in _RESOURCE_KEYS:
                    if key in tags:
                        attrs[key] = {"stringValue": tags.pop(key)}
            resource_spans.append({"resource": {"attributes": _kv(attrs)}, "scopeSpans": []})
        lib = library(sp)
        if lib != prev_lib:
            prev_lib = lib
            scope = {}
            if lib:
                scope = {"name": tags.pop(LIB_NAME, ""), "version": tags.pop(LIB_VERSION, "")}
            spans = []
            resource_spans[-1]["scopeSpans"].append({"scope": scope, "spans": spans})
        assert spans is not None
        spans.append(_span(sp, p, tags))
    return {"resourceSpans": resource_spans}
