"""``otlp-lab report`` (and ``traceql``): analysis of a capture from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from otlp_lab.errors import OtlpLabError

from ._common import console, fail, table
from ._group import main


@main.command()
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="DuckDB file.")
@click.option(
    "--out",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="HTML file to write.",
)
@click.option("--title", default=None, help="Title of the report (default: the database's name).")
@click.option(
    "--trace-id", default=None, help="Trace to draw as a waterfall (default: most errors, else slowest)."
)
@click.option(
    "--faults",
    "faults_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="faults.json of injected faults (the TrainTicket format) to mark on the figures.",
)
def report(db: str, out: str, title: str | None, trace_id: str | None, faults_path: str | None) -> None:
    """Write the HTML report (service graph, latency, RED, slow traces, waterfall with critical path) of a capture."""
    from otlp_lab import Lab
    from otlp_lab.viz import write_report

    try:
        faults = None
        if faults_path is not None:
            from otlp_lab.datasets import trainticket_faults

            faults = trainticket_faults(faults_path)
        with Lab(db, read_only=True) as lab:
            path = write_report(
                lab, out, faults=faults, title=title or f"otlp_lab report: {Path(db).name}", trace_id=trace_id
            )
    except OtlpLabError as exc:
        fail(exc)
    console.print(f"report: [bold]{path}[/] ({path.stat().st_size / 1e6:.1f} MB)")


@main.command()
@click.argument("query")
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="DuckDB file.")
@click.option("--max-rows", default=40, show_default=True, help="Rows to print.")
@click.option(
    "--show-sql", is_flag=True, help="Print the DuckDB SQL the query compiles to instead of running it."
)
def traceql(query: str, db: str, max_rows: int, show_sql: bool) -> None:
    """Find spans with a TraceQL QUERY, e.g. '{ status = error } | by(resource.service.name) | count() > 2'."""
    from otlp_lab import Lab
    from otlp_lab.store._traceql import compile_traceql

    try:
        if show_sql:
            click.echo(compile_traceql(query))
            return
        with Lab(db, read_only=True) as lab:
            frame = lab.traceql(query)
    except OtlpLabError as exc:
        fail(exc)
    console.print(table(f"{frame.height:,} spans", frame, max_rows=max_rows, max_width=34))
