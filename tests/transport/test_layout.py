"""The transport's layering: generated protobuf classes only through the codec; one replay time-shift."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

import otlp_lab
from otlp_lab.sim._live import retime
from otlp_lab.transport._replay import EXPORT_TIMES, retime_table

PACKAGE = Path(otlp_lab.__file__).parent


def test_only_the_codec_imports_generated_pb2_modules():
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.parent.name != "otlp" and "_pb2" in p.read_text()
    ]
    assert offenders == []


def test_the_simulator_and_the_sender_shift_times_the_same_way():
    ts = pa.timestamp("ns")
    t0, now = 1_000_000_000, 5_000_000_000_000
    spans = pa.table(
        {
            "start_time": pa.array([t0, t0 + 2_000_000_000], ts),
            "end_time": pa.array([t0 + 500, t0 + 2_000_000_700], ts),
        }
    )
    logs = pa.table(
        {"time": pa.array([None, t0 + 10], ts), "observed_time": pa.array([t0 + 4_000, t0 + 30], ts)}
    )
    sim = retime({"spans": spans, "logs": logs}, t0, now, 2.0)
    sent_spans = retime_table(spans, EXPORT_TIMES["traces"], t0, now, 2.0)
    sent_logs = retime_table(logs, EXPORT_TIMES["logs"], t0, now, 2.0)
    assert sim["spans"].equals(sent_spans) and sim["logs"].equals(sent_logs)
    start = sent_spans.column("start_time").cast(pa.int64()).to_pylist()
    end = sent_spans.column("end_time").cast(pa.int64()).to_pylist()
    assert start == [now, now + 1_000_000_000]  # offsets scaled by 1/speed
    assert [e - s for s, e in zip(start, end, strict=True)] == [500, 700]  # durations kept
    times = sent_logs.column("time").cast(pa.int64()).to_pylist()
    observed = sent_logs.column("observed_time").cast(pa.int64()).to_pylist()
    assert times == [None, now + 5] and observed == [
        now + 2_000,
        now + 25,
    ]  # a null time: anchored on observed
