"""Writing a model's output into a Lab: the pieces the edge and ledger models share with :func:`run`.

The fleet simulator (:mod:`otlp_lab.sim._run`) writes spans, metrics and logs through an
:class:`~otlp_lab.sim._emit.Emitter` and its ground truth into ``sim_runs`` and ``faults``;
the edge and ledger models do the same through these helpers, plus one summary table each
(``edge_runs``, ``ledger_runs``) written from a Polars frame.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from otlp_lab.sim._emit import Emitter
from otlp_lab.sim._run import FAULTS_DDL, RUNS_DDL, SCOPE, _run_id

__all__ = ["new_run", "emitter", "write_frame", "write_run_row", "write_faults"]


def new_run(lab: Any, base: str) -> tuple[str, int]:
    """A run id free in ``lab`` (``base``, ``base#2``...) and its 64-bit id salt."""
    run_id = _run_id(lab, base)
    salt = int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8).digest(), "big")
    return run_id, salt


def emitter(contexts: list[dict[str, Any]], *, salt: int, start_ns: int) -> Emitter:
    """An emitter with the simulator's instrumentation scope."""
    return Emitter(contexts, salt=salt, start_ns=start_ns, scope=SCOPE)


def write_frame(lab: Any, table: str, frame: pl.DataFrame) -> None:
    """Append ``frame`` to ``table`` (created from the frame's schema on first use), matching columns by name."""
    name = f"_frame_{table}"
    with lab.transaction() as con:
        con.register(name, frame.to_arrow())
        try:
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {name} LIMIT 0")
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {name}")
        finally:
            con.unregister(name)


def write_run_row(
    lab: Any,
    *,
    run_id: str,
    scenario: str,
    seed: int,
    policy: str,
    start_ns: int,
    duration_s: float,
    requests: int,
    goodput: float,
    error_rate: float,
    p99_s: float | None,
    amplification: float,
    spans: int,
    wall_s: float,
) -> None:
    """One ``sim_runs`` row (the columns mean what they mean for a fleet run; see each model's docs)."""
    with lab.transaction() as con:
        con.execute(RUNS_DDL)
        con.execute(
            "INSERT INTO sim_runs VALUES (?, ?, ?, ?, make_timestamp_ns(?), ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                scenario,
                seed,
                policy,
                start_ns,
                duration_s,
                requests,
                goodput,
                error_rate,
                p99_s,
                amplification,
                spans,
                wall_s,
            ],
        )


def write_faults(lab: Any, run_id: str, start_ns: int, rows: Iterable[Sequence[Any]]) -> None:
    """``faults`` rows ``(service, instance, kind, start_s, end_s, params_json)`` in simulated seconds."""
    out = [
        (run_id, s, i, k, start_ns + round(a * 1e9), start_ns + round(b * 1e9), p)
        for s, i, k, a, b, p in rows
    ]
    with lab.transaction() as con:
        con.execute(FAULTS_DDL)
        if out:
            con.executemany(
                "INSERT INTO faults VALUES (?, ?, ?, ?, make_timestamp_ns(?), make_timestamp_ns(?), ?)", out
            )
