"""OTLP/JSON validated per the spec: a wrong type anywhere is a DecodeError that names the field path."""

from __future__ import annotations

import copy

import orjson
import pytest

from otlp_lab import DecodeError, Lab

T0 = "1700000000000000000"


def traces_doc() -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "s"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "GET /",
                                "kind": 2,
                                "startTimeUnixNano": T0,
                                "endTimeUnixNano": "1700000000001000000",
                                "attributes": [{"key": "n", "value": {"intValue": "3"}}],
                                "events": [{"timeUnixNano": T0, "name": "e"}],
                                "status": {"code": 2},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def logs_doc() -> dict:
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "timeUnixNano": T0,
                                "severityNumber": 9,
                                "body": {"stringValue": "hi"},
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                            }
                        ]
                    }
                ],
            }
        ]
    }


def metrics_doc() -> dict:
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart"}}]},
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "requests",
                                "sum": {
                                    "aggregationTemporality": 2,
                                    "isMonotonic": True,
                                    "dataPoints": [{"timeUnixNano": T0, "asInt": "5"}],
                                },
                            },
                            {
                                "name": "latency",
                                "histogram": {
                                    "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA",
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": T0,
                                            "count": "3",
                                            "bucketCounts": ["1", "2"],
                                            "explicitBounds": [1.0],
                                        }
                                    ],
                                },
                            },
                        ]
                    }
                ],
            }
        ]
    }


SPAN = ("resourceSpans", 0, "scopeSpans", 0, "spans", 0)
LOG = ("resourceLogs", 0, "scopeLogs", 0, "logRecords", 0)
SUM = ("resourceMetrics", 0, "scopeMetrics", 0, "metrics", 0, "sum")
HIST = ("resourceMetrics", 0, "scopeMetrics", 0, "metrics", 1, "histogram")


