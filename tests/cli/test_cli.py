"""The otlp-lab command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from ..conftest import TRAINTICKET, make_trace_request


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "otlp_lab.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_load_info_sql(tmp_path):
    db = str(tmp_path / "capture.duckdb")
    out = run("load", str(TRAINTICKET / "normal"), "--db", db)
    assert out.returncode == 0, out.stderr
    assert "spans" in out.stdout and "4,595" in out.stdout  # rows added, with a thousands separator
    again = run("load", str(TRAINTICKET / "normal"), "--db", db)
    assert "duplicate" in again.stdout
    info = run("info", "--db", db)
    assert info.returncode == 0 and "ts-gateway-service" in info.stdout and "spans" in info.stdout
    sql = run("sql", "--db", db, "SELECT count(*) AS n FROM spans", "--csv")
    n = int(sql.stdout.splitlines()[1])
    assert n > 1000


def test_bad_file_exits_non_zero_with_the_reason(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "nothex"}]}]}]}')
    out = run("load", str(bad), "--db", str(tmp_path / "db.duckdb"))
    assert out.returncode == 2
    assert "traceId must be hex" in out.stdout and "bad.json" in out.stdout


def test_skip_bad(tmp_path):
    good = make_trace_request(2).SerializeToString()
    f = tmp_path / "two.binpb"
    f.write_bytes(len(good).to_bytes(4, "big") + good + (100).to_bytes(4, "big") + b"\x0a\x02")
    out = run("load", str(f), "--db", str(tmp_path / "db.duckdb"), "--skip-bad")
    assert out.returncode == 0, out.stdout
    assert "skipped" in out.stdout and "truncated" in out.stdout
