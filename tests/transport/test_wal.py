"""The receiver's write-ahead log (``wal_dir``): acknowledge after an fsync'd append, load behind it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time

import grpc
import pytest

from otlp_lab import Lab
from otlp_lab.errors import ConfigError
from otlp_lab.transport import Receiver
from otlp_lab.transport._wal import WriteAheadLog, encode_record

from ..conftest import make_trace_request
from .conftest import TRACES, free_port, hold_writer, post, start_receiver_process


def _span_ids(req) -> set[str]:
    return {sp.span_id.hex() for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans}


def _start(db, wal, port: int, delay: float) -> subprocess.Popen:
    # room for every stream's reservation: a fuller budget would load early ("sooner under pressure")
    return start_receiver_process(
        db, port, "--wal", str(wal), "--wal-delay", str(delay), "--queue-mib", "1024"
    )


@pytest.mark.parametrize("delay", [600.0, 0.0], ids=["backlog-unloaded", "loading"])
def test_sigkill_then_restart_loads_every_acknowledged_request_exactly_once(tmp_path, delay):
    """kill -9 after acknowledgements (with the backlog still in the log, or while it loads): a
    restart loads every acknowledged request, none twice; a second restart loads nothing more."""
    db, wal, port = tmp_path / "cap.duckdb", tmp_path / "wal", free_port()
    requests = [make_trace_request(50, seed=20_000 + i) for i in range(120)]
    acked: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()
    todo = list(range(len(requests)))

    def sender() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_retries", 0)]) as ch:
            call = ch.unary_unary(TRACES)
            while not stop.is_set():
                with lock:
                    if not todo:
                        return
                    i = todo.pop(0)
                try:
                    call(requests[i].SerializeToString(), timeout=5)
                except grpc.RpcError:
                    return
                with lock:
                    acked.add(i)

    proc = _start(db, wal, port, delay)
    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(10)
    with lock:
        acked_at_kill = set(acked)
    assert len(acked_at_kill) >= 40
    if delay:  # nothing was loaded before the kill: every acknowledged request was only in the log
        with Lab(db) as lab:
            assert lab.sql("select count(*) n from spans")["n"][0] == 0
    with Receiver(db, wal_dir=wal, grpc=None) as rx:  # the restart loads the log's tail
        recovered = rx.stats.recovered
        ids = rx.lab.sql("select span_id from spans")["span_id"].to_list()
    assert recovered > 0
    must = set().union(*(_span_ids(requests[i]) for i in acked_at_kill))
    assert must <= set(ids)  # nothing acknowledged lost
    assert len(ids) == len(set(ids))  # nothing loaded twice
    assert len(ids) % 50 == 0  # whole requests only
    with Receiver(db, wal_dir=wal, grpc=None) as rx:  # a second restart: the log is loaded already
        assert rx.stats.recovered == 0
        assert rx.lab.sql("select count(*) n from spans")["n"][0] == len(ids)


@pytest.mark.parametrize("damage", ["torn", "corrupt"])
def test_a_torn_or_corrupt_last_record_is_detected_and_skipped(tmp_path, caplog, damage):
    db, wal_dir = tmp_path / "cap.duckdb", tmp_path / "wal"
    Lab(db).close()
    reqs = [make_trace_request(10, seed=i) for i in range(5)]
    wal = WriteAheadLog(wal_dir, db)
    wal.open_segment()
    wal.append([encode_record("traces", "protobuf", "", None, r.SerializeToString()) for r in reqs])
    wal.close()
    [seg] = wal_dir.glob("*.wal")
    data = seg.read_bytes()
    last = len(encode_record("traces", "protobuf", "", None, reqs[-1].SerializeToString()))
    if damage == "torn":  # the write of the last record was cut short by the crash
        seg.write_bytes(data[: len(data) - last // 2])
    else:  # one byte of its body flipped
        seg.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    with caplog.at_level(logging.WARNING, logger="otlp_lab.transport"):
        with Receiver(db, wal_dir=wal_dir, grpc=None) as rx:
            stored = set(rx.lab.sql("select span_id from spans")["span_id"])
            assert rx.stats.recovered == 4
    assert stored == set().union(*(_span_ids(r) for r in reqs[:4]))
    assert any("torn or corrupt record" in r.message for r in caplog.records)


def test_acknowledged_before_loading_and_backpressure_on_the_unloaded_backlog(tmp_path):
    """Requests are acknowledged while the database is busy; a backlog over max_queue_bytes gets 503."""
    body = make_trace_request(40, seed=1).SerializeToString()
    with Receiver(
        tmp_path / "cap.duckdb",
        wal_dir=tmp_path / "wal",
        grpc=None,
        max_request_bytes=len(body) + 100,
        max_queue_bytes=int(2.5 * len(body)),
        retry_after_s=2,
    ) as rx:
        holder = hold_writer(rx, 2.0)  # the loader cannot get at the database meanwhile
        bodies = [make_trace_request(40, seed=s).SerializeToString() for s in (1, 2, 3)]
        replies = [post(rx, "/v1/traces", b) for b in bodies]
        assert [r.status_code for r in replies] == [200, 200, 503]
        assert replies[2].headers["retry-after"] == "2"
        holder.join()
        assert rx.flush(10)
        assert rx.lab.sql("select count(*) n from spans")["n"][0] == 80


def test_a_repeated_request_id_is_stored_once(tmp_path):
    body = make_trace_request(7, seed=3).SerializeToString()
    with Receiver(tmp_path / "cap.duckdb", wal_dir=tmp_path / "wal", grpc=None, wal_delay_s=60) as rx:
        for _ in range(2):  # the second arrives while the first is logged but not loaded
            assert post(rx, "/v1/traces", body, **{"otlp-lab-request-id": "r-1"}).status_code == 200
        assert rx.flush(10)
        assert post(rx, "/v1/traces", body, **{"otlp-lab-request-id": "r-1"}).status_code == 200
        assert rx.flush(10)
        assert rx.lab.sql("select count(*) n from spans")["n"][0] == 7
        assert rx.stats.duplicates == 2


def test_wal_needs_a_database_file_and_its_own_database(tmp_path):
    with pytest.raises(ConfigError, match="wal_dir needs a database file"):
        Receiver(wal_dir=tmp_path / "wal").start()
    db = tmp_path / "a.duckdb"
    wal = WriteAheadLog(tmp_path / "wal", db)
    wal.open_segment()
    wal.append([encode_record("traces", "protobuf", "", None, b"")])
    wal.close()
    with pytest.raises(ConfigError, match="holds unloaded requests for the database"):
        Receiver(tmp_path / "b.duckdb", wal_dir=tmp_path / "wal", grpc=None).start()
