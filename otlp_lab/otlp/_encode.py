"""The encoder: Arrow tables in the *export staging form* -> OTLP requests, OTLP/JSON, files.

Export staging form
-------------------
One row per item: a span, a log record, or a metric data point. Tables are read by
column name; a column that is absent takes its OTLP default. This is the form
:func:`otlp_lab.store.export_tables` produces from the Lab's tables.

Every signal
    ``service_name``; ``resource_attributes``, ``resource_dropped_attributes_count``,
    ``resource_schema_url``; ``scope_name``, ``scope_version``, ``scope_attributes``,
    ``scope_dropped_attributes_count``, ``scope_schema_url``. Rows are grouped back into
    one resource per distinct (resource attributes, dropped count, schema url) and one
    scope per distinct (name, version, attributes, dropped count, schema url). A
    ``service_name`` missing from the resource attributes is added as ``service.name``.
Attributes
    A struct ``{k: list<string>, v: list<value>}`` (what the Lab's ``_otlp_kv`` macro
    returns), ``value`` being the typed struct ``{t, s, b, i, d, x, j}`` of
    :mod:`._anyvalue`. Null means no attributes.
Ids
    Raw bytes (``binary``) or hex text in any case; null or empty means unset.
Times
    ``timestamp`` (any unit) or int64 Unix nanoseconds; null means 0 (unset).
Enums
    The names the Lab stores (kind ``'SERVER'``, status ``'ERROR'``, temporality
    ``'DELTA'``), the protobuf names (``'SPAN_KIND_SERVER'``) or integers.
Traces
    ``trace_id``, ``span_id``, ``parent_span_id``, ``trace_state``, ``name``, ``kind``,
    ``start_time``, ``end_time``, ``status_code``, ``status_message``, ``attributes``,
    ``flags``, ``dropped_{attributes,events,links}_count``; ``events`` a list of
    ``{time, name, attributes, dropped_attributes_count}``; ``links`` a list of
    ``{trace_id, span_id, trace_state, flags, attributes, dropped_attributes_count}``.
Logs
    ``time``, ``observed_time``, ``severity_number``, ``severity_text``, ``body`` (a typed
    value struct), ``trace_id``, ``span_id``, ``flags``, ``dropped_attributes_count``,
    ``event_name``, ``attributes``.
Metrics
    ``metric_kind`` (``gauge``, ``sum``, ``histogram``, ``exponential_histogram`` or
    ``summary``), ``metric_name``, ``description``, ``unit``, ``metadata``,
    ``attributes``, ``start_time``, ``time``, ``flags`` and the point's own columns, named
    as in the Lab's ``metric_*`` tables (``value``/``int_value``, ``count``, ``sum``,
    ``bucket_counts``, ``positive_offset``, ``quantile_values``, ...). ``exemplars`` is a
    list of ``{time, value, int_value, span_id, trace_id, attributes}``. Points are
    grouped into one ``Metric`` per distinct (name, description, unit, metadata, kind,
    temporality, monotonicity) within a scope.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal

import orjson
import pyarrow as pa
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Exemplar,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from otlp_lab.errors import ConfigError, EncodeError
from otlp_lab.otlp._anyvalue import T_STR, typed_to_pb
from otlp_lab.otlp._source import SIGNALS, Signal
from otlp_lab.otlp.staging import METRIC_KINDS as KINDS
from otlp_lab.otlp.staging import SPAN_KINDS, STATUS_CODES, TEMPORALITIES

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMATS",
    "encode_requests",
    "json_line",
    "protobuf_frame",
    "to_otlp_json",
    "write_requests",
]

DEFAULT_MAX_BYTES = 4 * 1024 * 1024  # gRPC's default maximum received message size
FORMATS = ("json", "protobuf")
Format = Literal["json", "protobuf"]
OtlpRequest = ExportTraceServiceRequest | ExportMetricsServiceRequest | ExportLogsServiceRequest

_ROWS_PER_CHUNK = 4096
_KV_CACHE_SIZE = 1 << 16
_ID_FIELDS = frozenset({"traceId", "spanId", "parentSpanId"})

Row = dict[str, Any]
Typed = tuple[int, Any, Any, Any, Any, Any, Any]

# ---------------------------------------------------------------- scalar fields


def _names(short: Sequence[str], pb_items: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Enum names -> numbers: the Lab's short names and the protobuf names."""
    return {name: n for n, name in enumerate(short)} | dict(pb_items)


