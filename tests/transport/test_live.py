"""Live queries (issue 9 item 9): read a database while `otlp-lab receive` writes it, under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from otlp_lab import Lab
from otlp_lab.errors import StoreError
from otlp_lab.transport import LiveLab
from otlp_lab.transport._live import live_file

from ..conftest import free_port
from .conftest import trace_body

TOKEN = "s3cret"
REQUESTS, SPANS_EACH = 120, 5


def _wait(cond, what: str, tries: int = 600) -> None:
    for _ in range(tries):  # bounded: at most tries x 0.05 s
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "otlp_lab.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"COLUMNS": "200"} | env,
    )


def test_query_a_database_while_the_receiver_writes_it(tmp_path):
    db = tmp_path / "live.duckdb"
    port = free_port()
    rx = subprocess.Popen(
        [sys.executable, "-m", "otlp_lab.cli", "receive", "--db", str(db), "--grpc", "off"]
        + ["--http", f"127.0.0.1:{port}", "--token", TOKEN, "--stats-every", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(lambda: live_file(db).exists(), "the receiver to announce itself")
        acked = [0]  # spans acknowledged so far
        lock = threading.Lock()

        def load() -> None:  # bounded load: REQUESTS requests, one after the other
            with httpx.Client(timeout=30) as client:
                for seed in range(REQUESTS):
                    r = client.post(
                        f"http://127.0.0.1:{port}/v1/traces",
                        content=trace_body(SPANS_EACH, seed=seed),
                        headers={
                            "content-type": "application/x-protobuf",
                            "authorization": f"Bearer {TOKEN}",
                        },
                    )
                    assert r.status_code == 200
                    with lock:
                        acked[0] += SPANS_EACH

        loader = threading.Thread(target=load)
        loader.start()
        seen = []
        with LiveLab(db, headers={"authorization": f"Bearer {TOKEN}"}) as live:
            _wait(lambda: acked[0] > 0, "the first acknowledged request")
            for _ in range(5):  # queries while the load runs
                with lock:
                    before = acked[0]
                n = live.sql("SELECT count(*) AS n FROM spans")["n"][0]
                assert before <= n <= REQUESTS * SPANS_EACH  # commit-before-ack: every acked span is visible
                seen.append(n)
            # the CLI finds the receiver by itself when the file is locked
            out = _cli("sql", "--db", str(db), "SELECT count(*) AS n FROM spans", OTLP_LAB_TOKEN=TOKEN)
            assert out.returncode == 0, out.stderr + out.stdout
            out = _cli("info", "--db", str(db), OTLP_LAB_TOKEN=TOKEN)
            assert out.returncode == 0 and "spans" in out.stdout, out.stderr + out.stdout
            # authenticated like the OTLP endpoints, and read-only
            with pytest.raises(StoreError, match="401"), LiveLab(db) as anonymous:
                anonymous.sql("SELECT 1")
            with pytest.raises(StoreError, match="one read-only SELECT"):
                live.sql("DROP TABLE spans")
            with pytest.raises(StoreError, match="one read-only SELECT"):
                live.sql("SELECT 1; DELETE FROM spans")
            loader.join(120)
            assert not loader.is_alive()
            assert live.sql("SELECT count(*) AS n FROM spans")["n"][0] == REQUESTS * SPANS_EACH
            assert live.info()["tables"]["spans"] == REQUESTS * SPANS_EACH
        assert seen == sorted(seen)
    finally:
        rx.send_signal(signal.SIGINT)
        try:
            rx.wait(60)
        finally:
            if rx.poll() is None:
                rx.kill()
            rx.stderr.close()
    assert not live_file(db).exists()  # withdrawn at stop
    with Lab(db, read_only=True) as lab:  # and the file is free again
        assert lab.sql("SELECT count(*) AS n FROM spans")["n"][0] == REQUESTS * SPANS_EACH


def test_a_file_nobody_writes_opens_as_a_lab_and_no_live_file_is_a_named_error(tmp_path):
    from otlp_lab.transport import open_lab

    db = tmp_path / "quiet.duckdb"
    Lab(db).close()
    with open_lab(db) as lab:
        assert isinstance(lab, Lab)
    with pytest.raises(StoreError, match="no running receiver"):
        LiveLab(db)
