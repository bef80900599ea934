"""Jaeger JSON and Zipkin v2 JSON in: content-sniffed, mapped as the OpenTelemetry Collector's
translators map them (pkg/translator/jaeger, pkg/translator/zipkin/zipkinv2).

Real files from the Jaeger, Jaeger UI, Zipkin and Collector repositories are in
tests/data/jaeger and tests/data/zipkin (see the NOTICE files there); rules the files do not
exercise use small hand-written spans.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from otlp_lab.errors import DecodeError, UnsupportedFormatError
from otlp_lab.store import Lab

DATA = Path(__file__).resolve().parents[1] / "data"
JAEGER = DATA / "jaeger"
ZIPKIN = DATA / "zipkin"
T1 = "0af7651916cd43dd8448eb211c80319c"


def load(doc, *, source: str = "<bytes>") -> Lab:
    lab = Lab()
    lab.load_bytes(orjson.dumps(doc), source=source)
    return lab


def spans(lab: Lab) -> dict[str, dict]:
    rows = lab.sql(
        "SELECT span_id, trace_id, parent_span_id, name, kind, status_code, status_message, service_name, "
        "trace_state, scope_name, scope_version, start_time, end_time, duration_ns, "
        "map_keys(attributes) AS keys, map_keys(resource_attributes) AS resource_keys FROM spans"
    ).to_dicts()
    return {r["span_id"]: r for r in rows}


def attr(lab: Lab, span_id: str, key: str, *, column: str = "attributes") -> tuple[str, object]:
    """(VARIANT type, value) of one attribute of one span."""
    row = lab.sql(
        f"SELECT variant_typeof({column}[$k]) AS t, {column}[$k] AS v FROM spans WHERE span_id = $s",
        {"k": key, "s": span_id},
    ).row(0)
    return row[0], (json.loads(row[1]) if row[1] is not None else None)


def jspan(span_id: str = "1", *, tags=(), refs=(), logs=(), pid: str = "p1", **kw) -> dict:
    return {
        "traceID": T1,
        "spanID": span_id,
        "operationName": kw.pop("name", "op"),
        "references": list(refs),
        "startTime": 1_700_000_000_000_000,
        "duration": 1500,
        "tags": [{"key": k, "type": t, "value": v} for k, t, v in tags],
        "logs": list(logs),
        "processID": pid,
        **kw,
    }


def jtrace(*spans_, processes=None) -> dict:
    processes = processes or {"p1": {"serviceName": "cart", "tags": []}}
    return {"data": [{"traceID": T1, "spans": list(spans_), "processes": processes}]}


def zspan(span_id: str = "00f067aa0ba902b7", **kw) -> dict:
    base = {
        "traceId": T1,
        "id": span_id,
        "name": "get /cart",
        "timestamp": 1_700_000_000_000_000,
        "duration": 2500,
        "localEndpoint": {"serviceName": "frontend"},
    }
    base.update(kw)
    return base


# ---------------------------------------------------------------- Jaeger: real files


def test_jaeger_query_api_answer_loads():
    lab = Lab()
    result = lab.load(JAEGER / "otlp2jaeger-out.json")
    assert result["spans"] == 1
    (s,) = spans(lab).values()
    assert s["trace_id"] == "83a9efd15c1c98a977e0711cc93ee28b"
    assert s["parent_span_id"] == "909541b92cf05311"
    assert s["service_name"] == "telemetrygen"
    assert s["kind"] == "SERVER" and "span.kind" not in s["keys"]
    assert s["duration_ns"] == 123_000
    # otel.library.name is not the translator's scope tag (otel.scope.name): it stays an attribute
    assert attr(lab, s["span_id"], "otel.library.name") == ("VARCHAR", "telemetrygen")


def test_jaeger_ui_trace_loads_with_parents_and_services():
    lab = Lab()
    assert lab.load(JAEGER / "testTraceNormal.json")["spans"] == 5
    s = spans(lab)
    assert {r["service_name"] for r in s.values()} == {"customers-service", "api-gateway"}
    root = s["150c193cf155b46b"]
    assert root["parent_span_id"] is None and root["kind"] == "SERVER"
    assert s["22be69e72cbcde0b"]["parent_span_id"] == "150c193cf155b46b"
    assert s["22be69e72cbcde0b"]["kind"] == "CLIENT"
    assert s["622a5079b565623e"]["parent_span_id"] == "e821b549888cbc3b"
    assert s["622a5079b565623e"]["kind"] == "UNSPECIFIED"
    assert attr(lab, "622a5079b565623e", "sql") == ("VARCHAR", "select * from pet")
    tree = lab.sql("SELECT count(*) FROM spans c JOIN spans p ON c.parent_span_id = p.span_id").item()
    assert tree == 4  # every non-root span's parent is in the file


def test_jaeger_converter_fixture_typed_tags_status_events_links():
    lab = Lab()
    rows = lab.load(JAEGER / "ui_01.json")
    assert rows["spans"] == 5 and rows["span_events"] == 2 and rows["span_links"] == 2
    s = spans(lab)
    # ids with leading zeros restored: "2" -> 16 hex digits, 64-bit trace id -> 32
    assert {r["trace_id"] for r in s.values()} == {"0" * 31 + "1"}
    assert "0000000000000003" in s and s["0000000000000003"]["parent_span_id"] == "0000000000000002"
    assert s["0000000000000003"]["service_name"] == "service-y"
    typed = lab.sql(
        "SELECT variant_typeof(attributes['peer.service']) s, variant_typeof(attributes['peer.ipv4']) i, "
        "variant_typeof(attributes['temperature']) d, variant_typeof(attributes['blob']) b, "
        "attributes['peer.ipv4']::BIGINT iv, attributes['temperature']::DOUBLE dv, "
        "attributes['blob']::BLOB bv, status_code, map_keys(attributes) keys "
        "FROM spans WHERE name = 'some-operation' AND parent_span_id IS NULL"
    ).to_dicts()[0]
    assert (typed["s"], typed["i"], typed["d"], typed["b"]) == ("VARCHAR", "INT64", "DOUBLE", "BLOB")
    assert (typed["iv"], typed["dv"], typed["bv"]) == (23456, 72.5, b"\x00\x00\x30\x39")
    assert typed["status_code"] == "ERROR" and "error" not in typed["keys"]  # error=true -> status, removed
    ev = lab.sql("SELECT name, map_keys(attributes) k FROM span_events ORDER BY seq").to_dicts()
    assert ev[0] == {"name": "some-event", "k": []}  # the `event` field names the event
    assert ev[1]["name"] == "" and ev[1]["k"] == ["x"]
    links = lab.sql(
        "SELECT linked_trace_id, linked_span_id, attributes['opentracing.ref_type']::VARCHAR rt "
        "FROM span_links WHERE span_id = '0000000000000004' ORDER BY seq"
    ).to_dicts()
    # span 4: CHILD_OF in another trace and FOLLOWS_FROM -> links; CHILD_OF 2 in its trace -> parent
    assert s["0000000000000004"]["parent_span_id"] == "0000000000000002"
    assert links == [
        {"linked_trace_id": "0" * 30 + "ff", "linked_span_id": "00000000000000ff", "rt": "child_of"},
        {"linked_trace_id": "0" * 31 + "1", "linked_span_id": "0000000000000002", "rt": "follows_from"},
    ]


# ---------------------------------------------------------------- Jaeger: one rule each


def test_jaeger_process_is_the_resource():
    proc = {
        "serviceName": "cart",
        "tags": [
            {"key": "hostname", "type": "string", "value": "node-1"},
            {"key": "jaeger.version", "type": "string", "value": "Go-2.30.0"},
            {"key": "ip", "type": "string", "value": "10.0.0.7"},
            {"key": "pid", "type": "int64", "value": 42},
        ],
    }
    lab = load(jtrace(jspan("1"), processes={"p1": proc}))
    assert spans(lab)["0000000000000001"]["service_name"] == "cart"
    res = lab.sql("SELECT resource_attributes::JSON::VARCHAR r FROM spans").item()
    assert json.loads(res) == {
        "service.name": "cart",
        "host.name": "node-1",
        "opencensus.exporterversion": "Jaeger-Go-2.30.0",
        "ip": "10.0.0.7",
        "pid": 42,
    }


def test_jaeger_span_kind_tag():
    kinds = ["client", "server", "producer", "consumer", "internal", "weird"]
    doc = jtrace(*(jspan(str(i + 1), tags=[("span.kind", "string", k)]) for i, k in enumerate(kinds)))
    s = spans(load(doc))
    got = [s[f"{i + 1:016x}"]["kind"] for i in range(len(kinds))]
    assert got == ["CLIENT", "SERVER", "PRODUCER", "CONSUMER", "INTERNAL", "UNSPECIFIED"]
    assert all("span.kind" not in r["keys"] for r in s.values())


def test_jaeger_typed_tags_from_strings_and_big_ints():
    tags = [
        ("b", "bool", "true"),
        ("n", "int64", "9007199254740993"),  # beyond 2**53: the query API writes it as a string
        ("f", "float64", "0.25"),
        ("h", "binary", "AAAwOQ=="),
    ]
    lab = load(jtrace(jspan("1", tags=tags)))
    sid = "0000000000000001"
    assert attr(lab, sid, "b") == ("BOOL_TRUE", True)
    assert lab.sql("SELECT attributes['n']::BIGINT FROM spans").item() == 9007199254740993
    assert attr(lab, sid, "f") == ("DOUBLE", 0.25)
    assert attr(lab, sid, "h")[0] == "BLOB"


def test_jaeger_error_tag_and_descriptions():
    doc = jtrace(
        jspan("1", tags=[("error", "bool", True), ("otel.status_description", "string", "boom")]),
        jspan("2", tags=[("error", "bool", True), ("http.status_message", "string", "Bad Gateway")]),
        jspan("3", tags=[("error", "bool", False)]),
        jspan("4", tags=[("error", "string", "true")]),  # not a bool: an ordinary attribute
    )
    lab = load(doc)
    s = spans(lab)
    assert (s["0000000000000001"]["status_code"], s["0000000000000001"]["status_message"]) == (
        "ERROR",
        "boom",
    )
    assert s["0000000000000001"]["keys"] == []
    assert (s["0000000000000002"]["status_code"], s["0000000000000002"]["status_message"]) == (
        "ERROR",
        "Bad Gateway",
    )
    assert "http.status_message" in s["0000000000000002"]["keys"]  # read, not removed
    assert s["0000000000000003"]["status_code"] == "UNSET"
    assert attr(lab, "0000000000000003", "error") == ("BOOL_FALSE", False)
    assert s["0000000000000004"]["status_code"] == "UNSET" and "error" in s["0000000000000004"]["keys"]


def test_jaeger_otel_status_code_tags():
    doc = jtrace(
        jspan(
            "1", tags=[("otel.status_code", "string", "OK"), ("otel.status_description", "string", "fine")]
        ),
        jspan("2", tags=[("otel.status_code", "string", "error")]),
        # error=true wins; otel.status_code is removed anyway
        jspan("3", tags=[("error", "bool", True), ("otel.status_code", "string", "OK")]),
    )
    s = spans(load(doc))
    assert (s["0000000000000001"]["status_code"], s["0000000000000001"]["status_message"]) == ("OK", "fine")
    assert s["0000000000000002"]["status_code"] == "ERROR"
    assert s["0000000000000003"]["status_code"] == "ERROR"
    assert all(r["keys"] == [] for r in s.values())


def test_jaeger_http_status_code_fallback():
    doc = jtrace(
        jspan("1", tags=[("span.kind", "string", "client"), ("http.status_code", "int64", 404)]),
        jspan("2", tags=[("span.kind", "string", "server"), ("http.status_code", "int64", 404)]),
        jspan("3", tags=[("span.kind", "string", "server"), ("http.status_code", "string", "503")]),
        jspan("4", tags=[("http.status_code", "int64", 200)]),
    )
    s = spans(load(doc))
    got = [s[f"{i:016x}"]["status_code"] for i in range(1, 5)]
    assert got == ["ERROR", "UNSET", "ERROR", "UNSET"]
    assert all("http.status_code" in r["keys"] for r in s.values())  # kept as an attribute


def test_jaeger_logs_become_events():
    logs = [
        {
            "timestamp": 1_700_000_000_000_700,
            "fields": [
                {"key": "event", "type": "string", "value": "retry"},
                {"key": "attempt", "type": "int64", "value": 2},
            ],
        }
    ]
    lab = load(jtrace(jspan("1", logs=logs)))
    ev = lab.sql(
        "SELECT name, epoch_ns(time) t, variant_typeof(attributes['attempt']) ty, map_keys(attributes) k "
        "FROM span_events"
    ).to_dicts()
    assert ev == [{"name": "retry", "t": 1_700_000_000_000_700_000, "ty": "INT64", "k": ["attempt"]}]


def test_jaeger_follows_from_alone_is_the_parent_and_a_link():
    # Jaeger's Span.ParentSpanID: a CHILD_OF in the trace, else the first FOLLOWS_FROM in it;
    # the translator then keeps every reference but the CHILD_OF parent as a link.
    refs = [{"refType": "FOLLOWS_FROM", "traceID": T1, "spanID": "1"}]
    lab = load(jtrace(jspan("1"), jspan("2", refs=refs)))
    assert spans(lab)["0000000000000002"]["parent_span_id"] == "0000000000000001"
    links = lab.sql("SELECT linked_span_id, attributes['opentracing.ref_type']::VARCHAR rt FROM span_links")
    assert links.to_dicts() == [{"linked_span_id": "0000000000000001", "rt": "follows_from"}]


def test_jaeger_scope_and_trace_state_tags():
    tags = [
        ("otel.scope.name", "string", "io.opentelemetry.okhttp"),
        ("otel.scope.version", "string", "1.2"),
        ("w3c.tracestate", "string", "vendor=1"),
        ("kept", "string", "yes"),
    ]
    s = spans(load(jtrace(jspan("1", tags=tags))))["0000000000000001"]
    assert (s["scope_name"], s["scope_version"], s["trace_state"]) == (
        "io.opentelemetry.okhttp",
        "1.2",
        "vendor=1",
    )
    assert s["keys"] == ["kept"]


def test_jaeger_several_traces_and_embedded_process():
    t2 = "1" * 32
    embedded = {
        "traceID": t2,
        "spanID": "aa",
        "operationName": "x",
        "startTime": 1,
        "duration": 1,
        "process": {"serviceName": "db", "tags": []},
    }
    doc = jtrace(jspan("1"))
    doc["data"].append({"traceID": t2, "spans": [embedded], "processes": {}})
    s = spans(load(doc))
    assert {r["service_name"] for r in s.values()} == {"cart", "db"}
    assert s["00000000000000aa"]["trace_id"] == t2


# ---------------------------------------------------------------- Zipkin: real files


def test_zipkin_lens_yelp_trace():
    lab = Lab()
    rows = lab.load(ZIPKIN / "yelp.json")
    assert rows["spans"] == 16 and rows["span_events"] == 1
    services = set(lab.sql("SELECT DISTINCT service_name FROM spans")["service_name"])
    assert services == {"mobile_api", "spectre", "yelp-main", "yelp_main/api_proxy", "unknown", "routing"}
    # 64-bit trace id -> 128-bit with leading zeros
    assert set(lab.sql("SELECT DISTINCT trace_id FROM spans")["trace_id"]) == {"0" * 16 + "a03ee8fff1dcd9b9"}
    roots = lab.sql("SELECT span_id, kind FROM spans WHERE parent_span_id IS NULL").to_dicts()
    assert roots == [{"span_id": "2e8cfb154b59a41f", "kind": "SERVER"}]
    # a shared (server) span keeps the client's id: two rows, as the translator emits them
    shared = lab.sql("SELECT kind FROM spans WHERE span_id = '668ed78ad94b35a1' ORDER BY kind")[
        "kind"
    ].to_list()
    assert shared == ["CLIENT", "SERVER"]
    assert attr(lab, "6a65182ea4f684c3", "peer.service") == ("VARCHAR", "memcache")
    assert attr(lab, "15fc03927f0f68df", "net.peer.port") == ("INT64", 31882)
    assert attr(lab, "6a65182ea4f684c3", "requests") == ("VARCHAR", "1")  # tags stay strings
    assert attr(lab, "6a65182ea4f684c3", "net.host.port") == ("INT64", 31049)
    ev = lab.sql("SELECT span_id, name FROM span_events").to_dicts()
    assert ev == [{"span_id": "668ed78ad94b35a1", "name": "py_zipkin.logging_end"}]


def test_zipkin_lens_db_trace_and_skew():
    lab = Lab()
    assert lab.load(ZIPKIN / "simple-db-p6.json")["spans"] == 5
    kids = lab.sql("SELECT count(*) FROM spans WHERE parent_span_id = '19f84f102048e047'").item()
    assert kids == 4
    assert attr(lab, "19f84f102048e047", "net.peer.ip") == ("VARCHAR", "::1")
    assert attr(lab, "19f84f102048e047", "net.peer.port") == ("INT64", 53367)
    assert attr(lab, "19f84f102048e047", "net.host.ip") == ("VARCHAR", "172.23.250.16")
    assert attr(lab, "5d532ef6fed52445", "peer.service") == ("VARCHAR", "app_db")
    lab2 = Lab()
    assert lab2.load(ZIPKIN / "skew.json")["spans"] == 4
    assert set(lab2.sql("SELECT DISTINCT service_name FROM spans")["service_name"]) == {
        "servicea",
        "serviceb",
    }
    s = spans(lab2)
    assert s["43210ae0c10d1234"]["kind"] == "UNSPECIFIED" and s["bf396325699c84bf"]["parent_span_id"] is None


def test_zipkin_collector_receiver_samples_status():
    lab = Lab()
    lab.load(ZIPKIN / "sample3.json")
    (s,) = spans(lab).values()
    assert s["trace_id"] == "4d1e00c0db9010db86154a4ba6e91385" and s["parent_span_id"] == "86154a4ba6e91385"
    assert s["service_name"] is None  # no localEndpoint.serviceName: no service.name (the translator's rule)
    # "ERROR" is not among the translator's status names (STATUS_CODE_ERROR, Error): UNSET, message kept
    assert (s["status_code"], s["status_message"]) == ("UNSET", "Something failed")
    assert "otel.status_code" not in s["keys"] and "otel.status_description" not in s["keys"]
    assert attr(lab, s["span_id"], "net.host.ip") == ("VARCHAR", "7::80:807f")  # Go's IPv6 text form
    assert attr(lab, s["span_id"], "net.peer.ip") == ("VARCHAR", "192.168.99.101")
    assert attr(lab, s["span_id"], "peer.service") == ("VARCHAR", "backend")
    assert [r["name"] for r in lab.sql("SELECT name FROM span_events ORDER BY seq").to_dicts()] == [
        "foo",
        "bar",
    ]
    lab4 = Lab()
    lab4.load(ZIPKIN / "sample4.json")
    (s4,) = spans(lab4).values()
    assert s4["status_code"] == "ERROR"  # any error tag is an error ...
    assert attr(lab4, s4["span_id"], "error") == (
        "VARCHAR",
        "Non-basic error message",
    )  # ... kept unless "true"


# ---------------------------------------------------------------- Zipkin: one rule each


def test_zipkin_kind_and_span_kind_tag():
    doc = [
        zspan("1", kind="CLIENT"),
        zspan("2", kind="PRODUCER"),
        zspan("3", kind="CONSUMER"),
        zspan("4", tags={"span.kind": "internal"}),
        zspan("5", tags={"span.kind": "client"}),  # only "internal" is read from the tag
    ]
    s = spans(load(doc))
    got = [s[f"{i:016x}"]["kind"] for i in range(1, 6)]
    assert got == ["CLIENT", "PRODUCER", "CONSUMER", "INTERNAL", "UNSPECIFIED"]
    assert all("span.kind" not in r["keys"] for r in s.values())


def test_zipkin_parent_equal_to_id_is_no_parent():
    s = spans(load([zspan("a", parentId="a"), zspan("b", parentId="a")]))
    assert s["000000000000000a"]["parent_span_id"] is None
    assert s["000000000000000b"]["parent_span_id"] == "000000000000000a"


def test_zipkin_status_tags():
    doc = [
        zspan("1", tags={"otel.status_code": "STATUS_CODE_ERROR", "otel.status_description": "db down"}),
        zspan("2", tags={"otel.status_code": "Ok"}),
        zspan("3", tags={"error": "true"}),
    ]
    s = spans(load(doc))
    assert (s["0000000000000001"]["status_code"], s["0000000000000001"]["status_message"]) == (
        "ERROR",
        "db down",
    )
    assert s["0000000000000002"]["status_code"] == "OK"
    assert s["0000000000000003"]["status_code"] == "ERROR"
    assert all(r["keys"] == [] for r in s.values())


def test_zipkin_resource_tags_scope_and_trace_state():
    doc = [
        zspan(
            "1",
            tags={
                "host.name": "node-1",
                "otel.library.name": "zipkin-go",
                "otel.library.version": "0.4",
                "w3c.tracestate": "v=1",
                "http.method": "GET",
            },
        ),
        # same service and scope: the resource comes from the group's first span; this tag is dropped
        zspan("2", tags={"host.name": "node-2", "otel.library.name": "zipkin-go"}),
    ]
    lab = load(doc)
    s = spans(lab)
    first = s["0000000000000001"]
    assert (first["scope_name"], first["scope_version"], first["trace_state"]) == ("zipkin-go", "0.4", "v=1")
    assert first["keys"] == ["http.method"]
    assert s["0000000000000002"]["keys"] == []
    hosts = lab.sql("SELECT DISTINCT resource_attributes['host.name']::VARCHAR h FROM spans")["h"].to_list()
    assert hosts == ["node-1"]


def test_zipkin_missing_timestamp_and_links_and_encoded_events():
    link = f'{T1}|00f067aa0ba902b7|k=v|{{"n":3}}|1'
    doc = [
        zspan(
            "1",
            timestamp=None,
            tags={"otlp.link.0": link},
            annotations=[{"timestamp": 1_700_000_000_000_100, "value": 'retry|{"attempt":2,"ok":true}|0'}],
        )
    ]
    doc[0].pop("timestamp")
    lab = load(doc)
    assert lab.sql("SELECT epoch_ns(end_time) FROM spans").item() == 2_500_000  # start 0 + duration
    assert attr(lab, "0000000000000001", "otel.zipkin.absentField.startTime") == ("BOOL_TRUE", True)
    ln = lab.sql(
        "SELECT linked_span_id, trace_state, attributes['n']::BIGINT n, dropped_attributes_count d FROM span_links"
    )
    assert ln.to_dicts() == [{"linked_span_id": "00f067aa0ba902b7", "trace_state": "k=v", "n": 3, "d": 1}]
    ev = lab.sql(
        "SELECT name, attributes['attempt']::BIGINT a, attributes['ok']::BOOLEAN ok FROM span_events"
    )
    assert ev.to_dicts() == [{"name": "retry", "a": 2, "ok": True}]


def test_zipkin_list_of_traces_and_json_lines(tmp_path):
    lab = load([[zspan("1"), zspan("2", parentId="1")], [zspan("3", traceId="abc")]])
    s = spans(lab)
    assert len(s) == 3 and s["0000000000000003"]["trace_id"] == "0" * 29 + "abc"
    f = tmp_path / "spans.jsonl.gz"
    f.write_bytes(gzip.compress(orjson.dumps([zspan("1")]) + b"\n" + orjson.dumps([zspan("2")]) + b"\n"))
    lab2 = Lab()
    assert lab2.load(f)["spans"] == 2


def test_zipkin_v1_is_refused_by_name():
    v1 = [{"traceId": "a", "id": "a", "name": "get", "annotations": [], "binaryAnnotations": []}]
    with pytest.raises(UnsupportedFormatError, match="Zipkin v1"):
        load(v1)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("path", [JAEGER / "ui_01.json", ZIPKIN / "yelp.json"], ids=["jaeger", "zipkin"])
def test_truncated_real_file_is_refused_and_the_lab_is_unchanged(tmp_path, path):
    lab = Lab()
    lab.load(ZIPKIN / "skew.json")
    cut = tmp_path / path.name
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated"):
        lab.load(cut)
    assert lab.sql("SELECT count(*) FROM spans").item() == 4


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        (jtrace(jspan("1"), jspan("not-hex")), "data[0].spans[1].spanID"),
        (jtrace(jspan("1", tags=[("n", "int64", "x")])), "data[0].spans[0].tags[0].value"),
        (jtrace(jspan("1", tags=[("n", "decimal", 1)])), "data[0].spans[0].tags[0].type"),
        (jtrace(jspan("1", pid="p9")), "data[0].spans[0].processID"),
        (
            jtrace(jspan("1", refs=[{"refType": "PARENT", "traceID": T1, "spanID": "2"}])),
            "references[0].refType",
        ),
        ([zspan("1"), zspan("1", traceId="z" * 32)], "[1].traceId"),
        ([zspan("1", timestamp=-5)], "[0].timestamp"),
        ([zspan("1", tags={"n": 1})], "[0].tags.n"),
        ([zspan("1", remoteEndpoint={"ipv4": "999.1.1.1"})], "[0].remoteEndpoint.ipv4"),
        ([zspan("1", id="0" * 17)], "[0].id"),
    ],
    ids=[
        "jaeger-span-id",
        "jaeger-int",
        "jaeger-type",
        "jaeger-process",
        "jaeger-ref",
        "zipkin-trace-id",
        "zipkin-time",
        "zipkin-tag",
        "zipkin-ip",
        "zipkin-id-length",
    ],
)
def test_bad_field_is_a_named_error_with_its_path_and_the_lab_is_unchanged(tmp_path, doc, where):
    lab = Lab()
    lab.load(JAEGER / "testTraceNormal.json")
    f = tmp_path / "bad.json"
    f.write_bytes(orjson.dumps(doc))
    with pytest.raises(DecodeError, match="bad.json") as info:
        lab.load(f)
    assert where in str(info.value)
    assert lab.sql("SELECT count(*) FROM spans").item() == 5


def test_cli_loads_jaeger_and_zipkin(tmp_path):
    import subprocess
    import sys

    db = str(tmp_path / "x.duckdb")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "otlp_lab.cli",
            "load",
            str(JAEGER / "testTraceNormal.json"),
            str(ZIPKIN / "yelp.json"),
            "--db",
            db,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert Lab(db, read_only=True).sql("SELECT count(*) FROM spans").item() == 21


def test_jaeger_api_v2_protobuf_json_is_refused_by_name():
    # the shape of jaegertracing/jaeger model/converter/json/fixtures/domain_01.json
    doc = {
        "spans": [
            {
                "traceId": "1",
                "spanId": "2",
                "operationName": "x",
                "startTime": "2017-01-26T16:46:31.639875139-05:00",
                "duration": "5000ns",
                "process": {"serviceName": "service-x"},
            }
        ],
        "processMap": [],
    }
    with pytest.raises(UnsupportedFormatError, match="api_v2 protobuf JSON"):
        load(doc)
