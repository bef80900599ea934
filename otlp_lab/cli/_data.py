"""``otlp-lab load``, ``info``, ``sql`` and ``demo``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from otlp_lab.errors import OtlpLabError

from ._common import console, fail, fits, load_with_progress, print_load, print_records, table
from ._group import main


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--db",
    required=True,
    type=click.Path(dir_okay=False),
    help="DuckDB file to load into (created if missing).",
)
@click.option("--signal", type=click.Choice(["traces", "metrics", "logs"]), help="Accept only this signal.")
@click.option("--skip-bad", is_flag=True, help="Skip bad lines/messages and report them instead of failing.")
@click.option("--duplicates", is_flag=True, help="Load files even if their content was loaded before.")
@click.option(
    "--fail-fast", is_flag=True, help="Stop at the first bad file (by default every good file is loaded)."
)
@click.option(
    "--lenient-ids",
    is_flag=True,
    help="Accept spans with missing or empty ids (as in the OTLP spec's file-exporter examples) and count them.",
)
def load(
    files: tuple[str, ...],
    db: str,
    signal: str | None,
    skip_bad: bool,
    duplicates: bool,
    fail_fast: bool,
    lenient_ids: bool,
) -> None:
    """Load OTLP FILES (files, directories or globs; JSON, JSON lines, protobuf; gzip/zstd).

    Jaeger JSON (query API / UI download) and Zipkin v2 JSON load too, as traces.

    Every good file is loaded, each bad one is reported with its error, and the exit status
    is 1 when any file failed (2 when nothing could be loaded at all).
    """
    from otlp_lab import Lab

    try:
        with Lab(db) as lab:
            t0 = time.perf_counter()
            result = load_with_progress(
                lab,
                files,
                signal=signal,
                on_error="skip" if skip_bad else "raise",
                duplicates=duplicates,
                fail_fast=fail_fast,
                lenient_ids=lenient_ids,
            )
            print_load(result, time.perf_counter() - t0)
    except OtlpLabError as exc:
        fail(exc)
    if not result.ok:
        sys.exit(1)


def live_headers() -> dict[str, str]:
    """Credentials for a receiver's live queries: OTLP_LAB_TOKEN (as `receive` takes it) and
    OTEL_EXPORTER_OTLP_HEADERS."""
    from otlp_lab.transport._sender import parse_headers

    headers = parse_headers(os.environ.get("OTEL_EXPORTER_OTLP_HEADERS"))
    if os.environ.get("OTLP_LAB_TOKEN"):
        headers["authorization"] = f"Bearer {os.environ['OTLP_LAB_TOKEN']}"
    return headers


def _print_info(lab: Any) -> None:
    info = lab.info()
    rows = ", ".join(f"{k} [bold]{v:,}[/]" for k, v in info["tables"].items() if v) or "no rows yet"
    console.print(f"{info['path']} ({info['loads']} loads): {rows}", highlight=False)
    if info.get("duplicate_spans"):
        console.print(
            f"{info['duplicate_spans']:,} spans were loaded more than once (overlapping captures); "
            "the analysis views count each once",
            highlight=False,
        )
    lo, hi = info["time_range"]
    if lo is not None:
        console.print(
            f"spans from {lo:%Y-%m-%d %H:%M:%S} to {hi:%H:%M:%S} UTC ({(hi - lo).total_seconds():,.0f} s)"
        )
    svcs = info["services"]
    if svcs:
        shown = ", ".join(svcs[:12]) + (f", ... ({len(svcs)} in all)" if len(svcs) > 12 else "")
        console.print(f"services: {shown}", highlight=False)


@main.command()
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="DuckDB file.")
def info(db: str) -> None:
    """Tables, row counts, time range and services of a database."""
    from otlp_lab.transport import open_lab

    try:
        with open_lab(db, headers=live_headers()) as lab:  # through the receiver if one writes it
            _print_info(lab)
    except OtlpLabError as exc:
        fail(exc)


@main.command()
@click.argument("query")
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="DuckDB file.")
@click.option("--max-rows", default=40, show_default=True, help="Rows to print (table format).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
    help="table: readable in a terminal (one record per block when the columns do not fit); csv; "
    "json: JSON lines, attributes as JSON objects; parquet (needs --out): attributes keep their OTLP types.",
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the result to this file (all rows).")
@click.option("--csv", "as_csv", is_flag=True, help="Same as --format csv.")
def sql(query: str, db: str, max_rows: int, fmt: str, out: str | None, as_csv: bool) -> None:
    """Run a SQL QUERY and print the result (or write it with --out).

    While `otlp-lab receive` writes the database, the query runs through the receiver (one
    read-only SELECT; credentials from OTLP_LAB_TOKEN or OTEL_EXPORTER_OTLP_HEADERS).
    """
    from otlp_lab.errors import ConfigError
    from otlp_lab.transport import open_lab

    fmt = "csv" if as_csv else fmt
    if fmt == "parquet" and out is None:
        raise ConfigError("--format parquet writes a file: add --out result.parquet")
    try:
        with open_lab(db, headers=live_headers()) as lab:  # through the receiver if one writes it
            if out is not None and fmt != "table" and hasattr(lab, "con"):
                n = _copy_query(lab, query, fmt, out)
                console.print(f"wrote {n:,} rows to {out}", highlight=False)
                return
            frame = lab.sql(query)
    except OtlpLabError as exc:
        fail(exc)
    if out is not None:  # a live query's frame
        {"parquet": frame.write_parquet, "json": frame.write_ndjson}.get(fmt, frame.write_csv)(out)
        console.print(f"wrote {frame.height:,} rows to {out}", highlight=False)
    elif fmt == "csv":
        click.echo(frame.write_csv(), nl=False)
    elif fmt == "json":
        click.echo(frame.write_ndjson(), nl=False)
    elif fits(frame, console.width):
        console.print(table(f"{frame.height:,} rows", frame, max_rows=max_rows))
    else:
        print_records(frame, max_rows=max_rows)


def _copy_query(lab: Any, query: str, fmt: str, out: str) -> int:
    """Write the result of ``query`` with DuckDB's COPY (all rows; attribute maps kept typed in Parquet)."""
    from otlp_lab.errors import StoreError
    from otlp_lab.store._parquet import portable_columns

    con = lab.con
    source = "(" + query.strip().rstrip(";") + ")"
    path = out.replace("'", "''")
    try:
        if fmt == "parquet":
            cols = portable_columns(con, source)
        else:
            rel = con.sql(f"SELECT * FROM {source}")
            cols = [
                f'"{c}"::JSON AS "{c}"'
                if "VARIANT" in str(t) or (fmt == "csv" and "MAP" in str(t))
                else f'"{c}"'
                for c, t in zip(rel.columns, rel.types, strict=True)
            ]
        opts = {"parquet": "FORMAT parquet", "csv": "FORMAT csv, HEADER", "json": "FORMAT json"}[fmt]
        con.execute(f"COPY (SELECT {', '.join(cols)} FROM {source}) TO '{path}' ({opts})")
        return con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0]
    except Exception as exc:  # duckdb.Error
        raise StoreError(f"query failed: {exc}") from exc