_KINDS = _names(SPAN_KINDS, Span.SpanKind.items())
_CODES = _names(STATUS_CODES, Status.StatusCode.items())
_TEMPORALITIES = _names(TEMPORALITIES, AggregationTemporality.items())
_SEVERITIES = dict(SeverityNumber.items())


def _enum(value: Any, names: dict[str, int], what: str) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        n = names.get(value.upper())
        if n is not None:
            return n
        try:
            return int(value)
        except ValueError:
            pass
    choices = sorted(k for k in names if "_" not in k) or sorted(names)
    raise EncodeError(f"{what} must be one of {choices} or an integer. Got {value!r} instead.")


def _id(value: Any, size: int, what: str, *, required: bool = False) -> bytes:
    """An id as raw bytes, from bytes or hex text; empty when unset (unless ``required``)."""
    if value is None:
        raw = b""
    elif isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise EncodeError(f"{what} must be hex. Got {value!r} instead.") from None
    else:
        raw = bytes(value)
    if len(raw) != size and (raw or required):
        raise EncodeError(f"{what} must be {size} bytes ({2 * size} hex digits). Got {value!r} instead.")
    return raw


def _time(value: Any, what: str) -> int:
    t = value or 0
    if t < 0:
        raise EncodeError(f"{what} must not be before 1970 (OTLP times are unsigned). Got {t} ns instead.")
    return t


def _typed(v: Row | None) -> Typed:
    if v is None:
        return (0, None, None, None, None, None, None)
    return (v["t"] or 0, v.get("s"), v.get("b"), v.get("i"), v.get("d"), v.get("x"), v.get("j"))


def _ident(key: str, typed: Typed) -> tuple[Any, ...]:
    """A hashable identity of one attribute (telling -0.0 from 0.0, which compare equal)."""
    d = typed[4]
    return (key, typed) if d is None else (key, typed, math.copysign(1.0, d))


def _key(pairs: Iterable[tuple[str, Typed]]) -> tuple[Any, ...]:
    return tuple(_ident(k, t) for k, t in pairs)


def _pairs(attrs: Row | None) -> list[tuple[str, Typed]]:
    if not attrs:
        return []
    keys, vals = attrs.get("k") or [], attrs.get("v") or []
    if len(keys) != len(vals):
        raise EncodeError(
            f"attribute keys and values differ in length ({len(keys)} keys, {len(vals)} values)"
        )
    return [(k, _typed(v)) for k, v in zip(keys, vals, strict=True)]


class _Values:
    """Typed value structs -> ``KeyValue``/``AnyValue`` messages, each distinct pair built once."""

    __slots__ = ("_kv",)

    def __init__(self) -> None:
        self._kv: dict[tuple[Any, ...], KeyValue] = {}

    def kv(self, key: str, typed: Typed) -> KeyValue:
        sig = _ident(key, typed)
        kv = self._kv.get(sig)
        if kv is None:
            kv = KeyValue(key=key)
            typed_to_pb(*typed, kv.value)
            if len(self._kv) >= _KV_CACHE_SIZE:
                self._kv.clear()
            self._kv[sig] = kv
        return kv

    def messages(self, pairs: Iterable[tuple[str, Typed]]) -> list[KeyValue]:
        return [self.kv(k, t) for k, t in pairs]

    def kvs(self, attrs: Row | None) -> list[KeyValue]:
        return self.messages(_pairs(attrs))

    @staticmethod
    def any_value(v: Row | None) -> AnyValue:
        out = AnyValue()
        typed_to_pb(*_typed(v), out)
        return out


