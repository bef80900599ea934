"""``otlp-lab export``: a database out as Parquet, OTLP (JSON lines or framed protobuf) or CSV."""

from __future__ import annotations

import time
from pathlib import Path

import click

from otlp_lab.errors import ConfigError

from ._common import console
from ._group import main

FORMATS = ("parquet", "otlp-json", "otlp-proto", "csv")
_SUFFIX = {"otlp-json": ".otlp.jsonl", "otlp-proto": ".otlp.binpb"}


@main.command("export")
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="DuckDB file.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="parquet",
    show_default=True,
    help="parquet: one folder per table, Hive-partitioned by date and service; otlp-json / otlp-proto: "
    "one Collector file-exporter file per signal (JSON lines / length-prefixed protobuf); csv: one file per table.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder (created).")
@click.option("--overwrite", is_flag=True, help="Replace the files a previous export left in --out.")
def export(db: str, fmt: str, out: str, overwrite: bool) -> None:
    """Write every table of a database to a folder that other tools read.

    \b
    otlp-lab export --db lab.duckdb --format parquet --out out/parquet
    python -c "import otlp_lab; print(otlp_lab.Lab.attach('out/parquet'))"
    """
    from otlp_lab import Lab

    folder = Path(out)
    t0 = time.perf_counter()
    with Lab(db, read_only=True) as lab:
        if fmt == "parquet":
            counts = lab.to_parquet(folder, overwrite=overwrite)
            written = {f"{t}/": n for t, n in counts.items()}
        elif fmt == "csv":
            written = _csv(lab, folder, overwrite)
        else:
            written = _otlp(lab, folder, fmt, overwrite)
    secs = time.perf_counter() - t0
    for name, n in written.items():
        console.print(f"  {folder / name}  [bold]{n:,}[/] rows", highlight=False)
    console.print(f"exported {sum(written.values()):,} rows as {fmt} in {secs:.2f} s", highlight=False)


def _target(folder: Path, name: str, overwrite: bool) -> Path:
    path = folder / name
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists. Choose another --out folder, or pass --overwrite.")
    folder.mkdir(parents=True, exist_ok=True)
    return path


def _otlp(lab: object, folder: Path, fmt: str, overwrite: bool) -> dict[str, int]:
    counts = lab.counts()  # type: ignore[attr-defined]
    rows = {
        "traces": counts["spans"],
        "logs": counts["logs"],
        "metrics": sum(v for k, v in counts.items() if k.startswith("metric_")),
    }
    written = {}
    for signal, n in rows.items():
        if n:
            name = signal + _SUFFIX[fmt]
            path = _target(folder, name, overwrite)
            lab.write_otlp(path, signal, fmt="json" if fmt == "otlp-json" else "protobuf")  # type: ignore[attr-defined]
            written[name] = n
    return written


def _csv(lab: object, folder: Path, overwrite: bool) -> dict[str, int]:
    """One CSV per non-empty table; attribute maps, bodies and nested columns as JSON text."""
    from otlp_lab.store._schema import TABLES

    con = lab.con  # type: ignore[attr-defined]
    written = {}
    for table in TABLES:
        n = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        if not n:
            continue
        rel = con.sql(f"SELECT * FROM {table}")
        cols = [
            f'"{c}"::JSON AS "{c}"'
            if any(k in str(t) for k in ("MAP", "VARIANT", "[]", "STRUCT"))
            else f'"{c}"'
            for c, t in zip(rel.columns, rel.types, strict=True)
        ]
        path = str(_target(folder, f"{table}.csv", overwrite)).replace("'", "''")
        con.execute(f"COPY (SELECT {', '.join(cols)} FROM {table}) TO '{path}' (FORMAT csv, HEADER)")
        written[f"{table}.csv"] = n
    return written
