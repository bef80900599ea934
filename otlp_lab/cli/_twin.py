"""``otlp-lab fit``: a fleet twin from a capture, checked against held-out traces and captured faults."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from otlp_lab.errors import OtlpLabError

from ._common import console, fail, table
from ._group import main


def _pct(v: Any) -> str:
    return "·" if v is None or v != v else f"{v:+.0%}"


@main.command()
@click.option(
    "--db",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="DuckDB file holding the capture.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Write the fitted scenario (commented YAML) here."
)
@click.option("--since", help="Fit on traces starting at or after this ISO time (UTC).")
@click.option("--until", help="... and before this one.")
@click.option(
    "--validate",
    is_flag=True,
    help="Fit on half the traces (by trace id), simulate the other half's arrivals and print how far the twin is off.",
)
@click.option(
    "--faults",
    "faults_file",
    type=click.Path(exists=True, dir_okay=False),
    help="faults.json (inject_timestamp, inject_service, inject_type): replay each fault on the twin and compare.",
)
@click.option("--seed", default=1, show_default=True, type=click.IntRange(min=0), help="Simulation seed.")
@click.option(
    "--min-spans",
    default=100,
    show_default=True,
    help="The accuracy targets apply to operations with this many spans.",
)
def fit(
    db: str,
    out: str | None,
    since: str | None,
    until: str | None,
    validate: bool,
    faults_file: str | None,
    seed: int,
    min_spans: int,
) -> None:
    """Fit a scenario (a fleet twin) from the traces in a database.

    The scenario is an ordinary file: services and instances, endpoints with their call graphs,
    service-time distributions, error shares and arrival rates, each commented with where it
    came from. Run it with `otlp-lab simulate twin.yaml`, rehearse a policy on it with `--policy`.
    """
    from otlp_lab import Lab
    from otlp_lab.sim import fit as fit_twin
    from otlp_lab.sim import rehearse
    from otlp_lab.sim import validate as validate_twin

    window = (since, until) if since or until else None
    try:
        with Lab(db, read_only=True) as lab:
            report = fit_twin(lab, window=window)
            console.print(f"[bold]{report!r}[/]", highlight=False)
            if out:
                console.print(
                    f"scenario: [bold]{report.write(out)}[/] (run it: otlp-lab simulate {out})",
                    highlight=False,
                )
            else:
                console.print("[dim](no --out: the scenario was not written)[/]")
            if validate:
                half = fit_twin(lab, window=window, part=(0, 2))
                v = validate_twin(half, lab, window=window, part=(1, 2), seed=seed, min_spans=min_spans)
                frame = v.endpoints.select(
                    "service",
                    "endpoint",
                    "n_captured",
                    "p50_ms",
                    "p50_sim_ms",
                    "p95_ms",
                    "p95_sim_ms",
                    "ks",
                ).with_columns(
                    p50=v.endpoints["p50_err"].map_elements(_pct, return_dtype=str),
                    p95=v.endpoints["p95_err"].map_elements(_pct, return_dtype=str),
                )
                console.print(
                    table("Held-out traces vs the twin (fit on the other half)", frame, max_rows=15)
                )
                e = v.edges.filter(v.edges["captured_per_request"] > 0).select(
                    "caller", "callee", "captured_per_request", "simulated_per_request"
                )
                console.print(table("Calls per request on each edge", e, max_rows=10, max_width=40))
                s = v.summary
                console.print(
                    "  ".join(
                        f"{k}: [bold]{v:.3g}[/]" if isinstance(v, float) else f"{k}: [bold]{v}[/]"
                        for k, v in s.items()
                    ),
                    highlight=False,
                )
            if faults_file:
                faults = json.loads(Path(faults_file).read_text())
                rows = []
                for f in faults if isinstance(faults, list) else []:
                    try:
                        r = rehearse(
                            report,
                            lab,
                            service=f["inject_service"],
                            kind=f["inject_type"],
                            at=int(f["inject_timestamp"]),
                            seed=seed,
                        )
                    except (OtlpLabError, KeyError, ValueError) as exc:
                        console.print(
                            f"[yellow]skipped[/] {f.get('inject_service')} at {f.get('inject_time')}: {exc}"
                        )
                        continue
                    rows.append(
                        {
                            "service": f["inject_service"],
                            "kind": f["inject_type"],
                            **r.summary,
                            "fault": r.calibration,
                        }
                    )
                if rows:
                    import polars as pl

                    console.print(
                        table(
                            "Captured faults replayed on the twin",
                            pl.DataFrame(rows),
                            max_rows=40,
                            max_width=44,
                        )
                    )
    except OtlpLabError as exc:
        fail(exc)
