"""Jaeger JSON (the query API and the UI's "Download JSON") -> an OTLP/JSON traces request.

The query API answers ``{"data": [trace, ...], "total": ..., "errors": ...}``; one trace is
``{"traceID", "spans": [...], "processes": {"p1": {"serviceName", "tags"}}}``. Spans name
their process by ``processID`` (or embed it as ``process``). Tags are
``{"key", "type", "value"}`` with type string/bool/int64/float64/binary.

The mapping is the OpenTelemetry Collector's Jaeger translator
(``pkg/translator/jaeger/jaegerproto_to_traces.go`` in opentelemetry-collector-contrib;
the JSON format is the same model as the api_v2 protobuf it reads):

* one resource per distinct process: ``serviceName`` -> ``service.name``, process tags ->
  typed attributes, ``hostname`` -> ``host.name`` and ``jaeger.version`` ->
  ``opencensus.exporterversion = "Jaeger-<v>"`` (when the target key is not already set);
* the ``otel.scope.name`` / ``otel.scope.version`` tags -> the instrumentation scope;
* ids: hex, leading zeros restored (``"1"`` -> 16/32 hex digits);
* parent: the first CHILD_OF reference in the same trace, else the first FOLLOWS_FROM one
  (Jaeger's ``Span.ParentSpanID``); every other reference -> a link with
  ``opentracing.ref_type`` = ``child_of`` / ``follows_from``;
* ``span.kind`` tag -> span kind (removed); ``w3c.tracestate`` -> trace state (removed);
* status: ``error=true`` (bool) -> ERROR with ``otel.status_description`` (removed) or
  ``http.status_message`` as message; else ``otel.status_code`` OK/ERROR (removed, always)
  with ``otel.status_description``; else ``http.status_code`` (4xx is ERROR for CLIENT
  spans only, 5xx and <100 always);
* logs -> events at their timestamps, the ``event`` field -> the event name (removed).

The result is an ordinary OTLP/JSON request, decoded by the OTLP/JSON decoder, so a Jaeger
file lands in exactly the staging tables an OTLP file would.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from otlp_lab.errors import DecodeError, UnsupportedFormatError
from otlp_lab.otlp._json import INT64, json_double, json_int

NO_SERVICE_NAME = "OTLPResourceNoServiceName"
_HEX = re.compile(r"[0-9a-fA-F]+")
_QUERY_KEYS = {"data", "total", "limit", "offset", "errors"}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_KINDS = {"client": 3, "server": 2, "producer": 4, "consumer": 5, "internal": 1}
_TAG_TYPES = ("string", "bool", "int64", "float64", "binary")


def is_jaeger(doc: Any) -> bool:
    """Whether a parsed JSON document is Jaeger's query API answer or one Jaeger trace."""
    if not isinstance(doc, dict):
        return False
    data = doc.get("data")
    if isinstance(data, list) and set(doc) <= _QUERY_KEYS:
        return all(isinstance(t, dict) and "spans" in t for t in data[:8])
    spans = doc.get("spans")
    if not isinstance(spans, list):
        return False
    if "processes" in doc or "traceID" in doc:
        return True
    first = spans[0] if spans else None  # api_v2 protobuf JSON: refused by name in jaeger_to_otlp
    return isinstance(first, dict) and "traceId" in first and "spanId" in first and "process" in first


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def jaeger_id(raw: Any, digits: int, what: str) -> str:
    """A Jaeger trace (32) or span (16) id: hex of 1..``digits`` digits, zero-padded."""
    if not isinstance(raw, str) or not raw or len(raw) > digits or not _HEX.fullmatch(raw):
        raise DecodeError(
            f"{what} must be a hex id of 1 to {digits} digits (Jaeger JSON ids are hex). Got {_show(raw)} instead."
        )
    return raw.lower().rjust(digits, "0")


def _micros(raw: Any, what: str) -> int:
    """Microseconds since the epoch (or a duration in microseconds) as nanoseconds."""
    if raw is None:
        return 0
    v = json_int(raw, what)
    if v < 0:
        raise DecodeError(f"{what} must not be negative. Got {v} instead.")
    return v * 1000


