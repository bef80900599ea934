"""Checks on the SQL pieces users hand the Lab: one ``where`` expression, an integer ``limit``."""

from __future__ import annotations

from typing import Any

import duckdb

from otlp_lab._config import check_int
from otlp_lab.errors import ConfigError


def where_sql(where: str | None, *, what: str = "where") -> str | None:
    """``where`` as one SQL expression, re-printed by DuckDB's parser (None if empty).

    Exactly one expression is accepted: ``"true; DROP TABLE spans"`` (two statements),
    ``"a, b"`` (two expressions) and text that closes a parenthesis it did not open are
    refused, so a filter can never become another statement.

    Raises
    ------
    ConfigError
        ``where`` is not text, or not exactly one SQL expression.
    """
    if where is None:
        return None
    if not isinstance(where, str):
        raise ConfigError(f"{what} must be a SQL expression as text. Got {where!r} instead.")
    if not where.strip():
        return None
    try:
        expr = duckdb.SQLExpression(where)
    except duckdb.Error as exc:
        raise ConfigError(
            f"{what} must be one SQL expression such as \"service_name = 'cart'\" "
            f"(no ';', no second statement). Got {where!r} instead: {exc}"
        ) from None
    return str(expr)


def limit_sql(limit: Any, *, what: str = "limit") -> str:
    """``" LIMIT n"`` for a non-negative integer ``limit``, ``""`` for None."""
    if limit is None:
        return ""
    return f" LIMIT {check_int(limit, what, minimum=0)}"
