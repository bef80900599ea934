"""`otlp-lab receive` and `otlp-lab send`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from click.testing import CliRunner

from otlp_lab import Lab
from otlp_lab.cli import main

from ..conftest import ROOT
from .conftest import free_port

SDK_TRACES = ROOT / "datasets" / "sdk-shop" / "traces.binpb"


def test_send_files_and_db(receiver, tmp_path):
    runner = CliRunner()
    r = runner.invoke(
        main, ["send", str(SDK_TRACES), "--endpoint", receiver.grpc_endpoint, "--max-items", "50"]
    )
    assert r.exit_code == 0, r.output
    assert "items sent" in r.output
    db = tmp_path / "src.duckdb"
    with Lab(db) as lab:
        lab.load(SDK_TRACES)
        n = lab.counts()["spans"]
    r = runner.invoke(
        main,
        [
            "send",
            "--db",
            str(db),
            "--signal",
            "traces",
            "--endpoint",
            receiver.http_endpoint,
            "--protocol",
            "http/json",
            "--shift-to-now",
            "--header",
            "x-run=1",
        ],
    )
    assert r.exit_code == 0, r.output
    assert receiver.stats.spans == 2 * n


def test_send_failure_exit_status_and_hint():
    r = CliRunner().invoke(
        main,
        [
            "send",
            str(SDK_TRACES),
            "--endpoint",
            f"127.0.0.1:{free_port()}",
            "--max-attempts",
            "1",
            "--timeout",
            "2",
        ],
    )
    assert r.exit_code == 1
    assert "what to do" in r.output and "otlp-lab receive" in r.output
    r = CliRunner().invoke(main, ["send", "--endpoint", "127.0.0.1:1"])
    assert r.exit_code == 2 and "FILES or --db" in r.output


def test_receive_runs_until_sigterm_and_commits(tmp_path):
    from otlp_lab.transport import Sender

    db, port = tmp_path / "cap.duckdb", free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otlp_lab.cli",
            "receive",
            "--db",
            str(db),
            "--grpc",
            "off",
            "--http",
            f"127.0.0.1:{port}",
            "--stats-every",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "OTLP/HTTP listening on http://127.0.0.1:" in line, line
        report = Sender(f"http://127.0.0.1:{port}", protocol="http/protobuf").send_files(SDK_TRACES)
        assert report.failed == 0
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "Receiver totals" in out and "spans" in out
    with Lab(db, read_only=True) as lab:
        assert lab.counts()["spans"] == report.sent
