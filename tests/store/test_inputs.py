"""What users hand the Lab is checked: one where-expression, integer limits, finite durations."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from otlp_lab import Lab
from otlp_lab.errors import ConfigError, OtlpLabError

from ..conftest import make_trace_request


@pytest.fixture
def loaded(lab: Lab) -> Lab:
    lab.load_bytes(make_trace_request(3).SerializeToString())
    return lab


def _tables(lab: Lab) -> set[str]:
    return {r[0] for r in lab.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


@pytest.mark.parametrize(
    "where",
    [
        "true; DROP TABLE span_links; SELECT 1",
        "true); DROP TABLE span_links; --",
        "1, 2",
        "name = 'op0') OR (true",
    ],
)
def test_where_takes_one_expression_only(loaded, where):
    before = _tables(loaded)
    for call in (loaded.spans, loaded.logs, lambda w: loaded.metrics("sum", w)):
        with pytest.raises(ConfigError, match="one SQL expression"):
            call(where)
    with pytest.raises(ConfigError, match="one SQL expression"):
        list(loaded.export("traces", where=where))
    assert _tables(loaded) == before  # nothing dropped


def test_good_where_still_filters(loaded):
    assert loaded.spans("name = 'op0' -- a comment").height == 1
    assert loaded.spans("name IN ('op0', 'op1; x')").height == 1
    assert loaded.spans("  ").height == 3


@pytest.mark.parametrize("limit", ["1; DROP TABLE spans", "5", 1.5, -1, True])
def test_limits_are_integers(loaded, limit):
    with pytest.raises(ConfigError, match="limit"):
        loaded.traces(limit=limit)
    with pytest.raises(ConfigError, match="limit"):
        loaded.spans(limit=limit)
    assert "spans" in _tables(loaded)


@pytest.mark.parametrize("window", ["1e400s", math.inf, math.nan, "-1s", 0, "soon", True])
def test_red_window_is_a_finite_positive_duration(loaded, window):
    with pytest.raises(ConfigError, match=r"red\(window=...\)"):
        loaded.red(window)


def test_red_accepts_compound_durations(loaded):
    assert loaded.red("1m30s").height >= 1


@pytest.mark.parametrize("window_s", [math.inf, math.nan, 0, -1, "1s"])
def test_lab_timeline_window_is_checked(loaded, window_s):
    from otlp_lab.sim import lab_timeline

    with pytest.raises(ConfigError, match=r"lab_timeline\(window_s=...\)"):
        lab_timeline(loaded, "run", window_s=window_s)


def test_on_error_is_checked_up_front(tmp_path):
    f = tmp_path / "t.pb"
    f.write_bytes(make_trace_request(2).SerializeToString())
    lab = Lab()
    lab.load(f)
    with pytest.raises(ConfigError, match="on_error"):
        lab.load(f, on_error="ignore")  # already loaded: checked anyway, before any file
    with pytest.raises(ConfigError, match="on_error"):
        lab.load(tmp_path / "missing.json", on_error="bogus")
    with pytest.raises(ConfigError, match="signal"):
        lab.load(f, signal="spans")


def test_cli_user_errors_print_no_traceback(tmp_path):
    db = str(tmp_path / "x.duckdb")
    Lab(db).close()
    for args in (
        ["simulate", "shop", "--db", db, "--duration", "1e400s"],
        ["sql", "--db", db, "SELECT 1; SELECT 2 FROM nowhere"],
        ["load", str(tmp_path / "missing.json"), "--db", db],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "otlp_lab.cli", *args], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr + out.stdout, args
        assert "error:" in out.stdout


def test_every_input_error_is_a_library_error(loaded):
    for bad in (lambda: loaded.traces(order="slowest"), lambda: loaded.metrics("sums")):
        with pytest.raises(OtlpLabError):
            bad()
