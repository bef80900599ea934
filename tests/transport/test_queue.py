"""The sender's persistent queue (issue 11 item 2): store-and-forward across a dead receiver and a SIGKILL."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time

import orjson
import pytest

from otlp_lab.otlp import to_otlp_json
from otlp_lab.transport import PersistentQueue, Receiver, Sender
from otlp_lab.transport._queue import inspect_queue

from ..conftest import free_port, make_trace_request
from .conftest import post, trace_body

N_REQUESTS, SPANS_EACH = 40, 10


def _capture(path) -> int:
    """An OTLP/JSON lines file of N_REQUESTS requests of SPANS_EACH spans (distinct ids)."""
    with open(path, "wb") as f:
        for seed in range(N_REQUESTS):
            f.write(orjson.dumps(to_otlp_json(make_trace_request(SPANS_EACH, seed=1000 + seed))) + b"\n")
    return N_REQUESTS * SPANS_EACH


def _wait(cond, what: str, tries: int = 600, every_s: float = 0.05) -> None:
    for _ in range(tries):  # bounded: at most tries x every_s
        if cond():
            return
        time.sleep(every_s)
    raise AssertionError(f"gave up waiting for {what}")


def _send(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "otlp_lab.cli", "send", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ | {"COLUMNS": "200"},
    )


def test_receiver_down_then_sender_killed_every_item_arrives_exactly_once(tmp_path):
    """Receiver down: the sender persists every request; it is SIGKILLed mid-delivery once the
    receiver is up, restarted with only --queue, and every span is stored exactly once."""
    capture, qdir, db = tmp_path / "capture.jsonl", tmp_path / "queue", tmp_path / "rx.duckdb"
    total = _capture(capture)
    port = free_port()
    endpoint = f"127.0.0.1:{port}"
    common = ["--endpoint", endpoint, "--queue", str(qdir), "--no-breaker", "--max-attempts", "100000"]
    first = _send(
        str(capture), "--max-items", str(SPANS_EACH), "--concurrency", "1", "--timeout", "2", *common
    )
    try:
        # 1. the receiver is down: everything is persisted all the same
        _wait(lambda: inspect_queue(qdir) == (N_REQUESTS, total), "all requests in the queue")
        assert first.poll() is None  # still retrying
        # 2. the receiver comes up; kill the sender once part (not all) is delivered
        with Receiver(db, grpc=endpoint, http=None) as rx:
            _wait(lambda: rx.stats.accepted >= 1, "the first deliveries", tries=3000, every_s=0.01)
            first.send_signal(signal.SIGKILL)
            first.wait(30)
            waiting, _ = inspect_queue(qdir)
            assert waiting > 0  # killed mid-delivery (what was committed may not be acked yet)
            # 3. restarted with only the queue: it delivers the rest (and repeats are not stored twice)
            second = _send("--timeout", "5", *common)
            _, err = second.communicate(timeout=120)
            assert second.returncode == 0, err.decode()[-2000:]
            n = rx.lab.sql("SELECT count(*) AS n, count(DISTINCT (trace_id, span_id)) AS d FROM spans")
            assert n["n"][0] == n["d"][0] == total  # every span, each exactly once
            assert rx.stats.spans == total
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
        first.stderr.close()
    assert inspect_queue(qdir) == (0, 0)
    assert not list(qdir.glob("seg-*"))  # acknowledged segments are deleted


def test_a_request_id_is_stored_once(receiver):
    body = trace_body(4, seed=7)
    for _ in range(3):
        assert post(receiver, "/v1/traces", body, otlp_lab_request_id="q1-1").status_code == 200
    assert post(receiver, "/v1/traces", body, otlp_lab_request_id="q1-2").status_code == 200
    assert receiver.stats.spans == 8 and receiver.stats.duplicates == 2
    assert receiver.lab.stored_request_ids(["q1-1", "q1-2", "q1-3"]) == {"q1-1", "q1-2"}


def test_store_and_forward_in_python(tmp_path):
    port = free_port()
    retry = dataclasses.replace(Sender.default_retry(), max_attempts=1)
    sender = Sender(f"127.0.0.1:{port}", queue_dir=tmp_path / "q", retry=retry, breaker=None, timeout_s=2)
    requests = [make_trace_request(5, seed=s) for s in range(4)]
    report = sender.send_requests(requests)  # nobody listens
    assert report.sent == 0 and report.queued == 20 and report.failed == 0
    with Receiver(grpc=f"127.0.0.1:{port}", http=None) as rx:
        report = sender.send_queue()
        assert report.recovered == 20 and report.sent == 20 and report.queued == 0
        assert rx.stats.spans == 20
        assert sender.send_queue().sent == 0  # nothing left


def test_a_full_queue_drops_with_a_count_and_a_log_line(tmp_path, caplog):
    body = make_trace_request(5).SerializeToString()
    with caplog.at_level(logging.WARNING, logger="otlp_lab.transport.queue"):
        with PersistentQueue(tmp_path, max_bytes=3 * (len(body) + 32)) as q:
            kept = [q.append("traces", body, items=5) for _ in range(5)]
            assert [r is not None for r in kept] == [True, True, True, False, False]
            assert q.stats.dropped == 2 and q.stats.dropped_items == 10
            q.ack(kept[0].id)  # room again
            assert q.append("traces", body, items=5) is not None
    assert sum("is full" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records) == 2


def test_a_corrupt_queue_file_is_reported_and_skipped(tmp_path, caplog):
    body = make_trace_request(2).SerializeToString()
    with PersistentQueue(tmp_path, segment_bytes=1) as q:  # one record per segment
        ids = [q.append("traces", body, items=2).id for _ in range(3)]
    segments = sorted(tmp_path.glob("seg-*.q"))
    assert len(segments) == 3
    damaged = bytearray(segments[1].read_bytes())
    damaged[-3] ^= 0xFF  # a flipped byte in the body: CRC mismatch
    segments[1].write_bytes(bytes(damaged))
    (tmp_path / "seg-garbage.q").write_bytes(b"not a segment")
    with caplog.at_level(logging.WARNING, logger="otlp_lab.transport.queue"):
        with PersistentQueue(tmp_path) as q:
            assert [r.id for r in q.pending()] == [ids[0], ids[2]]  # the damaged one skipped, not fatal
            assert q.stats.corrupt >= 2
            assert q.append("traces", body, items=2) is not None  # and the queue goes on
    assert any("CRC" in r.getMessage() for r in caplog.records)


def test_one_process_per_queue(tmp_path):
    with PersistentQueue(tmp_path):
        with pytest.raises(Exception, match="in use by another process"):
            PersistentQueue(tmp_path)
