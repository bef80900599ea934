"""Encoding: decode -> Lab -> export -> encode gives back the requests that went in.

Requests are compared as sorted lists of canonical *records*, one per item (span, log
record, metric data point) with its resource, scope (and metric) in canonical form, so
regrouping (the encoder merges equal resources, scopes and metrics, and drops empty
ones) does not count as a difference. The canonical form also reflects the Lab's
documented limits: kvlist entries come back sorted by key (DuckDB VARIANT objects sort
their fields), and an empty sub-message (status, body, buckets, value) equals an unset one.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow as pa
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Exemplar,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otlp_lab import ConfigError, EncodeError, Lab, SchemaError
from otlp_lab.otlp import encode_requests, protobuf_frame, to_otlp_json, write_requests
from otlp_lab.store._export import export_requests, export_tables, write_otlp
from otlp_lab.store._schema import SIGNAL_TABLES

from ..conftest import make_trace_request

REQUESTS: dict[str, type[Message]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
FIELDS = {  # signal -> (resource list, scope list, item list)
    "traces": ("resource_spans", "scope_spans", "spans"),
    "metrics": ("resource_metrics", "scope_metrics", "metrics"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
}
CONFORMANCE_SIGNALS = {
    "trace.json": "traces",
    "metrics.json": "metrics",
    "logs.json": "logs",
    "events.json": "logs",
}

# ---------------------------------------------------------------- canonical records

_UNSET_IS_EMPTY = {"resource", "scope", "status", "body", "positive", "negative", "value"}


def _normalise(node: Any) -> Any:
    if isinstance(node, list):
        return [_normalise(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _normalise(v) for k, v in node.items() if not (k in _UNSET_IS_EMPTY and v == {})}
    kvl = out.get("kvlist_value")
    if kvl and "values" in kvl:  # VARIANT objects keep their fields sorted
        kvl["values"] = sorted(kvl["values"], key=lambda kv: kv.get("key", ""))
    return out


def _canon(msg: Message) -> Any:
    return _normalise(json_format.MessageToDict(msg, preserving_proto_field_name=True))


def records(req: Message, signal: str) -> list[str]:
    """One canonical JSON text per item, with its resource and scope; sorted."""
    res_f, scope_f, item_f = FIELDS[signal]
    out = []
    for r in getattr(req, res_f):
        res = [_canon(r.resource), r.schema_url]
        for s in getattr(r, scope_f):
            scope = [_canon(s.scope), s.schema_url]
            for item in getattr(s, item_f):
                if signal != "metrics":
                    out.append([res, scope, _canon(item)])
                    continue
                kind = item.WhichOneof("data")
                if kind is None:
                    continue
                header = Metric()
                header.CopyFrom(item)
                getattr(header, kind).ClearField("data_points")
                out.extend([res, scope, _canon(header), _canon(p)] for p in getattr(item, kind).data_points)
    return sorted(json.dumps(r, sort_keys=True) for r in out)


def all_records(reqs: list[Message], signal: str) -> list[str]:
    return sorted(r for req in reqs for r in records(req, signal))


def _hex_to_base64(node: Any) -> Any:
    """OTLP/JSON -> proto3 JSON: hex ids (any case) to base64, so ``ParseDict`` reads them."""
    if isinstance(node, list):
        return [_hex_to_base64(v) for v in node]
    if not isinstance(node, dict):
        return node
    return {
        k: base64.b64encode(bytes.fromhex(v)).decode()
        if k in ("traceId", "spanId", "parentSpanId")
        else _hex_to_base64(v)
        for k, v in node.items()
    }


def parse_otlp_json(doc: dict, signal: str) -> Message:
    """An OTLP/JSON document as the protobuf request, with protobuf's own parser (not otlp_lab's)."""
    return json_format.ParseDict(_hex_to_base64(doc), REQUESTS[signal]())


# ---------------------------------------------------------------- strategies

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
times = st.one_of(st.just(0), st.integers(1, 2**63 - 1))
text = st.text(max_size=10)
keys = st.text(max_size=6)
urls = st.sampled_from(["", "https://opentelemetry.io/schemas/1.26.0"])
trace_ids = st.binary(min_size=16, max_size=16)
span_ids = st.binary(min_size=8, max_size=8)
doubles = st.floats(allow_nan=False)


def _scalars(top: bool) -> st.SearchStrategy[AnyValue]:
    """Scalar values. Bytes and infinities only at top level: nested values are stored as JSON."""
    out = [
        st.just(AnyValue()),
        text.map(lambda s: AnyValue(string_value=s)),
        st.booleans().map(lambda b: AnyValue(bool_value=b)),
        int64.map(lambda i: AnyValue(int_value=i)),
        (doubles if top else st.floats(allow_nan=False, allow_infinity=False)).map(
            lambda d: AnyValue(double_value=d)
        ),
    ]
    if top:
        out.append(st.binary(max_size=12).map(lambda b: AnyValue(bytes_value=b)))
    return st.one_of(out)


def _containers(children: st.SearchStrategy[AnyValue]) -> st.SearchStrategy[AnyValue]:
    return st.one_of(
        st.lists(children, max_size=3).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.dictionaries(keys, children, max_size=3).map(
            lambda d: AnyValue(
                kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in d.items()])
            )
        ),
    )


nested_values = st.recursive(_scalars(top=False), _containers, max_leaves=6)
any_values = st.one_of(_scalars(top=True), _containers(nested_values))
attributes = st.dictionaries(keys, any_values, max_size=3).map(
    lambda d: [KeyValue(key=k, value=v) for k, v in d.items()]
)


@st.composite
def resources(draw: st.DrawFn) -> Resource:
    attrs = draw(attributes)
    service = draw(st.one_of(st.none(), st.sampled_from(["cart", "checkout"])))
    if service is not None:
        attrs.insert(0, KeyValue(key="service.name", value=AnyValue(string_value=service)))
    return Resource(attributes=attrs, dropped_attributes_count=draw(u32))


scopes = st.builds(
    InstrumentationScope, name=text, version=text, attributes=attributes, dropped_attributes_count=u32
)
statuses = st.one_of(st.none(), st.builds(Status, code=st.integers(0, 2), message=text))
events = st.builds(
    Span.Event, time_unix_nano=times, name=text, attributes=attributes, dropped_attributes_count=u32
)
links = st.builds(
    Span.Link,
    trace_id=trace_ids,
    span_id=span_ids,
    trace_state=text,
    attributes=attributes,
    dropped_attributes_count=u32,
    flags=u32,
)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    sp = Span(
        trace_id=draw(trace_ids),
        parent_span_id=draw(st.one_of(st.just(b""), span_ids)),
        trace_state=draw(text),
        name=draw(text),
        kind=draw(st.integers(0, 5)),
        start_time_unix_nano=draw(times),
        end_time_unix_nano=draw(times),
        attributes=draw(attributes),
        dropped_attributes_count=draw(u32),
        events=draw(st.lists(events, max_size=2)),
        dropped_events_count=draw(u32),
        links=draw(st.lists(links, max_size=2)),
        dropped_links_count=draw(u32),
        flags=draw(u32),
    )
    status = draw(statuses)
    if status is not None:
        sp.status.CopyFrom(status)
    return sp


@st.composite
def log_records(draw: st.DrawFn) -> LogRecord:
    rec = LogRecord(
        time_unix_nano=draw(times),
        observed_time_unix_nano=draw(times),
        severity_number=draw(st.integers(0, 24)),
        severity_text=draw(text),
        attributes=draw(attributes),
        dropped_attributes_count=draw(u32),
        flags=draw(u32),
        trace_id=draw(st.one_of(st.just(b""), trace_ids)),
        span_id=draw(st.one_of(st.just(b""), span_ids)),
        event_name=draw(text),
    )
    body = draw(st.one_of(st.none(), any_values))
    if body is not None:
        rec.body.CopyFrom(body)
    return rec


@st.composite
def _number(draw: st.DrawFn, msg: Message) -> Message:
    """Set ``as_int``, ``as_double`` or neither."""
    which = draw(st.sampled_from(["as_int", "as_double", None]))
    if which == "as_int":
        msg.as_int = draw(int64)
    elif which == "as_double":
        msg.as_double = draw(doubles)
    return msg


@st.composite
def exemplars(draw: st.DrawFn) -> Exemplar:
    ex = Exemplar(
        filtered_attributes=draw(attributes),
        time_unix_nano=draw(times),
        span_id=draw(st.one_of(st.just(b""), span_ids)),
        trace_id=draw(st.one_of(st.just(b""), trace_ids)),
    )
    return draw(_number(ex))


def _point_fields(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "attributes": draw(attributes),
        "start_time_unix_nano": draw(times),
        "time_unix_nano": draw(times),
        "flags": draw(u32),
    }


def _optional_doubles(draw: st.DrawFn, *names: str) -> dict[str, float]:
    return {n: v for n in names if (v := draw(st.one_of(st.none(), doubles))) is not None}


@st.composite
def number_points(draw: st.DrawFn) -> NumberDataPoint:
    p = NumberDataPoint(exemplars=draw(st.lists(exemplars(), max_size=2)), **_point_fields(draw))
    return draw(_number(p))


@st.composite
def histogram_points(draw: st.DrawFn) -> HistogramDataPoint:
    bounds = draw(st.lists(doubles, max_size=2))
    counts = draw(st.one_of(st.just([]), st.lists(u64, min_size=len(bounds) + 1, max_size=len(bounds) + 1)))
    return HistogramDataPoint(
        count=draw(u64),
        bucket_counts=counts,  # OTLP: one more count than bounds, or none
        explicit_bounds=bounds,
        exemplars=draw(st.lists(exemplars(), max_size=2)),
        **_optional_doubles(draw, "sum", "min", "max"),
        **_point_fields(draw),
    )


buckets = st.builds(
    ExponentialHistogramDataPoint.Buckets, offset=i32, bucket_counts=st.lists(u64, max_size=3)
)


@st.composite
def exp_histogram_points(draw: st.DrawFn) -> ExponentialHistogramDataPoint:
    return ExponentialHistogramDataPoint(
        count=draw(u64),
        scale=draw(st.integers(-10, 20)),
        zero_count=draw(u64),
        zero_threshold=draw(doubles),
        positive=draw(buckets),
        negative=draw(buckets),
        exemplars=draw(st.lists(exemplars(), max_size=2)),
        **_optional_doubles(draw, "sum", "min", "max"),
        **_point_fields(draw),
    )


quantiles = st.builds(SummaryDataPoint.ValueAtQuantile, quantile=st.floats(0, 1), value=doubles)


@st.composite
def summary_points(draw: st.DrawFn) -> SummaryDataPoint:
    return SummaryDataPoint(
        count=draw(u64),
        sum=draw(doubles),
        quantile_values=draw(st.lists(quantiles, max_size=3)),
        **_point_fields(draw),
    )


temporalities = st.integers(0, 2)
metric_data = st.one_of(
    st.builds(lambda ps: {"gauge": Gauge(data_points=ps)}, st.lists(number_points(), max_size=2)),
    st.builds(
        lambda ps, t, m: {"sum": Sum(data_points=ps, aggregation_temporality=t, is_monotonic=m)},
        st.lists(number_points(), max_size=2),
        temporalities,
        st.booleans(),
    ),
    st.builds(
        lambda ps, t: {"histogram": Histogram(data_points=ps, aggregation_temporality=t)},
        st.lists(histogram_points(), max_size=2),
        temporalities,
    ),
    st.builds(
        lambda ps, t: {
            "exponential_histogram": ExponentialHistogram(data_points=ps, aggregation_temporality=t)
        },
        st.lists(exp_histogram_points(), max_size=2),
        temporalities,
    ),
    st.builds(lambda ps: {"summary": Summary(data_points=ps)}, st.lists(summary_points(), max_size=2)),
)
metrics = st.builds(
    lambda name, desc, unit, meta, data: Metric(
        name=name, description=desc, unit=unit, metadata=meta, **data
    ),
    text,
    text,
    st.sampled_from(["", "ms", "By", "1"]),
    attributes,
    metric_data,
)
ITEMS: dict[str, st.SearchStrategy[Message]] = {"traces": spans(), "metrics": metrics, "logs": log_records()}


@st.composite
def requests(draw: st.DrawFn, signal: str) -> Message:
    """A request of 1-3 resources of 0-2 scopes of 0-3 items, with distinct span ids.

    (A span is identified by trace id, span id and load in the Lab, so its events and links
    could not be told apart from another's with the same ids.)
    """
    res_f, scope_f, item_f = FIELDS[signal]
    req = REQUESTS[signal]()
    for _ in range(draw(st.integers(1, 3))):
        r = getattr(req, res_f).add(resource=draw(resources()), schema_url=draw(urls))
        for _ in range(draw(st.integers(0, 2))):
            s = getattr(r, scope_f).add(scope=draw(scopes), schema_url=draw(urls))
            getattr(s, item_f).extend(draw(st.lists(ITEMS[signal], max_size=3)))
    if signal == "traces":
        all_spans = [sp for r in req.resource_spans for s in r.scope_spans for sp in s.spans]
        ids = draw(st.lists(span_ids, min_size=len(all_spans), max_size=len(all_spans), unique=True))
        for sp, span_id in zip(all_spans, ids, strict=True):
            sp.span_id = span_id
    return req


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def shared_lab():
    with Lab() as lab:
        yield lab


def _reload(lab: Lab, body: bytes, signal: str) -> list[Message]:
    """Empty the Lab, load ``body``, export ``signal`` again."""
    for t in SIGNAL_TABLES:
        lab.con.execute(f"DELETE FROM {t}").fetchall()
    lab.load_bytes(body, signal=signal)
    return list(export_requests(lab, signal))


def _roundtrip(lab: Lab, req: Message, signal: str) -> None:
    """protobuf -> Lab -> protobuf, and OTLP/JSON -> Lab -> protobuf; the export's OTLP/JSON reads back too."""
    want = records(req, signal)
    got = _reload(lab, req.SerializeToString(), signal)
    assert all(isinstance(r, REQUESTS[signal]) for r in got)
    assert all_records(got, signal) == want
    assert all_records([parse_otlp_json(to_otlp_json(r), signal) for r in got], signal) == want
    got = _reload(lab, orjson.dumps(to_otlp_json(req)), signal)
    assert all_records(got, signal) == want


_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------- (a) property-based round trips


@_SETTINGS
@given(req=requests("traces"))
def test_traces_roundtrip(shared_lab, req):
    _roundtrip(shared_lab, req, "traces")


@_SETTINGS
@given(req=requests("metrics"))
def test_metrics_roundtrip(shared_lab, req):
    _roundtrip(shared_lab, req, "metrics")


@_SETTINGS
@given(req=requests("logs"))
def test_logs_roundtrip(shared_lab, req):
    _roundtrip(shared_lab, req, "logs")


# ---------------------------------------------------------------- batching


def test_requests_stay_under_max_bytes_and_max_items(lab):
    req = make_trace_request(200)
    lab.load_bytes(req.SerializeToString())
    for max_bytes, max_items in [(2_000, None), (50_000, 7), (300, 1)]:
        out = list(export_requests(lab, "traces", max_bytes=max_bytes, max_items=max_items))
        assert len(out) > 1
        assert all(r.ByteSize() <= max_bytes for r in out)
        if max_items:
            assert all(len(r.resource_spans[0].scope_spans[0].spans) <= max_items for r in out)
        assert all_records(out, "traces") == records(req, "traces")


def test_an_item_larger_than_max_bytes_is_an_error(lab):
    lab.load_bytes(make_trace_request(1).SerializeToString())
    with pytest.raises(EncodeError, match="max_bytes=100"):
        list(export_requests(lab, "traces", max_bytes=100))


def test_where_selects_rows_and_their_events(lab):
    req = make_trace_request(3)
    req.resource_spans[0].scope_spans[0].spans[1].events.add(name="retry", time_unix_nano=5)
    lab.load_bytes(req.SerializeToString())
    [out] = export_requests(lab, "traces", where="name = 'op1'")
    [span] = out.resource_spans[0].scope_spans[0].spans
    assert (span.name, [e.name for e in span.events]) == ("op1", ["retry"])


# ---------------------------------------------------------------- the encoder alone


def test_encoder_takes_hex_ids_enum_names_and_adds_service_name():
    rows = pa.table(
        {
            "trace_id": ["5B8EFFF798038103D269B633813FC60C"],
            "span_id": ["eee19b7ec3c1b174"],
            "kind": ["SPAN_KIND_CLIENT"],
            "status_code": ["ERROR"],
            "start_time": pa.array([1_000], pa.timestamp("us")),
            "service_name": ["cart"],
        }
    )
    [req] = encode_requests("traces", [rows])
    rs = req.resource_spans[0]
    assert [(kv.key, kv.value.string_value) for kv in rs.resource.attributes] == [("service.name", "cart")]
    sp = rs.scope_spans[0].spans[0]
    assert (sp.trace_id.hex(), sp.kind, sp.status.code, sp.start_time_unix_nano) == (
        "5b8efff798038103d269b633813fc60c",
        3,
        2,
        1_000_000,
    )


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("trace_id", "abc", "hex"), ("span_id", "00", "8 bytes"), ("kind", "SIDEWAYS", "kind must be one of")],
)
def test_encoder_rejects_bad_rows(column, value, message):
    row = {"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174", column: value}
    with pytest.raises(EncodeError, match=message):
        list(encode_requests("traces", [pa.table({k: [v] for k, v in row.items()})]))


