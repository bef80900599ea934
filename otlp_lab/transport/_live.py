"""Live queries: read a database while ``otlp-lab receive`` writes it.

DuckDB lets one process hold a database file for writing, and no other process can open it
then, not even read-only. So the receiver answers queries itself, on its OTLP/HTTP port:

* ``POST /v1/query`` with ``{"sql": "SELECT ..."}`` -> the result as an Arrow IPC file
  (``application/vnd.apache.arrow.file``); ``{"info": true}`` -> :meth:`Lab.info` as JSON.
* Loopback clients only, authenticated exactly like the OTLP endpoints (bearer token, required
  headers, mTLS); one read-only statement (``SELECT``/``WITH``), at most ``max_rows`` rows.
* The query runs on its own DuckDB cursor, so it sees every committed transaction (MVCC) and
  never blocks the writer: commit-before-acknowledge is unchanged, and whatever was
  acknowledged before a query started is in its result.
* While it runs with a database file and HTTP on, the receiver writes ``<db>.receiver.json``
  beside it (its query URL and pid) and removes it when it stops; :func:`open_lab` and the CLI's
  ``info`` / ``sql`` use it when the file is locked.

Examples
--------
>>> from otlp_lab.transport import LiveLab
>>> live = LiveLab("capture.duckdb")          # doctest: +SKIP  (a receiver is writing it)
>>> live.sql("SELECT service_name, count(*) AS n FROM spans GROUP BY ALL")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from otlp_lab.errors import StoreError, TransportError

__all__ = ["QUERY_PATH", "LiveLab", "live_file", "open_lab", "run_query"]

QUERY_PATH = "/v1/query"
ARROW_FILE = "application/vnd.apache.arrow.file"
DEFAULT_MAX_ROWS = 1_000_000
MAX_QUERY_BYTES = 1 << 20


def live_file(db: str | os.PathLike[str]) -> Path:
    """Where a receiver writing ``db`` announces its query endpoint."""
    p = Path(db)
    return p.with_name(p.name + ".receiver.json")


def announce(db: str | os.PathLike[str], url: str) -> Path:
    """Write the live file of ``db`` (atomically): the receiver's base URL and pid."""
    path = live_file(db)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "query": QUERY_PATH}))
    os.replace(tmp, path)
    return path


def withdraw(db: str | os.PathLike[str]) -> None:
    """Remove the live file of ``db`` (the receiver stopped)."""
    try:
        live_file(db).unlink()
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- the server side


class QueryRefused(Exception):
    """A query the endpoint will not run (carries the message for a 400)."""


def run_query(lab: Any, doc: Any) -> tuple[str, bytes, bool]:
    """Run one query document against ``lab`` on a fresh cursor: (content type, body, truncated)."""
    import duckdb

    if not isinstance(doc, dict):
        raise QueryRefused('the query body must be a JSON object like {"sql": "SELECT ..."}')
    if doc.get("info"):
        return "application/json", orjson.dumps(lab.info(), default=str), False
    sql = doc.get("sql")
    max_rows = doc.get("max_rows", DEFAULT_MAX_ROWS)
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRefused('give the query as {"sql": "SELECT ..."}')
    if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 0:
        raise QueryRefused(f"max_rows must be a non-negative integer. Got {max_rows!r} instead.")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"the query does not parse: {exc}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        kinds = ", ".join(s.type.name for s in statements) or "nothing"
        raise QueryRefused(f"live queries take one read-only SELECT statement. Got {kinds} instead.")
    from otlp_lab.store._schema import MACROS

    with lab._lock:  # a cursor of its own: MVCC reads, the writer is never blocked by a query
        cur = lab.con.cursor()
    try:
        for m in MACROS:
            cur.execute(m)
        rel = cur.sql(sql)
        types = [str(t) for t in rel.types]
        if any("VARIANT" in t for t in types):
            rel = rel.project(
                ", ".join(
                    f'"{c}"::JSON AS "{c}"' if "VARIANT" in t else f'"{c}"'
                    for c, t in zip(rel.columns, types, strict=True)
                )
            )
        frame = rel.limit(max_rows + 1).pl()
    except duckdb.Error as exc:
        raise QueryRefused(f"query failed: {exc}") from None
    finally:
        cur.close()
    truncated = frame.height > max_rows
    if truncated:
        frame = frame.head(max_rows)
    buf = io.BytesIO()
    frame.write_ipc(buf)
    return ARROW_FILE, buf.getvalue(), truncated


