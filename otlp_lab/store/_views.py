"""Trace-analysis views every analyst needs, as DuckDB SQL over the ``spans`` table.

Duplicates: the ``spans`` table keeps every row loaded (overlapping captures often hold the
same span twice). Every view below reads ``unique_spans`` instead, which keeps one row per
``(trace_id, span_id)`` (the first loaded), so a span loaded twice counts once everywhere.

* ``unique_spans``  ``spans`` without repeated ``(trace_id, span_id)``.
* ``span_parents``  each span with its parent's service and ``is_entry`` (the span where a
  request enters a service: a root, or a child of a span in another service).
* ``span_tree``     depth, root service and operation, and self time (duration minus the
  union of the children's intervals, clipped to the span).
* ``traces``        one row per trace: root, start, duration, spans, services, errors.
* ``service_graph`` caller -> callee edges (see :mod:`otlp_lab.store._servicegraph`), with a
  ``mode`` column: ``tempo`` (Tempo's exact pairing rules, when the capture records span kinds)
  or ``inferred`` (service boundaries, for captures without span kinds).
"""

from __future__ import annotations

from otlp_lab.store._servicegraph import SERVICE_GRAPH_VIEWS

UNIQUE_SPANS = """
    SELECT * FROM spans
    QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY load_id, start_time) = 1"""


def span_tree_sql(where: str | None = None) -> str:
    """The ``span_tree`` query over ``unique_spans`` (optionally only rows matching ``where``, e.g. one trace).

    The filter is applied before the recursion, so one trace costs milliseconds.
    """
    cols = "trace_id, span_id, parent_span_id, service_name, name, kind, start_time, end_time, duration_ns, status_code"
    # Filter before removing duplicates, so one trace reads only its own rows.
    base = (
        f"SELECT {cols} FROM spans"
        + (f" WHERE {where}" if where else "")
        + " QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY load_id, start_time) = 1"
    )
    return f"""
        WITH RECURSIVE
        u AS MATERIALIZED ({base}),
        s AS MATERIALIZED (
            SELECT u.*, p.service_name AS parent_service,
                   p.span_id IS NULL AS orphan,
                   (p.span_id IS NULL OR p.service_name IS DISTINCT FROM u.service_name) AS is_entry,
                   greatest(u.start_time, p.start_time) AS cs, least(u.end_time, p.end_time) AS ce
            FROM u LEFT JOIN u p ON u.trace_id = p.trace_id AND u.parent_span_id = p.span_id
                                 AND u.parent_span_id IS DISTINCT FROM u.span_id),
        tree AS (
            SELECT trace_id, span_id, 0 AS depth, service_name AS root_service, name AS root_name
            FROM s WHERE orphan
            UNION ALL
            SELECT c.trace_id, c.span_id, t.depth + 1, t.root_service, t.root_name
            FROM tree t JOIN s c ON c.trace_id = t.trace_id AND c.parent_span_id = t.span_id
            WHERE NOT c.orphan AND t.depth < 512
        ),
        kids AS (
            SELECT trace_id, parent_span_id AS span_id, cs AS s, ce AS e FROM s
            WHERE NOT orphan AND ce > cs
        ),
        ordered AS (
            SELECT *, max(e) OVER (PARTITION BY trace_id, span_id ORDER BY s, e
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_e
            FROM kids
        ),
        islands AS (
            SELECT *, sum(CASE WHEN prev_e IS NULL OR s > prev_e THEN 1 ELSE 0 END)
                      OVER (PARTITION BY trace_id, span_id ORDER BY s, e ROWS UNBOUNDED PRECEDING) AS grp
            FROM ordered
        ),
        covered AS (
            SELECT trace_id, span_id, sum(epoch_ns(e) - epoch_ns(s)) AS covered_ns
            FROM (SELECT trace_id, span_id, grp, min(s) AS s, max(e) AS e FROM islands GROUP BY ALL)
            GROUP BY ALL
        )
        SELECT s.* EXCLUDE (orphan, cs, ce), tree.depth, tree.root_service, tree.root_name,
               (s.duration_ns - coalesce(covered.covered_ns, 0))::BIGINT AS self_time_ns
        FROM s
        LEFT JOIN (SELECT DISTINCT ON (trace_id, span_id) * FROM tree ORDER BY trace_id, span_id, depth) tree
          USING (trace_id, span_id)
        LEFT JOIN covered USING (trace_id, span_id)"""


VIEWS: dict[str, str] = {
    "unique_spans": UNIQUE_SPANS,
    "span_parents": """
        SELECT s.*, p.service_name AS parent_service, p.name AS parent_name,
               (p.span_id IS NULL OR p.service_name IS DISTINCT FROM s.service_name) AS is_entry
        FROM unique_spans s
        LEFT JOIN unique_spans p
          ON s.trace_id = p.trace_id AND s.parent_span_id = p.span_id""",
    "span_tree": span_tree_sql(),
    "traces": """
        SELECT trace_id,
               arg_min(service_name, start_time) FILTER (WHERE parent_span_id IS NULL) AS root_service,
               arg_min(name, start_time) FILTER (WHERE parent_span_id IS NULL) AS root_name,
               min(start_time) AS start_time,
               (epoch_ns(max(end_time)) - epoch_ns(min(start_time))) AS duration_ns,
               count(*) AS spans,
               count(DISTINCT service_name) AS services,
               count(*) FILTER (WHERE status_code = 'ERROR') AS errors
        FROM unique_spans GROUP BY trace_id""",
    **SERVICE_GRAPH_VIEWS,
}


def red_sql(window_s: float, by: tuple[str, ...], entry_only: bool) -> str:
    """RED (rate, errors, duration) per ``by`` columns and time window."""
    cols = ", ".join(by)
    where = "WHERE is_entry" if entry_only else ""
    return f"""
        SELECT time_bucket(to_microseconds({int(window_s * 1e6)}), start_time::TIMESTAMP) AS window_start, {cols},
               count(*) AS requests, round(count(*) / {window_s}, 4) AS rate_per_s,
               count(*) FILTER (WHERE status_code = 'ERROR') AS errors,
               round(count(*) FILTER (WHERE status_code = 'ERROR') / count(*), 4) AS error_rate,
               round(quantile_cont(duration_ns, 0.50) / 1e6, 3) AS p50_ms,
               round(quantile_cont(duration_ns, 0.95) / 1e6, 3) AS p95_ms,
               round(quantile_cont(duration_ns, 0.99) / 1e6, 3) AS p99_ms
        FROM span_parents {where}
        GROUP BY ALL ORDER BY window_start, {cols}"""
