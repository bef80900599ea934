"""The ``otlp-lab`` click group; each command module registers itself on it."""

from __future__ import annotations

from typing import Any

import click

from otlp_lab.errors import OtlpLabError


class _Group(click.Group):
    """A group that turns any library error a command lets through into a one-line message and exit 2:
    a user error never prints a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OtlpLabError as exc:
            from otlp_lab.cli._common import fail

            fail(exc)


@click.group(cls=_Group)
@click.version_option(package_name="otlp-lab")
def main() -> None:
    """otlp_lab: OpenTelemetry traces, metrics and logs in an embedded DuckDB database."""
