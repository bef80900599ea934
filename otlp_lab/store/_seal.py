"""Tamper-evident captures: a hash chain over the loads (batches) of a Lab.

:func:`seal` digests every load not sealed yet and extends a chain:

- per load and table, ``digest = sha256`` of the sorted ``sha256`` hashes of the load's rows,
  each row in a canonical text form (the table's user-facing columns in name order, each cast
  to text by DuckDB and prefixed with its length, so no value can spill into the next: no
  Python loop over rows), with the row count;
- the load's ``loads`` row (source, file sha256, sizes) is digested the same way;
- ``link_k = sha256(link_{k-1} | load_id | loads digest | table:rows:digest ...)``; the last
  link is the *root*. Keep it somewhere else (a ticket, a signed note): the chain in the
  database proves nothing to someone who could rewrite the database and re-seal it.

:func:`verify` recomputes the digests of every sealed load and names the load and table of
each difference: rows added (a count above the sealed one), rows deleted (below), rows modified
(same count, another digest), a load gone, rows with a load id that was never sealed, and a
chain whose stored links no longer follow from its digests. Sealed loads are never re-digested
by a later seal, so a change made between two seals is still caught.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from otlp_lab.errors import StoreError

__all__ = ["Seal", "VerifyReport", "seal", "verify"]

FORMAT = "otlp-lab-seal/1"  # bump when the canonical row form changes
GENESIS = "0" * 64
DDL = [
    """CREATE TABLE IF NOT EXISTS seal_tables (
        load_id INTEGER, table_name VARCHAR, rows BIGINT, digest VARCHAR, columns VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS seal_chain (
        load_id INTEGER PRIMARY KEY, link VARCHAR, sealed_at TIMESTAMP, format VARCHAR)""",
]
_SEAL_TABLES = ("seal_tables", "seal_chain")


@dataclass(frozen=True)
class Seal:
    """The result of :meth:`Lab.seal`: the chain's root (keep it elsewhere) and what was added."""

    root: str
    loads: int
    new_loads: list[int]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "root": self.root, "loads": self.loads}


@dataclass
class VerifyReport:
    """The result of :meth:`Lab.verify`.

    Attributes
    ----------
    ok : bool
        True when every sealed load and the chain are intact (and the root matches, if one was given).
    root : str or None
        The root recomputed from the stored digests.
    loads : int
        Sealed loads checked.
    problems : polars.DataFrame
        One row per difference: ``load_id``, ``table``, ``problem`` (``rows modified``, ``rows added``,
        ``rows deleted``, ``load missing``, ``rows in an unsealed load``, ``chain broken``,
        ``root mismatch``), ``sealed_rows``, ``rows``.
    unsealed : list of int
        Loads added after the last seal (not an error: seal again to cover them).
    """

    ok: bool
    root: str | None
    loads: int
    problems: pl.DataFrame
    unsealed: list[int] = field(default_factory=list)

    def __repr__(self) -> str:
        state = "intact" if self.ok else f"{self.problems.height} problem(s)"
        return f"VerifyReport({state}, {self.loads} sealed loads, root={(self.root or '')[:16]}...)"


def _tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """The tables whose rows belong to a load (they have ``load_id``), with their columns sorted by name."""
    rows = con.execute(
        """SELECT c.table_name, list(c.column_name ORDER BY c.column_name)
           FROM information_schema.columns c JOIN information_schema.tables t
             ON t.table_name = c.table_name AND t.table_schema = c.table_schema
           WHERE t.table_type = 'BASE TABLE' AND c.table_schema = current_schema()
             AND c.table_name NOT IN ('seal_tables', 'seal_chain')
           GROUP BY ALL HAVING list_contains(list(c.column_name), 'load_id')
           ORDER BY 1"""
    ).fetchall()
    return {t: cols for t, cols in rows}


def _row_text(cols: list[str]) -> str:
    """SQL for a row's canonical text: each column as text, length-prefixed (``-`` for NULL), in name order."""
    parts = [f"coalesce(length(\"{c}\"::VARCHAR)::VARCHAR || ':' || \"{c}\"::VARCHAR, '-')" for c in cols]
    return "concat(" + ", ".join(parts) + ")"


def _digests(
    con: duckdb.DuckDBPyConnection, table: str, cols: list[str], load_ids: list[int] | None
) -> dict[int | None, tuple[int, str]]:
    """``load_id -> (rows, digest)`` for the table (every load when ``load_ids`` is None)."""
    where = "" if load_ids is None else f"WHERE load_id IN ({', '.join(map(str, load_ids)) or 'NULL'})"
    sql = f"""SELECT load_id, count(*), sha256(string_agg(h, '' ORDER BY h))
              FROM (SELECT load_id, sha256({_row_text(cols)}) h FROM "{table}" {where}) GROUP BY load_id"""
    return {lid: (n, d) for lid, n, d in con.execute(sql).fetchall()}


def _link(prev: str, load_id: int, parts: list[tuple[str, int, str]]) -> str:
    text = "\n".join([prev, str(load_id), *(f"{t}:{n}:{d}" for t, n, d in sorted(parts))])
    return hashlib.sha256(text.encode()).hexdigest()