# ---------------------------------------------------------------- grouping and batching


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


@dataclass(frozen=True, slots=True)
class _Group:
    """One level of a request's nesting (a resource, a scope, a metric) that items share."""

    key: Any
    template: Message  # the container with its header fields and no items
    field: str  # the repeated field of the parent that holds it
    frames: int = 1  # nested length-delimited frames that grow with its items


@dataclass(frozen=True, slots=True)
class _Shape:
    request: type[Message]
    resources: str
    resource_cls: type[Message]
    scopes: str
    scope_cls: type[Message]
    items: Callable[[Message], Any]  # the innermost container -> its repeated item field
    item_name: str


_SHAPES: dict[Signal, _Shape] = {
    "traces": _Shape(
        ExportTraceServiceRequest,
        "resource_spans",
        ResourceSpans,
        "scope_spans",
        ScopeSpans,
        lambda c: c.spans,
        "span",
    ),
    "logs": _Shape(
        ExportLogsServiceRequest,
        "resource_logs",
        ResourceLogs,
        "scope_logs",
        ScopeLogs,
        lambda c: c.log_records,
        "log record",
    ),
    "metrics": _Shape(
        ExportMetricsServiceRequest,
        "resource_metrics",
        ResourceMetrics,
        "scope_metrics",
        ScopeMetrics,
        lambda m: getattr(m, m.WhichOneof("data")).data_points,
        "data point",
    ),
}


class _Packer:
    """Fills requests with items under their groups; a request is handed out when the next item would not fit.

    The size kept is an upper bound of ``request.ByteSize()``: each item's own frame is
    exact, and each group's length prefix is counted at the width it has at ``max_bytes``.
    """

    def __init__(self, shape: _Shape, max_bytes: int, max_items: int | None) -> None:
        self.shape = shape
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._frame = 1 + _varint_len(max_bytes)
        self._reset()

    def _reset(self) -> None:
        self.request = self.shape.request()
        self.nodes: dict[tuple[Any, ...], Message] = {}
        self.size = 0
        self.count = 0

    def _group_cost(self, g: _Group) -> int:
        return g.template.ByteSize() + g.frames * self._frame

    def add(self, groups: Sequence[_Group], item: Message) -> OtlpRequest | None:
        """Add one item; return the previous request if it was full."""
        n = item.ByteSize()
        item_cost = 1 + _varint_len(n) + n
        path: tuple[Any, ...] = ()
        cost = item_cost
        for g in groups:
            path += (g.key,)
            if path not in self.nodes:
                cost += self._group_cost(g)
        done = None
        full = self.max_items is not None and self.count >= self.max_items
        if self.count and (full or self.size + cost > self.max_bytes):
            done = self.request
            self._reset()
            cost = item_cost + sum(self._group_cost(g) for g in groups)
        if cost > self.max_bytes:
            raise EncodeError(
                f"one {self.shape.item_name} with its resource and scope needs about "
                f"{cost:,} bytes, more than max_bytes={self.max_bytes:,}; raise max_bytes"
            )
        parent: Message = self.request
        path = ()
        for g in groups:
            path += (g.key,)
            node = self.nodes.get(path)
            if node is None:
                node = getattr(parent, g.field).add()
                node.CopyFrom(g.template)
                self.nodes[path] = node
            parent = node
        self.shape.items(parent).append(item)
        self.size += cost
        self.count += 1
        return done

    def finish(self) -> OtlpRequest | None:
        return self.request if self.count else None