def test_encoder_keeps_negative_zero_apart_from_zero():
    value = pa.struct([("t", pa.int8()), ("d", pa.float64())])
    attrs = pa.array(
        [{"k": ["x"], "v": [{"t": 4, "d": d}]} for d in (0.0, -0.0)],
        pa.struct([("k", pa.list_(pa.string())), ("v", pa.list_(value))]),
    )
    rows = pa.table({"resource_attributes": attrs, "metric_kind": ["gauge", "gauge"], "attributes": attrs})
    [req] = encode_requests("metrics", [rows])
    assert [str(r.resource.attributes[0].value.double_value) for r in req.resource_metrics] == ["0.0", "-0.0"]


def test_to_otlp_json_follows_the_otlp_rules():
    req = make_trace_request(2)
    doc = to_otlp_json(req)
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    assert span["traceId"] == req.resource_spans[0].scope_spans[0].spans[1].trace_id.hex()
    assert span["parentSpanId"] == span["parentSpanId"].lower() and len(span["parentSpanId"]) == 16
    assert isinstance(span["startTimeUnixNano"], str)  # int64 as a decimal string
    assert span["kind"] == 3  # enums as integers
    assert span["attributes"][0]["value"] == {"intValue": "201"}


def test_file_exporter_formats_load_back(lab, tmp_path):
    req = make_trace_request(5)
    lab.load_bytes(req.SerializeToString())
    for fmt in ("json", "protobuf"):
        path = tmp_path / f"out.{fmt}"
        assert write_otlp(lab, path, "traces", fmt=fmt, max_items=2) == 3
        with Lab() as other:
            assert other.load(path).counts["spans"] == 5
            assert all_records(list(export_requests(other, "traces")), "traces") == records(req, "traces")
    buf = io.BytesIO()
    assert write_requests([req, req], buf, fmt="protobuf") == 2
    assert buf.getvalue() == protobuf_frame(req) * 2