def seal(lab: Any, path: str | os.PathLike[str] | None = None) -> Seal:
    """Digest the loads not sealed yet and extend the chain (see the module docs); returns the new root.

    With ``path``, also writes ``{"format", "root", "loads"}`` there as JSON (keep it outside the database).
    """
    con = lab.con
    with lab._lock:
        for ddl in DDL:
            con.execute(ddl)
        sealed = {r[0] for r in con.execute("SELECT load_id FROM seal_chain").fetchall()}
        new = [
            r[0]
            for r in con.execute("SELECT load_id FROM loads ORDER BY load_id").fetchall()
            if r[0] not in sealed
        ]
        last = con.execute("SELECT link FROM seal_chain ORDER BY load_id DESC LIMIT 1").fetchall()
        prev = last[0][0] if last else GENESIS
        total = 0
        if new:
            per_load: dict[int, list[tuple[str, int, str]]] = {lid: [] for lid in new}
            cols_of: dict[str, str] = {}
            for table, cols in _tables(con).items():
                cols_of[table] = json.dumps(cols)
                for lid, (n, d) in _digests(con, table, cols, new).items():
                    if lid in per_load:
                        per_load[lid].append((table, n, d))
                        total += n if table != "loads" else 0
            try:
                con.execute("BEGIN TRANSACTION")
                for lid in new:
                    parts = per_load[lid]
                    con.executemany(
                        "INSERT INTO seal_tables VALUES (?, ?, ?, ?, ?)",
                        [(lid, t, n, d, cols_of[t]) for t, n, d in parts],
                    )
                    prev = _link(prev, lid, parts)
                    con.execute(
                        "INSERT INTO seal_chain VALUES (?, ?, now()::TIMESTAMP, ?)", [lid, prev, FORMAT]
                    )
                con.execute("COMMIT")
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise StoreError(f"cannot seal the Lab: {exc}") from exc
        loads = len(sealed) + len(new)
    result = Seal(root=prev, loads=loads, new_loads=new, rows=total)
    if path is not None:
        Path(path).write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return result


def verify(lab: Any, root: str | os.PathLike[str] | None = None) -> VerifyReport:
    """Check every sealed load against its seal, and the chain against itself (and ``root``).

    Parameters
    ----------
    root : str or path, optional
        The root kept elsewhere (hex), or a JSON file written by ``seal(path=...)``.

    Raises
    ------
    StoreError
        The Lab was never sealed.
    """
    con = lab.con
    if isinstance(root, (os.PathLike, Path)) or (isinstance(root, str) and len(root) != 64):
        try:
            root = json.loads(Path(root).read_text(encoding="utf-8"))["root"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"root must be a 64-digit hex root or a seal JSON file. Got {root!r} ({exc})."
            ) from exc
    with lab._lock:
        have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if not set(_SEAL_TABLES) <= have or not con.execute("SELECT count(*) FROM seal_chain").fetchone()[0]:
            raise StoreError(
                "this Lab has never been sealed: call lab.seal() (or `otlp-lab seal --db X`) first."
            )
        chain = con.execute("SELECT load_id, link FROM seal_chain ORDER BY load_id").fetchall()
        stored = con.execute("SELECT load_id, table_name, rows, digest, columns FROM seal_tables").fetchall()
        sealed_parts: dict[int, list[tuple[str, int, str]]] = {lid: [] for lid, _ in chain}
        columns: dict[str, list[str]] = {}
        for lid, t, n, d, cols in stored:
            sealed_parts.setdefault(lid, []).append((t, n, d))
            columns[t] = json.loads(cols)
        current_tables = _tables(con)
        for t, cols in current_tables.items():
            columns.setdefault(t, cols)
        now: dict[str, dict[int | None, tuple[int, str]]] = {}
        for t, cols in columns.items():
            if t in current_tables:
                missing = set(cols) - set(current_tables[t])
                if missing:
                    raise StoreError(
                        f"table {t} lost the sealed columns {sorted(missing)}: it cannot be verified."
                    )
                now[t] = _digests(con, t, cols, None)
            else:
                now[t] = {}
    problems: list[tuple[int | None, str, str, int | None, int | None]] = []
    sealed_ids = set(sealed_parts)
    for lid, parts in sorted(sealed_parts.items()):
        tables_sealed = {t for t, _, _ in parts}
        if "loads" in tables_sealed and lid not in now.get("loads", {}):
            problems.append((lid, "loads", "load missing", 1, 0))
        for t, n, d in parts:
            cur = now[t].get(lid)
            if t == "loads" and cur is None:
                continue
            cn, cd = cur if cur is not None else (0, None)
            if cd == d:
                continue
            what = "rows added" if cn > n else "rows deleted" if cn < n else "rows modified"
            problems.append((lid, t, what, n, cn))
        for t, per in now.items():
            if t not in tables_sealed and per.get(lid):
                problems.append((lid, t, "rows added", 0, per[lid][0]))
    unsealed_loads = sorted(lid for lid in now.get("loads", {}) if lid is not None and lid not in sealed_ids)
    last_sealed = max(sealed_ids)
    for t, per in now.items():
        if t == "loads":
            continue
        for lid, (n, _) in per.items():
            if lid in sealed_ids:
                continue
            # rows of a later load are fine; rows with no load, or a load id that is not (or no longer) loaded, are not
            if lid is None or lid not in now.get("loads", {}) or lid < last_sealed:
                problems.append((lid, t, "rows in an unsealed load", 0, n))
    prev = GENESIS
    for lid, link in chain:
        prev = _link(prev, lid, sealed_parts.get(lid, []))
        if prev != link:
            problems.append((lid, "seal_chain", "chain broken", None, None))
            break
    recomputed = prev
    if root is not None and root != recomputed:
        problems.append((None, "seal_chain", "root mismatch", None, None))
    frame = pl.DataFrame(
        problems,
        schema={
            "load_id": pl.Int64,
            "table": pl.String,
            "problem": pl.String,
            "sealed_rows": pl.Int64,
            "rows": pl.Int64,
        },
        orient="row",
    ).sort("load_id", "table", nulls_last=True)
    return VerifyReport(
        ok=frame.height == 0, root=recomputed, loads=len(chain), problems=frame, unsealed=unsealed_loads
    )
