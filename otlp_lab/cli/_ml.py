"""``otlp-lab ml evaluate``: score anomaly detectors and root-cause rankers against labelled faults."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._common import console, fail, table
from ._group import main


@main.group()
def ml() -> None:
    """Anomaly detection and root-cause ranking (otlp_lab.ml)."""


@ml.command()
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--suite",
    is_flag=True,
    help="Evaluate on the simulated suite (six fault kinds and retry storms x seeds) instead of a folder.",
)
@click.option("--seeds", default="1,2,3", show_default=True, help="With --suite: seeds, comma-separated.")
@click.option(
    "--window", "window_s", type=float, help="Detection window, seconds (5 for the suite, 10 for a folder)."
)
@click.option(
    "--after",
    "after_s",
    type=float,
    default=120.0,
    show_default=True,
    help="Seconds a fault counts as active after injection.",
)
@click.option(
    "--before",
    "before_s",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds before injection used as baseline.",
)
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False), help="Also write the results as JSON here."
)
@click.option(
    "--cases/--no-cases", default=False, show_default=True, help="Print the rank of the true cause per case."
)
def evaluate(
    folder: str | None,
    suite: bool,
    seeds: str,
    window_s: float | None,
    after_s: float,
    before_s: float,
    json_out: str | None,
    cases: bool,
) -> None:
    """Score detectors (window F1, ROC-AUC, delay) and rankers (AC@k) on FOLDER or the simulated suite.

    FOLDER is laid out like the TrainTicket dataset: faulty/ (OTLP traces), optional normal/, logs/
    and metrics/, and faults.json (inject_timestamp in Unix seconds, inject_service, inject_pod,
    inject_type).
    """
    from otlp_lab.errors import OtlpLabError
    from otlp_lab.ml import evaluate as run_evaluation
    from otlp_lab.ml import suite_cases

    if (folder is None) == (not suite):
        fail(click.UsageError("give either FOLDER or --suite (not both)."))
    try:
        if suite:
            try:
                seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
            except ValueError:
                fail(
                    click.BadParameter(
                        f"--seeds must be integers separated by commas. Got {seeds!r} instead."
                    )
                )
            source = suite_cases(seeds=seed_list)
        else:
            source = Path(folder)  # type: ignore[arg-type]
        with console.status("evaluating..."):
            ev = run_evaluation(source, window_s=window_s, after_s=after_s, before_s=before_s)
    except OtlpLabError as exc:
        fail(exc)
    s = ev.settings
    console.print(f"[bold]{s['source']}[/]: {s['cases']} cases, windows of {s['window_s']:g} s")
    console.print(table("Detection (windows)", ev.detection))
    console.print(table("Root-cause ranking", ev.ranking))
    console.print("ac@k: share of faults whose service ranks in the top k; pod_ac@k: the same for the pod.")
    if cases:
        console.print(table("Rank of the true cause", ev.cases.drop("seconds"), max_rows=500))
    if json_out:
        Path(json_out).write_text(json.dumps(ev.to_dict(), indent=2, default=str), encoding="utf-8")
        console.print(f"wrote {json_out}")
