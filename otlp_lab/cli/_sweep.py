"""``otlp-lab sweep``: a scenario over a grid of parameters × seeds, in parallel processes or on a Dask cluster."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

import click

from ._common import console, fail, table
from ._group import main

if TYPE_CHECKING:
    import polars as pl


@main.command()
@click.argument("scenario")
@click.option(
    "--grid",
    "grid_specs",
    multiple=True,
    metavar="KEY=V1,V2",
    help="A scenario setting and its values, e.g. 'workloads[0].rate.base_rps=100,140' or "
    "'policies.storm.retry.max_attempts=1,4' (repeat: every combination runs).",
)
@click.option(
    "--seeds",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Seeds per grid point (0 .. N-1, or from --first-seed).",
)
@click.option(
    "--first-seed", default=0, show_default=True, type=click.IntRange(min=0), help="The first seed."
)
@click.option("--duration", help="Simulated time per run, e.g. 60s (the scenario's duration_s by default).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Local processes (default: one per CPU; 1 runs in this process).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run on a Dask cluster instead, e.g. tcp://10.0.0.5:8786 (its workers need otlp_lab installed).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    help="DuckDB file for the results (tables sweep_runs and sweep_summary; created if missing).",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def sweep(
    scenario: str,
    grid_specs: tuple[str, ...],
    seeds: int,
    first_seed: int,
    duration: str | None,
    workers: int | None,
    scheduler: str | None,
    db: str | None,
    progress: bool,
) -> None:
    """Run SCENARIO over every combination of --grid values, --seeds times each, and print means with 95 % CIs.

    Results are identical seed for seed whichever executor ran them (this machine's processes or
    a Dask cluster).
    """
    from otlp_lab._config import parse_duration_s
    from otlp_lab.errors import OtlpLabError
    from otlp_lab.store import Lab

    if workers is not None and scheduler is not None:
        raise click.UsageError(
            "--workers sizes the local process pool: give --scheduler or --workers, not both."
        )
    try:
        from otlp_lab.sim import parse_grid
        from otlp_lab.sim import sweep as run_sweep

        grid = parse_grid(grid_specs)
        duration_s = parse_duration_s(duration, key="--duration", positive=True) if duration else None
        t0 = time.perf_counter()
        with Lab(db) if db else contextlib.nullcontext() as lab:
            result = run_sweep(
                scenario,
                grid,
                seeds=list(range(first_seed, first_seed + seeds)),
                duration_s=duration_s,
                workers=workers,
                scheduler=scheduler,
                lab=lab,
                progress=progress,
            )
        wall = time.perf_counter() - t0
    except (OtlpLabError, ImportError, OSError) as exc:
        fail(exc)
        return
    console.print(
        f"[bold]{result.scenario}[/]: {result.runs.height} runs ({result.summary.height} grid points × "
        f"{seeds} seeds) in {wall:.1f} s on {result.executor}",
        highlight=False,
    )
    s = result.summary
    cols = [*grid, "policy", "n"]
    shown = s.select(
        *cols,
        *[
            _with_ci(m, scale).alias(label)
            for m, label, scale in (
                ("goodput_rps", "goodput/s (95% CI)", 1.0),
                ("error_rate", "errors % (95% CI)", 100.0),
                ("p99_ms", "p99 ms (95% CI)", 1.0),
                ("amplification", "amp", 1.0),
            )
        ],
    )
    console.print(table("Mean over seeds", shown, max_rows=60, max_width=28))
    if db:
        console.print(
            f"sweep [bold]{result.sweep_id}[/] written to [bold]{db}[/] (tables sweep_runs, sweep_summary)",
            highlight=False,
        )


def _with_ci(metric: str, scale: float) -> pl.Expr:
    """``mean [lo, hi]`` as text (the mean alone when the interval is a point: one seed)."""
    import polars as pl

    mean, lo, hi = (pl.col(f"{metric}_{k}") * scale for k in ("mean", "lo", "hi"))
    text = pl.format("{} [{}, {}]", mean.round(2), lo.round(2), hi.round(2))
    return pl.when(lo == hi).then(mean.round(2).cast(pl.String)).otherwise(text)
