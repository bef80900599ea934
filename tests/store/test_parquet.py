"""Parquet out and back: every table, typed attributes, Hive partitions, three readers, Lab.attach."""

from __future__ import annotations

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from otlp_lab import Lab
from otlp_lab.errors import ConfigError, StoreError
from otlp_lab.store._schema import TABLES

from ..conftest import make_trace_request


@pytest.fixture
def full(conformance_dir) -> Lab:
    """The OTLP spec's examples (every signal, every metric kind, events, links, exemplars, all value types)."""
    lab = Lab()
    lab.load(conformance_dir)
    lab.load_bytes(make_trace_request(5, service="cart").SerializeToString())
    yield lab
    lab.close()


def _nonempty(lab: Lab) -> dict[str, int]:
    return {t: n for t, n in lab.counts().items() if n}


def test_copy_to_parquet_works_for_every_table(full, tmp_path):
    for table in TABLES:
        out = tmp_path / f"{table}.parquet"
        full.con.execute(f"COPY (FROM {table}_parquet) TO '{out}' (FORMAT parquet)")
        n = full.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        assert pq.read_metadata(out).num_rows == n, table
    # attribute values keep their OTLP type in the file
    row = duckdb.sql(
        f"SELECT attributes['http.response.status_code'] AS v FROM '{tmp_path / 'spans.parquet'}' "
        "WHERE attributes['http.response.status_code'] IS NOT NULL LIMIT 1"
    ).fetchall()[0][0]
    assert row["type"] == "int" and row["int_value"] >= 200


def test_export_folder_reads_back_in_duckdb_polars_and_pyarrow(full, tmp_path):
    counts = full.to_parquet(tmp_path)
    expected = _nonempty(full)
    assert {t: counts[t] for t in expected} == expected
    # Hive partitions: one folder per date and service
    assert (tmp_path / "spans" / "date=2023-11-14" / "service=cart").is_dir()
    for table, n in expected.items():
        files = str(tmp_path / table / "**" / "*.parquet")
        assert (
            duckdb.sql(f"SELECT count(*) FROM read_parquet('{files}', hive_partitioning=true)").fetchall()[0][
                0
            ]
            == n
        )
        assert pl.scan_parquet(files, hive_partitioning=True).select(pl.len()).collect().item() == n
        assert ds.dataset(tmp_path / table, format="parquet", partitioning="hive").count_rows() == n
    with pytest.raises(ConfigError, match="not empty"):
        full.to_parquet(tmp_path)
    assert full.to_parquet(tmp_path, overwrite=True) == counts


def test_attach_queries_the_folder_as_a_lab(full, tmp_path):
    full.to_parquet(tmp_path)
    with Lab.attach(tmp_path) as lab:
        assert _nonempty(lab) == _nonempty(full)
        for table in ("spans", "logs", "span_events", "span_links", "metric_histogram"):
            q = f"SELECT * EXCLUDE (load_id) FROM {table} ORDER BY ALL"
            assert lab.sql(q).equals(full.sql(q)), table
        typed = "SELECT variant_typeof(attributes['http.response.status_code']) t, attributes['http.response.status_code']::BIGINT + 1 n FROM spans WHERE service_name = 'cart' ORDER BY n"
        assert lab.sql(typed).to_dicts() == full.sql(typed).to_dicts()
        assert lab.sql(typed)["t"].to_list()[0] == "INT64"
        assert lab.traces(limit=None).equals(full.traces(limit=None))
        with pytest.raises(StoreError, match="cannot load"):
            lab.load_bytes(make_trace_request(1).SerializeToString())


def test_attach_refuses_a_folder_without_tables(tmp_path):
    with pytest.raises(ConfigError, match="none of the Lab's table folders"):
        Lab.attach(tmp_path)
    with pytest.raises(ConfigError, match="not a folder"):
        Lab.attach(tmp_path / "missing")