class _Contexts:
    """Resource and scope groups of rows, built once per distinct context."""

    def __init__(self, shape: _Shape, values: _Values) -> None:
        self.shape = shape
        self.values = values
        self._resources: dict[Any, _Group] = {}
        self._scopes: dict[Any, _Group] = {}

    def groups(self, row: Row) -> tuple[_Group, _Group]:
        res_pairs = _pairs(row.get("resource_attributes"))
        service = row.get("service_name")
        if service is not None and all(k != "service.name" for k, _ in res_pairs):
            res_pairs.insert(0, ("service.name", (T_STR, service, None, None, None, None, None)))
        rkey = (
            _key(res_pairs),
            row.get("resource_dropped_attributes_count") or 0,
            row.get("resource_schema_url") or "",
        )
        res = _group(
            self._resources,
            rkey,
            self.shape.resources,
            lambda: self.shape.resource_cls(
                resource=Resource(
                    attributes=self.values.messages(res_pairs), dropped_attributes_count=rkey[1]
                ),
                schema_url=rkey[2],
            ),
        )
        scope_pairs = _pairs(row.get("scope_attributes"))
        skey = (
            row.get("scope_name") or "",
            row.get("scope_version") or "",
            _key(scope_pairs),
            row.get("scope_dropped_attributes_count") or 0,
            row.get("scope_schema_url") or "",
        )
        scope = _group(
            self._scopes,
            skey,
            self.shape.scopes,
            lambda: self.shape.scope_cls(
                scope=InstrumentationScope(
                    name=skey[0],
                    version=skey[1],
                    attributes=self.values.messages(scope_pairs),
                    dropped_attributes_count=skey[3],
                ),
                schema_url=skey[4],
            ),
        )
        return res, scope


def _group(cache: dict[Any, _Group], key: Any, field: str, template: Callable[[], Message]) -> _Group:
    """The group of ``cache`` under ``key``, made from ``template()`` the first time."""
    group = cache.get(key)
    if group is None:
        group = cache[key] = _Group(key, template(), field)
    return group


# ---------------------------------------------------------------- items


def _span(row: Row, values: _Values) -> Span:
    sp = Span(
        trace_id=_id(row.get("trace_id"), 16, "trace_id", required=True),
        span_id=_id(row.get("span_id"), 8, "span_id", required=True),
        parent_span_id=_id(row.get("parent_span_id"), 8, "parent_span_id"),
        trace_state=row.get("trace_state") or "",
        name=row.get("name") or "",
        kind=_enum(row.get("kind"), _KINDS, "kind"),
        start_time_unix_nano=_time(row.get("start_time"), "start_time"),
        end_time_unix_nano=_time(row.get("end_time"), "end_time"),
        attributes=values.kvs(row.get("attributes")),
        dropped_attributes_count=row.get("dropped_attributes_count") or 0,
        dropped_events_count=row.get("dropped_events_count") or 0,
        dropped_links_count=row.get("dropped_links_count") or 0,
        flags=row.get("flags") or 0,
    )
    code = _enum(row.get("status_code"), _CODES, "status_code")
    message = row.get("status_message") or ""
    if code or message:
        sp.status.code = code
        sp.status.message = message
    for e in row.get("events") or ():
        sp.events.add(
            time_unix_nano=_time(e.get("time"), "event time"),
            name=e.get("name") or "",
            attributes=values.kvs(e.get("attributes")),
            dropped_attributes_count=e.get("dropped_attributes_count") or 0,
        )
    for li in row.get("links") or ():
        sp.links.add(
            trace_id=_id(li.get("trace_id"), 16, "link trace_id", required=True),
            span_id=_id(li.get("span_id"), 8, "link span_id", required=True),
            trace_state=li.get("trace_state") or "",
            flags=li.get("flags") or 0,
            attributes=values.kvs(li.get("attributes")),
            dropped_attributes_count=li.get("dropped_attributes_count") or 0,
        )
    return sp


