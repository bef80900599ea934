"""The Lab's tables (or Polars frames of them) as OTLP: SQL back to the encoder's staging form.

:func:`export_tables` selects the rows of one signal in the export staging form that
:func:`otlp_lab.otlp.encode_requests` takes (ids as bytes via ``unhex``, attribute maps
as typed key/value lists via the ``_otlp_kv`` macro, spans with their events and links);
:func:`export_requests` and :func:`write_otlp` glue that to the encoder.

A span's events and links are those loaded with it: the same ``trace_id``, ``span_id``
and ``load_id``.

What comes back differs from what was loaded only where the Lab's tables cannot tell:

* items are regrouped: one resource, scope (and metric) per distinct context, in table
  order; resources, scopes and metrics that held no items are gone;
* kvlist values come back with their keys sorted (DuckDB VARIANT objects sort them);
* bytes inside arrays or kvlists come back as base64 strings, and infinities inside
  them as nulls (nested values are stored as JSON);
* a key repeated within one attribute list keeps its last value.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

import duckdb
import polars as pl
import pyarrow as pa

from otlp_lab.errors import ConfigError, SchemaError, StoreError
from otlp_lab.otlp import (
    DEFAULT_MAX_BYTES,
    FORMATS,
    SIGNALS,
    Format,
    Signal,
    encode_requests,
    to_otlp_json,
    write_requests,
)
from otlp_lab.store._guard import where_sql
from otlp_lab.store._schema import MACROS, METRIC_TABLES, TABLES

if TYPE_CHECKING:
    from otlp_lab.store._lab import Lab

__all__ = ["export_requests", "export_tables", "write_otlp"]

EXPORT_BATCH_ROWS = 65_536

_METRIC_KINDS = {table: kind for kind, table in METRIC_TABLES.items() if kind != "exp_histogram"}
_BY_CONTEXT = "service_name NULLS FIRST, resource_schema_url, scope_name, scope_version"
_CONTEXT = (
    "_otlp_kv(resource_attributes) AS resource_attributes, _otlp_kv(scope_attributes) AS scope_attributes"
)
_IDS = "unhex(trace_id) AS trace_id, unhex(span_id) AS span_id"
_EVENTS = """SELECT trace_id, span_id, load_id,
        list({'time': time, 'name': name, 'attributes': _otlp_kv(attributes),
              'dropped_attributes_count': dropped_attributes_count} ORDER BY seq) AS events
    FROM span_events WHERE (trace_id, span_id, load_id) IN (SELECT (trace_id, span_id, load_id) FROM s) GROUP BY ALL"""
_LINKS = """SELECT trace_id, span_id, load_id,
        list({'trace_id': unhex(linked_trace_id), 'span_id': unhex(linked_span_id), 'trace_state': trace_state,
              'flags': flags, 'attributes': _otlp_kv(attributes),
              'dropped_attributes_count': dropped_attributes_count} ORDER BY seq) AS links
    FROM span_links WHERE (trace_id, span_id, load_id) IN (SELECT (trace_id, span_id, load_id) FROM s) GROUP BY ALL"""
_EXEMPLARS = """list_transform(exemplars, lambda e: {'time': e.time, 'value': e.value, 'int_value': e.int_value,
        'span_id': unhex(e.span_id), 'trace_id': unhex(e.trace_id), 'attributes': _otlp_kv(e.filtered_attributes)})
        AS exemplars"""


def _rows_of(table: str, where: str | None) -> str:
    cond = where_sql(where)
    return f"SELECT *, rowid AS _row FROM {table}" + (f" WHERE ({cond})" if cond else "")


def _traces_sql(where: str | None) -> str:
    return f"""WITH s AS ({_rows_of("spans", where)}), ev AS ({_EVENTS}), ln AS ({_LINKS})
        SELECT * EXCLUDE (load_id, _row, duration_ns)
               REPLACE ({_IDS}, unhex(parent_span_id) AS parent_span_id, _otlp_kv(attributes) AS attributes, {_CONTEXT})
        FROM (SELECT s.*, ev.events, ln.links FROM s
              LEFT JOIN ev USING (trace_id, span_id, load_id) LEFT JOIN ln USING (trace_id, span_id, load_id))
        ORDER BY {_BY_CONTEXT}, _row"""


def _logs_sql(where: str | None) -> str:
    return f"""SELECT * EXCLUDE (load_id, _row)
               REPLACE ({_IDS}, _otlp_typed(body) AS body, _otlp_kv(attributes) AS attributes, {_CONTEXT})
        FROM ({_rows_of("logs", where)}) ORDER BY {_BY_CONTEXT}, _row"""


def _metric_sql(table: str, where: str | None) -> str:
    exemplars = f", {_EXEMPLARS}" if table != "metric_summary" else ""
    return f"""SELECT '{_METRIC_KINDS[table]}' AS metric_kind, * EXCLUDE (load_id, _row)
               REPLACE (_otlp_kv(metadata) AS metadata, _otlp_kv(attributes) AS attributes, {_CONTEXT}{exemplars})
        FROM ({_rows_of(table, where)}) ORDER BY {_BY_CONTEXT}, metric_name, _row"""


def _queries(con: duckdb.DuckDBPyConnection, signal: Signal, where: str | None) -> list[str]:
    if signal == "traces":
        return [_traces_sql(where)]
    if signal == "logs":
        return [_logs_sql(where)]
    # binding the exemplar lambdas is the slow part: skip the metric tables with no rows to export
    probe = " UNION ALL ".join(f"SELECT '{t}' WHERE EXISTS ({_rows_of(t, where)})" for t in _METRIC_KINDS)
    return [_metric_sql(t, where) for (t,) in con.sql(probe).fetchall()]


# ---------------------------------------------------------------- sources


def _frame_connection(frame: pl.DataFrame, signal: Signal) -> duckdb.DuckDBPyConnection:
    """A scratch database holding ``frame`` as the Lab table of ``signal`` (``spans`` or ``logs``)."""
    if signal == "metrics":
        raise ConfigError(
            "frames can be exported as traces (spans columns) or logs (logs columns); export metrics from a Lab"
        )
    con = duckdb.connect()
    try:
        for m in MACROS:
            con.execute(m)
        for t in ("spans", "logs", "span_events", "span_links"):
            con.execute(f"CREATE TABLE {t} ({TABLES[t]})")
        _insert_frame(con, frame, "spans" if signal == "traces" else "logs")
    except BaseException:
        con.close()
        raise
    return con


def _insert_frame(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, table: str) -> None:
    """Insert the frame's columns that ``table`` has; the others stay null.

    Attribute maps and log bodies may be the JSON text ``Lab.sql`` returns them as.
    """
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
    common = [c for c in frame.columns if c in types]
    if table == "spans" and not {"trace_id", "span_id"} <= set(common):
        raise SchemaError(
            f"a frame of spans needs the spans table's columns (at least trace_id and span_id). Got {frame.columns} instead."
        )
    exprs = []
    for c in common:
        text = frame.schema[c] == pl.String
        if types[c].startswith("MAP") and text:
            exprs.append(
                f'map(map_keys("{c}"::JSON::MAP(VARCHAR, JSON)), '
                f'list_transform(map_values("{c}"::JSON::MAP(VARCHAR, JSON)), lambda x: x::VARIANT)) AS "{c}"'
            )
        elif types[c] == "VARIANT" and text:
            exprs.append(f'"{c}"::JSON::VARIANT AS "{c}"')
        else:
            exprs.append(f'"{c}"')
    con.register("_frame", frame.to_arrow())
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT {', '.join(exprs)} FROM _frame")
    finally:
        con.unregister("_frame")


@contextlib.contextmanager
def _connection(source: Any, signal: Signal) -> Iterator[duckdb.DuckDBPyConnection]:
    """The connection to read ``source`` from, under the Lab's lock when it has one."""
    if isinstance(source, pl.DataFrame):
        con = _frame_connection(source, signal)
        try:
            yield con
        finally:
            con.close()
        return
    con = getattr(source, "con", source)
    if not isinstance(con, duckdb.DuckDBPyConnection):
        raise ConfigError(
            f"source must be a Lab, a DuckDB connection or a Polars DataFrame. Got {type(source).__name__} instead."
        )
    if con is source:  # a plain connection to a Lab file has none of the Lab's temp macros
        for m in MACROS:
            con.execute(m)
    with getattr(source, "_lock", contextlib.nullcontext()):
        yield con


