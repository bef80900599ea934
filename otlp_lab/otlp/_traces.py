"""Traces: ``ExportTraceServiceRequest`` (protobuf view or OTLP/JSON dict) -> staging tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otlp_lab.errors import DecodeError
from otlp_lab.otlp._batches import (
    I64,
    AttrLists,
    Builder,
    check_id_lengths,
    ints,
    iter_json_batches,
    iter_pb_batches,
    json_get,
    json_str,
    json_u32,
    times,
)
from otlp_lab.otlp._json import json_enum, json_hex_id, json_item, json_list, json_object, json_time
from otlp_lab.otlp._kvbulk import RawKvLists
from otlp_lab.otlp.staging import SPAN_KINDS, STATUS_CODES

_KIND_BY_NAME = dict(Span.SpanKind.items()) | {k: n for n, k in enumerate(SPAN_KINDS)}
_CODE_BY_NAME = dict(Status.StatusCode.items()) | {k: n for n, k in enumerate(STATUS_CODES)}


class _StatusCache(dict):
    __slots__ = ()

    def __missing__(self, raw: bytes) -> tuple[int, str]:
        try:
            st = Status.FromString(raw)
        except Exception as exc:
            raise DecodeError(f"status is not a valid Status message ({exc})") from None
        v = (st.code, st.message)
        self[raw] = v
        return v


enum_value = json_enum
hex_id = json_hex_id

# the JSON fast path (SpanBuilder._span_json_fast): canonical keys, common values only
_FAST_SPAN_KEYS = frozenset(
    {
        "traceId",
        "spanId",
        "parentSpanId",
        "traceState",
        "name",
        "kind",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "attributes",
        "status",
        "flags",
        "droppedAttributesCount",
        "droppedEventsCount",
        "droppedLinksCount",
    }
)
_FAST_STATUS_KEYS = frozenset({"code", "message"})
_FAST_U32 = ("flags", "droppedAttributesCount", "droppedEventsCount", "droppedLinksCount")
_FAST_KIND = {n: n for n in range(6)} | _KIND_BY_NAME
_FAST_CODE = {**{n: n for n in range(3)}, **_CODE_BY_NAME}


def _fast_time(raw: Any) -> int | None:
    """Unix nanoseconds from the common forms (a decimal string or an int); ``None`` otherwise."""
    if raw is None:
        return 0
    if type(raw) is str:
        if not (raw.isascii() and raw.isdigit()):
            return None
        raw = int(raw)
    elif type(raw) is not int:
        return None
    return raw if 0 <= raw < 2**64 else None


def _is_u32(v: Any) -> bool:
    return type(v) is int and 0 <= v < 2**32


class SpanBuilder(Builder):
    def __init__(self) -> None:
        super().__init__()
        self.trace_id: list[bytes] = []
        self.span_id: list[bytes] = []
        self.parent: list[bytes] = []
        self.trace_state: list[str] = []
        self.name: list[str] = []
        self.kind: list[int] = []
        self.start: list[int] = []
        self.end: list[int] = []
        self.status: list[tuple[int, str]] = []
        self.flags: list[int] = []
        self.d_attrs: list[int] = []
        self.d_events: list[int] = []
        self.d_links: list[int] = []
        self.span_attrs = AttrLists()
        self.span_raw = RawKvLists()  # the protobuf path's: decoded in bulk by tables()
        self._status = _StatusCache()
        # events and links
        self.ev: dict[str, list[Any]] = {
            k: [] for k in ("trace_id", "span_id", "seq", "time", "name", "dropped", "service")
        }
        self.ev_attrs = AttrLists()
        self.ln: dict[str, list[Any]] = {
            k: []
            for k in ("trace_id", "span_id", "seq", "l_trace", "l_span", "trace_state", "dropped", "flags")
        }
        self.ln_attrs = AttrLists()

    # ---------------------------------------------------------------- protobuf
    def add_spans_pb(self, spans: Any) -> None:
        tid, sid, par = self.trace_id.append, self.span_id.append, self.parent.append
        ts, nm, kd = self.trace_state.append, self.name.append, self.kind.append
        st, en, stat, fl = self.start.append, self.end.append, self.status.append, self.flags.append
        da, de, dl = self.d_attrs.append, self.d_events.append, self.d_links.append
        raws = self.span_raw.raws
        aext, aoff = raws.extend, self.span_raw.offsets.append
        scache = self._status
        for sp in spans:
            tid(sp.trace_id)
            sid(sp.span_id)
            par(sp.parent_span_id)
            ts(sp.trace_state)
            nm(sp.name)
            kd(sp.kind)
            st(sp.start_time_unix_nano)
            en(sp.end_time_unix_nano)
            aext(sp.attributes)
            aoff(len(raws))
            stat(scache[sp.status])
            fl(sp.flags)
            da(sp.dropped_attributes_count)
            de(sp.dropped_events_count)
            dl(sp.dropped_links_count)
            if sp.events:
                self._events_pb(sp.trace_id, sp.span_id, sp.events)
            if sp.links:
                self._links_pb(sp.trace_id, sp.span_id, sp.links)
        self.n += len(spans)

    def _events_pb(self, trace_id: bytes, span_id: bytes, events: Any) -> None:
        ev, svc = self.ev, self.ctx["service_name"][-1]
        for seq, raw in enumerate(events):
            try:
                e = Span.Event.FromString(raw)
            except Exception as exc:
                raise DecodeError(f"span event is not a valid Span.Event message ({exc})") from None
            ev["trace_id"].append(trace_id)
            ev["span_id"].append(span_id)
            ev["seq"].append(seq)
            ev["time"].append(e.time_unix_nano)
            ev["name"].append(e.name)
            ev["dropped"].append(e.dropped_attributes_count)
            ev["service"].append(svc)
            self.ev_attrs.idx.extend(self.attrs.index_pb_objects(e.attributes))
            self.ev_attrs.offsets.append(len(self.ev_attrs.idx))

    def _links_pb(self, trace_id: bytes, span_id: bytes, links: Any) -> None:
        for seq, raw in enumerate(links):
            try:
                li = Span.Link.FromString(raw)
            except Exception as exc:
                raise DecodeError(f"span link is not a valid Span.Link message ({exc})") from None
            self._add_link(
                trace_id,
                span_id,
                seq,
                li.trace_id,
                li.span_id,
                li.trace_state,
                li.dropped_attributes_count,
                li.flags,
            )
            self.ln_attrs.idx.extend(self.attrs.index_pb_objects(li.attributes))
            self.ln_attrs.offsets.append(len(self.ln_attrs.idx))

    def _add_link(
        self, tid: bytes, sid: bytes, seq: int, lt: bytes, ls: bytes, state: str, dropped: int, flags: int
    ) -> None:
        ln = self.ln
        ln["trace_id"].append(tid)
        ln["span_id"].append(sid)
        ln["seq"].append(seq)
        ln["l_trace"].append(lt)
        ln["l_span"].append(ls)
        ln["trace_state"].append(state)
        ln["dropped"].append(dropped)
        ln["flags"].append(flags)

    # ---------------------------------------------------------------- JSON
    def add_spans_json(self, spans: list, path: str, offset: int = 0) -> None:
        fast = self._span_json_fast
        for k, sp in enumerate(spans, offset):
            if not fast(sp, path, k):
                self._add_span_json(sp, f"{path}[{k}]")
        self.n += len(spans)

    def _span_json_fast(self, sp: Any, path: str, k: int) -> bool:
        """Add one span in the canonical camelCase form without events or links, checking each
        field inline; ``False`` (nothing added) for anything else, which :meth:`_add_span_json`
        then reads (with the precise error messages)."""
        if type(sp) is not dict or not sp.keys() <= _FAST_SPAN_KEYS:
            return False
        g = sp.get
        tid, sid, par = g("traceId"), g("spanId"), g("parentSpanId") or ""
        try:
            if len(tid) != 32 or len(sid) != 16 or (par and len(par) != 16):
                return False
            tid, sid = bytes.fromhex(tid), bytes.fromhex(sid)  # 16/8 bytes only when every character is hex
            par = bytes.fromhex(par)
        except (TypeError, ValueError):
            return False
        if len(tid) != 16 or len(sid) != 8 or (par and len(par) != 8):
            return False
        name, state, kind = g("name", ""), g("traceState", ""), g("kind", 0)
        if type(name) is not str or type(state) is not str:
            return False
        kind = _FAST_KIND.get(kind) if type(kind) is not bool else None
        start, end = _fast_time(g("startTimeUnixNano")), _fast_time(g("endTimeUnixNano"))
        status = g("status")
        if status is None:
            code, msg = 0, ""
        elif type(status) is dict and status.keys() <= _FAST_STATUS_KEYS:
            code, msg = status.get("code", 0), status.get("message", "")
            code = _FAST_CODE.get(code) if type(code) is not bool else None
            if type(msg) is not str:
                return False
        else:
            return False
        counts = [g(f, 0) for f in _FAST_U32]
        if (
            kind is None
            or code is None
            or start is None
            or end is None
            or not all(_is_u32(c) for c in counts)
        ):
            return False
        attrs = g("attributes")
        idx = self.attrs.index_json(attrs, f"{path}[{k}].attributes") if attrs else ()
        self.trace_id.append(tid)
        self.span_id.append(sid)
        self.parent.append(par)
        self.trace_state.append(state)
        self.name.append(name)
        self.kind.append(kind)
        self.start.append(start)
        self.end.append(end)
        self.span_attrs.idx.extend(idx)
        self.span_attrs.offsets.append(len(self.span_attrs.idx))
        self.status.append((code, msg))
        self.flags.append(counts[0])
        self.d_attrs.append(counts[1])
        self.d_events.append(counts[2])
        self.d_links.append(counts[3])
        return True

    def _add_span_json(self, sp: Any, p: str) -> None:
        a = self.attrs
        if not isinstance(sp, dict):
            raise DecodeError(f"{p} must be a span object. Got {type(sp).__name__} instead.")
        g = sp.get
        tid = hex_id(json_get(sp, "traceId", "trace_id"), f"{p}.traceId")
        sid = hex_id(json_get(sp, "spanId", "span_id"), f"{p}.spanId")
        self.trace_id.append(tid)
        self.span_id.append(sid)
        self.parent.append(hex_id(json_get(sp, "parentSpanId", "parent_span_id"), f"{p}.parentSpanId"))
        self.trace_state.append(json_str(sp, "traceState", "trace_state", p))
        self.name.append(json_str(sp, "name", "name", p))
        self.kind.append(enum_value(g("kind"), _KIND_BY_NAME, f"{p}.kind"))
        self.start.append(
            json_time(json_get(sp, "startTimeUnixNano", "start_time_unix_nano"), f"{p}.startTimeUnixNano")
        )
        self.end.append(
            json_time(json_get(sp, "endTimeUnixNano", "end_time_unix_nano"), f"{p}.endTimeUnixNano")
        )
        self.span_attrs.idx.extend(a.index_json(g("attributes"), f"{p}.attributes"))
        self.span_attrs.offsets.append(len(self.span_attrs.idx))
        status = json_object(g("status"), f"{p}.status")
        self.status.append(
            (
                enum_value(status.get("code"), _CODE_BY_NAME, f"{p}.status.code"),
                json_str(status, "message", "message", f"{p}.status"),
            )
        )
        self.flags.append(json_u32(sp, "flags", "flags", p))
        self.d_attrs.append(json_u32(sp, "droppedAttributesCount", "dropped_attributes_count", p))
        self.d_events.append(json_u32(sp, "droppedEventsCount", "dropped_events_count", p))
        self.d_links.append(json_u32(sp, "droppedLinksCount", "dropped_links_count", p))
        events = json_list(g("events"), f"{p}.events")
        if events:
            svc = self.ctx["service_name"][-1]
            for seq, e in enumerate(events):
                ep = f"{p}.events[{seq}]"
                json_item(e, ep)
                ev = self.ev
                ev["trace_id"].append(tid)
                ev["span_id"].append(sid)
                ev["seq"].append(seq)
                ev["time"].append(
                    json_time(json_get(e, "timeUnixNano", "time_unix_nano"), f"{ep}.timeUnixNano")
                )
                ev["name"].append(json_str(e, "name", "name", ep))
                ev["dropped"].append(json_u32(e, "droppedAttributesCount", "dropped_attributes_count", ep))
                ev["service"].append(svc)
                self.ev_attrs.idx.extend(a.index_json(e.get("attributes"), f"{ep}.attributes"))
                self.ev_attrs.offsets.append(len(self.ev_attrs.idx))
        links = json_list(g("links"), f"{p}.links")
        if links:
            for seq, li in enumerate(links):
                lp = f"{p}.links[{seq}]"
                json_item(li, lp)
                self._add_link(
                    tid,
                    sid,
                    seq,
                    hex_id(json_get(li, "traceId", "trace_id"), f"{lp}.traceId"),
                    hex_id(json_get(li, "spanId", "span_id"), f"{lp}.spanId"),
                    json_str(li, "traceState", "trace_state", lp),
                    json_u32(li, "droppedAttributesCount", "dropped_attributes_count", lp),
                    json_u32(li, "flags", "flags", lp),
                )
                self.ln_attrs.idx.extend(a.index_json(li.get("attributes"), f"{lp}.attributes"))
                self.ln_attrs.offsets.append(len(self.ln_attrs.idx))

    # ---------------------------------------------------------------- output
    def tables(self) -> dict[str, pa.Table]:
        keys, vals = self.attrs.to_arrow()
        tid = pa.array(self.trace_id, pa.binary())
        sid = pa.array(self.span_id, pa.binary())
        par = pa.array(self.parent, pa.binary())
        check_id_lengths(tid, "trace_id", (0, 16))  # empty: refused or counted by check_required_ids
        check_id_lengths(sid, "span_id", (0, 8))
        check_id_lengths(par, "parent_span_id", (0, 8))
        if len(self.span_raw.offsets) > 1:
            ak, av = self.span_raw.arrays()
        else:
            ak, av = self.span_attrs.arrays(keys, vals)
        codes, msgs = (list(x) for x in zip(*self.status, strict=True)) if self.status else ([], [])
        cols = {
            "trace_id": tid,
            "span_id": sid,
            "parent_span_id": par,
            "trace_state": pa.array(self.trace_state, pa.string()),
            "name": pa.array(self.name, pa.string()),
            "kind": pa.array(self.kind, pa.int32()),
            "start_time": times(self.start, "start_time_unix_nano"),
            "end_time": times(self.end, "end_time_unix_nano"),
            "status_code": pa.array(codes, pa.int32()),
            "status_message": pa.array(msgs, pa.string()),
            "flags": ints(self.flags, "flags"),
            "dropped_attributes_count": ints(self.d_attrs, "dropped_attributes_count"),
            "dropped_events_count": ints(self.d_events, "dropped_events_count"),
            "dropped_links_count": ints(self.d_links, "dropped_links_count"),
            "attr_keys": ak,
            "attr_vals": av,
        }
        cols.update(self.context_columns())
        out = {"spans": pa.table(cols), "_ctx": self.context_table(keys, vals)}
        if self.ev["seq"]:
            ev = self.ev
            ek, evv = self.ev_attrs.arrays(keys, vals)
            out["span_events"] = pa.table(
                {
                    "trace_id": pa.array(ev["trace_id"], pa.binary()),
                    "span_id": pa.array(ev["span_id"], pa.binary()),
                    "seq": pa.array(ev["seq"], pa.int32()),
                    "time": times(ev["time"], "event time_unix_nano"),
                    "name": pa.array(ev["name"], pa.string()),
                    "service_name": pa.array(ev["service"], pa.string()),
                    "dropped_attributes_count": pa.array(ev["dropped"], I64),
                    "attr_keys": ek,
                    "attr_vals": evv,
                }
            )
        if self.ln["seq"]:
            ln = self.ln
            lt = pa.array(ln["l_trace"], pa.binary())
            ls = pa.array(ln["l_span"], pa.binary())
            check_id_lengths(lt, "link trace_id", (0, 16))
            check_id_lengths(ls, "link span_id", (0, 8))
            lk, lv = self.ln_attrs.arrays(keys, vals)
            out["span_links"] = pa.table(
                {
                    "trace_id": pa.array(ln["trace_id"], pa.binary()),
                    "span_id": pa.array(ln["span_id"], pa.binary()),
                    "seq": pa.array(ln["seq"], pa.int32()),
                    "linked_trace_id": lt,
                    "linked_span_id": ls,
                    "trace_state": pa.array(ln["trace_state"], pa.string()),
                    "flags": pa.array(ln["flags"], I64),
                    "dropped_attributes_count": pa.array(ln["dropped"], I64),
                    "attr_keys": lk,
                    "attr_vals": lv,
                }
            )
        return out


def iter_traces_pb(view: Any, batch_rows: int) -> Iterator[dict[str, pa.Table]]:
    """Staging tables for a parsed ``TracesView``, at most ``batch_rows`` spans each."""
    groups = ((rs, ss, ss.spans) for rs in view.resource_spans for ss in rs.scope_spans)
    return iter_pb_batches(SpanBuilder, groups, SpanBuilder.add_spans_pb, batch_rows)


def iter_traces_json(doc: dict, batch_rows: int) -> Iterator[dict[str, pa.Table]]:
    """Staging tables for one OTLP/JSON ``ExportTraceServiceRequest`` object."""
    return iter_json_batches(
        SpanBuilder, doc, ("resourceSpans", "scopeSpans", "spans"), SpanBuilder.add_spans_json, batch_rows
    )
