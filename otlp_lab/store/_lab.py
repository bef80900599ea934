"""The Lab: an embedded DuckDB database of OTLP data, handed out as Polars frames."""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from otlp_lab._config import OnError, TraceOrder, check_choice, parse_duration_s
from otlp_lab.errors import ConfigError, OtlpLabError, StoreError, UnsupportedFormatError
from otlp_lab.otlp import (
    DEFAULT_BATCH_ROWS,
    DEFAULT_MAX_REQUEST_BYTES,
    Batch,
    DecodeReport,
    Signal,
    Skipped,
    check_load_options,
    expand_paths,
    file_sha256,
    iter_file_batches,
    iter_stream_batches,
)
from otlp_lab.store._critical import critical_path, summarize
from otlp_lab.store._guard import limit_sql, where_sql
from otlp_lab.store._parquet import attach_sql, create_parquet_views, write_parquet
from otlp_lab.store._schema import INSERTS, MACROS, METRIC_TABLES, SIGNAL_TABLES, TABLES
from otlp_lab.store._servicegraph import MODES, service_graph_sql
from otlp_lab.store._views import VIEWS, red_sql


@dataclass
class FileResult:
    """What happened to one file in :meth:`Lab.load`."""

    source: str
    status: str  # "loaded", "duplicate" (content already in the database), "ignored" (found in a
    # directory, not OTLP), "failed" (bad OTLP: nothing of it was loaded; ``error`` says why)
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    error: str | None = None
    nbytes: int = 0
    missing_ids: int = 0  # spans loaded without a trace or span id (lenient_ids=True)


@dataclass
class LoadResult(Mapping[str, int]):
    """Rows added per table by :meth:`Lab.load` (a read-only mapping), plus per-file detail."""

    counts: dict[str, int] = field(default_factory=dict)
    files: list[FileResult] = field(default_factory=list)

    def __getitem__(self, key: str) -> int:
        return self.counts[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.counts)

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def skipped(self) -> list[Skipped]:
        return [s for f in self.files for s in f.skipped]

    @property
    def failed(self) -> list[FileResult]:
        """Files that could not be loaded (each with its ``error``); the others were loaded."""
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        """Whether every file was loaded (or skipped as a duplicate or as not OTLP)."""
        return not self.failed

    @property
    def missing_ids(self) -> int:
        """Spans accepted without a trace or span id (``lenient_ids=True``)."""
        return sum(f.missing_ids for f in self.files)

    def summary(self) -> str:
        """One line: files loaded, failed, already loaded, ignored; rows; requests skipped."""
        n = {k: sum(f.status == k for f in self.files) for k in ("loaded", "failed", "duplicate", "ignored")}
        parts = [f"{n['loaded']} files loaded"]
        parts += [f"{n['failed']} failed"] if n["failed"] else []
        parts += [f"{n['duplicate']} already loaded"] if n["duplicate"] else []
        parts += [f"{n['ignored']} not OTLP (ignored)"] if n["ignored"] else []
        parts += [f"{len(self.skipped)} bad requests skipped"] if self.skipped else []
        parts += [f"{self.missing_ids} spans without ids"] if self.missing_ids else []
        rows = ", ".join(f"{k}={v:,}" for k, v in self.counts.items() if v)
        return f"{', '.join(parts)}: {rows or 'no rows'}"

    def __repr__(self) -> str:
        return f"LoadResult({self.summary()})"


