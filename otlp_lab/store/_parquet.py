"""Parquet out and back: the Lab's tables in a form every Parquet reader holds.

The tables keep attributes as ``MAP(VARCHAR, VARIANT)`` (typed, and queryable as
``attributes['http.route']``), but Parquet cannot hold a VARIANT inside a map (DuckDB
2.0 writes a VARIANT only as a top-level column, and Polars cannot read that one yet).
On the way out each attribute value becomes a plain struct that keeps its OTLP type::

    MAP(VARCHAR, STRUCT(type VARCHAR, string_value VARCHAR, bool_value BOOLEAN,
                        int_value BIGINT, double_value DOUBLE, bytes_value BLOB,
                        json_value VARCHAR))

``type`` is one of ``empty``, ``string``, ``bool``, ``int``, ``double``, ``array``,
``kvlist``, ``bytes``; arrays and kvlists are JSON text in ``json_value``. Log bodies
(a VARIANT) take the same struct. DuckDB, Polars, pyarrow and Spark read it as a
map (or list) of structs; :func:`attach_sql` turns it back into the Lab's types.

Every Lab connection has a ``<table>_parquet`` view of each table in this form, so
``COPY (FROM spans_parquet) TO 'spans.parquet'`` works in plain SQL.

A folder written by :func:`write_parquet` holds one directory per table, Hive-partitioned
by ``date`` (of the row's time, UTC) and ``service``::

    out/spans/date=2023-01-30/service=ts-order-service/data_0.parquet
    out/logs/date=2023-01-30/service=ts-order-service/data_0.parquet
    out/loads/data_0.parquet
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from otlp_lab.errors import ConfigError, StoreError
from otlp_lab.store._schema import ATTR, TABLES

TYPE_NAMES = ("empty", "string", "bool", "int", "double", "array", "kvlist", "bytes")
PORTABLE_VALUE = (
    "STRUCT(type VARCHAR, string_value VARCHAR, bool_value BOOLEAN, int_value BIGINT, "
    "double_value DOUBLE, bytes_value BLOB, json_value VARCHAR)"
)
PORTABLE_MAP = f"MAP(VARCHAR, {PORTABLE_VALUE})"

_NAMES = "[" + ", ".join(f"'{n}'" for n in TYPE_NAMES) + "]"

MACROS = [
    # VARIANT -> the portable struct (through the codec's typed struct, see _schema.MACROS)
    f"""CREATE OR REPLACE TEMP MACRO _portable_of_typed(x) AS {{'type': {_NAMES}[x.t + 1],
        'string_value': x.s, 'bool_value': x.b, 'int_value': x.i, 'double_value': x.d,
        'bytes_value': x.x, 'json_value': x.j}}""",
    "CREATE OR REPLACE TEMP MACRO _portable_value(v) AS CASE WHEN v IS NOT NULL THEN _portable_of_typed(_otlp_typed(v)) END",
    """CREATE OR REPLACE TEMP MACRO _portable_map(m) AS CASE WHEN m IS NOT NULL THEN
        map(map_keys(m), list_transform(_otlp_vals(m), lambda x: _portable_of_typed(x))) END""",
    # and back
    """CREATE OR REPLACE TEMP MACRO _variant_of(p) AS CASE p.type
        WHEN 'string' THEN p.string_value::VARIANT WHEN 'bool' THEN p.bool_value::VARIANT
        WHEN 'int' THEN p.int_value::VARIANT WHEN 'double' THEN p.double_value::VARIANT
        WHEN 'bytes' THEN p.bytes_value::VARIANT WHEN 'array' THEN p.json_value::JSON::VARIANT
        WHEN 'kvlist' THEN p.json_value::JSON::VARIANT ELSE NULL::VARIANT END""",
    f"""CREATE OR REPLACE TEMP MACRO _map_of(pm) AS CASE WHEN pm IS NOT NULL THEN
        map(map_keys(pm), list_transform(map_values(pm), lambda v: _variant_of(v)))::{ATTR} END""",
]

# The time and service that partition each table's rows (span_links take their span's).
_PARTITION = {
    "spans": ("start_time", "service_name"),
    "span_events": ("time", "service_name"),
    "logs": ("coalesce(time, observed_time)", "service_name"),
}
_EXEMPLARS_OUT = """list_transform("exemplars", lambda e: {'time': e.time, 'value': e.value,
    'int_value': e.int_value, 'span_id': e.span_id, 'trace_id': e.trace_id,
    'filtered_attributes': _portable_map(e.filtered_attributes)}) AS "exemplars\""""
_EXEMPLARS_IN = """list_transform("exemplars", lambda e: {'time': e.time, 'value': e.value,
    'int_value': e.int_value, 'span_id': e.span_id, 'trace_id': e.trace_id,
    'filtered_attributes': _map_of(e.filtered_attributes)})"""


