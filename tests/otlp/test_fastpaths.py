"""The decoder's fast paths give exactly what the full paths give, and step aside for anything else."""

from __future__ import annotations

import copy
import gzip

import orjson
import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from otlp_lab.otlp._anyvalue import decode_pb_kv
from otlp_lab.otlp._kvbulk import decode_kvs
from otlp_lab.otlp._metrics import iter_metrics_pb, json_metrics_batches, json_to_metrics_request

from ..conftest import TRAINTICKET

SUMS = {
    "resourceMetrics": [
        {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
            "scopeMetrics": [
                {
                    "scope": {"name": "s", "version": "1"},
                    "schemaUrl": "https://example.com/s",
                    "metrics": [
                        {
                            "name": "requests",
                            "unit": "1",
                            "sum": {
                                "aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
                                "isMonotonic": True,
                                "dataPoints": [
                                    {
                                        "asInt": "-5",
                                        "timeUnixNano": "1700000000000000000",
                                        "attributes": [{"key": "code", "value": {"intValue": "3"}}],
                                    },
                                    {"asDouble": 2.5, "startTimeUnixNano": 5, "flags": 1},
                                    {},
                                ],
                            },
                        },
                        {
                            "name": "queue",
                            "gauge": {"dataPoints": [{"asInt": 7}]},
                            "metadata": [{"key": "m", "value": {"boolValue": True}}],
                        },
                        {"name": "no data"},
                    ],
                }
            ],
        }
    ]
}


def _pods() -> list[dict]:
    path = TRAINTICKET / "metrics" / "pods.otlp.jsonl.gz"
    with gzip.open(path) as f:
        return [orjson.loads(f.readline()) for _ in range(2)]


@pytest.mark.parametrize("doc", [SUMS, *_pods()], ids=["sums", "pods-1", "pods-2"])
def test_json_gauges_and_sums_match_the_full_path(doc):
    fast = json_metrics_batches(doc, 1000)
    full = list(iter_metrics_pb(json_to_metrics_request(copy.deepcopy(doc)), 1000))
    assert fast is not None and len(fast) == len(full)
    for a, b in zip(fast, full, strict=True):
        assert a.keys() == b.keys()
        for table in a:
            assert a[table].equals(b[table]), table


@pytest.mark.parametrize(
    "doc",
    [
        {
            "resourceMetrics": [
                {"scopeMetrics": [{"metrics": [{"name": "h", "histogram": {"dataPoints": [{}]}}]}]}
            ]
        },
        {"resource_metrics": []},
        {
            "resourceMetrics": [
                {
                    "scopeMetrics": [
                        {"metrics": [{"name": "g", "gauge": {"dataPoints": [{"asDouble": "NaN"}]}}]}
                    ]
                }
            ]
        },
        {
            "resourceMetrics": [
                {"scopeMetrics": [{"metrics": [{"name": "g", "gauge": {"dataPoints": [{"asInt": True}]}}]}]}
            ]
        },
    ],
    ids=["histogram", "snake_case", "special-double", "bool-as-int"],
)
def test_json_metrics_fast_path_steps_aside(doc):
    assert json_metrics_batches(doc, 1000) is None


def test_bulk_attribute_decoding_matches_the_per_pair_decoder():
    import pyarrow as pa

    pairs = []
    for key, field, value in [
        ("s", "string_value", "GET"),
        ("é" * 70, "string_value", "ü" * 70),
        ("i", "int_value", -(2**63)),
        ("i", "int_value", 2**63 - 1),
        ("i", "int_value", 300),
        ("d", "double_value", -0.0),
        ("b", "bool_value", True),
        ("y", "bytes_value", b"\x00\xff"),
        ("", "string_value", ""),
    ]:
        kv = KeyValue(key=key)
        setattr(kv.value, field, value)
        pairs.append(kv.SerializeToString())
    nested = KeyValue(key="arr")
    nested.value.array_value.values.add().int_value = 1
    pairs += [nested.SerializeToString(), KeyValue(key="empty").SerializeToString()]
    keys, vals = decode_kvs(pa.array(pairs, pa.binary()))
    slots = {1: "s", 2: "b", 3: "i", 4: "d", 7: "x", 5: "j"}
    for n, raw in enumerate(pairs):
        key, t, value = decode_pb_kv(raw)
        v = vals[n].as_py()
        assert keys[n].as_py() == key and v["t"] == t
        if t in slots and t != 5:
            assert v[slots[t]] == value and str(v[slots[t]]) == str(value)
    assert vals[len(pairs) - 2].as_py()["j"] == "[1]"


def test_json_spans_fast_path_matches_the_full_path(monkeypatch, tmp_path):
    from otlp_lab.otlp import _traces
    from otlp_lab.otlp._decode import iter_file_batches

    spans = [
        {
            "traceId": "ab" * 16,
            "spanId": "01" * 8,
            "name": "a",
            "kind": 2,
            "startTimeUnixNano": "5",
            "endTimeUnixNano": 9,
            "status": {"code": "STATUS_CODE_ERROR", "message": "m"},
            "flags": 1,
            "attributes": [{"key": "n", "value": {"intValue": "7"}}],
        },
        {"traceId": "AB" * 16, "spanId": "02" * 8, "parentSpanId": "01" * 8, "kind": "SPAN_KIND_CLIENT"},
        {"traceId": "ab" * 16, "spanId": "03" * 8, "kind": 9, "events": [{"name": "e"}]},  # full path
        {"trace_id": "ab" * 16, "span_id": "04" * 8},  # snake_case: full path
        {
            "traceId": "ab" * 16,
            "spanId": "05" * 8,
            "parentSpanId": "",
            "traceState": "k=v",
            "droppedLinksCount": 2,
        },
    ]
    doc = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": spans}]}]}
    lines = orjson.dumps(doc) + b"\n"
    with gzip.open(TRAINTICKET / "normal" / "11_39.otlp.jsonl.gz") as f:
        lines += f.readline()
    path = tmp_path / "spans.otlp.jsonl"
    path.write_bytes(lines)
    fast = list(iter_file_batches(path))
    monkeypatch.setattr(_traces.SpanBuilder, "_span_json_fast", lambda self, sp, path, k: False)
    full = list(iter_file_batches(path))
    assert len(fast) == len(full) == 2
    for a, b in zip(fast, full, strict=True):
        assert a.keys() == b.keys()
        for table in a:
            assert a[table].equals(b[table]), table