DEMO_SCENARIO = "retry_storm"
DEMO_POLICIES: dict[str, dict[str, Any]] = {
    "3 retries, no budget": {},
    "retry budget + breaker": {
        "*": {
            "budget": {"budget_percent": 20, "min_retry_concurrency": 3},
            "breaker": {
                "failure_rate_threshold": 50,
                "sliding_window_size": 50,
                "minimum_number_of_calls": 20,
                "wait_duration_in_open_state_s": 2,
            },
        }
    },
}


@main.command()
@click.option("--db", default="out/demo.duckdb", show_default=True, type=click.Path(dir_okay=False))
@click.option("--report", default="out/report.html", show_default=True, type=click.Path(dir_okay=False))
@click.option("--seed", default=1, show_default=True, help="Seed of the simulation.")
def demo(db: str, report: str, seed: int) -> None:
    """The main job: analyse a real capture, then rehearse a failure under two policies.

    1. Load the bundled TrainTicket capture (real traces around injected faults), print a
       summary and write an HTML report.
    2. Simulate the shipped retry-storm scenario under two policies into the same database
       and print their comparison (goodput, error rate, p99, amplification).
    """
    from otlp_lab import Lab
    from otlp_lab.datasets import trainticket_faults, trainticket_path
    from otlp_lab.sim import run_many
    from otlp_lab.viz import write_report

    db_path = Path(db)
    if db_path.exists():  # the demo starts from a fresh database each time
        db_path.unlink()
        Path(f"{db}.wal").unlink(missing_ok=True)
    try:
        with Lab(db) as lab:
            console.rule("[bold]1. A real capture: TrainTicket around injected faults")
            t0 = time.perf_counter()
            result = load_with_progress(lab, (str(trainticket_path()),))
            rows = ", ".join(f"{v:,} {k}" for k, v in result.counts.items() if v)
            loaded = sum(f.status == "loaded" for f in result.files)
            console.print(
                f"loaded {rows} from {loaded} files in {time.perf_counter() - t0:.2f} s into [bold]{db}[/]"
            )
            _print_info(lab)
            console.print(
                table(
                    "Busiest service-graph edges",
                    lab.service_graph().select(
                        "mode", "client", "server", "calls", "errors", "p50_ms", "p95_ms"
                    ),
                    max_rows=5,
                )
            )
            slow = lab.traces(limit=3).select("trace_id", "root_service", "spans", "services", "duration_ms")
            console.print(table("Slowest traces", slow, max_rows=3, max_width=34))
            out = write_report(
                lab, report, faults=trainticket_faults(), title="TrainTicket capture (Nezha, 2023-01-30)"
            )
            console.print(f"report: [bold]{out}[/]")

            console.rule(f"[bold]2. A rehearsal: the '{DEMO_SCENARIO}' scenario under two policies")
            t0 = time.perf_counter()
            results = run_many(DEMO_SCENARIO, DEMO_POLICIES, lab=lab, seed=seed, progress=True)
            frame = _comparison(results)
            console.print(
                table(f"Same arrivals (seed {seed}), simulated in {time.perf_counter() - t0:.0f} s", frame)
            )
            sim_report = Path(report).with_name("simulation.html")
            from otlp_lab.viz import write_sim_report

            console.print(f"report: [bold]{write_sim_report(results, sim_report, scenario=DEMO_SCENARIO)}[/]")
            console.print(
                f'explore both in SQL: otlp-lab sql --db {db} "select * from sim_runs"', highlight=False
            )
    except OtlpLabError as exc:
        fail(exc)


def _comparison(results: dict[str, Any]) -> Any:
    import polars as pl

    return pl.DataFrame([r.summary() for r in results.values()]).select(
        "policy", "goodput_rps", "offered_rps", "error_rate", "p99_ms", "amplification"
    )
