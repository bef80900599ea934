"""``otlp-lab export`` and ``otlp-lab sql --format/--out``, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
from click.testing import CliRunner, Result

from otlp_lab import Lab
from otlp_lab.cli import main

from ..conftest import make_trace_request


def run(*args: str, width: int | None = None) -> subprocess.CompletedProcess | Result:
    """The command in this process (fast), or in a terminal ``width`` columns wide (a subprocess)."""
    if width is None:
        return CliRunner().invoke(main, list(args))
    env = dict(os.environ, COLUMNS=str(width))
    return subprocess.run(
        [sys.executable, "-m", "otlp_lab.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def _db(tmp_path) -> str:
    db = str(tmp_path / "src.duckdb")
    with Lab(db) as lab:
        lab.load_bytes(make_trace_request(6, service="cart").SerializeToString())
        lab.load_bytes(make_trace_request(4, service="pay", seed=2).SerializeToString())
    return db


def test_export_every_format_and_load_the_otlp_back(tmp_path):
    db = _db(tmp_path)
    for fmt in ("parquet", "otlp-json", "otlp-proto", "csv"):
        out = run("export", "--db", db, "--format", fmt, "--out", str(tmp_path / fmt))
        assert out.exit_code == 0, out.output
    assert sorted(p.name for p in (tmp_path / "parquet" / "spans").glob("*/*")) == [
        "service=cart",
        "service=pay",
    ]
    assert pl.read_csv(tmp_path / "csv" / "spans.csv").height == 10
    for name in ("otlp-json/traces.otlp.jsonl", "otlp-proto/traces.otlp.binpb"):
        with Lab() as lab:
            assert lab.load(tmp_path / name)["spans"] == 10
    again = run("export", "--db", db, "--format", "csv", "--out", str(tmp_path / "csv"))
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_sql_formats_and_wide_rows(tmp_path):
    db = _db(tmp_path)
    q = "SELECT name, attributes, service_name FROM spans ORDER BY name, service_name"
    js = run("sql", "--db", db, q, "--format", "json")
    rows = [json.loads(line) for line in js.output.splitlines()]
    assert len(rows) == 10 and rows[0]["name"] == "op0"
    out = tmp_path / "r.parquet"
    pq = run("sql", "--db", db, q, "--format", "parquet", "--out", str(out))
    assert pq.exit_code == 0, pq.output
    back = pl.read_parquet(out)
    assert back.height == 10 and back["attributes"].to_list()[0]["http.response.status_code"]["type"] == "int"
    missing = run("sql", "--db", db, q, "--format", "parquet")
    assert missing.exit_code == 2 and "--out" in missing.output
    # a row too wide for the terminal prints as a record, one column per line, nothing cut to "…"
    wide = run("sql", "--db", db, "SELECT * FROM spans ORDER BY name LIMIT 1", width=80)
    assert "record 1" in wide.stdout and "resource_attributes" in wide.stdout
    assert "…" not in wide.stdout
