"""Compare spans: attribute frequencies of a selection against a baseline (like Tempo's ``compare()``),
and the structure of two traces (like Jaeger's trace comparison).

Attribute comparison: every span of the selection and of the baseline is broken down into
(attribute, value) pairs, over span attributes (``span.x``), resource attributes
(``resource.x``) and the intrinsics ``name``, ``status`` and ``kind``. For each pair: how many
spans of each group carry it, the share of the group's spans that is (its frequency), and the
difference of the two frequencies; pairs are ranked by the size of that difference, so the
values that set the selection apart come first. As in Tempo, the baseline defaults to every
span that is not in the selection, and only the ``top`` most frequent values of each attribute
are kept.

Trace diff: as in Jaeger's trace comparison, both traces are folded into one tree whose nodes
are call paths (``service:operation`` from the root down); each node gets its span count and
total time in trace A and in trace B, and a status: ``same``, ``changed`` (present in both,
different counts), ``only in a``, ``only in b``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from otlp_lab.errors import ConfigError

if TYPE_CHECKING:
    from otlp_lab.store._lab import Lab


def _span_set(spec: str) -> str:
    """SQL selecting (trace_id, span_id) for a TraceQL query (``{...}``) or a SQL condition on spans."""
    text = spec.strip()
    if not text:
        raise ConfigError(
            "compare(selection, baseline): a selection must be a TraceQL query or a SQL condition. Got ''."
        )
    if text.startswith("{") or text.startswith("("):
        from otlp_lab.store._traceql import compile_traceql

        return f"SELECT trace_id, span_id FROM ({compile_traceql(text)})"
    from otlp_lab.store._guard import where_sql

    return f"SELECT trace_id, span_id FROM unique_spans WHERE {where_sql(text, what='compare(selection/baseline)')}"


def compare_sql(selection: str, baseline: str | None, top: int) -> str:
    sel = _span_set(selection)
    base = (
        _span_set(baseline)
        if baseline is not None
        else f"SELECT trace_id, span_id FROM unique_spans EXCEPT {sel}"
    )
    return f"""
        WITH sel AS MATERIALIZED ({sel}),
        base AS MATERIALIZED ({base}),
        tagged AS (
            SELECT 'selection' AS grp, u.* FROM unique_spans u
            WHERE EXISTS (SELECT 1 FROM sel WHERE sel.trace_id = u.trace_id AND sel.span_id = u.span_id)
            UNION ALL
            SELECT 'baseline', u.* FROM unique_spans u
            WHERE EXISTS (SELECT 1 FROM base WHERE base.trace_id = u.trace_id AND base.span_id = u.span_id)),
        totals AS (SELECT grp, count(*) AS n FROM tagged GROUP BY grp),
        pairs AS (
            SELECT grp, 'span.' || e.key AS attribute, e.value::VARCHAR AS value
            FROM (SELECT grp, unnest(map_entries(attributes)) AS e FROM tagged)
            UNION ALL
            SELECT grp, 'resource.' || e.key, e.value::VARCHAR
            FROM (SELECT grp, unnest(map_entries(resource_attributes)) AS e FROM tagged)
            UNION ALL SELECT grp, 'name', name FROM tagged
            UNION ALL SELECT grp, 'status', lower(status_code) FROM tagged
            UNION ALL SELECT grp, 'kind', lower(kind) FROM tagged),
        counts AS (
            SELECT attribute, value,
                   count(*) FILTER (WHERE grp = 'selection') AS selection,
                   count(*) FILTER (WHERE grp = 'baseline') AS baseline
            FROM pairs WHERE value IS NOT NULL GROUP BY ALL),
        ranked AS (
            SELECT *, row_number() OVER (PARTITION BY attribute ORDER BY selection + baseline DESC, value) AS nth
            FROM counts)
        SELECT attribute, value, selection, baseline, selection_share, baseline_share,
               round(selection_share - baseline_share, 4) AS difference
        FROM (
            SELECT r.*, round(selection / greatest(ts.n, 1), 4) AS selection_share,
                   round(baseline / greatest(tb.n, 1), 4) AS baseline_share
            FROM ranked r
            CROSS JOIN (SELECT coalesce(max(n) FILTER (WHERE grp = 'selection'), 0) AS n FROM totals) ts
            CROSS JOIN (SELECT coalesce(max(n) FILTER (WHERE grp = 'baseline'), 0) AS n FROM totals) tb
            WHERE nth <= {int(top)})
        ORDER BY abs(difference) DESC, attribute, value"""


def trace_diff(lab: Lab, trace_a: str, trace_b: str) -> pl.DataFrame:
    """Jaeger-style structural diff of two traces (see the module doc)."""
    nodes: dict[str, dict] = {}
    for side, tid in (("a", trace_a), ("b", trace_b)):
        spans = lab.sql(
            "SELECT span_id, parent_span_id, service_name, name, duration_ns, start_time FROM unique_spans "
            "WHERE trace_id = ? ORDER BY start_time, span_id",
            [tid],
        )
        if spans.is_empty():
            raise ConfigError(f"trace {tid!r} is not in the database. Pick one from lab.traces().")
        rows = {r["span_id"]: r for r in spans.to_dicts()}
        paths = _call_paths(rows)
        for sid, r in rows.items():
            path, depth = paths[sid]
            node = nodes.setdefault(
                path,
                {
                    "path": path,
                    "depth": depth,
                    "service_name": r["service_name"],
                    "name": r["name"],
                    "count_a": 0,
                    "count_b": 0,
                    "total_ms_a": 0.0,
                    "total_ms_b": 0.0,
                },
            )
            node[f"count_{side}"] += 1
            node[f"total_ms_{side}"] += (r["duration_ns"] or 0) / 1e6
    out = pl.DataFrame(
        list(nodes.values()),
        schema={
            "path": pl.String,
            "depth": pl.Int32,
            "service_name": pl.String,
            "name": pl.String,
            "count_a": pl.Int64,
            "count_b": pl.Int64,
            "total_ms_a": pl.Float64,
            "total_ms_b": pl.Float64,
        },
    )
    return out.with_columns(
        (pl.col("count_b") - pl.col("count_a")).alias("count_delta"),
        (pl.col("total_ms_b") - pl.col("total_ms_a")).round(3).alias("ms_delta"),
        pl.when(pl.col("count_a") == 0)
        .then(pl.lit("only in b"))
        .when(pl.col("count_b") == 0)
        .then(pl.lit("only in a"))
        .when(pl.col("count_a") != pl.col("count_b"))
        .then(pl.lit("changed"))
        .otherwise(pl.lit("same"))
        .alias("status"),
    ).sort("path")


def _call_paths(rows: dict[str, dict]) -> dict[str, tuple[str, int]]:
    """Per span: its call path (``service:operation`` from its root down) and depth."""
    paths: dict[str, tuple[str, int]] = {}
    for sid in rows:
        chain: list[str] = []
        cur: str | None = sid
        seen: set[str] = set()
        p, d = "", -1
        while cur is not None and cur in rows and cur not in seen:
            if cur in paths:
                p, d = paths[cur]
                break
            seen.add(cur)
            chain.append(cur)
            parent = rows[cur]["parent_span_id"]
            cur = parent if parent != cur else None
        for c in reversed(chain):
            r = rows[c]
            step = f"{r['service_name']}:{r['name']}"
            p = f"{p} > {step}" if p else step
            d += 1
            paths[c] = (p, d)
    return paths
