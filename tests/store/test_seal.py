"""Sealed captures: verify names the load and table of a modified, inserted or deleted row."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from otlp_lab import Lab
from otlp_lab.cli import main
from otlp_lab.errors import StoreError

from ..conftest import ROOT

SDK_SHOP = ROOT / "datasets" / "sdk-shop"


@pytest.fixture(scope="module")
def sealed_db(tmp_path_factory):
    """The SDK shop capture (three loads: traces, metrics, logs), sealed once, in a file."""
    d = tmp_path_factory.mktemp("sealed")
    with Lab(d / "c.duckdb") as lab:
        for f in ("traces.binpb", "metrics.binpb", "logs.binpb"):
            lab.load(SDK_SHOP / f)
        s = lab.seal(d / "seal.json")
    return d, s


@pytest.fixture
def sealed(sealed_db, tmp_path):
    """A fresh copy of the sealed capture for each test to tamper with."""
    d, s = sealed_db
    for name in ("c.duckdb", "seal.json"):
        shutil.copy(d / name, tmp_path / name)
    lab = Lab(tmp_path / "c.duckdb")
    yield lab, s
    lab.close()


def load_of(lab: Lab, table: str) -> int:
    return lab.sql(f"SELECT min(load_id) FROM {table}").item()


def problems(report) -> list[tuple]:
    return report.problems.select("load_id", "table", "problem").rows()


def test_intact_capture_verifies(sealed, tmp_path) -> None:  # tmp_path holds the copied seal.json
    lab, s = sealed
    assert s.loads == 3 and len(s.root) == 64 and s.rows > 0
    r = lab.verify(s.root)
    assert r.ok and r.problems.height == 0 and r.root == s.root
    assert lab.verify(tmp_path / "seal.json").ok
    assert json.loads((tmp_path / "seal.json").read_text())["root"] == s.root
    assert lab.seal().root == s.root  # nothing new: the same root


def test_modified_row_is_pinned_to_its_load(sealed) -> None:
    lab, s = sealed
    lid = load_of(lab, "spans")
    lab.con.execute("UPDATE spans SET status_code = 'OK' WHERE span_id = (SELECT min(span_id) FROM spans)")
    r = lab.verify(s.root)
    assert not r.ok and problems(r) == [(lid, "spans", "rows modified")]


def test_modified_attribute_is_caught(sealed) -> None:
    lab, s = sealed
    lid = load_of(lab, "metric_sum")
    lab.con.execute(
        "UPDATE metric_sum SET attributes = map_concat(attributes, map(['x'], [1::VARIANT])) "
        "WHERE rowid = (SELECT min(rowid) FROM metric_sum)"
    )
    assert problems(lab.verify()) == [(lid, "metric_sum", "rows modified")]


def test_inserted_row_is_pinned_to_its_load(sealed) -> None:
    lab, s = sealed
    lid = load_of(lab, "logs")
    lab.con.execute("INSERT INTO logs SELECT * FROM logs LIMIT 1")
    r = lab.verify(s.root)
    assert problems(r) == [(lid, "logs", "rows added")]
    assert r.problems["rows"][0] == r.problems["sealed_rows"][0] + 1


def test_deleted_row_is_pinned_to_its_load(sealed) -> None:
    lab, s = sealed
    lid = load_of(lab, "spans")
    lab.con.execute("DELETE FROM spans WHERE span_id = (SELECT max(span_id) FROM spans)")
    assert problems(lab.verify(s.root)) == [(lid, "spans", "rows deleted")]


def test_row_moved_or_forged_outside_the_sealed_loads(sealed) -> None:
    lab, s = sealed
    lab.con.execute(
        "INSERT INTO spans (trace_id, span_id, name, load_id) VALUES ('ab', 'cd', 'forged', NULL)"
    )
    assert problems(lab.verify(s.root)) == [(None, "spans", "rows in an unsealed load")]


def test_a_later_load_is_reported_unsealed_then_sealed(sealed) -> None:
    lab, s = sealed
    lab.load(SDK_SHOP / "traces.jsonl", duplicates=True)
    r = lab.verify(s.root)
    assert r.ok and len(r.unsealed) == 1
    s2 = lab.seal()
    assert s2.new_loads == r.unsealed and s2.root != s.root
    assert lab.verify(s2.root).ok and not lab.verify(s.root).ok  # the old root no longer describes the chain


def test_rewritten_seal_breaks_the_chain_or_the_root(sealed) -> None:
    lab, s = sealed
    lid = load_of(lab, "spans")
    lab.con.execute("DELETE FROM spans WHERE span_id = (SELECT max(span_id) FROM spans)")
    # a forger updates the stored digest to match: the chain no longer follows from the digests
    new = lab.con.execute("SELECT count(*) FROM spans WHERE load_id = ?", [lid]).fetchone()[0]
    lab.con.execute("UPDATE seal_tables SET rows = ? WHERE load_id = ? AND table_name = 'spans'", [new, lid])
    assert ("chain broken" in problems(lab.verify())[-1]) or not lab.verify(s.root).ok
    # ... and re-sealing from scratch gives a new root, which the root kept elsewhere exposes
    lab.con.execute("DELETE FROM seal_tables")
    lab.con.execute("DELETE FROM seal_chain")
    resealed = lab.seal()
    assert lab.verify().ok and resealed.root != s.root
    assert problems(lab.verify(s.root)) == [(None, "seal_chain", "root mismatch")]


def test_never_sealed_and_bad_root(tmp_path) -> None:
    lab = Lab()
    with pytest.raises(StoreError, match="never been sealed"):
        lab.verify()
    lab.load(SDK_SHOP / "traces.binpb")
    lab.seal()
    with pytest.raises(StoreError, match="64-digit hex root"):
        lab.verify(str(tmp_path / "missing.json"))


def test_cli_seal_and_verify(sealed_db, tmp_path) -> None:
    d, s = sealed_db
    db = tmp_path / "c.duckdb"
    shutil.copy(d / "c.duckdb", db)
    with Lab(db) as lab:
        lab.load(SDK_SHOP / "traces.jsonl", duplicates=True)
    runner = CliRunner()
    out = runner.invoke(main, ["seal", "--db", str(db), "--out", str(tmp_path / "seal.json")])
    assert out.exit_code == 0, out.output
    assert "sealed 1 new load(s)" in out.output
    ok = runner.invoke(main, ["verify", "--db", str(db), "--root", str(tmp_path / "seal.json")])
    assert ok.exit_code == 0 and "intact" in ok.output
    with Lab(db) as lab:
        lab.con.execute("DELETE FROM spans WHERE span_id = (SELECT min(span_id) FROM spans)")
    bad = runner.invoke(main, ["verify", "--db", str(db), "--root", str(tmp_path / "seal.json")])
    assert bad.exit_code == 1 and "rows deleted" in bad.output and "spans" in bad.output