# ---------------------------------------------------------------- the client side


class LiveLab:
    """Query a database a running receiver writes, through the receiver (read-only).

    Parameters
    ----------
    target : str or path
        The database file (its ``.receiver.json`` names the receiver) or the receiver's base
        URL (``http://127.0.0.1:4318``).
    headers : mapping, optional
        Sent with each query, e.g. ``{"authorization": "Bearer TOKEN"}`` when the receiver
        wants a token.
    timeout_s : float, default 60
    verify : bool or str, default True
        TLS verification for an ``https`` receiver (a CA bundle path for a private CA).
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 60.0,
        verify: bool | str = True,
    ) -> None:
        text = str(target)
        if text.startswith(("http://", "https://")):
            self.url, self.path = text.rstrip("/"), None
        else:
            self.path = Path(text)
            lf = live_file(self.path)
            try:
                self.url = json.loads(lf.read_text())["url"].rstrip("/")
            except (OSError, ValueError, KeyError, TypeError):
                raise StoreError(
                    f"no running receiver announces {text!r} (no readable {lf.name} beside it): start one "
                    "with `otlp-lab receive --db FILE` (with --http on), or open the file with Lab() when "
                    "nothing writes it"
                ) from None
        import httpx

        self._client = httpx.Client(
            headers=dict(headers or {}), timeout=timeout_s, verify=verify, trust_env=False
        )

    def _post(self, doc: dict[str, Any]) -> Any:
        import httpx

        try:
            r = self._client.post(f"{self.url}{QUERY_PATH}", content=orjson.dumps(doc))
        except httpx.HTTPError as exc:
            raise TransportError(
                f"cannot reach the receiver at {self.url} ({type(exc).__name__}: {exc})",
                hint="is `otlp-lab receive` still running? If it stopped, open the file with Lab()",
            ) from exc
        if r.status_code != 200:
            try:
                message = str(orjson.loads(r.content).get("message", ""))
            except Exception:
                message = r.text[:200]
            hint = (
                "; pass the receiver's token: headers={'authorization': 'Bearer TOKEN'} "
                "(CLI: --token or OTLP_LAB_TOKEN)"
                if r.status_code == 401
                else ""
            )
            raise StoreError(
                f"the receiver at {self.url} refused the query ({r.status_code}): {message}{hint}"
            )
        return r

    def sql(self, query: str, *, max_rows: int = DEFAULT_MAX_ROWS) -> Any:
        """Run one read-only SELECT and return a Polars DataFrame (like :meth:`Lab.sql`)."""
        import polars as pl

        r = self._post({"sql": query, "max_rows": max_rows})
        return pl.read_ipc(io.BytesIO(r.content))

    def info(self) -> dict[str, Any]:
        """Like :meth:`Lab.info`: tables and row counts, time range, services."""
        info = orjson.loads(self._post({"info": True}).content)
        rng = info.get("time_range") or [None, None]
        info["time_range"] = tuple(datetime.fromisoformat(x) if isinstance(x, str) else x for x in rng)
        return info

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LiveLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveLab({self.url!r})"


def open_lab(db: str | os.PathLike[str], *, headers: Mapping[str, str] | None = None) -> Any:
    """A read-only view of ``db``: a :class:`Lab` when the file is free, else a :class:`LiveLab`
    through the receiver writing it (if one announces it)."""
    from otlp_lab.store import Lab

    try:
        return Lab(db, read_only=True)
    except StoreError as exc:
        if not live_file(db).exists():
            raise
        try:
            return LiveLab(db, headers=headers)
        except StoreError:
            raise exc from None
