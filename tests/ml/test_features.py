"""Features from a Lab: spans with their owner, windows, logs, metrics, traces, normal statistics."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from otlp_lab.errors import ConfigError
from otlp_lab.ml import (
    LogTemplates,
    log_features,
    metric_features,
    normal_stats,
    span_frame,
    trace_features,
    window_features,
)


def _fault(lab):
    return lab.sql('SELECT service, instance, start, "end" FROM faults').row(0, named=True)


def test_span_frame_attributes_calls_to_the_callee(latency_lab):
    s = span_frame(latency_lab)
    assert s.height == latency_lab.counts()["spans"]
    assert (s["self_ms"] <= s["duration_ms"] + 1e-6).all() and (s["self_ms"] >= 0).all()
    edges = s.filter(pl.col("unit") == "edge")
    # every simulated client attempt names its callee; payment is only called by checkout
    assert edges["peer_service"].null_count() == 0
    assert set(edges.filter(pl.col("peer_service") == "payment")["service"].unique()) == {"checkout"}
    # entry spans: the roots and the server spans, one per request into a service
    roots = s.filter(pl.col("parent_span_id").is_null())
    assert roots["is_entry"].all() and set(roots["service"].unique()) == {"loadgen"}


def test_window_features_see_the_latency_fault(latency_lab):
    f = _fault(latency_lab)
    w = window_features(latency_lab, window_s=5, by="service")
    assert {"rate_per_s", "error_ratio", "p50_ms", "p95_ms", "p99_ms", "retry_ratio"} <= set(w.columns)
    pay = w.filter(pl.col("service") == "payment")
    during = pay.filter((pl.col("window_start") >= f["start"]) & (pl.col("window_start") < f["end"]))
    before = pay.filter(pl.col("window_start") < f["start"] - dt.timedelta(seconds=5))
    # instance 0 of 2 is 100 ms slower: p95 of payment rises by most of that
    assert during["p95_ms"].median() > before["p95_ms"].median() + 50
    ops = window_features(latency_lab, window_s=5, by="operation")
    assert ("payment", "charge") in set(zip(ops["service"], ops["operation"], strict=True))


def test_retry_ratio_rises_when_an_instance_crashes(crash_lab):
    f = _fault(crash_lab)
    w = window_features(crash_lab, window_s=5)
    callers = w.filter(pl.col("service").is_in(["catalog", "recommendations", "checkout"]))
    during = callers.filter((pl.col("window_start") >= f["start"]) & (pl.col("window_start") < f["end"]))
    before = callers.filter(pl.col("window_start") < f["start"])
    assert before["retry_ratio"].max() == 0
    assert during["retry_ratio"].max() > 0.05


def test_log_features_never_read_the_simulators_fault_logs(crash_lab):
    logs = log_features(crash_lab, window_s=10)
    assert (
        logs["count"].sum()
        == crash_lab.sql("SELECT count(*) FROM logs WHERE event_name NOT LIKE 'sim.fault%'").item()
    )
    assert crash_lab.sql("SELECT count(*) FROM logs WHERE event_name LIKE 'sim.fault%'").item() == 2
    assert logs.is_empty() or not logs["template"].str.contains("fault").any()


def test_log_features_mine_templates_of_real_logs(trainticket_lab):
    logs = log_features(trainticket_lab, window_s=60)
    assert logs["count"].sum() == trainticket_lab.counts()["logs"]
    # 13.5k lines with trace ids, timestamps and payloads fold into a few dozen templates
    assert 10 < logs["template_id"].n_unique() < 200
    assert set(logs["severity"].unique()) >= {"INFO", "WARN", "ERROR"}
    tmpl = logs.filter(pl.col("severity") == "ERROR")["template"]
    assert tmpl.str.contains("<NUM>").all() and not tmpl.str.contains("[0-9a-f]{32}").any()


def test_log_templates_match_without_learning():
    lt = LogTemplates()
    lt.add(["user <NUM> logged in from <HEX>", "user <NUM> logged in from <HEX>", "disk full on <NUM>"])
    ids = lt.match(["user <NUM> logged in from <HEX>", "kernel panic"])
    assert ids[0] >= 1 and ids[1] == -1


def test_metric_features_align_gauges_and_rates(latency_lab):
    m = metric_features(latency_lab, window_s=5)
    names = set(m["metric"].unique())
    assert "sim.server.in_flight" in names and "sim.server.requests.rate" in names
    assert (m["window_start"].dt.second() % 5 == 0).all()
    rate = m.filter((pl.col("metric") == "sim.server.requests.rate") & (pl.col("service") == "frontend"))
    # the frontend serves about 20 requests/s at 10 % load, over 3 instances
    assert 3 < rate["value"].median() < 15


def test_trace_features_call_path_and_critical_path(latency_lab):
    s = span_frame(latency_lab)
    t = trace_features(s, max_traces=50)
    assert t.height == s["trace_id"].n_unique()
    assert t["call_path"].str.starts_with("loadgen:request frontend/").all()
    assert t["call_path"].str.contains(" > frontend:").all()
    cp = t.filter(pl.col("critical_ms").is_not_null())
    assert cp.height == 50
    # the critical path covers the whole trace (to rounding)
    assert ((cp["critical_ms"] - cp["duration_ms"]).abs() < 0.01).all()


def test_normal_stats_per_operation(latency_lab):
    f = _fault(latency_lab)
    s = span_frame(latency_lab, end=f["start"])
    st = normal_stats(s)
    row = st.filter((pl.col("service") == "payment") & (pl.col("operation") == "charge")).row(0, named=True)
    # payment's service time is lognormal with a 15 ms median
    assert 10 < row["duration_median_ms"] < 22 and row["duration_iqr_ms"] > 0


def test_bad_arguments_name_the_value(latency_lab):
    with pytest.raises(ConfigError, match="window_s"):
        window_features(latency_lab, window_s=0)
    with pytest.raises(ConfigError, match="by must be one of"):
        window_features(latency_lab, by="zone")
    with pytest.raises(ConfigError, match="start"):
        span_frame(latency_lab, start="yesterday")


def _span(sid, parent, name, start_ms, end_ms, *, error=None, attrs=None):
    t0 = 1_700_000_000_000_000_000
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": sid,
        "name": name,
        "kind": 3 if attrs else 2,
        "startTimeUnixNano": str(t0 + start_ms * 1_000_000),
        "endTimeUnixNano": str(t0 + end_ms * 1_000_000),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in (attrs or {}).items()],
    }
    if parent:
        span["parentSpanId"] = parent
    if error:
        span["status"] = {"code": 2, "message": error}
    return span


def test_backoff_after_a_failed_call_and_local_rejections(lab):
    """A retry's wait belongs to the failed call; a breaker's local rejection is not where a failure started."""
    import json

    spans = [
        _span("a000000000000001", None, "checkout", 0, 100),
        # attempt 1 fails at 10 ms; the retry starts at 60 ms after a 50 ms backoff
        _span(
            "a000000000000002",
            "a000000000000001",
            "pay",
            0,
            10,
            error="UNAVAILABLE",
            attrs={"peer.service": "payment"},
        ),
        _span("a000000000000003", "a000000000000001", "pay", 60, 70, attrs={"peer.service": "payment"}),
        _span("a000000000000004", None, "checkout", 200, 201, error="CIRCUIT_OPEN"),
    ]
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
                "scopeSpans": [{"spans": spans}],
            }
        ]
    }
    lab.load_bytes(json.dumps(body).encode())
    s = {r["span_id"]: r for r in span_frame(lab).iter_rows(named=True)}
    assert s["a000000000000001"]["self_ms"] == pytest.approx(30.0)  # 100 - 2 x 10 - 50 of backoff
    assert s["a000000000000002"]["self_ms"] == pytest.approx(60.0)  # the failed call and the wait it caused
    assert s["a000000000000002"]["unit"] == "edge" and s["a000000000000002"]["origin_error"]
    assert s["a000000000000004"]["error"] and not s["a000000000000004"]["origin_error"]