def _log(row: Row, values: _Values) -> LogRecord:
    rec = LogRecord(
        time_unix_nano=_time(row.get("time"), "time"),
        observed_time_unix_nano=_time(row.get("observed_time"), "observed_time"),
        severity_number=_enum(row.get("severity_number"), _SEVERITIES, "severity_number"),
        severity_text=row.get("severity_text") or "",
        trace_id=_id(row.get("trace_id"), 16, "trace_id"),
        span_id=_id(row.get("span_id"), 8, "span_id"),
        flags=row.get("flags") or 0,
        dropped_attributes_count=row.get("dropped_attributes_count") or 0,
        event_name=row.get("event_name") or "",
        attributes=values.kvs(row.get("attributes")),
    )
    body = row.get("body")
    if body is not None and body.get("t"):
        rec.body.CopyFrom(values.any_value(body))
    return rec


def _set_number(msg: Message, double: float | None, integer: int | None) -> None:
    """``as_int`` when the integer column is set, else ``as_double`` when the value is."""
    if integer is not None:
        msg.as_int = integer
    elif double is not None:
        msg.as_double = double


def _exemplars(row: Row, values: _Values) -> list[Exemplar]:
    out = []
    for e in row.get("exemplars") or ():
        ex = Exemplar(
            time_unix_nano=_time(e.get("time"), "exemplar time"),
            span_id=_id(e.get("span_id"), 8, "exemplar span_id"),
            trace_id=_id(e.get("trace_id"), 16, "exemplar trace_id"),
            filtered_attributes=values.kvs(e.get("attributes")),
        )
        _set_number(ex, e.get("value"), e.get("int_value"))
        out.append(ex)
    return out


def _point_common(row: Row, values: _Values) -> dict[str, Any]:
    return {
        "attributes": values.kvs(row.get("attributes")),
        "start_time_unix_nano": _time(row.get("start_time"), "start_time"),
        "time_unix_nano": _time(row.get("time"), "time"),
        "flags": row.get("flags") or 0,
    }


def _double(value: float | None) -> float:
    """Null as 0.0 (``value or 0.0`` would lose the sign of -0.0)."""
    return 0.0 if value is None else value


def _optional(row: Row, *names: str) -> dict[str, Any]:
    """The ``optional`` double fields that are set (not null) in the row."""
    return {n: row[n] for n in names if row.get(n) is not None}


def _point(kind: str, row: Row, values: _Values) -> Message:
    common = _point_common(row, values)
    if kind in ("gauge", "sum"):
        p = NumberDataPoint(exemplars=_exemplars(row, values), **common)
        _set_number(p, row.get("value"), row.get("int_value"))
        return p
    count = row.get("count") or 0
    if kind == "histogram":
        return HistogramDataPoint(
            count=count,
            bucket_counts=row.get("bucket_counts") or [],
            explicit_bounds=row.get("explicit_bounds") or [],
            exemplars=_exemplars(row, values),
            **_optional(row, "sum", "min", "max"),
            **common,
        )
    if kind == "exponential_histogram":
        p = ExponentialHistogramDataPoint(
            count=count,
            scale=row.get("scale") or 0,
            zero_count=row.get("zero_count") or 0,
            zero_threshold=_double(row.get("zero_threshold")),
            exemplars=_exemplars(row, values),
            **_optional(row, "sum", "min", "max"),
            **common,
        )
        for side in ("positive", "negative"):
            offset, counts = row.get(f"{side}_offset") or 0, row.get(f"{side}_bucket_counts") or []
            if offset or counts:
                buckets = getattr(p, side)
                buckets.offset = offset
                buckets.bucket_counts.extend(counts)
        return p
    return SummaryDataPoint(
        count=count,
        sum=_double(row.get("sum")),
        quantile_values=[SummaryDataPoint.ValueAtQuantile(**q) for q in row.get("quantile_values") or ()],
        **common,
    )