def portable_columns(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    """Select-list items turning ``source``'s (a table's, or a ``(query)``'s) columns portable.

    ``MAP(VARCHAR, VARIANT)`` and ``VARIANT`` columns become the portable map and struct,
    exemplar lists keep their shape with portable attributes, and any other column that
    holds a VARIANT somewhere inside becomes JSON text.
    """
    rel = con.sql(f"SELECT * FROM {source}")
    out = []
    for name, typ in zip(rel.columns, (str(t) for t in rel.types), strict=True):
        q = '"' + name.replace('"', '""') + '"'
        if "VARIANT" not in typ:
            out.append(q)
        elif typ == ATTR:
            out.append(f"_portable_map({q}) AS {q}")
        elif typ == "VARIANT":
            out.append(f"_portable_value({q}) AS {q}")
        elif name == "exemplars" and "filtered_attributes" in typ:
            out.append(_EXEMPLARS_OUT)
        else:
            out.append(f"{q}::JSON AS {q}")
    return out


def create_parquet_views(con: duckdb.DuckDBPyConnection) -> None:
    """A temp ``<table>_parquet`` view of every table, in the portable form."""
    for m in MACROS:
        con.execute(m)
    for table in TABLES:
        try:
            cols = portable_columns(con, table)
        except duckdb.Error:
            continue  # not an otlp_lab database
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table}_parquet AS SELECT {', '.join(cols)} FROM {table}")


def _partitioned_sql(table: str) -> str | None:
    """The table's portable rows with ``date`` and ``service`` columns to partition by."""
    if table == "span_links":
        return """SELECT l.*, s.date, s.service FROM span_links_parquet l LEFT JOIN
            (SELECT trace_id, span_id, load_id, any_value(start_time::DATE) AS date, any_value(service_name) AS service
             FROM spans GROUP BY ALL) s USING (trace_id, span_id, load_id)"""
    if table in _PARTITION:
        t, svc = _PARTITION[table]
        return f"SELECT *, ({t})::DATE AS date, {svc} AS service FROM {table}_parquet"
    if table.startswith("metric_"):
        return f"SELECT *, coalesce(time, start_time)::DATE AS date, service_name AS service FROM {table}_parquet"
    return None


def write_parquet(
    con: duckdb.DuckDBPyConnection, out: str | os.PathLike[str], *, overwrite: bool = False
) -> dict[str, int]:
    """Write every non-empty table under ``out`` (see the module docstring); return rows per table."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"the output folder {out} is not empty. Choose another folder, or pass overwrite=True (--overwrite)."
            )
        for table in TABLES:
            shutil.rmtree(out / table, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    create_parquet_views(con)
    counts: dict[str, int] = {}
    for table in TABLES:
        n = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        if not n:
            continue
        target = str(out / table).replace("'", "''")
        part = _partitioned_sql(table)
        try:
            if part is None:
                (out / table).mkdir(parents=True, exist_ok=True)
                con.execute(f"COPY (FROM {table}_parquet) TO '{target}/data_0.parquet' (FORMAT parquet)")
            else:
                con.execute(
                    f"COPY ({part}) TO '{target}' (FORMAT parquet, PARTITION_BY (date, service), OVERWRITE_OR_IGNORE)"
                )
        except duckdb.Error as exc:
            raise StoreError(f"cannot write {table} to {out / table}: {exc}") from exc
        counts[table] = n
    return counts


def attach_sql(folder: str | os.PathLike[str], table: str) -> str | None:
    """A SELECT reading ``table`` from a folder written by :func:`write_parquet`, in the Lab's types.

    ``None`` when the folder holds no file of that table.
    """
    path = Path(folder) / table
    if not path.is_dir() or not any(path.rglob("*.parquet")):
        return None
    glob = str(path / "**" / "*.parquet").replace("'", "''")
    cols = []
    for line in TABLES[table].strip().splitlines():
        name, typ = line.strip().rstrip(",").split(" ", 1)
        typ = typ.removesuffix(" PRIMARY KEY")
        if typ == ATTR:
            cols.append(f"_map_of({name}) AS {name}")
        elif typ == "VARIANT":
            cols.append(f"_variant_of({name}) AS {name}")
        elif name == "exemplars":
            cols.append(f"{_EXEMPLARS_IN}::{typ} AS {name}")
        else:
            cols.append(f"{name}::{typ} AS {name}")
    hive = table in _PARTITION or table == "span_links" or table.startswith("metric_")
    opts = ", hive_partitioning = true, hive_types = {'date': 'DATE', 'service': 'VARCHAR'}" if hive else ""
    return f"SELECT {', '.join(cols)} FROM read_parquet('{glob}', union_by_name = true{opts})"
