"""``otlp-lab simulate``: run a scenario into a DuckDB file and print a compact summary."""

from __future__ import annotations

import click


@click.command()
@click.argument("scenario")
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    help="DuckDB file to write the telemetry into (created if missing).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Random seed (same seed, same output).",
)
@click.option("--duration", help="Simulated time, e.g. 90s or 10m (the scenario's duration_s by default).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def simulate(scenario: str, db: str | None, seed: int, duration: str | None, progress: bool) -> None:
    """Simulate SCENARIO (a YAML file or a shipped name: shop, retry_storm, slow_instance)."""
    from otlp_lab.cli import _fail, _table, console
    from otlp_lab.errors import OtlpLabError
    from otlp_lab.store import Lab, parse_duration_s

    try:
        from otlp_lab.sim import run

        duration_s = parse_duration_s(duration) if duration else None
        if db:
            with Lab(db) as lab:
                result = run(scenario, lab=lab, seed=seed, duration_s=duration_s, progress=progress)
        else:
            result = run(scenario, seed=seed, duration_s=duration_s, progress=progress)
    except (OtlpLabError, ImportError) as exc:
        _fail(exc)
        return

    def ms(v: float | None) -> str:
        return "·" if v is None else f"{v * 1e3:,.1f}"

    console.print(
        f"[bold]{result.scenario}[/] ({result.label}, seed {seed}): {result.duration_s:g} simulated s in "
        f"{result.wall_s:.1f} s, {result.hops / max(result.wall_s, 1e-9):,.0f} hops/s",
        highlight=False,
    )
    console.print(
        f"goodput [bold]{result.goodput_rps:,.1f}[/]/s of {result.offered_rps:,.1f}/s offered, "
        f"errors [bold]{result.error_rate:.1%}[/], p50 {ms(result.p50_s)} ms, p95 {ms(result.p95_s)} ms, "
        f"p99 [bold]{ms(result.p99_s)}[/] ms, amplification {result.amplification:.2f}",
        highlight=False,
    )
    ps = result.per_service
    frame = ps.select(
        "service",
        "arrivals",
        (ps["error_rate"] * 100).round(2).alias("err %"),
        (ps["utilisation"] * 100).round(1).alias("busy %"),
        ps["p50_ms"].round(1).alias("p50 ms"),
        ps["p99_ms"].round(1).alias("p99 ms"),
        ps["amplification"].round(2).alias("amp"),
        ps["breaker_opens"].alias("opens"),
        ps["ejections"].alias("ejected"),
    )
    console.print(_table("Per service", frame, max_rows=40, max_width=20))
    if db:
        console.print(
            f"run [bold]{result.run_id}[/] written to [bold]{db}[/] ({result.spans:,} spans; tables faults, sim_runs)",
            highlight=False,
        )