class _Metrics:
    """``Metric`` groups: points of one metric identity within a scope."""

    def __init__(self, values: _Values) -> None:
        self.values = values
        self._groups: dict[Any, _Group] = {}

    def group(self, kind: str, row: Row) -> _Group:
        meta = _pairs(row.get("metadata"))
        temporality = _enum(row.get("aggregation_temporality"), _TEMPORALITIES, "aggregation_temporality")
        monotonic = bool(row.get("is_monotonic"))
        key = (
            row.get("metric_name") or "",
            row.get("description") or "",
            row.get("unit") or "",
            _key(meta),
            kind,
            temporality,
            monotonic,
        )
        g = self._groups.get(key)
        if g is None:
            m = Metric(name=key[0], description=key[1], unit=key[2], metadata=self.values.messages(meta))
            data = getattr(m, kind)
            data.SetInParent()
            if kind in ("sum", "histogram", "exponential_histogram"):
                data.aggregation_temporality = temporality
            if kind == "sum":
                data.is_monotonic = monotonic
            g = self._groups[key] = _Group(key, m, "metrics", frames=2)
        return g


# ---------------------------------------------------------------- tables -> rows


def _plain_type(t: pa.DataType, ns: bool) -> pa.DataType:
    """``t`` with every timestamp made ``timestamp[ns]`` (``ns``) or then int64 nanoseconds."""
    if pa.types.is_timestamp(t):
        return pa.timestamp("ns", t.tz) if ns else pa.int64()
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_plain_type(f.type, ns)) for f in t])
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(t.value_field.with_type(_plain_type(t.value_type, ns)))
    if pa.types.is_map(t):
        return pa.map_(_plain_type(t.key_type, ns), t.item_field.with_type(_plain_type(t.item_type, ns)))
    return t


def _rows(table: pa.Table | pa.RecordBatch) -> Iterator[Row]:
    """Rows as dicts, times as int nanoseconds, a chunk at a time."""
    for ns in (True, False):
        schema = pa.schema([f.with_type(_plain_type(f.type, ns)) for f in table.schema])
        if schema != table.schema:
            table = table.cast(schema)
    for lo in range(0, table.num_rows, _ROWS_PER_CHUNK):
        yield from table.slice(lo, _ROWS_PER_CHUNK).to_pylist()


def encode_requests(
    signal: Signal,
    tables: Iterable[pa.Table | pa.RecordBatch],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_items: int | None = None,
) -> Iterator[OtlpRequest]:
    """OTLP export requests of the rows of ``tables`` (export staging form, see the module docs).

    Rows are grouped by resource and scope (and metric) within each request; a request
    is closed when the next item would take it over ``max_bytes`` serialized bytes or
    past ``max_items`` items (spans, log records or data points).

    Parameters
    ----------
    signal : {"traces", "metrics", "logs"}
        What the rows are.
    tables : iterable of pyarrow.Table or RecordBatch
        Rows in the export staging form.
    max_bytes : int, default 4 MiB
        Upper bound of each request's serialized size (gRPC's default message limit).
    max_items : int, optional
        Upper bound of the items in one request.

    Yields
    ------
    ExportTraceServiceRequest, ExportMetricsServiceRequest or ExportLogsServiceRequest

    Raises
    ------
    EncodeError
        A row cannot be written as OTLP (a bad id, enum or time), or one item alone is
        larger than ``max_bytes``.

    Examples
    --------
    >>> import pyarrow as pa
    >>> rows = pa.table({"trace_id": ["5b8efff798038103d269b633813fc60c"], "span_id": ["eee19b7ec3c1b174"],
    ...                  "name": ["GET /"], "kind": ["SERVER"], "service_name": ["cart"]})
    >>> [req] = encode_requests("traces", [rows])
    >>> req.resource_spans[0].scope_spans[0].spans[0].kind
    2
    """
    if signal not in SIGNALS:
        raise ConfigError(f"signal must be one of {SIGNALS}. Got {signal!r} instead.")
    if max_bytes < 64:
        raise ConfigError(f"max_bytes must be at least 64. Got {max_bytes!r} instead.")
    if max_items is not None and max_items < 1:
        raise ConfigError(f"max_items must be a positive integer. Got {max_items!r} instead.")
    shape = _SHAPES[signal]
    values = _Values()
    contexts = _Contexts(shape, values)
    metrics = _Metrics(values)
    packer = _Packer(shape, max_bytes, max_items)
    n = 0
    for table in tables:
        for row in _rows(table):
            try:
                groups: tuple[_Group, ...] = contexts.groups(row)
                if signal == "traces":
                    item: Message = _span(row, values)
                elif signal == "logs":
                    item = _log(row, values)
                else:
                    kind = row.get("metric_kind")
                    if kind not in KINDS:
                        raise EncodeError(f"metric_kind must be one of {KINDS}. Got {kind!r} instead.")
                    groups += (metrics.group(kind, row),)
                    item = _point(kind, row, values)
            except EncodeError as exc:
                raise EncodeError(f"{signal} row {n}: {exc}") from None
            except (TypeError, ValueError, OverflowError) as exc:  # protobuf's range and type checks
                raise EncodeError(f"{signal} row {n} cannot be written as OTLP: {exc}") from exc
            done = packer.add(groups, item)
            if done is not None:
                yield done
            n += 1
    last = packer.finish()
    if last is not None:
        yield last


