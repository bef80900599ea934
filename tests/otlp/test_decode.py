"""Decoding: every supported format lands the same rows; bad input gets a clear error."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
import zstandard
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st

from otlp_lab import DecodeError, Lab, UnsupportedFormatError
from otlp_lab.otlp import decode_bytes

from ..conftest import TRAINTICKET, make_trace_request


def _otlp_json(req, *, snake: bool = False) -> dict:
    """OTLP/JSON of a request: protobuf JSON with ids rewritten from base64 to (upper-case) hex."""
    d = json_format.MessageToDict(req, preserving_proto_field_name=snake)
    rs_key, ss_key = ("resource_spans", "scope_spans") if snake else ("resourceSpans", "scopeSpans")
    ids = ("trace_id", "span_id", "parent_span_id") if snake else ("traceId", "spanId", "parentSpanId")
    for rs in d.get(rs_key, []):
        for ss in rs.get(ss_key, []):
            for sp in ss.get("spans", []):
                for k in ids:
                    if k in sp:
                        sp[k] = base64.b64decode(sp[k]).hex().upper()
    return d


def _spans(lab: Lab):
    return lab.sql(
        "SELECT trace_id, span_id, parent_span_id, name, kind, status_code, duration_ns, "
        "attributes['http.response.status_code']::BIGINT AS code FROM spans ORDER BY name"
    )


def _framed(*bodies: bytes) -> bytes:
    return b"".join(len(b).to_bytes(4, "big") + b for b in bodies)


@pytest.mark.parametrize(
    "fmt",
    [
        "protobuf",
        "protobuf.gz",
        "protobuf.zst",
        "framed",
        "json",
        "json-pretty",
        "json-snake",
        "jsonl",
        "jsonl.gz",
    ],
)
def test_every_format_lands_the_same_rows(tmp_path, fmt):
    req = make_trace_request(4)
    pb = req.SerializeToString()
    doc = _otlp_json(req)
    data = {
        "protobuf": pb,
        "protobuf.gz": gzip.compress(pb),
        "protobuf.zst": zstandard.ZstdCompressor().compress(pb),
        "framed": _framed(pb, make_trace_request(2, seed=7).SerializeToString()),
        "json": json.dumps(doc).encode(),
        "json-pretty": json.dumps(doc, indent=2).encode(),
        "json-snake": json.dumps(_otlp_json(req, snake=True)).encode(),
        "jsonl": (
            json.dumps(doc) + "\n" + json.dumps(_otlp_json(make_trace_request(2, seed=7))) + "\n"
        ).encode(),
        "jsonl.gz": gzip.compress((json.dumps(doc) + "\n").encode()),
    }[fmt]
    path = tmp_path / f"capture.{fmt}"  # the name says nothing the decoder relies on
    path.write_bytes(data)
    with Lab() as lab:
        counts = lab.load(path)
        expected = 6 if fmt in ("framed", "jsonl") else 4
        assert counts["spans"] == expected
        got = _spans(lab)
    with Lab() as ref:
        ref.load_bytes(pb)
        want = _spans(ref)
    got4 = got.filter(got["trace_id"] == want["trace_id"][0])
    assert got4.to_dicts() == want.to_dicts()
    first = want.to_dicts()[0]
    assert first["trace_id"] == req.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    assert first["parent_span_id"] is None and first["kind"] == "SERVER" and first["code"] == 200


def test_trainticket_ids_equal_the_hex_in_the_files(trainticket_lab):
    path = sorted((TRAINTICKET / "faulty").glob("*.gz"))[0]
    with gzip.open(path, "rt") as f:
        doc = json.loads(f.readline())
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][5]
    row = trainticket_lab.sql(
        "SELECT trace_id, parent_span_id, name, epoch_ns(start_time) AS s FROM spans WHERE span_id = ?",
        [span["spanId"].lower()],
    ).to_dicts()
    assert row == [
        {
            "trace_id": span["traceId"].lower(),
            "parent_span_id": span.get("parentSpanId"),
            "name": span["name"],
            "s": int(span["startTimeUnixNano"]),
        }
    ]
    svc = trainticket_lab.sql("SELECT count(DISTINCT service_name) AS n FROM spans")["n"][0]
    assert svc > 20


def test_signal_is_detected_from_protobuf_content():
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    logs = ExportLogsServiceRequest()
    rec = logs.resource_logs.add().scope_logs.add().log_records.add()
    rec.time_unix_nano, rec.severity_number, rec.body.string_value = 5, 9, "hello"
    metrics = ExportMetricsServiceRequest()
    m = metrics.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name = "requests"
    p = m.sum.data_points.add()
    p.as_int, p.time_unix_nano = 3, 10
    for req, table in ((logs, "logs"), (metrics, "metric_sum"), (make_trace_request(1), "spans")):
        tables = {t for b in decode_bytes(req.SerializeToString()) for t in b if not t.startswith("_")}
        assert tables == {table}


# ---------------------------------------------------------------- bad input


def _load_error(tmp_path, data: bytes, name: str = "bad.bin", **kw) -> DecodeError:
    path = tmp_path / name
    path.write_bytes(data)
    with Lab() as lab, pytest.raises(DecodeError) as info:
        lab.load(path, **kw)
    assert str(path) in str(info.value), "the error names the file"
    return info.value


def test_empty_file(tmp_path):
    assert "empty" in str(_load_error(tmp_path, b""))


def test_binary_garbage(tmp_path):
    err = _load_error(tmp_path, bytes(range(7, 200)) * 3)
    assert isinstance(err, UnsupportedFormatError) and "not an OTLP protobuf request" in str(err)


def test_non_otlp_json(tmp_path):
    err = _load_error(tmp_path, b'{"name": "not otlp", "items": []}', "x.json")
    assert isinstance(err, UnsupportedFormatError) and "'name'" in str(err) and "resourceSpans" in str(err)


def test_wrong_signal(tmp_path):
    err = _load_error(tmp_path, make_trace_request(2).SerializeToString(), signal="logs")
    assert "traces request" in str(err) and "logs was asked for" in str(err)


def test_truncated_protobuf_names_the_byte(tmp_path):
    pb = make_trace_request(5).SerializeToString()
    err = _load_error(tmp_path, pb[: len(pb) - 37])
    assert "byte" in str(err) and "truncated" in str(err)


def test_truncated_gzip(tmp_path):
    data = gzip.compress((json.dumps(_otlp_json(make_trace_request(50))) + "\n").encode() * 20)
    err = _load_error(tmp_path, data[: len(data) // 2], "cut.jsonl.gz")
    assert "truncated" in str(err)


def test_truncated_json_lines_names_the_line(tmp_path):
    line = json.dumps(_otlp_json(make_trace_request(3)))
    err = _load_error(tmp_path, (line + "\n" + line + "\n" + line[:-40]).encode(), "cut.jsonl")
    assert err.where == "line 3" and "truncated" in str(err)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("traceId", "zz" * 16, "must be hex"),
        ("traceId", "5B8EFFF7", "trace_id of row 0 is 4 bytes"),
        ("spanId", "EEE19B7EC3C1B174AA", "span_id of row 0 is 9 bytes"),
        ("startTimeUnixNano", "soon", "startTimeUnixNano must be an integer"),
        ("kind", "SPAN_KIND_SIDEWAYS", "kind must be one of"),
    ],
)
def test_bad_span_fields_are_named(tmp_path, field, value, message):
    doc = _otlp_json(make_trace_request(1))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0][field] = value
    err = _load_error(tmp_path, json.dumps(doc).encode(), "bad.json")
    assert message in str(err)


def test_bad_attribute_value_is_named(tmp_path):
    doc = _otlp_json(make_trace_request(1))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"] = [
        {"key": "n", "value": {"intValue": "1.5e"}}
    ]
    err = _load_error(tmp_path, json.dumps(doc).encode(), "bad.json")
    assert "spans[0].attributes[0] ('n'): intValue must be an integer" in str(err)


def test_failed_file_leaves_the_database_as_it_was(tmp_path):
    good = tmp_path / "good.pb"
    good.write_bytes(make_trace_request(3).SerializeToString())
    line = json.dumps(_otlp_json(make_trace_request(4, seed=3)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line + "\n" + line.replace('"traceId": "', '"traceId": "XY', 1) + "\n")
    with Lab(tmp_path / "db.duckdb") as lab:
        lab.load(good)
        with pytest.raises(DecodeError, match="line 2"):
            lab.load(bad)  # line 1 was fine, but the file is one transaction
        assert lab.counts()["spans"] == 3
        assert lab.sql("SELECT count(*) AS n FROM loads")["n"][0] == 1


def test_skip_bad_lines_reports_them(tmp_path):
    line = json.dumps(_otlp_json(make_trace_request(4, seed=3)))
    bad = tmp_path / "mixed.jsonl"
    bad.write_text(
        line
        + "\n{not json\n"
        + json.dumps({"hello": 1})
        + "\n"
        + line.replace('"traceId": "', '"traceId": "XY', 1)
        + "\n"
    )
    with Lab() as lab:
        result = lab.load(bad, on_error="skip")
        assert result["spans"] == 4
        assert [s.where for s in result.skipped] == ["line 2", "line 3", "line 4"]
        assert "invalid JSON" in result.skipped[0].reason


def test_same_file_twice_is_not_duplicated_unless_asked(tmp_path):
    path = tmp_path / "a.pb"
    path.write_bytes(make_trace_request(3).SerializeToString())
    copy = tmp_path / "copy-of-a.pb"
    copy.write_bytes(path.read_bytes())
    with Lab() as lab:
        assert lab.load(path)["spans"] == 3
        again = lab.load(path, copy)
        assert again["spans"] == 0 and [f.status for f in again.files] == ["duplicate", "duplicate"]
        assert lab.load(path, duplicates=True)["spans"] == 3
        assert lab.counts()["spans"] == 6


def test_duplicate_attribute_keys_keep_the_last_value(lab):
    req = make_trace_request(1)
    kv = req.resource_spans[0].scope_spans[0].spans[0].attributes.add()
    kv.key, kv.value.int_value = "http.response.status_code", 503
    lab.load_bytes(req.SerializeToString())
    assert lab.sql("SELECT attributes['http.response.status_code']::BIGINT AS c FROM spans")[
        "c"
    ].to_list() == [503]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_hostile_nesting_is_refused_cleanly(lab):
    # An attribute nested 300 arrays deep (beyond protobuf's depth limit): a DecodeError, not a crash
    from otlp_lab.otlp._wireviews import TracesView

    inner = b"\x0a\x01x"  # AnyValue{string_value: "x"}
    for _ in range(300):
        arr = b"\x0a" + _varint(len(inner)) + inner  # ArrayValue{values: [inner]}
        inner = b"\x2a" + _varint(len(arr)) + arr  # AnyValue{array_value: arr}
    kv = b"\x0a\x04deep\x12" + _varint(len(inner)) + inner
    view = TracesView.FromString(make_trace_request(1).SerializeToString())
    view.resource_spans[0].scope_spans[0].spans[0].attributes.append(kv)
    with pytest.raises(DecodeError, match="attribute is not a valid KeyValue"):
        lab.load_bytes(view.SerializeToString())
    assert lab.counts()["spans"] == 0


@given(
    key=st.text(max_size=140),
    value=st.one_of(
        st.tuples(st.just("string_value"), st.text(max_size=200)),
        st.tuples(st.just("int_value"), st.integers(-(2**63), 2**63 - 1)),
        st.tuples(st.just("double_value"), st.floats(allow_nan=False)),
        st.tuples(st.just("bool_value"), st.booleans()),
        st.tuples(st.just("bytes_value"), st.binary(max_size=20)),
    ),
)
def test_wire_fast_path_agrees_with_protobuf(key, value):
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    from otlp_lab.otlp._anyvalue import AttrTable, _scalar_kv

    kv = KeyValue(key=key)
    setattr(kv.value, *value)
    raw = kv.SerializeToString()
    fast, slow = AttrTable(), AttrTable()
    if _scalar_kv(raw) is not None:
        fast.add(*_scalar_kv(raw))
    else:
        fast.add_pb_value(kv.key, kv.value)
    slow.add_pb_value(kv.key, kv.value)
    assert fast.to_arrow()[0].equals(slow.to_arrow()[0])
    assert fast.to_arrow()[1].to_pylist() == slow.to_arrow()[1].to_pylist()


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_decompress_bytes_refuses_bombs_and_truncation(codec):
    from otlp_lab import BodyTooLargeError
    from otlp_lab.otlp._source import decompress_bytes

    compress = gzip.compress if codec == "gzip" else zstandard.ZstdCompressor().compress
    body = compress(b"\0" * 5_000_000)  # a few KB that inflate to 5 MB
    assert len(decompress_bytes(body, limit=5_000_000)) == 5_000_000
    with pytest.raises(BodyTooLargeError, match="1,000-byte limit"):
        decompress_bytes(body, limit=1000)
    with pytest.raises(DecodeError, match="truncated"):
        decompress_bytes(body[: len(body) - 6])
