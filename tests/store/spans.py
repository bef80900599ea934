"""Build small traces for the analysis tests: one OTLP request from a list of span tuples."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5, None: 0}
STATUS = {"UNSET": 0, "OK": 1, "ERROR": 2}


def span(
    sid: int,
    parent: int | None,
    service: str,
    start_ms: float,
    end_ms: float,
    *,
    kind: str | None = None,
    name: str | None = None,
    status: str = "UNSET",
    attrs: dict[str, Any] | None = None,
    resource: dict[str, Any] | None = None,
    trace: int = 1,
) -> dict[str, Any]:
    return {
        "sid": sid,
        "parent": parent,
        "service": service,
        "start": start_ms,
        "end": end_ms,
        "kind": kind,
        "name": name or f"op{sid}",
        "status": status,
        "attrs": attrs or {},
        "resource": resource or {},
        "trace": trace,
    }


def sid_hex(sid: int) -> str:
    return f"{sid:016x}"


def tid_hex(trace: int = 1) -> str:
    return f"{trace:032x}"


def _set(kv: Any, key: str, value: Any) -> None:
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = str(value)


def request(spans: list[dict[str, Any]]) -> bytes:
    """One ExportTraceServiceRequest: one resource per (service, resource attributes)."""
    req = ExportTraceServiceRequest()
    scopes: dict[tuple, Any] = {}
    for s in spans:
        key = (s["service"], tuple(sorted(s["resource"].items())))
        if key not in scopes:
            rs = req.resource_spans.add()
            if s["service"] is not None:
                _set(rs.resource.attributes.add(), "service.name", s["service"])
            for k, v in s["resource"].items():
                _set(rs.resource.attributes.add(), k, v)
            scopes[key] = rs.scope_spans.add()
        sp = scopes[key].spans.add()
        sp.trace_id = bytes.fromhex(tid_hex(s["trace"]))
        sp.span_id = bytes.fromhex(sid_hex(s["sid"]))
        if s["parent"] is not None:
            sp.parent_span_id = bytes.fromhex(sid_hex(s["parent"]))
        sp.name, sp.kind = s["name"], KINDS[s["kind"]]
        sp.start_time_unix_nano = T0 + round(s["start"] * MS)
        sp.end_time_unix_nano = T0 + round(s["end"] * MS)
        sp.status.code = STATUS[s["status"]]
        for k, v in s["attrs"].items():
            _set(sp.attributes.add(), k, v)
    return req.SerializeToString()
