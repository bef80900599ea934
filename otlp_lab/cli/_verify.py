"""``otlp-lab seal`` and ``otlp-lab verify``: a tamper-evident hash chain over a database's loads."""

from __future__ import annotations

import sys

import click

from otlp_lab.errors import OtlpLabError

from ._common import console, fail, table
from ._group import main


@main.command()
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="DuckDB file.")
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Also write the root as JSON here (keep it elsewhere)."
)
def seal(db: str, out: str | None) -> None:
    """Extend the hash chain over the loads not sealed yet and print its root."""
    from otlp_lab import Lab

    try:
        with Lab(db) as lab:
            s = lab.seal(out)
    except OtlpLabError as exc:
        fail(exc)
    console.print(
        f"sealed {len(s.new_loads)} new load(s) ({s.rows:,} rows); {s.loads} in the chain\nroot [bold]{s.root}[/]",
        highlight=False,
    )


@main.command()
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="DuckDB file.")
@click.option("--root", help="The root kept elsewhere (64 hex digits) or the JSON file `seal --out` wrote.")
def verify(db: str, root: str | None) -> None:
    """Check every sealed load against the seal; exit 1 naming the load and table of any change."""
    from otlp_lab import Lab

    try:
        with Lab(db, read_only=True) as lab:
            report = lab.verify(root)
    except OtlpLabError as exc:
        fail(exc)
    if report.unsealed:
        console.print(
            f"[yellow]not sealed yet:[/] loads {report.unsealed} (run `otlp-lab seal`)", highlight=False
        )
    if report.ok:
        console.print(f"[green]intact:[/] {report.loads} sealed loads, root {report.root}", highlight=False)
        return
    console.print(
        table(f"[red]tampered:[/] {report.problems.height} problem(s)", report.problems, max_rows=40)
    )
    sys.exit(1)