def export_tables(
    source: Lab | duckdb.DuckDBPyConnection | pl.DataFrame,
    signal: Signal,
    where: str | None = None,
    *,
    batch_rows: int = EXPORT_BATCH_ROWS,
) -> Iterator[pa.Table]:
    """Rows of one signal in the encoder's export staging form, ``batch_rows`` at a time.

    Parameters
    ----------
    source : Lab, duckdb.DuckDBPyConnection or polars.DataFrame
        A Lab (or a connection to a Lab database), or a frame with the columns of the
        ``spans`` table (``signal="traces"``) or the ``logs`` table (``signal="logs"``),
        such as ``lab.spans()`` returns; missing columns take their defaults.
    signal : {"traces", "metrics", "logs"}
        Spans with their events and links; log records; or the points of the five
        ``metric_*`` tables (one table each, with a ``metric_kind`` column).
    where : str, optional
        A SQL condition on the columns of ``spans``, ``logs`` or every ``metric_*`` table.
    batch_rows : int
        Rows per table yielded.

    Yields
    ------
    pyarrow.Table

    Raises
    ------
    StoreError
        The query failed (for example a ``where`` naming an unknown column).

    Examples
    --------
    >>> from otlp_lab import Lab
    >>> lab = Lab()
    >>> lab.load("trace.json")  # doctest: +SKIP
    >>> next(export_tables(lab, "traces")).column("kind").to_pylist()  # doctest: +SKIP
    ['SERVER']
    """
    if signal not in SIGNALS:
        raise ConfigError(f"signal must be one of {SIGNALS}. Got {signal!r} instead.")
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be a positive integer. Got {batch_rows!r} instead.")
    try:
        with _connection(
            source, signal
        ) as con:  # read everything first: the Lab's lock is not held across yields
            tables = [con.sql(q).to_arrow_table() for q in _queries(con, signal, where)]
    except duckdb.Error as exc:
        raise StoreError(f"cannot export {signal}: {exc}") from exc
    for table in tables:
        for batch in table.to_batches(max_chunksize=batch_rows):
            yield pa.Table.from_batches([batch])


