"""The Lab's analysis views on known small traces and on the TrainTicket capture."""

from __future__ import annotations

import polars as pl
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlp_lab import ConfigError, Lab

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def _trace(spans: list[tuple[str, str | None, str, str, int, int, int, int]]) -> bytes:
    """spans: (span_id hex, parent hex, service, name, kind, start_ms, end_ms, status)."""
    req = ExportTraceServiceRequest()
    by_service: dict[str, object] = {}
    for sid, parent, svc, name, kind, s, e, status in spans:
        if svc not in by_service:
            rs = req.resource_spans.add()
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = "service.name", svc
            by_service[svc] = rs.scope_spans.add()
        sp = by_service[svc].spans.add()
        sp.trace_id = bytes.fromhex("ab" * 16)
        sp.span_id = bytes.fromhex(sid)
        if parent:
            sp.parent_span_id = bytes.fromhex(parent)
        sp.name, sp.kind = name, kind
        sp.start_time_unix_nano, sp.end_time_unix_nano = T0 + s * MS, T0 + e * MS
        sp.status.code = status
    return req.SerializeToString()


# frontend (0-100ms) -> client call (10-60) -> cart server (12-58, error) -> db client (20-40)
#                    -> client call (50-90) -> pay server (52-88)
TRACE = [
    ("0000000000000001", None, "frontend", "GET /checkout", 2, 0, 100, 0),
    ("0000000000000002", "0000000000000001", "frontend", "call cart", 3, 10, 60, 0),
    ("0000000000000003", "0000000000000002", "cart", "GetCart", 2, 12, 58, 2),
    ("0000000000000004", "0000000000000003", "cart", "SELECT", 3, 20, 40, 0),
    ("0000000000000005", "0000000000000001", "frontend", "call pay", 3, 50, 90, 0),
    ("0000000000000006", "0000000000000005", "pay", "Charge", 2, 52, 88, 0),
]


@pytest.fixture
def small(lab: Lab) -> Lab:
    payload = bytearray(_trace(TRACE))
    lab.load_bytes(bytes(payload))
    # the db client span names its uninstrumented peer
    lab.con.execute(
        "UPDATE spans SET attributes = map(['db.system.name'], ['postgresql'::VARIANT]) WHERE span_id = '0000000000000004'"
    )
    return lab


def test_span_tree_depth_root_and_self_time(small):
    tree = {r["span_id"][-1]: r for r in small.span_tree().to_dicts()}
    assert [tree[k]["depth"] for k in "123456"] == [0, 1, 2, 3, 1, 2]
    assert {r["root_service"] for r in tree.values()} == {"frontend"}
    # root: 100 ms minus the union of [10,60] and [50,90] = 100 - 80
    assert tree["1"]["self_time_ns"] == 20 * MS
    assert tree["3"]["self_time_ns"] == (46 - 20) * MS
    assert tree["4"]["self_time_ns"] == 20 * MS


def test_service_graph_pairs_client_and_server(small):
    g = small.service_graph().sort("client", "server")
    edges = {(r["client"], r["server"]): r for r in g.to_dicts()}
    # Tempo's rules: the root SERVER span is called by the virtual node "user"
    assert set(edges) == {
        ("user", "frontend"),
        ("frontend", "cart"),
        ("frontend", "pay"),
        ("cart", "postgresql"),
    }
    assert edges[("cart", "postgresql")]["connection_type"] == "database"
    assert edges[("frontend", "cart")]["errors"] == 1 and edges[("frontend", "cart")]["p50_ms"] == 46.0
    assert edges[("frontend", "pay")]["calls"] == 1 and edges[("frontend", "pay")]["errors"] == 0


def test_red_counts_each_request_once_per_service(small):
    red = small.red("1m").sort("service_name")
    assert red["service_name"].to_list() == ["cart", "frontend", "pay"]
    assert red["requests"].to_list() == [1, 1, 1]
    assert red["errors"].to_list() == [1, 0, 0]