# ---------------------------------------------------------------- (b) the OTLP/JSON conformance examples


def _scalar(lab: Lab, sql: str) -> Any:
    [(value,)] = lab.con.execute(sql).fetchall()
    return value


def _check_trace(lab: Lab) -> None:
    row = lab.con.execute(
        "SELECT trace_id, span_id, parent_span_id, name, kind, status_code, duration_ns, epoch_ns(start_time), "
        "attributes['my.span.attr']::VARCHAR, service_name, scope_name, scope_version, "
        "scope_attributes['my.scope.attribute']::VARCHAR FROM spans"
    ).fetchall()
    assert row == [
        (
            "5b8efff798038103d269b633813fc60c",
            "eee19b7ec3c1b174",
            "eee19b7ec3c1b173",
            "I'm a server span",
            "SERVER",
            "UNSET",
            1_000_000_000,
            1544712660000000000,
            "some value",
            "my.service",
            "my.library",
            "1.0.0",
            "some scope attribute",
        )
    ]


def _check_metrics(lab: Lab) -> None:
    assert lab.con.execute(
        "SELECT metric_name, value, int_value, aggregation_temporality, is_monotonic, epoch_ns(time), "
        "attributes['my.counter.attr']::VARCHAR FROM metric_sum"
    ).fetchall() == [("my.counter", 5.0, None, "DELTA", True, 1544712660300000000, "some value")]
    assert lab.con.execute("SELECT metric_name, value, start_time FROM metric_gauge").fetchall() == [
        ("my.gauge", 10.0, None)
    ]
    assert lab.con.execute(
        "SELECT count, sum, min, max, bucket_counts, explicit_bounds, aggregation_temporality FROM metric_histogram"
    ).fetchall() == [(2, 2.0, 0.0, 2.0, [1, 1], [1.0], "DELTA")]
    assert lab.con.execute(
        "SELECT count, sum, min, max, scale, zero_count, zero_threshold, positive_offset, positive_bucket_counts, "
        "negative_bucket_counts, attributes['my.exponential.histogram.attr']::VARCHAR FROM metric_exp_histogram"
    ).fetchall() == [(3, 10.0, 0.0, 5.0, 0, 1, 0.0, 1, [0, 2], [], "some value")]


