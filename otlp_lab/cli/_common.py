"""Shared pieces of the command line: the console, tables, progress bars, error exit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

console = Console()


def table(title: str, frame: Any, *, max_rows: int = 10, max_width: int = 48) -> Table:
    """A Polars frame as a rich table (first ``max_rows`` rows, long cells shortened)."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for col in frame.columns:
        t.add_column(
            col,
            overflow="ellipsis",
            max_width=max_width,
            justify="right" if frame[col].dtype.is_numeric() else "left",
        )
    for row in frame.head(max_rows).iter_rows():
        t.add_row(*(cell(v) for v in row))
    if frame.height > max_rows:
        t.caption = f"{max_rows} of {frame.height:,} rows"
    return t


def fits(frame: Any, width: int, *, max_width: int = 48, max_rows: int = 10) -> bool:
    """Whether ``frame``'s columns fit side by side in ``width`` characters (cells cut at ``max_width``)."""
    need = 1
    for col in frame.columns:
        cells = [len(cell(v)) for v in frame[col].head(max_rows).to_list()]
        need += min(max([len(col), *cells]), max_width) + 3
    return need <= width


def print_records(frame: Any, *, max_rows: int = 10, max_width: int = 200) -> None:
    """Rows one after another, one ``column  value`` line each (for rows too wide for a table)."""
    name_w = max((len(c) for c in frame.columns), default=0)
    for n, row in enumerate(frame.head(max_rows).iter_rows(named=True), 1):
        console.print(f"[bold]-[ record {n} ]" + "-" * max(0, name_w - 8), highlight=False)
        for col, v in row.items():
            text = cell(v)
            if len(text) > max_width:
                text = text[: max_width - 1] + "…"
            console.print(f"[bold]{col:<{name_w}}[/] │ {text}", highlight=False, soft_wrap=True)
    shown = min(max_rows, frame.height)
    console.print(f"{shown} of {frame.height:,} rows" if frame.height > shown else f"{frame.height:,} rows")


def cell(v: Any) -> str:
    if v is None:
        return "·"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1e15 else f"{v:.3e}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    sys.exit(2)


def load_with_progress(lab: Any, files: tuple[str, ...], **kw: Any) -> Any:
    with Progress(
        TextColumn("[bold]loading[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)

        def progress(source: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=Path(source).name)

        return lab.load(*files, progress=progress, **kw)


def print_load(result: Any, seconds: float) -> None:
    t = Table(title=f"Loaded in {seconds:.2f} s", title_justify="left", header_style="bold")
    t.add_column("table")
    t.add_column("rows added", justify="right")
    for k, v in result.counts.items():
        if v:
            t.add_row(k, f"{v:,}")
    console.print(t)
    for f in result.files:
        if f.status == "failed":
            console.print(f"[bold red]failed:[/] {f.error}", highlight=False)
        elif f.status != "loaded":
            console.print(
                f"[yellow]{f.status}:[/] {f.source}" + (f" ({f.error})" if f.error else ""), highlight=False
            )
    for s in result.skipped[:20]:
        console.print(f"[yellow]skipped:[/] {s}", highlight=False)
    if len(result.skipped) > 20:
        console.print(f"[yellow]... and {len(result.skipped) - 20} more skipped requests[/]")
    style = "bold red" if result.failed else "bold green"
    console.print(f"[{style}]{result.summary()}[/]", highlight=False)


def protocol_option(help_text: str = "Env OTEL_EXPORTER_OTLP_PROTOCOL.") -> Any:
    """The ``--protocol`` option every exporting command shares (OTLP's own names and environment variable)."""
    return click.option(
        "--protocol",
        type=click.Choice(["grpc", "http/protobuf", "http/json"]),
        envvar="OTEL_EXPORTER_OTLP_PROTOCOL",
        default="grpc",
        show_default=True,
        help=help_text,
    )