def test_critical_path(small):
    cp = small.critical_path("AB" * 16)
    assert cp["self_ms"].sum() == pytest.approx(100.0)
    # the last-finishing child (pay, 50-90) is on the path; cart (ends at 60, after pay started) is not
    assert "Charge" in cp["name"].to_list() and "GetCart" not in cp["name"].to_list()
    with pytest.raises(ConfigError, match="lab.traces"):
        small.critical_path("cd" * 16)


def test_traces_summary(small):
    t = small.traces().to_dicts()[0]
    assert (t["root_service"], t["spans"], t["services"], t["errors"], t["duration_ms"]) == (
        "frontend",
        6,
        3,
        1,
        100.0,
    )


def test_attribute_types_survive_in_sql(lab):
    from ..conftest import make_trace_request

    req = make_trace_request(1)
    attrs = req.resource_spans[0].scope_spans[0].spans[0].attributes
    for key, field, value in (
        ("s", "string_value", "x"),
        ("b", "bool_value", True),
        ("d", "double_value", 2.5),
        ("y", "bytes_value", b"\x00\xff"),
    ):
        kv = attrs.add()
        kv.key = key
        setattr(kv.value, field, value)
    kv = attrs.add()
    kv.key = "arr"
    for n in (1, 2):
        kv.value.array_value.values.add().int_value = n
    lab.load_bytes(req.SerializeToString())
    row = lab.sql(
        "SELECT variant_typeof(attributes['s']) s, variant_typeof(attributes['b']) b, variant_typeof(attributes['d']) d, "
        "variant_typeof(attributes['y']) y, variant_typeof(attributes['http.response.status_code']) i, "
        "attributes['http.response.status_code']::BIGINT + 1 AS next, attributes['arr'] AS arr FROM spans"
    ).to_dicts()[0]
    assert row == {
        "s": "VARCHAR",
        "b": "BOOL_TRUE",
        "d": "DOUBLE",
        "y": "BLOB",
        "i": "INT64",
        "next": 201,
        "arr": "[1,2]",
    }


def test_trainticket_views(trainticket_lab):
    g = trainticket_lab.service_graph()
    assert g.filter(pl.col("client") == "ts-gateway-service").height > 5
    red = trainticket_lab.red("1m")
    assert red["requests"].sum() > 1000 and red["p99_ms"].min() >= 0
    tree = trainticket_lab.span_tree()
    unique = trainticket_lab.sql("SELECT count(*) n FROM unique_spans")["n"][0]
    assert tree.height == unique
    assert (tree["self_time_ns"] <= tree["duration_ns"]).all()
    # the Polars walk and the SQL view agree row for row
    view = trainticket_lab.sql("SELECT * FROM span_tree").select(tree.columns).sort("trace_id", "span_id")
    assert view.equals(tree.sort("trace_id", "span_id"))


def test_file_database_persists(tmp_path):
    from ..conftest import make_trace_request

    path = tmp_path / "capture.duckdb"
    with Lab(path) as lab:
        lab.load_bytes(make_trace_request(3).SerializeToString())
    with Lab(path, read_only=True) as lab:
        assert lab.counts()["spans"] == 3
        assert lab.spans()["service_name"].to_list() == ["checkout"] * 3


def test_export_and_write_otlp_round_trip(tmp_path, small):
    reqs = list(small.export("traces"))
    assert sum(len(ss.spans) for r in reqs for rs in r.resource_spans for ss in rs.scope_spans) == 6
    path = tmp_path / "traces.jsonl"
    small.write_otlp(path, "traces", fmt="json")
    with Lab() as again:
        assert again.load(path)["spans"] == 6
        assert (
            again.service_graph().sort("client", "server").to_dicts()
            == small.service_graph().sort("client", "server").to_dicts()
        )


def test_memory_limit_is_applied_and_checked():
    with Lab(memory_limit="300MB") as lab:
        limit = lab.sql("SELECT current_setting('memory_limit') AS m")["m"][0]
        assert limit.replace(" ", "").upper().startswith(("286", "300", "0.2", "293"))
    with pytest.raises(ConfigError, match="memory_limit"):
        Lab(memory_limit="lots")