# ---------------------------------------------------------------- OTLP/JSON and files


def _hex_ids(node: Any) -> None:
    """Rewrite the base64 ids ``MessageToDict`` writes as the hex OTLP/JSON wants (in place)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _ID_FIELDS and isinstance(v, str):
                node[k] = base64.b64decode(v).hex()
            else:
                _hex_ids(v)
    elif isinstance(node, list):
        for v in node:
            _hex_ids(v)


def to_otlp_json(message: Message) -> dict[str, Any]:
    """An OTLP message as an OTLP/JSON object.

    The proto3 JSON mapping with OTLP's rules: lowerCamelCase names, enums as integers,
    64-bit integers as decimal strings, trace and span ids as lowercase hex (not base64),
    default values left out.

    Examples
    --------
    >>> from opentelemetry.proto.trace.v1.trace_pb2 import Span
    >>> to_otlp_json(Span(span_id=bytes.fromhex("eee19b7ec3c1b174"), kind=2, start_time_unix_nano=1))
    {'spanId': 'eee19b7ec3c1b174', 'kind': 2, 'startTimeUnixNano': '1'}
    """
    doc = json_format.MessageToDict(message, use_integers_for_enums=True)
    _hex_ids(doc)
    return doc


def json_line(message: Message) -> bytes:
    """One line of the Collector file exporter's JSON format: the OTLP/JSON request and a newline."""
    return orjson.dumps(to_otlp_json(message)) + b"\n"


def protobuf_frame(message: Message) -> bytes:
    """One record of the Collector file exporter's protobuf format: a 4-byte big-endian length, then the message."""
    body = message.SerializeToString()
    return len(body).to_bytes(4, "big") + body


def write_requests(messages: Iterable[Message], fp: IO[bytes], *, fmt: Format = "json") -> int:
    """Write requests to a binary stream in a Collector file-exporter format; return how many.

    Parameters
    ----------
    messages : iterable of OTLP requests
    fp : binary file object
    fmt : {"json", "protobuf"}
        ``"json"``: JSON lines, one OTLP/JSON request per line. ``"protobuf"``: each
        serialized request after its length as a 4-byte big-endian integer.
        ``Lab.load`` reads both back.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"fmt must be one of {FORMATS}. Got {fmt!r} instead.")
    encode = json_line if fmt == "json" else protobuf_frame
    n = 0
    for m in messages:
        fp.write(encode(m))
        n += 1
    return n