def _list(raw: Any, what: str) -> list:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise DecodeError(f"{what} must be a list. Got {type(raw).__name__} {_show(raw)} instead.")
    return raw


def _obj(raw: Any, what: str) -> dict:
    if not isinstance(raw, dict):
        raise DecodeError(f"{what} must be an object. Got {type(raw).__name__} {_show(raw)} instead.")
    return raw


def _str(d: dict, key: str, what: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise DecodeError(f"{what}.{key} must be a string. Got {_show(v)} instead.")
    return v


def tag_value(tag: dict, what: str) -> dict:
    """One Jaeger tag's value as an OTLP/JSON AnyValue, typed by its ``type``.

    Values are native JSON (the query API) or strings (the embedded-process / storage form):
    ``"true"``, ``"42"``, ``"72.5"``; int64 beyond 2**53 comes as a decimal string; binary
    is base64 (the query API) or, failing that, hex (the storage form).
    """
    t = tag.get("type", "string")
    v = tag.get("value")
    vw = f"{what}.value"
    if t == "string":
        if not isinstance(v, str):
            raise DecodeError(f"{vw} must be a string (type 'string'). Got {_show(v)} instead.")
        return {"stringValue": v}
    if t == "bool":
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, str) and (v in _TRUE or v in _FALSE):
            return {"boolValue": v in _TRUE}
        raise DecodeError(f"{vw} must be true or false (type 'bool'). Got {_show(v)} instead.")
    if t == "int64":
        return {"intValue": str(json_int(v, vw, INT64))}
    if t == "float64":
        return {"doubleValue": json_double(v, vw)}
    if t == "binary":
        if isinstance(v, str):
            try:
                raw = base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                try:
                    raw = bytes.fromhex(v)
                except ValueError:
                    raw = None
            if raw is not None:
                return {"bytesValue": base64.b64encode(raw).decode()}
        raise DecodeError(f"{vw} must be base64 (or hex) text (type 'binary'). Got {_show(v)} instead.")
    raise DecodeError(f"{what}.type must be one of {list(_TAG_TYPES)}. Got {_show(t)} instead.")


def tags_to_attrs(tags: Any, what: str, out: dict[str, dict] | None = None) -> dict[str, dict]:
    """Jaeger tags as ``{key: AnyValue}`` in order (a repeated key keeps its first place, last value)."""
    out = {} if out is None else out
    for i, tag in enumerate(_list(tags, what)):
        tw = f"{what}[{i}]"
        tag = _obj(tag, tw)
        key = tag.get("key")
        if not isinstance(key, str):
            raise DecodeError(f"{tw}.key must be a string. Got {_show(key)} instead.")
        out[key] = tag_value(tag, tw)
    return out


def _as_str(v: dict | None) -> str:
    """pcommon's ``Value.Str()``: the string, or "" for any other type."""
    return v.get("stringValue", "") if v else ""


def _kv(attrs: dict[str, dict]) -> list[dict]:
    return [{"key": k, "value": v} for k, v in attrs.items()]


def _resource(process: dict, what: str) -> dict[str, dict]:
    service = _str(process, "serviceName", what)
    if service == NO_SERVICE_NAME:
        return {}
    tags = process.get("tags")
    if service == "" and tags is None:
        return {}
    attrs: dict[str, dict] = {}
    if service:
        attrs["service.name"] = {"stringValue": service}
    tags_to_attrs(tags, f"{what}.tags", attrs)
    if "hostname" in attrs and "host.name" not in attrs:
        attrs["host.name"] = attrs.pop("hostname")
    if "jaeger.version" in attrs and "opencensus.exporterversion" not in attrs:
        version = _as_str(attrs.pop("jaeger.version"))
        attrs["opencensus.exporterversion"] = {"stringValue": "Jaeger-" + version}
    return attrs