def export_requests(
    source: Lab | duckdb.DuckDBPyConnection | pl.DataFrame,
    signal: Signal,
    *,
    where: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_items: int | None = None,
    fmt: Format = "protobuf",
) -> Iterator[Any]:
    """OTLP export requests of the Lab's ``signal`` rows, each under ``max_bytes``.

    Parameters
    ----------
    source : Lab, duckdb.DuckDBPyConnection or polars.DataFrame
        See :func:`export_tables`.
    signal : {"traces", "metrics", "logs"}
    where : str, optional
        A SQL condition selecting the rows (see :func:`export_tables`).
    max_bytes : int, default 4 MiB
        Upper bound of each request's serialized protobuf size.
    max_items : int, optional
        Upper bound of spans, log records or data points per request.
    fmt : {"protobuf", "json"}
        Yield protobuf messages (``Export*ServiceRequest``), or OTLP/JSON objects (dicts).

    Yields
    ------
    google.protobuf.message.Message or dict

    Examples
    --------
    >>> from otlp_lab import Lab
    >>> lab = Lab()
    >>> lab.load("trace.json")  # doctest: +SKIP
    >>> [req] = export_requests(lab, "traces", fmt="json")  # doctest: +SKIP
    >>> req["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]  # doctest: +SKIP
    '5b8efff798038103d269b633813fc60c'
    """
    if fmt not in FORMATS:
        raise ConfigError(f"fmt must be one of {FORMATS}. Got {fmt!r} instead.")
    requests = encode_requests(
        signal, export_tables(source, signal, where), max_bytes=max_bytes, max_items=max_items
    )
    yield from (to_otlp_json(r) for r in requests) if fmt == "json" else requests


def write_otlp(
    source: Lab | duckdb.DuckDBPyConnection | pl.DataFrame,
    path: str | os.PathLike[str] | IO[bytes],
    signal: Signal,
    *,
    fmt: Format = "json",
    where: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_items: int | None = None,
) -> int:
    """Write ``signal`` rows as a Collector file-exporter file; return the number of requests.

    Parameters
    ----------
    source : Lab, duckdb.DuckDBPyConnection or polars.DataFrame
        See :func:`export_tables`.
    path : path or binary file object
    signal : {"traces", "metrics", "logs"}
    fmt : {"json", "protobuf"}
        JSON lines (one OTLP/JSON request per line), or protobuf requests each after a
        4-byte big-endian length. ``Lab.load`` reads both.
    where, max_bytes, max_items
        See :func:`export_requests`.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"fmt must be one of {FORMATS}. Got {fmt!r} instead.")
    requests = export_requests(source, signal, where=where, max_bytes=max_bytes, max_items=max_items)
    if hasattr(path, "write"):
        return write_requests(requests, path, fmt=fmt)
    with open(path, "wb") as fp:
        return write_requests(requests, fp, fmt=fmt)
