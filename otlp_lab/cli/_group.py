"""The ``otlp-lab`` click group; each command module registers itself on it."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="otlp-lab")
def main() -> None:
    """otlp_lab: OpenTelemetry traces, metrics and logs in an embedded DuckDB database."""