def _http_status(v: dict, kind: int) -> int | None:
    """Status code from an ``http.status_code`` attribute (None: not an int or int string)."""
    if "intValue" in v:
        code = int(v["intValue"])
    elif "stringValue" in v and re.fullmatch(r"[+-]?[0-9]+", v["stringValue"]):
        code = int(v["stringValue"])
    else:
        return None
    if 400 <= code < 500 and kind in (2, 3):
        return 2 if kind == 3 else 0
    return 0 if 100 <= code < 399 else 2


def _status(attrs: dict[str, dict], kind: int) -> dict | None:
    code, message, exists = 0, "", False
    err = attrs.get("error")
    if err is not None and err.get("boolValue") is True:
        code, exists = 2, True
        del attrs["error"]
        if "otel.status_description" in attrs:
            message = _as_str(attrs.pop("otel.status_description"))
        elif "http.status_message" in attrs:
            message = _as_str(attrs["http.status_message"])
    if "otel.status_code" in attrs:
        sc = attrs.pop("otel.status_code")
        if not exists:
            exists = True
            code = {"OK": 1, "ERROR": 2}.get(_as_str(sc).upper(), 0)
            if "otel.status_description" in attrs:
                message = _as_str(attrs.pop("otel.status_description"))
    elif not exists and "http.status_code" in attrs:
        got = _http_status(attrs["http.status_code"], kind)
        if got is not None:
            if got:
                code, exists = got, True
            if "http.status_message" in attrs:
                message = _as_str(attrs["http.status_message"])
    if not exists:
        return None
    return {"code": code, "message": message}


def _span(sp: dict, p: str) -> tuple[tuple[str, str], dict]:
    trace_id = jaeger_id(sp.get("traceID"), 32, f"{p}.traceID")
    span_id = jaeger_id(sp.get("spanID"), 16, f"{p}.spanID")
    name = _str(sp, "operationName", p)
    start = _micros(sp.get("startTime"), f"{p}.startTime")
    end = start + _micros(sp.get("duration"), f"{p}.duration")

    tag_list = list(_list(sp.get("tags"), f"{p}.tags"))
    scope = ("", "")
    for i, t in enumerate(tag_list):  # the translator takes the scope out of the tags first
        if isinstance(t, dict) and t.get("key") == "otel.scope.name":
            sname = t.get("value") if t.get("type", "string") == "string" else ""
            del tag_list[i]
            version = ""
            for j, t2 in enumerate(tag_list):
                if isinstance(t2, dict) and t2.get("key") == "otel.scope.version":
                    version = t2.get("value") if t2.get("type", "string") == "string" else ""
                    del tag_list[j]
                    break
            scope = (sname if isinstance(sname, str) else "", version if isinstance(version, str) else "")
            break
    attrs = tags_to_attrs(tag_list, f"{p}.tags")
    kind = 0
    if "span.kind" in attrs:
        kind = _KINDS.get(_as_str(attrs.pop("span.kind")), 0)
    status = _status(attrs, kind)
    trace_state = _as_str(attrs.pop("w3c.tracestate")) if "w3c.tracestate" in attrs else ""

    refs = []
    raw_refs = _list(sp.get("references"), f"{p}.references")
    if not raw_refs and sp.get("parentSpanID"):  # the old embedded form's parent field
        raw_refs = [{"refType": "CHILD_OF", "traceID": sp.get("traceID"), "spanID": sp["parentSpanID"]}]
    for i, r in enumerate(raw_refs):
        rp = f"{p}.references[{i}]"
        r = _obj(r, rp)
        rtype = r.get("refType", "CHILD_OF")
        if rtype not in ("CHILD_OF", "FOLLOWS_FROM"):
            raise DecodeError(
                f"{rp}.refType must be 'CHILD_OF' or 'FOLLOWS_FROM'. Got {_show(rtype)} instead."
            )
        refs.append(
            (
                rtype,
                jaeger_id(r.get("traceID"), 32, f"{rp}.traceID"),
                jaeger_id(r.get("spanID"), 16, f"{rp}.spanID"),
            )
        )
    parent = ""
    follows = ""
    for rtype, rt, rs in refs:
        if rt != trace_id:
            continue
        if rtype == "CHILD_OF":
            parent = rs
            break
        if not follows:
            follows = rs
    parent = parent or follows
    if parent == "0" * 16:
        parent = ""
    links = [
        {
            "traceId": rt,
            "spanId": rs,
            "attributes": [
                {
                    "key": "opentracing.ref_type",
                    "value": {"stringValue": "child_of" if rtype == "CHILD_OF" else "follows_from"},
                }
            ],
        }
        for rtype, rt, rs in refs
        if not (rs == (parent or "0" * 16) and rtype == "CHILD_OF")
    ]

    events = []
    for i, log in enumerate(_list(sp.get("logs"), f"{p}.logs")):
        lp = f"{p}.logs[{i}]"
        log = _obj(log, lp)
        ev: dict[str, Any] = {"timeUnixNano": str(_micros(log.get("timestamp"), f"{lp}.timestamp"))}
        fields = tags_to_attrs(log.get("fields"), f"{lp}.fields")
        if "event" in fields:
            ev["name"] = _as_str(fields.pop("event"))
        if fields:
            ev["attributes"] = _kv(fields)
        events.append(ev)

    out: dict[str, Any] = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
    }
    if parent:
        out["parentSpanId"] = parent
    if trace_state:
        out["traceState"] = trace_state
    if attrs:
        out["attributes"] = _kv(attrs)
    if status is not None:
        out["status"] = status
    if events:
        out["events"] = events
    if links:
        out["links"] = links
    return scope, out


