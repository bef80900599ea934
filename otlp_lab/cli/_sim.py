"""``otlp-lab simulate``: run a scenario into a DuckDB file, or live to an OTLP endpoint, and print a compact summary."""

from __future__ import annotations

import contextlib
import sys

import click

from ._common import console, fail, table
from ._group import main


@main.command()
@click.argument("scenario")
@click.option(
    "--db",
    type=click.Path(dir_okay=False),
    help="DuckDB file to write the telemetry into (created if missing); with --send, a local copy.",
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
@click.option(
    "--send",
    "send_url",
    metavar="URL",
    help="Export live over OTLP to this endpoint as the simulation runs: http://host:4318 (HTTP) or host:4317 (gRPC).",
)
@click.option(
    "--protocol",
    type=click.Choice(["grpc", "http/protobuf", "http/json"]),
    envvar="OTEL_EXPORTER_OTLP_PROTOCOL",
    default="grpc",
    show_default=True,
    help="With --send. Env OTEL_EXPORTER_OTLP_PROTOCOL (headers and TLS come from the other OTEL_EXPORTER_OTLP_* variables).",
)
@click.option(
    "--realtime/--no-realtime",
    default=None,
    help="With --send: pace the simulation against the wall clock (the default), or send as fast as it runs.",
)
@click.option(
    "--speed",
    type=float,
    help="With --send: simulated seconds per wall-clock second (default 1); timestamps are scaled to match.",
)
def simulate(
    scenario: str,
    db: str | None,
    seed: int,
    duration: str | None,
    progress: bool,
    send_url: str | None,
    protocol: str,
    realtime: bool | None,
    speed: float | None,
) -> None:
    """Simulate SCENARIO (a YAML file or a shipped name: shop, retry_storm, slow_instance).

    With --send URL the spans, metrics and logs go live to an OTLP endpoint (a collector, or
    `otlp-lab receive`), paced on the wall clock with timestamps from now; exit status 1 when
    some were not delivered.
    """
    from otlp_lab._config import parse_duration_s
    from otlp_lab.errors import OtlpLabError
    from otlp_lab.store import Lab

    if send_url is None and (realtime is not None or speed is not None):
        raise click.UsageError("--realtime and --speed pace a live run: give --send URL too.")
    live = None
    try:
        from otlp_lab.sim import run

        duration_s = parse_duration_s(duration, key="--duration", positive=True) if duration else None
        if send_url:
            from otlp_lab.sim import stream
            from otlp_lab.transport import Sender

            sender = Sender.from_env(endpoint=send_url, protocol=protocol)
            pace = "realtime" if realtime is not False else "unpaced"
            console.print(
                f"sending live to [bold]{sender.target.url}[/] over {sender.protocol} ({pace}, speed {1.0 if speed is None else speed:g})",
                highlight=False,
            )
            with Lab(db) if db else contextlib.nullcontext() as lab:
                live = stream(
                    scenario,
                    sender=sender,
                    lab=lab,
                    seed=seed,
                    duration_s=duration_s,
                    realtime=realtime is not False,
                    speed=1.0 if speed is None else speed,
                    progress=progress,
                )
            result = live.run
        elif db:
            with Lab(db) as lab:
                result = run(scenario, lab=lab, seed=seed, duration_s=duration_s, progress=progress)
        else:
            result = run(scenario, seed=seed, duration_s=duration_s, progress=progress)
    except (OtlpLabError, ImportError) as exc:
        fail(exc)
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
    console.print(table("Per service", frame, max_rows=40, max_width=20))
    if db:
        console.print(
            f"run [bold]{result.run_id}[/] written to [bold]{db}[/] ({result.spans:,} spans; tables faults, sim_runs)",
            highlight=False,
        )
    if live is not None:
        from ._transport import _print_report

        _print_report(live.report)
        items = ", ".join(
            f"{n:,} {what}"
            for what, n in (
                ("spans", live.emitted["traces"]),
                ("metric points", live.emitted["metrics"]),
                ("log records", live.emitted["logs"]),
            )
        )
        console.print(
            f"simulated {items}; [bold]{live.sent:,}[/] sent, {live.rejected:,} rejected, {live.failed:,} failed",
            highlight=False,
        )
        if live.realtime and live.max_lag_s > max(0.25, 0.1 * result.duration_s / live.speed):
            console.print(
                f"[yellow]fell behind the wall clock by up to {live.max_lag_s:.1f} s:[/] this machine cannot "
                f"simulate and encode {result.scenario} {live.speed:g}x faster than real time; lower --speed",
                highlight=False,
            )
        if live.failed or live.report.failed_requests:
            sys.exit(1)