def _check_logs(lab: Lab) -> None:
    row = lab.con.execute(
        "SELECT body::VARCHAR, severity_number, severity_text, trace_id, span_id, epoch_ns(time), "
        "list_transform(map_values(attributes), lambda v: variant_typeof(v)) FROM logs"
    ).fetchall()
    assert row == [
        (
            "Example log record",
            10,
            "Information",
            "5b8efff798038103d269b633813fc60c",
            "eee19b7ec3c1b174",
            1544712660300000000,
            ["VARCHAR", "BOOL_TRUE", "INT64", "DOUBLE", "ARRAY(2)", "OBJECT(some.map.key)"],
        )
    ]
    assert _scalar(lab, "SELECT attributes['double.attribute']::DOUBLE FROM logs") == 637.704
    assert (
        _scalar(lab, "SELECT attributes['map.attribute'].\"some.map.key\"::VARCHAR FROM logs") == "some value"
    )


def _check_events(lab: Lab) -> None:
    assert lab.con.execute(
        "SELECT event_name, severity_number, trace_id, body.type::BIGINT, body.title::VARCHAR FROM logs"
    ).fetchall() == [("browser.page_view", 9, None, 0, "Free Online GUID Generator")]


CHECKS: dict[str, Callable[[Lab], None]] = {
    "trace.json": _check_trace,
    "metrics.json": _check_metrics,
    "logs.json": _check_logs,
    "events.json": _check_events,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_conformance_example_loads_into_the_right_columns(lab, conformance_dir: Path, name):
    lab.load(conformance_dir / name)
    CHECKS[name](lab)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_conformance_example_roundtrips_unchanged(lab, conformance_dir: Path, name):
    signal = CONFORMANCE_SIGNALS[name]
    original = json.loads((conformance_dir / name).read_text())
    lab.load(conformance_dir / name)
    exported = list(export_requests(lab, signal, fmt="json"))
    for doc in exported:  # the encoder's own OTLP/JSON: lowercase hex ids
        for span in (s for r in doc.get("resourceSpans", []) for ss in r["scopeSpans"] for s in ss["spans"]):
            assert span["traceId"] == span["traceId"].lower()
    want = records(parse_otlp_json(original, signal), signal)
    assert all_records([parse_otlp_json(d, signal) for d in exported], signal) == want


@pytest.mark.parametrize(("name", "signal"), [("trace.json", "traces"), ("logs.json", "logs")])
def test_polars_frames_encode_like_the_lab(lab, conformance_dir: Path, name, signal):
    """A frame as ``lab.spans()`` / ``lab.logs()`` return it (attributes as JSON text) encodes the same."""
    lab.load(conformance_dir / name)
    frame = lab.spans() if signal == "traces" else lab.logs()
    assert isinstance(frame, pl.DataFrame)
    from_frame = list(export_requests(frame, signal))
    assert all_records(from_frame, signal) == all_records(list(export_requests(lab, signal)), signal)
    assert next(export_tables(frame.drop("resource_attributes"), signal)).num_rows == 1


def test_frames_need_span_ids_and_cannot_be_metrics(lab, conformance_dir: Path):
    lab.load(conformance_dir / "trace.json")
    with pytest.raises(SchemaError, match="span_id"):
        list(export_requests(lab.spans().drop("span_id"), "traces"))
    with pytest.raises(ConfigError, match="export metrics from a Lab"):
        list(export_requests(lab.spans(), "metrics"))


@pytest.mark.slow
def test_trainticket_roundtrips_through_the_encoder(trainticket_lab):
    """A real capture (a quarter of its traces): export, load into a fresh Lab, export again: the same."""
    first = list(export_requests(trainticket_lab, "traces", where="trace_id < '4'", max_bytes=1 << 18))
    assert len(first) > 1 and all(r.ByteSize() <= 1 << 18 for r in first)
    with Lab() as again:
        for req in first:
            again.load_bytes(req.SerializeToString())
        assert all_records(list(export_requests(again, "traces")), "traces") == all_records(first, "traces")