def jaeger_to_otlp(doc: Any) -> dict:
    """An OTLP/JSON ``ExportTraceServiceRequest`` dict for a Jaeger JSON document.

    Raises :class:`DecodeError` naming the field path (``data[0].spans[3].traceID``).
    """
    if isinstance(doc, dict) and "data" in doc and set(doc) <= _QUERY_KEYS:
        traces = [(f"data[{i}]", t) for i, t in enumerate(_list(doc.get("data"), "data"))]
    elif isinstance(doc, dict):
        traces = [("", doc)]
        if "processes" not in doc and "traceID" not in doc:
            raise UnsupportedFormatError(
                "this is Jaeger's api_v2 protobuf JSON (spans with traceId/spanId and an embedded process), "
                "which is not read; export the trace as the Jaeger UI's 'Download JSON' or from the query "
                "API (/api/traces/<id>) instead"
            )
    else:
        raise UnsupportedFormatError(
            f"Jaeger JSON must be an object. Got a JSON {type(doc).__name__} instead."
        )
    # resource key -> (attributes, {scope: spans}); first-seen order
    groups: dict[bytes, tuple[dict[str, dict], dict[tuple[str, str], list[dict]]]] = {}
    for tp, trace in traces:
        trace = _obj(trace, tp or "the trace")
        pre = f"{tp}." if tp else ""
        processes = trace.get("processes") or {}
        processes = _obj(processes, f"{pre}processes")
        for i, sp in enumerate(_list(trace.get("spans"), f"{pre}spans")):
            p = f"{pre}spans[{i}]"
            sp = _obj(sp, p)
            if "process" in sp and sp["process"] is not None:
                proc, procp = _obj(sp["process"], f"{p}.process"), f"{p}.process"
            else:
                pid = sp.get("processID")
                if pid not in processes:
                    raise DecodeError(
                        f"{p}.processID {_show(pid)} is not among the trace's processes {sorted(processes)[:5]}"
                    )
                proc, procp = _obj(processes[pid], f"{pre}processes.{pid}"), f"{pre}processes.{pid}"
            key = orjson.dumps([proc.get("serviceName"), proc.get("tags")])
            if key not in groups:
                groups[key] = (_resource(proc, procp), {})
            scope, span = _span(sp, p)
            groups[key][1].setdefault(scope, []).append(span)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _kv(attrs)},
                "scopeSpans": [
                    {"scope": {"name": name, "version": version}, "spans": spans}
                    for (name, version), spans in scopes.items()
                ],
            }
            for attrs, scopes in groups.values()
        ]
    }