def _set(doc: dict, path: tuple, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


CASES = [
    # (document factory, path, bad value, words the error must contain)
    (traces_doc, ("resourceSpans",), 1, "resourceSpans must be a list"),
    (traces_doc, ("resourceSpans", 0, "scopeSpans"), "x", "resourceSpans[0].scopeSpans must be a list"),
    (traces_doc, ("resourceSpans", 0, "resource"), [], "resourceSpans[0].resource must be an object"),
    (traces_doc, (*SPAN, "kind"), 2**63, "spans[0].kind"),
    (traces_doc, (*SPAN, "kind"), 1.5, "spans[0].kind"),
    (traces_doc, (*SPAN, "kind"), "١", "spans[0].kind"),
    (traces_doc, (*SPAN, "startTimeUnixNano"), "-5", "spans[0].startTimeUnixNano"),
    (traces_doc, (*SPAN, "startTimeUnixNano"), "soon", "spans[0].startTimeUnixNano"),
    (traces_doc, (*SPAN, "startTimeUnixNano"), "١٧٠٠", "spans[0].startTimeUnixNano"),
    (traces_doc, (*SPAN, "startTimeUnixNano"), 1.7e19, "spans[0].startTimeUnixNano"),
    (traces_doc, (*SPAN, "startTimeUnixNano"), True, "spans[0].startTimeUnixNano"),
    (traces_doc, (*SPAN, "traceId"), "5b8e fff798038103d269b633813fc60", "spans[0].traceId"),
    (traces_doc, (*SPAN, "events"), {"name": "e"}, "spans[0].events must be a list"),
    (traces_doc, (*SPAN, "events", 0), "e", "spans[0].events[0] must be an object"),
    (traces_doc, (*SPAN, "links"), 3, "spans[0].links must be a list"),
    (traces_doc, (*SPAN, "attributes"), {"k": 1}, "spans[0].attributes must be a list"),
    (traces_doc, (*SPAN, "attributes", 0, "value"), {"kvlistValue": 5}, "kvlistValue must be an object"),
    (
        traces_doc,
        (*SPAN, "attributes", 0, "value"),
        {"arrayValue": {"values": 1}},
        "arrayValue.values must be",
    ),
    (traces_doc, (*SPAN, "attributes", 0, "value"), {"intValue": "9223372036854775808"}, "int64"),
    (traces_doc, (*SPAN, "attributes", 0, "value"), {"intValue": 1e300}, "intValue"),
    (traces_doc, (*SPAN, "attributes", 0, "value"), {"intValue": "٣"}, "intValue"),
    (traces_doc, (*SPAN, "attributes", 0, "value"), {"doubleValue": True}, "doubleValue"),
    (traces_doc, (*SPAN, "attributes", 0, "value"), {"doubleValue": "١.٥"}, "doubleValue"),
    (traces_doc, (*SPAN, "attributes", 0, "value"), {"bytesValue": "abc"}, "bytesValue must be base64"),
    (traces_doc, (*SPAN, "flags"), "1_0", "spans[0].flags"),
    (traces_doc, (*SPAN, "status"), "ok", "spans[0].status must be an object"),
    (logs_doc, ("resourceLogs",), {"a": 1}, "resourceLogs must be a list"),
    (logs_doc, (*LOG, "severityNumber"), 2**63, "logRecords[0].severityNumber"),
    (logs_doc, (*LOG, "timeUnixNano"), -1, "logRecords[0].timeUnixNano"),
    (logs_doc, (*LOG, "body"), {"kvlistValue": [1]}, "kvlistValue must be an object"),
    (metrics_doc, ("resourceMetrics",), 1, "resourceMetrics must be a list"),
    (metrics_doc, (*SUM, "aggregationTemporality"), "abc", "sum.aggregationTemporality"),
    (metrics_doc, (*SUM, "aggregationTemporality"), 1.5, "sum.aggregationTemporality"),
    (metrics_doc, (*SUM, "aggregationTemporality"), 2**63, "sum.aggregationTemporality"),
    (metrics_doc, (*SUM, "dataPoints", 0, "asInt"), "١٢", "dataPoints[0].asInt"),
    (metrics_doc, (*SUM, "dataPoints", 0, "asInt"), "18446744073709551616", "dataPoints[0].asInt"),
    (metrics_doc, (*SUM, "dataPoints", 0, "asDouble"), True, "dataPoints[0].asDouble"),
    (metrics_doc, (*SUM, "dataPoints", 0, "timeUnixNano"), "-1", "dataPoints[0].timeUnixNano"),
    (metrics_doc, (*SUM, "isMonotonic"), "yes", "sum.isMonotonic"),
    (metrics_doc, (*HIST, "dataPoints", 0, "bucketCounts"), ["1", "2", "3", "4"], "4 bucket counts for 1"),
    (metrics_doc, (*HIST, "dataPoints", 0, "exemplars"), [{"spanId": "xyz"}], "exemplars[0].spanId"),
    (
        metrics_doc,
        (*HIST, "dataPoints", 0, "attributes"),
        [{"key": "k", "value": {"bytesValue": "abc"}}],
        "base64",
    ),
]


@pytest.mark.parametrize(
    ("make", "path", "value", "words"), CASES, ids=[f"{c[0].__name__}:{c[3]}" for c in CASES]
)
def test_wrong_types_are_named_with_their_path(tmp_path, make, path, value, words):
    lab = Lab()
    assert lab.load_bytes(orjson.dumps(make()))  # the document itself is valid
    before = lab.counts()
    f = tmp_path / "bad.json"
    f.write_bytes(orjson.dumps(_set(make(), path, value)))
    with pytest.raises(DecodeError) as err:
        lab.load(f)
    assert words in str(err.value)
    assert "bad.json" in str(err.value)
    assert lab.counts() == before


def test_deep_json_gets_a_named_error(tmp_path):
    f = tmp_path / "deep.json"
    f.write_bytes(b'{"resourceSpans":' + b"[" * 5000 + b"]" * 5000 + b"}")
    with pytest.raises(DecodeError, match="nested too deeply"):
        Lab().load(f)
    value: dict = {"stringValue": "leaf"}
    for _ in range(60):  # deep, yet well under the JSON parser's 1,024 levels
        value = {"arrayValue": {"values": [value]}}
    doc = _set(traces_doc(), (*SPAN, "attributes", 0, "value"), value)
    f.write_bytes(orjson.dumps(doc))
    with pytest.raises(DecodeError, match="more than 32 levels"):
        Lab().load(f)
    doc = _set(metrics_doc(), (*SUM, "dataPoints", 0, "attributes"), [{"key": "k", "value": value}])
    f.write_bytes(orjson.dumps(doc))
    with pytest.raises(DecodeError, match="nested too deeply"):
        Lab().load(f)


def test_valid_spellings_still_load():
    doc = traces_doc()
    sp = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    sp["kind"] = "SPAN_KIND_CLIENT"
    sp["startTimeUnixNano"] = 1_700_000_000_000_000_000  # a JSON number is fine too
    sp["attributes"] = [
        {"key": "d", "value": {"doubleValue": "Infinity"}},
        {"key": "e", "value": {"doubleValue": "1.5e3"}},
        {"key": "b", "value": {"bytesValue": "aGk="}},
        {"key": "u", "value": {"bytesValue": "-_8="}},  # URL-safe base64
    ]
    lab = Lab()
    assert lab.load_bytes(orjson.dumps(doc))["spans"] == 1
    assert lab.load_bytes(orjson.dumps(metrics_doc()))["metric_histogram"] == 1
