"""``otlp-lab simulate``: run a scenario into a DuckDB file, or live to an OTLP endpoint, and print a compact summary."""

from __future__ import annotations

import contextlib
import sys

import click

from ._common import console, fail, protocol_option, table
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
@protocol_option(
    "With --send. Env OTEL_EXPORTER_OTLP_PROTOCOL (headers and TLS come from the other OTEL_EXPORTER_OTLP_* variables)."
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
@click.option(
    "--policy",
    "policies",
    multiple=True,
    metavar="SERVICE=FILE[#NAME]",
    help="Calls to SERVICE (or the scenario policy of that name) use the policy in FILE: an Istio"
    " DestinationRule/VirtualService, an Envoy bootstrap or cluster, resilience4j YAML or a gRPC service"
    " config; #NAME picks one (a host, host/subset, cluster, instance, service/method). Repeatable.",
)
@click.option(
    "--lenient",
    is_flag=True,
    help="Import --policy files with strict=False: keys otlp_lab does not model are reported, not refused.",
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
    policies: tuple[str, ...],
    lenient: bool,
) -> None:
    """Simulate SCENARIO (a YAML file or a shipped name: shop, retry_storm, slow_instance).

    With --policy SERVICE=FILE the calls to SERVICE run under a real config, e.g.
    `otlp-lab simulate slow_instance --policy backend=destination-rule.yaml`.

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
        if policies:
            scenario = _apply_policies(scenario, policies, strict=not lenient)  # type: ignore[assignment]
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
        ps["overflows"].alias("503 UO"),
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


def _parse_policy(spec: str) -> tuple[str, str]:
    target, sep, source = spec.partition("=")
    if not sep or not target or not source:
        raise click.BadParameter(
            f"{spec!r}: give SERVICE=FILE or SERVICE=FILE#NAME, e.g. backend=destination-rule.yaml#reviews",
            param_hint="--policy",
        )
    return target, source


def _apply_policies(scenario: str, specs: tuple[str, ...], *, strict: bool) -> object:
    """The scenario with each ``SERVICE=FILE[#NAME]`` applied; prints each policy in words."""
    from otlp_lab.sim import with_imported

    pairs = dict(_parse_policy(s) for s in specs)
    sc, imported, notes = with_imported(scenario, pairs, strict=strict)
    for target, p in imported.items():
        console.print(f"[bold]{target}[/] <- {pairs[target]}: {p.describe()}", highlight=False)
        for w in getattr(p, "warnings", ()):
            console.print(f"  [yellow]warning:[/] {w}", highlight=False)
    for n in notes:
        console.print(f"  note: {n}", highlight=False)
    return sc


@main.command()
@click.argument("scenario")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    required=True,
    metavar="[LABEL:]SERVICE=FILE[#NAME]",
    help="One variant per --policy: calls to SERVICE use the policy in FILE (as for simulate). Several"
    " services in one variant: give them the same LABEL.",
)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Random seed.")
@click.option("--duration", help="Simulated time, e.g. 60s (the scenario's duration_s by default).")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="HTML report to write (default compare-<scenario>.html).",
)
@click.option("--as-is/--no-as-is", default=True, show_default=True, help="Also run the scenario as written.")
@click.option("--lenient", is_flag=True, help="Import the files with strict=False (see simulate).")
@click.option("--progress/--no-progress", default=False, show_default=True, help="Show a progress bar.")
def compare(
    scenario: str,
    policies: tuple[str, ...],
    seed: int,
    duration: str | None,
    report_path: str | None,
    as_is: bool,
    lenient: bool,
    progress: bool,
) -> None:
    """Run SCENARIO under several imported policies; print them side by side and write an HTML report.

    Example: `otlp-lab compare slow_instance --policy backend=dr.yaml --policy tight:backend=dr-tight.yaml`.
    """
    from pathlib import Path

    import polars as pl

    from otlp_lab._config import parse_duration_s
    from otlp_lab.errors import OtlpLabError
    from otlp_lab.sim import run, with_imported
    from otlp_lab.sim._scenario import load_scenario
    from otlp_lab.viz import write_sim_report

    try:
        duration_s = parse_duration_s(duration, key="--duration", positive=True) if duration else None
        variants: dict[str, dict[str, str]] = {}
        for spec in policies:
            label, sep, rest = spec.partition(":")
            if not sep or "=" in label:
                label, rest = "", spec
            target, source = _parse_policy(rest)
            label = label or Path(source.partition("#")[0]).stem + (
                f"#{source.partition('#')[2]}" if "#" in source else ""
            )
            variants.setdefault(label, {})[target] = source
        base = load_scenario(scenario)
        runs: dict[str, object] = {}
        words: dict[str, str] = {}
        if as_is:
            runs["as is"] = base
            words["as is"] = "the scenario's own policies, as written."
        for label, pairs in variants.items():
            sc, imported, notes = with_imported(base, pairs, strict=not lenient)
            runs[label] = sc
            words[label] = " ".join(f"{t}: {p.describe()}" for t, p in imported.items()) + "".join(
                f" Note: {n}." for n in notes
            )
        # the same seed for every variant: the same arrivals and faults (common random numbers)
        results = {
            label: run(sc, seed=seed, duration_s=duration_s, label=label, progress=progress)  # type: ignore[arg-type]
            for label, sc in runs.items()
        }
    except OtlpLabError as exc:
        fail(exc)
        return
    for label, text in words.items():
        console.print(f"[bold]{label}[/]: {text}", highlight=False)
    summary = pl.DataFrame([r.summary() for r in results.values()])
    cols = [
        c
        for c in ("policy", "goodput_rps", "error_rate", "p50_ms", "p99_ms", "amplification")
        if c in summary.columns
    ]
    frame = summary.select(cols)
    overflows = [int(r.per_service["overflows"].sum()) for r in results.values()]
    frame = frame.with_columns(pl.Series("503 UO", overflows))
    console.print(table(f"{base.name}: {len(results)} policies, seed {seed}", frame, max_rows=40))
    out = Path(report_path or f"compare-{base.name}.html")
    written = write_sim_report(results, out, scenario=scenario, descriptions=words)
    console.print(f"report: [bold]{written}[/]", highlight=False)
