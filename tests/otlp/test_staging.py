"""The declared staging schema is what the codec and the simulator really hand the store."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from otlp_lab import Lab
from otlp_lab.errors import SchemaError, StoreError
from otlp_lab.otlp import decode_bytes, staging
from otlp_lab.sim import Scenario, run

from .test_json_validation import logs_doc, metrics_doc, traces_doc

SDK_SHOP = Path(__file__).resolve().parents[2] / "datasets" / "sdk-shop"


def _all_metric_kinds() -> dict:
    doc = metrics_doc()
    metrics = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    point = {"timeUnixNano": "1700000000000000000"}
    metrics += [
        {"name": "g", "gauge": {"dataPoints": [{**point, "asDouble": 1.5}]}},
        {"name": "e", "exponentialHistogram": {"dataPoints": [{**point, "count": "1", "scale": 2}]}},
        {
            "name": "q",
            "summary": {"dataPoints": [{**point, "count": "1", "quantileValues": [{"quantile": 0.5}]}]},
        },
    ]
    return doc


@pytest.mark.parametrize(
    "body",
    [
        *(SDK_SHOP / f for f in ("traces.binpb", "traces.jsonl", "logs.binpb", "metrics.binpb")),
        orjson.dumps(traces_doc()),
        orjson.dumps(logs_doc()),
        orjson.dumps(_all_metric_kinds()),
    ],
    ids=lambda b: b.name if isinstance(b, Path) else orjson.loads(b).popitem()[0],
)
def test_codec_batches_match_the_declared_schema(body):
    data = body.read_bytes() if isinstance(body, Path) else body
    seen = set()
    for batch in decode_bytes(data):
        staging.check_batch(batch)
        seen |= set(batch)
    assert seen - {"_ctx"}


def test_simulator_batches_match_the_declared_schema():
    seen: set[str] = set()

    class Checked(Lab):  # the real Lab, checking what the simulator hands it
        def load_batches(self, batches, *, source="<batches>"):
            batches = list(batches)
            for b in batches:
                staging.check_batch(b)
                seen.update(b)
            return super().load_batches(batches, source=source)

    sc = Scenario.from_dict(
        {
            "name": "tiny",
            "duration_s": 3,
            "metrics_interval_s": 1,
            "services": {"api": {"endpoints": {"get": {"calls": ["db"]}}}, "db": {}},
            "workloads": [{"kind": "open", "target": "api", "rate": 20}],
        }
    )
    with Checked() as lab:
        run(sc, lab=lab, seed=1)
    assert {"spans", "_ctx"} <= seen


def test_check_batch_names_the_departure():
    t = pa.table({"trace_id": pa.array([b"x"], pa.binary())})
    with pytest.raises(SchemaError, match="missing"):
        staging.check_batch({"spans": t})
    with pytest.raises(SchemaError, match="not one of"):
        staging.check_batch({"nope": t})


def test_enum_constants_agree_with_the_protobuf_definitions():
    from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber
    from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    assert [f"SPAN_KIND_{k}" for k in staging.SPAN_KINDS] == [n for n, _ in Span.SpanKind.items()]
    assert [f"STATUS_CODE_{c}" for c in staging.STATUS_CODES] == [n for n, _ in Status.StatusCode.items()]
    assert [f"AGGREGATION_TEMPORALITY_{t}" for t in staging.TEMPORALITIES] == [
        n for n, _ in AggregationTemporality.items()
    ]
    for name, number in staging.SEVERITY_NUMBERS.items():
        assert SeverityNumber.Value(f"SEVERITY_NUMBER_{name}") == number


def test_lab_transaction_commits_or_rolls_back(lab):
    with lab.transaction() as con:
        con.execute("CREATE TABLE notes (t VARCHAR)")
        with lab.transaction() as inner:  # nested: part of the same transaction
            inner.execute("INSERT INTO notes VALUES ('a')")
    with pytest.raises(StoreError):
        with lab.transaction() as con:
            con.execute("INSERT INTO notes VALUES ('b')")
            con.execute("INSERT INTO nowhere VALUES (1)")
    assert lab.sql("SELECT t FROM notes")["t"].to_list() == ["a"]