class Lab:
    """An embedded DuckDB database of OpenTelemetry traces, metrics and logs.

    Parameters
    ----------
    path : str or Path, optional
        Database file, created if missing. In memory when omitted.
    read_only : bool, default False
        Open an existing file without writing to it.
    memory_limit : str, optional
        DuckDB's memory limit, e.g. ``"1GB"`` (DuckDB's default is 80% of RAM, and it keeps
        that much cached). Set it to keep long simulations or large loads within a budget;
        DuckDB then spills to disk.

    Examples
    --------
    >>> lab = Lab()
    >>> lab.load("datasets/trainticket")  # doctest: +SKIP
    LoadResult(9 files loaded: spans=31,540)
    >>> lab.sql("select service_name, count(*) n from spans group by all order by n desc limit 3")  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        memory_limit: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None and not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path) if self.path else ":memory:", read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._tx_depth = 0  # nesting of transaction() blocks
        if memory_limit is not None:
            try:
                self._con.execute("SET memory_limit = ?", [str(memory_limit)])
            except duckdb.Error as exc:
                raise ConfigError(
                    f"memory_limit must look like '512MB' or '2GB'. Got {memory_limit!r} instead."
                ) from exc
        for m in MACROS:
            self._con.execute(m)
        self.attached: Path | None = None  # the Parquet folder of a Lab made by attach()
        if not read_only:
            self._create_schema()
        else:
            # A file written by an older otlp_lab may lack (or hold older) analysis views:
            # this version's views shadow them for this connection, without writing.
            for name, sql in VIEWS.items():
                try:
                    self._con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")
                except duckdb.Error:
                    pass  # not an otlp_lab database (no spans table): nothing to analyse
        create_parquet_views(self._con)

    @classmethod
    def attach(cls, folder: str | os.PathLike[str], *, memory_limit: str | None = None) -> Lab:
        """A Lab that queries a Parquet folder written by :meth:`to_parquet` (or
        ``otlp-lab export --format parquet``) in place, without loading it.

        Every table is a view over the folder's files, in the Lab's own types (attributes
        as ``MAP(VARCHAR, VARIANT)``), so SQL, the analysis views and methods work as on a
        loaded Lab; loading into it is refused.

        Examples
        --------
        >>> lab = Lab.attach("out/parquet")  # doctest: +SKIP
        >>> lab.sql("SELECT attributes['http.route']::VARCHAR AS route, count(*) FROM spans GROUP BY 1")  # doctest: +SKIP
        """
        path = Path(folder)
        if not path.is_dir():
            raise ConfigError(
                f"attach needs a folder written by lab.to_parquet() or `otlp-lab export --format parquet`. "
                f"{str(path)!r} is not a folder."
            )
        if not any((path / t).is_dir() for t in TABLES):
            raise ConfigError(
                f"{str(path)!r} holds none of the Lab's table folders ({', '.join(TABLES)}); "
                "write one with lab.to_parquet(folder) or `otlp-lab export --format parquet`."
            )
        lab = cls(memory_limit=memory_limit)
        con = lab._con
        try:
            for table in TABLES:
                sql = attach_sql(path, table)
                if sql is not None:
                    con.execute(f"DROP TABLE {table}")
                    con.execute(f"CREATE VIEW {table} AS {sql}")
            create_parquet_views(con)
        except duckdb.Error as exc:
            lab.close()
            raise StoreError(f"cannot read the Parquet folder {path}: {exc}") from exc
        lab.attached = path
        return lab

    def to_parquet(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> dict[str, int]:
        """Write every table to ``folder`` as Parquet, Hive-partitioned by date and service.

        Attributes keep their OTLP types in a struct every Parquet reader holds (see
        :mod:`otlp_lab.store._parquet`); DuckDB, Polars, pyarrow and Spark read the folder,
        and :meth:`attach` queries it as a Lab. Returns rows written per table.
        """
        with self._lock:
            return write_parquet(self._con, folder, overwrite=overwrite)

    # ------------------------------------------------------------------ plumbing
    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, for anything the Lab does not wrap (one thread at a time)."""
        return self._con

    def _create_schema(self) -> None:
        con = self._con
        for name, cols in TABLES.items():
            con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols})")
        con.execute("CREATE SEQUENCE IF NOT EXISTS load_ids START 1")
        for name, sql in VIEWS.items():
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection, inside one transaction and the Lab's lock, for writing tables the Lab
        does not load itself (the simulator's ``sim_runs`` and ``faults``, a sweep's results).

        Committed when the block ends, rolled back if it raises; other threads using this Lab
        (a receiver's writer, a loader) wait meanwhile. DuckDB errors become
        :class:`~otlp_lab.errors.StoreError`.

        Examples
        --------
        >>> lab = Lab()
        >>> with lab.transaction() as con:
        ...     _ = con.execute("CREATE TABLE IF NOT EXISTS notes (t VARCHAR)")
        ...     _ = con.execute("INSERT INTO notes VALUES ('hello')")
        >>> lab.sql("SELECT * FROM notes")["t"].to_list()
        ['hello']
        """
        with self._lock:
            con = self._con
            if self._tx_depth:  # nested: part of the enclosing transaction
                self._tx_depth += 1
                try:
                    yield con
                finally:
                    self._tx_depth -= 1
                return
            con.execute("BEGIN TRANSACTION")
            self._tx_depth = 1
            try:
                yield con
            except BaseException as exc:
                con.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error):
                    raise StoreError(f"the database refused the write: {exc}") from exc
                raise
            else:
                con.execute("COMMIT")
            finally:
                self._tx_depth = 0

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "memory"
        try:
            n = self._con.execute("SELECT count(*) FROM spans").fetchall()[0][0]
        except duckdb.Error:
            return f"Lab({where!r})"
        return f"Lab({where!r}, spans={n:,})"

    # ------------------------------------------------------------------ loading
    def load(
        self,
        *paths: str | os.PathLike[str],
        signal: Signal | None = None,
        on_error: OnError = "raise",
        duplicates: bool = False,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        progress: Callable[[str, int, int], None] | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        fail_fast: bool = False,
        lenient_ids: bool = False,
    ) -> LoadResult:
        """Load OTLP files, directories or globs; return rows added per table.

        Each file loads in its own transaction: a file that fails leaves the database as
        it was. A file whose content (sha256) is already loaded is skipped unless
        ``duplicates=True``. When several files are loaded (a directory, a glob, several
        paths), every good file is loaded and each bad one is reported in
        ``result.failed`` with its error (``result.ok`` is False); a single file that
        fails raises.

        Parameters
        ----------
        *paths
            Files (OTLP/JSON, JSON lines, protobuf, length-prefixed protobuf, Jaeger JSON,
            Zipkin v2 JSON; optionally gzip or zstd compressed), directories (read
            recursively) or glob patterns. Jaeger and Zipkin spans are mapped as the
            OpenTelemetry Collector's translators map them.
        signal : {"traces", "metrics", "logs"}, optional
            Only accept this signal; another is an error. Detected per request otherwise.
        on_error : {"raise", "skip"}
            ``"skip"`` skips bad lines/messages of multi-request files and reports them
            in ``result.skipped``; a file that cannot be read at all still raises.
        duplicates : bool
            Load files whose content was loaded before.
        progress : callable, optional
            Called as ``progress(source, bytes_done, bytes_total)`` as the files are read
            (after each batch of rows and after each file).
        max_request_bytes : int, default 256 MiB
            The largest single request (a JSON document or line, a protobuf message) read,
            after decompression; a larger one is refused with ``BodyTooLargeError`` before
            it is read into memory.
        fail_fast : bool
            Stop at the first file that fails, raising its error (files before it stay
            loaded).
        lenient_ids : bool
            Accept spans whose trace or span id is missing or empty (OTLP requires them,
            but the spec's own file-exporter examples leave them empty); they are counted
            in ``result.missing_ids``.

        Raises
        ------
        DecodeError
            A single file (or, with ``fail_fast``, any file) is not valid OTLP (the message
            names the file and where).
        """
        check_load_options(signal=signal, on_error=on_error, max_request_bytes=max_request_bytes)
        files = expand_paths(paths)
        single = len(files) == 1 and files[0][1]  # one file, named by the caller
        result = LoadResult(counts=dict.fromkeys(SIGNAL_TABLES, 0))
        total = sum(f.stat().st_size for f, _ in files)
        done = 0
        for f, named in files:
            tick = None
            if progress is not None:
                tick = functools.partial(lambda base, f, pos: progress(str(f), base + pos, total), done, f)
            try:
                fr = self._load_file(
                    f,
                    signal=signal,
                    on_error=on_error,
                    duplicates=duplicates,
                    batch_rows=batch_rows,
                    on_progress=tick,
                    max_request_bytes=max_request_bytes,
                    lenient_ids=lenient_ids,
                )
            except UnsupportedFormatError as exc:
                if named and (single or fail_fast):
                    raise
                status = "failed" if named else "ignored"
                fr = FileResult(
                    str(f), status, error=str(exc) if named else exc.reason, nbytes=f.stat().st_size
                )
            except OtlpLabError as exc:
                if single or fail_fast:
                    raise
                fr = FileResult(str(f), "failed", error=str(exc), nbytes=f.stat().st_size)
            result.files.append(fr)
            for k, v in fr.counts.items():
                result.counts[k] += v
            done += fr.nbytes
            if progress is not None:
                progress(str(f), done, total)
        return result

    def _load_file(
        self,
        path: Path,
        *,
        signal: Signal | None,
        on_error: str,
        duplicates: bool,
        batch_rows: int,
        on_progress: Callable[[int], None] | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        lenient_ids: bool = False,
    ) -> FileResult:
        sha, nbytes = file_sha256(path)
        fr = FileResult(str(path), "loaded", nbytes=nbytes)
        with self._lock:
            if not duplicates and self._con.execute("SELECT 1 FROM loads WHERE sha256 = ?", [sha]).fetchall():
                fr.status = "duplicate"
                return fr
            report = DecodeReport(str(path), sha256=sha, nbytes=nbytes)

            def batches() -> Iterator[Batch]:
                report.skipped.clear()
                report.missing_ids = 0
                return iter_file_batches(
                    path,
                    report,
                    signal=signal,
                    on_error=on_error,
                    batch_rows=batch_rows,
                    on_progress=on_progress,
                    max_request_bytes=max_request_bytes,
                    lenient_ids=lenient_ids,
                )

            fr.counts = self._ingest_retrying(batches, report)
            fr.skipped = report.skipped
            fr.missing_ids = report.missing_ids
        return fr

    def load_bytes(
        self,
        data: bytes,
        *,
        signal: Signal | None = None,
        source: str = "<bytes>",
        batch_rows: int = DEFAULT_BATCH_ROWS,
    ) -> dict[str, int]:
        """Load one in-memory OTLP body (any supported format); return rows added per table."""
        import io

        report = DecodeReport(source, nbytes=len(data))
        with self._lock:
            return self._ingest_retrying(
                lambda: iter_stream_batches(io.BytesIO(data), report, signal=signal, batch_rows=batch_rows),
                report,
            )

    def load_batches(
        self, batches: Iterable[Batch], *, source: str = "<batches>", request_ids: Sequence[str] = ()
    ) -> dict[str, int]:
        """Load staging batches produced by the codec (or the simulator) in one transaction.

        A list or tuple of batches takes the fast path (no repeated-key checks unless DuckDB
        refuses a map); any other iterable is checked batch by batch, as it cannot be replayed.
        ``request_ids`` (the receiver's idempotency keys) are recorded in the same transaction,
        so :meth:`stored_request_ids` knows exactly which requests are in the database.
        """
        report = DecodeReport(source)
        with self._lock:
            if isinstance(
                batches, (list, tuple)
            ):  # replayable: the fast path, retried with key checks if needed
                return self._ingest_retrying(lambda: iter(batches), report, request_ids)
            return self._ingest(iter(batches), report, check_keys=True, request_ids=request_ids)

    def stored_request_ids(self, request_ids: Sequence[str]) -> set[str]:
        """Which of ``request_ids`` were committed by :meth:`load_batches` (exactly-once receiving)."""
        if not request_ids:
            return set()
        with self._lock:
            con = self._con
            if not con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = '_received_requests'"
            ).fetchall()[0][0]:
                return set()
            rows = con.execute(
                "SELECT request_id FROM _received_requests WHERE request_id IN (SELECT unnest(?::VARCHAR[]))",
                [list(request_ids)],
            ).fetchall()
        return {r[0] for r in rows}

    def _ingest_retrying(
        self, batches: Callable[[], Iterator[Batch]], report: DecodeReport, request_ids: Sequence[str] = ()
    ) -> dict[str, int]:
        """:meth:`_ingest`, decoding again with repeated-key checks if the fast path meets one."""
        try:
            return self._ingest(batches(), report, request_ids=request_ids)
        except _RepeatedKeys:
            return self._ingest(batches(), report, check_keys=True, request_ids=request_ids)

    def _ingest(
        self,
        batches: Iterator[Batch],
        report: DecodeReport,
        *,
        check_keys: bool = False,
        request_ids: Sequence[str] = (),
    ) -> dict[str, int]:
        """Insert every batch and record the load, all in one transaction.

        OTLP forbids repeated keys in one attribute list, but some senders repeat them and a
        MAP cannot hold them. The fast path does not look for them; if DuckDB refuses a map,
        the transaction is rolled back and the caller decodes again with ``check_keys`` (the
        last value of a repeated key wins).
        """
        if self.attached is not None:
            raise StoreError(
                f"this Lab reads the Parquet folder {self.attached} in place and cannot load data; "
                "load into Lab() or Lab('file.duckdb') instead"
            )
        con = self._con
        counts: dict[str, int] = {}
        con.execute("BEGIN TRANSACTION")
        try:
            load_id = con.execute("SELECT nextval('load_ids')").fetchall()[0][0]
            # Decode the next batch in a thread while DuckDB (which releases the GIL) inserts this one;
            # small batches (one per JSON line or framed message) are merged first: each INSERT has a fixed cost.
            for batch in prefetch(coalesce(batches)):
                ctx = batch.get("_ctx")
                if ctx is not None:
                    con.register(
                        "_ctx_stage",
                        _dedupe_keys(ctx) if check_keys and self._has_repeated_keys(ctx) else ctx,
                    )
                try:
                    for table, staged in batch.items():
                        if table != "_ctx":
                            self._insert(table, staged, load_id, check_keys)
                            counts[table] = counts.get(table, 0) + staged.num_rows
                finally:
                    if ctx is not None:
                        self._unregister("_ctx_stage")
            con.execute(
                "INSERT INTO loads VALUES (?, ?, ?, ?, now()::TIMESTAMP, ?, ?, ?)",
                [
                    load_id,
                    report.source,
                    report.sha256,
                    report.nbytes,
                    report.requests,
                    sum(counts.values()),
                    len(report.skipped),
                ],
            )
            if request_ids:
                con.execute(
                    "CREATE TABLE IF NOT EXISTS _received_requests (request_id VARCHAR PRIMARY KEY, load_id INTEGER)"
                )
                con.execute(
                    "INSERT INTO _received_requests SELECT unnest(?::VARCHAR[]), ?",
                    [list(request_ids), load_id],
                )
            con.execute("COMMIT")
        except BaseException as exc:
            con.execute("ROLLBACK")
            for name in ("_stage", "_ctx_stage"):
                self._unregister(name)
            if (
                isinstance(exc, duckdb.InvalidInputException)
                and "Map keys must be unique" in str(exc)
                and not check_keys
            ):
                raise _RepeatedKeys from exc
            if isinstance(exc, duckdb.Error):
                raise StoreError(f"{report.source}: the database refused the data: {exc}") from exc
            raise
        return counts

    def _unregister(self, name: str) -> None:
        """Drop a registered Arrow table, also inside an aborted transaction (where DuckDB refuses)."""
        try:
            self._con.unregister(name)
        except duckdb.Error:
            pass

    def _has_repeated_keys(self, staged: pa.Table) -> bool:
        """Whether an attribute list repeats a key (OTLP forbids it, some senders do it; a MAP cannot hold it)."""
        key_cols = [c for c in staged.column_names if c.endswith("_keys")]
        if not key_cols:
            return False
        dup = " OR ".join(f"len(list_distinct({c})) < len({c})" for c in key_cols)
        con = self._con
        con.register("_check", staged)
        try:
            return bool(con.execute(f"SELECT count(*) FROM _check WHERE {dup}").fetchall()[0][0])
        finally:
            con.unregister("_check")

    def _insert(self, table: str, staged: pa.Table, load_id: int, check_keys: bool) -> None:
        con = self._con
        con.register(
            "_stage", _dedupe_keys(staged) if check_keys and self._has_repeated_keys(staged) else staged
        )
        try:
            con.execute(INSERTS[table], {"load_id": load_id})
        finally:
            self._unregister("_stage")

    # ------------------------------------------------------------------ reading
    def sql(self, query: str, params: Any = None) -> pl.DataFrame:
        """Run SQL and return a Polars DataFrame (attribute maps and VARIANTs as JSON text)."""
        with self._lock:
            try:
                rel = self._con.sql(query, params=params) if params is not None else self._con.sql(query)
                if rel is None:
                    return pl.DataFrame()
                cols = rel.columns
                types = [str(t) for t in rel.types]
                if any("VARIANT" in t for t in types):
                    proj = ", ".join(
                        f'"{c}"::JSON AS "{c}"' if "VARIANT" in t else f'"{c}"'
                        for c, t in zip(cols, types, strict=True)
                    )
                    rel = rel.project(proj)
                return rel.pl()
            except duckdb.Error as exc:
                raise StoreError(f"query failed: {exc}") from exc

    def spans(self, where: str | None = None, *, limit: int | None = None) -> pl.DataFrame:
        """The ``spans`` table (optionally filtered by a SQL ``where`` clause) as Polars."""
        return self.sql(_select("spans", where, limit, "start_time"))

    def logs(self, where: str | None = None, *, limit: int | None = None) -> pl.DataFrame:
        """The ``logs`` table as Polars."""
        return self.sql(_select("logs", where, limit, "time"))

    def metrics(
        self, kind: str = "sum", where: str | None = None, *, limit: int | None = None
    ) -> pl.DataFrame:
        """Metric points of one kind: gauge, sum, histogram, exponential_histogram or summary."""
        table = METRIC_TABLES.get(kind)
        if table is None:
            raise ConfigError(
                f"metric kind must be one of {sorted(set(METRIC_TABLES))}. Got {kind!r} instead."
            )
        return self.sql(_select(table, where, limit, "time"))

    def counts(self) -> dict[str, int]:
        """Row count of every table."""
        with self._lock:
            return {t: self._con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in SIGNAL_TABLES}

    # ------------------------------------------------------------------ export
    def export(
        self,
        signal: Signal,
        *,
        where: str | None = None,
        fmt: str = "protobuf",
        max_bytes: int = 4 << 20,
        max_items: int | None = None,
    ) -> Iterator[Any]:
        """OTLP requests of one signal rebuilt from the tables, batched under ``max_bytes``.

        ``fmt="protobuf"`` yields ``Export*ServiceRequest`` messages, ``"json"`` OTLP/JSON dicts.
        ``where`` filters the signal's main table (e.g. ``"service_name = 'cart'"``).
        """
        from otlp_lab.store._export import export_requests

        return export_requests(self, signal, where=where, fmt=fmt, max_bytes=max_bytes, max_items=max_items)

    def write_otlp(
        self, path: str | os.PathLike[str], signal: Signal, *, fmt: str = "json", where: str | None = None
    ) -> Any:
        """Write one signal as a Collector file-exporter file: JSON lines (``"json"``) or framed protobuf."""
        from otlp_lab.store._export import write_otlp

        return write_otlp(self, path, signal, fmt=fmt, where=where)

    # ------------------------------------------------------------------ analysis
    def span_tree(self, trace_id: str | None = None) -> pl.DataFrame:
        """Spans with depth, root service/operation and self time (ns), optionally of one trace.

        Reads ``unique_spans``: a span loaded twice appears once. One trace takes milliseconds
        (the trace is selected before the tree is walked).
        """
        from otlp_lab.store import _tree

        where = f"WHERE trace_id = '{_hex(trace_id)}'" if trace_id is not None else ""
        return _tree.span_tree(self.sql(_tree.NARROW_SQL.format(where=where)))

    def service_graph(self, mode: str = "auto") -> pl.DataFrame:
        """Caller -> callee service edges: calls, errors, error rate, latency quantiles in ms.

        Parameters
        ----------
        mode : {"auto", "tempo", "inferred"}, default "auto"
            ``"tempo"`` pairs spans exactly as Tempo's service-graph processor does (CLIENT or
            PRODUCER with the SERVER or CONSUMER span under it, database edges, ``user`` and
            peer virtual nodes); ``"inferred"`` makes an edge wherever a span's parent is in
            another service, for captures that record no span kinds. ``"auto"`` uses
            ``"tempo"`` when any span has a CLIENT/SERVER/PRODUCER/CONSUMER kind, else
            ``"inferred"``. The ``mode`` column says which rules made each row. The rules are
            spelled out in :mod:`otlp_lab.store._servicegraph`.

        Returns
        -------
        polars.DataFrame
            ``mode``, ``client``, ``server``, ``connection_type`` (``""``, ``messaging_system``,
            ``database``, ``virtual_node``), ``calls``, ``errors`` (either side ERROR),
            ``error_rate``, ``p50_ms``/``p95_ms``/``p99_ms`` (server side) and
            ``client_p50_ms``/``client_p95_ms``/``client_p99_ms``.
        """
        if mode not in MODES:
            raise ConfigError(f"service_graph(mode=...) must be one of {list(MODES)}. Got {mode!r} instead.")
        return self.sql(service_graph_sql(mode))

    def red(
        self, window: str | float = "1m", *, by: Iterable[str] = ("service_name",), entry_only: bool = True
    ) -> pl.DataFrame:
        """Rate, errors and duration per time window and ``by`` columns.

        ``entry_only`` counts only the spans where requests enter a service (roots, and
        spans whose parent is in another service), so one request counts once per service.
        """
        by = tuple(by)
        allowed = {"service_name", "name", "kind", "parent_service", "scope_name"}
        bad = [c for c in by if c not in allowed]
        if bad:
            raise ConfigError(f"red(by=...) columns must be among {sorted(allowed)}. Got {bad} instead.")
        return self.sql(
            red_sql(parse_duration_s(window, key="red(window=...)", positive=True), by, entry_only)
        )

    def traces(
        self, *, order: TraceOrder = "duration", limit: int | None = 20, errors_only: bool = False
    ) -> pl.DataFrame:
        """One row per trace (root, start, duration_ms, spans, services, errors): slowest first by default."""
        order_sql = {
            "duration": "duration_ns DESC",
            "start": "start_time",
            "errors": "errors DESC, duration_ns DESC",
        }
        check_choice(order, "traces(order=...)", order_sql)
        where = "WHERE errors > 0" if errors_only else ""
        lim = limit_sql(limit or None, what="traces(limit=...)")
        return self.sql(
            f"SELECT *, round(duration_ns / 1e6, 3) AS duration_ms FROM traces {where} ORDER BY {order_sql[order]} {lim}"
        )

    def critical_path(self, trace_id: str) -> pl.DataFrame:
        """The critical path of one trace, as Jaeger's trace view computes it.

        Returns one row per segment (``span_id``, ``service_name``, ``name``, ``start_ns``,
        ``end_ns``, ``self_ms``, ``share`` of the root's duration, ``root_span_id``), in time
        order. The rules (per root, duplicates once, children clamped to their parent,
        PRODUCER->CONSUMER children pruned, last-finishing child first) are listed in
        :mod:`otlp_lab.store._critical`.
        """
        spans = self._critical_spans(f"trace_id = '{_hex(trace_id)}'")
        if spans.is_empty():
            raise ConfigError(f"trace {trace_id!r} is not in the database. Pick one from lab.traces().")
        return critical_path(spans).sort("root_span_id", "start_ns")

    def critical_paths(self, where: str | None = None) -> pl.DataFrame:
        """Critical-path segments of every trace (or of the traces matching ``where``).

        ``where`` is a SQL condition on the ``traces`` view (``root_service``, ``root_name``,
        ``start_time``, ``duration_ns``, ``spans``, ``services``, ``errors``), e.g.
        ``"root_name = 'GET /checkout' AND duration_ns > 500e6"``.
        """
        where = where_sql(where, what="critical_paths(where=...)")
        cond = f"trace_id IN (SELECT trace_id FROM traces WHERE {where})" if where else None
        return critical_path(self._critical_spans(cond))

    def critical_path_summary(
        self, where: str | None = None, *, by: str | Iterable[str] = "service_name"
    ) -> pl.DataFrame:
        """Where critical time goes over many traces (Jaeger shows one trace at a time).

        Parameters
        ----------
        where : str, optional
            Keep the traces matching this SQL condition on the ``traces`` view (see
            :meth:`critical_paths`); all traces by default.
        by : str or list of str, default "service_name"
            ``"service_name"``, ``"name"`` (the operation) or both.

        Returns
        -------
        polars.DataFrame
            Per group: ``critical_ms`` (summed over traces), ``traces`` (with a segment in the
            group), ``mean_ms_per_trace`` and ``share`` of all critical time, largest first.
        """
        cols = [by] if isinstance(by, str) else list(by)
        bad = [c for c in cols if c not in ("service_name", "name")]
        if bad or not cols:
            raise ConfigError(
                f"critical_path_summary(by=...) must be 'service_name', 'name' or both. Got {by!r} instead."
            )
        return summarize(self.critical_paths(where), cols)

    def _critical_spans(self, where: str | None) -> pl.DataFrame:
        return self.sql(
            "SELECT trace_id, span_id, parent_span_id, service_name, name, kind, "
            "epoch_ns(start_time) AS start_ns, epoch_ns(end_time) AS end_ns FROM unique_spans"
            + (f" WHERE {where}" if where else "")
        )

    def traceql(self, query: str, *, limit: int | None = None) -> pl.DataFrame:
        """Spans matching a TraceQL query (a subset of Tempo's TraceQL, compiled to DuckDB SQL).

        Parameters
        ----------
        query : str
            E.g. ``'{ resource.service.name = "cart" && duration > 500ms } >> { status = error }'``
            or ``'{ status = error } | by(resource.service.name) | count() > 2'``. What is
            supported is listed in :mod:`otlp_lab.store._traceql`; anything else raises
            :class:`~otlp_lab.errors.TraceQLError` naming the part.
        limit : int, optional
            At most this many spans.

        Returns
        -------
        polars.DataFrame
            One row per matching span (``trace_id``, ``span_id``, ``parent_span_id``,
            ``service_name``, ``name``, ``kind``, ``start_time``, ``duration_ns``,
            ``status_code``), plus one column per ``by()``, ``select()`` and aggregate stage.
        """
        from otlp_lab.store._traceql import compile_traceql

        sql = compile_traceql(query)
        return self.sql(sql + limit_sql(limit))

    def compare(self, selection: str, baseline: str | None = None, *, top: int = 10) -> pl.DataFrame:
        """Which attribute values set a selection of spans apart from a baseline (like Tempo's ``compare()``).

        Parameters
        ----------
        selection : str
            A TraceQL query (``'{ status = error }'``) or a SQL condition on spans
            (``"duration_ns > 1e9"``).
        baseline : str, optional
            The same kinds of query; every span not in the selection by default.
        top : int, default 10
            Values kept per attribute (the most frequent over both groups).

        Returns
        -------
        polars.DataFrame
            ``attribute`` (``span.x``, ``resource.x``, ``name``, ``status``, ``kind``), ``value``,
            span counts ``selection`` and ``baseline``, their ``selection_share`` and
            ``baseline_share`` of each group's spans, and ``difference`` (selection minus
            baseline share), largest differences first.
        """
        from otlp_lab.store._compare import compare_sql

        if int(top) < 1:
            raise ConfigError(f"compare(top=...) must be a positive integer. Got {top!r} instead.")
        return self.sql(compare_sql(selection, baseline, int(top)))

    def trace_diff(self, trace_a: str, trace_b: str) -> pl.DataFrame:
        """Structural diff of two traces, as Jaeger's trace comparison draws it.

        Both traces are folded into one tree of call paths (``service:operation`` from the
        root down). Returns per path: ``depth``, ``service_name``, ``name``, ``count_a``,
        ``count_b``, ``total_ms_a``, ``total_ms_b``, ``count_delta``, ``ms_delta`` and
        ``status`` (``same``, ``changed``, ``only in a``, ``only in b``).
        """
        from otlp_lab.store._compare import trace_diff

        return trace_diff(self, _hex(trace_a), _hex(trace_b))

    def seal(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Extend the Lab's hash chain over the loads not sealed yet; returns a ``Seal`` with the root.

        Keep ``seal().root`` (or the JSON ``path`` writes) outside the database; :meth:`verify`
        names the load and table of any row added, deleted or modified since. See
        :mod:`otlp_lab.store._seal`.

        Examples
        --------
        >>> root = lab.seal().root                    # doctest: +SKIP
        >>> lab.verify(root).ok                       # doctest: +SKIP
        True
        """
        from otlp_lab.store._seal import seal

        return seal(self, path)

    def verify(self, root: str | os.PathLike[str] | None = None) -> Any:
        """Check the sealed loads and the chain (and ``root``, hex or a seal JSON file): a ``VerifyReport``."""
        from otlp_lab.store._seal import verify

        return verify(self, root)

    def info(self) -> dict[str, Any]:
        """Tables with row counts, the time range, the services seen, and ``duplicate_spans``.

        ``duplicate_spans`` counts extra copies of a ``(trace_id, span_id)`` (overlapping captures
        loaded twice): the ``spans`` table keeps them, every analysis view counts each span once.
        """
        c = self.counts()
        with self._lock:
            rng = self._con.execute("SELECT min(start_time), max(end_time) FROM spans").fetchall()[0]
            services = [
                r[0]
                for r in self._con.execute(
                    "SELECT service_name FROM (SELECT service_name FROM spans UNION ALL SELECT service_name FROM logs "
                    "UNION ALL SELECT service_name FROM metric_sum UNION ALL SELECT service_name FROM metric_gauge) "
                    "WHERE service_name IS NOT NULL GROUP BY ALL ORDER BY count(*) DESC"
                ).fetchall()
            ]
            loads = self._con.execute("SELECT count(*) FROM loads").fetchall()[0][0]
            dup = self._con.execute(
                "SELECT count(*) - count(DISTINCT (trace_id, span_id)) FROM spans"
            ).fetchall()[0][0]
        return {
            "path": str(self.path) if self.path else ":memory:",
            "tables": c,
            "loads": loads,
            "duplicate_spans": dup,
            "time_range": rng,
            "services": services,
        }


class _RepeatedKeys(Exception):
    """A batch repeats a key within one attribute list (internal: triggers the checked path)."""


def coalesce(batches: Iterator[Batch], rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Batch]:
    """Merge consecutive small staging batches into batches of about ``rows`` rows.

    Row tables are concatenated; each batch's ``_ctx`` contexts are appended and its rows'
    ``ctx`` indices shifted to match. Batches that cannot be merged pass through as they are.
    """
    acc: Batch | None = None
    n = 0
    for batch in batches:
        size = max((t.num_rows for k, t in batch.items() if k != "_ctx"), default=0)
        if acc is None:
            acc, n = batch, size
        else:
            merged = _merge(acc, batch)
            if merged is None:
                yield acc
                acc, n = batch, size
            else:
                acc, n = merged, n + size
        if n >= rows:
            yield acc
            acc, n = None, 0
    if acc is not None:
        yield acc


def _merge(a: Batch, b: Batch) -> Batch | None:
    import pyarrow.compute as pc

    offset = a["_ctx"].num_rows if "_ctx" in a else 0
    if ("_ctx" in a) != ("_ctx" in b):
        return None
    out: Batch = dict(a)
    try:
        for k, t in b.items():
            if "ctx" in t.column_names and offset:
                i = t.schema.get_field_index("ctx")
                t = t.set_column(
                    i, t.schema.field(i), pc.add(t.column(i), pa.scalar(offset, t.column(i).type))
                )
            out[k] = pa.concat_tables([out[k], t]) if k in out else t
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return out


def prefetch(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead (bounded memory).

    An exception in the producer is re-raised in the consumer; closing the consumer early
    stops the producer at its next item.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(("item", item))
            q.put(("done", None))
        except BaseException as exc:  # handed to the consumer
            q.put(("error", exc))

    worker = threading.Thread(target=produce, name="otlp-lab-decode", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def _select(table: str, where: str | None, limit: int | None, order: str) -> str:
    q = f"SELECT * FROM {table}"
    cond = where_sql(where)
    if cond:
        q += f" WHERE ({cond})"
    return q + f" ORDER BY {order}" + limit_sql(limit)


def _hex(trace_id: str) -> str:
    s = str(trace_id).strip().lower()
    if len(s) != 32 or any(ch not in "0123456789abcdef" for ch in s):
        raise ConfigError(f"trace_id must be 32 hex characters. Got {trace_id!r} instead.")
    return s


def _dedupe_keys(staged: pa.Table) -> pa.Table:
    """Keep the last value of keys repeated within one attribute list (OTLP forbids them; some senders do it)."""
    cols = {}
    for name in staged.column_names:
        if not name.endswith("_keys"):
            continue
        prefix = name[: -len("_keys")]
        keys = staged.column(name).to_pylist()
        vals = staged.column(prefix + "_vals").to_pylist()
        nk, nv = [], []
        for ks, vs in zip(keys, vals, strict=True):
            if ks is None or len(set(ks)) == len(ks):
                nk.append(ks)
                nv.append(vs)
                continue
            last = {k: i for i, k in enumerate(ks)}
            keep = sorted(last.values())
            nk.append([ks[i] for i in keep])
            nv.append([vs[i] for i in keep])
        cols[name] = pa.array(nk, staged.schema.field(name).type)
        cols[prefix + "_vals"] = pa.array(nv, staged.schema.field(prefix + "_vals").type)
    for name, arr in cols.items():
        staged = staged.set_column(staged.schema.get_field_index(name), name, arr)
    return staged


__all__ = ["FileResult", "Lab", "LoadResult"]
