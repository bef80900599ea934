"""``otlp-lab alerts``: evaluate alert rules over a database, store them and send them on."""

from __future__ import annotations

import click

from otlp_lab.errors import OtlpLabError

from ._common import console, fail, table
from ._group import main


@main.command()
@click.option("--db", required=True, type=click.Path(exists=True, dir_okay=False), help="DuckDB file.")
@click.option(
    "--rules", "rules_file", required=True, type=click.Path(dir_okay=False), help="Alert rules (YAML)."
)
@click.option("--window", default="10s", show_default=True, help="Width of the evaluation windows.")
@click.option("--jsonl", type=click.Path(dir_okay=False), help="Append the alerts to this JSON-lines file.")
@click.option("--webhook", metavar="URL", help="POST them here in the Alertmanager webhook format.")
@click.option(
    "--store/--no-store", default=True, show_default=True, help="Keep them in the database's alerts table."
)
def alerts(
    db: str, rules_file: str, window: str, jsonl: str | None, webhook: str | None, store: bool
) -> None:
    """Evaluate alert RULES (threshold, rate of change, anomaly score, forecast breach) over a capture."""
    from otlp_lab import Lab
    from otlp_lab._config import parse_duration_s
    from otlp_lab.ml import JsonLinesSink, LogSink, WebhookSink, evaluate_alerts, load_rules, store_alerts

    try:
        rules = load_rules(rules_file)
        window_s = parse_duration_s(window, key="--window", positive=True)
        with Lab(db, read_only=not store) as lab:
            found = evaluate_alerts(lab, rules, window_s=window_s)
            if store and found.height:
                store_alerts(lab, found)
        LogSink().send(found)
        if jsonl:
            JsonLinesSink(jsonl).send(found)
        if webhook:
            WebhookSink(webhook).send(found)
    except OtlpLabError as exc:
        fail(exc)
    console.print(table(f"{found.height} alerts from {len(rules)} rules", found, max_rows=30, max_width=60))
