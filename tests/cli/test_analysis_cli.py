"""otlp-lab report and traceql on a user's own capture, run as a user runs them."""

from __future__ import annotations

import duckdb

from otlp_lab import Lab

from ..conftest import TRAINTICKET
from .test_cli import run


def test_report_and_traceql_on_a_capture_written_by_an_older_version(tmp_path):
    db = tmp_path / "capture.duckdb"
    with Lab(db) as lab:
        lab.load(TRAINTICKET / "normal")
    con = duckdb.connect(str(db))  # an older otlp_lab: no service_graph_calls or unique_spans view
    con.execute("DROP VIEW service_graph; DROP VIEW service_graph_calls")
    con.close()
    out = tmp_path / "r" / "report.html"
    res = run("report", "--db", str(db), "--out", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    page = out.read_text()
    assert "report.html" in res.stdout and "Trace waterfall and critical path" in page
    assert "mode = inferred" in page  # the capture has no span kinds: the graph says how it was made
    q = run(
        "traceql", "--db", str(db), '{ resource.service.name = "ts-gateway-service" } > { } | count() > 3'
    )
    assert q.returncode == 0 and "spans" in q.stdout, q.stdout + q.stderr
    bad = run("traceql", "--db", str(db), "{ } | rate()")
    assert bad.returncode != 0 and "rate" in bad.stdout and "not supported" in bad.stdout
    sql = run("traceql", "--db", str(db), "{ status = error }", "--show-sql")
    assert "status_code = 'ERROR'" in sql.stdout


def test_report_needs_spans(tmp_path):
    db = tmp_path / "empty.duckdb"
    Lab(db).close()
    res = run("report", "--db", str(db), "--out", str(tmp_path / "x.html"))
    assert res.returncode != 0 and "no spans" in res.stdout
