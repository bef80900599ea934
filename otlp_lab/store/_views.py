"""Trace-analysis views every analyst needs, as DuckDB SQL over the ``spans`` table.

* ``span_parents``  each span with its parent's service and ``is_entry`` (the span where a
  request enters a service: a root, or a child of a span in another service).
* ``span_tree``     depth, root service and operation, and self time (duration minus the
  union of the children's intervals, clipped to the span).
* ``traces``        one row per trace: root, start, duration, spans, services, errors.
* ``service_graph`` caller -> callee edges with calls, errors and latency quantiles.
  Like Tempo's service graphs, an edge is a span whose parent lies in another service
  (a CLIENT span and the SERVER span it caused, when kinds are recorded); CLIENT or
  PRODUCER spans with no instrumented child add an edge to the peer they name
  (``peer.service``, ``db.system.name``/``db.system``, ``server.address``).
"""

from __future__ import annotations

VIEWS: dict[str, str] = {
    "span_parents": """
        SELECT s.*, p.service_name AS parent_service, p.name AS parent_name,
               (p.span_id IS NULL OR p.service_name IS DISTINCT FROM s.service_name) AS is_entry
        FROM spans s
        LEFT JOIN (SELECT DISTINCT ON (trace_id, span_id) trace_id, span_id, service_name, name FROM spans) p
          ON s.trace_id = p.trace_id AND s.parent_span_id = p.span_id""",
    "span_tree": """
        WITH RECURSIVE
        s AS (SELECT trace_id, span_id, parent_span_id, service_name, name, kind, start_time, end_time,
                     duration_ns, status_code, parent_service, is_entry FROM span_parents),
        tree AS (
            SELECT trace_id, span_id, 0 AS depth, service_name AS root_service, name AS root_name
            FROM s WHERE parent_span_id IS NULL OR parent_service IS NULL AND is_entry
            UNION ALL
            SELECT c.trace_id, c.span_id, t.depth + 1, t.root_service, t.root_name
            FROM tree t JOIN s c ON c.trace_id = t.trace_id AND c.parent_span_id = t.span_id
            WHERE t.depth < 512
        ),
        kids AS (
            SELECT c.trace_id, c.parent_span_id AS span_id,
                   greatest(c.start_time, p.start_time) AS s, least(c.end_time, p.end_time) AS e
            FROM spans c JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id
            WHERE least(c.end_time, p.end_time) > greatest(c.start_time, p.start_time)
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
        SELECT s.*, tree.depth, tree.root_service, tree.root_name,
               (s.duration_ns - coalesce(covered.covered_ns, 0))::BIGINT AS self_time_ns
        FROM s
        LEFT JOIN (SELECT DISTINCT ON (trace_id, span_id) * FROM tree) tree USING (trace_id, span_id)
        LEFT JOIN covered USING (trace_id, span_id)""",
    "traces": """
        SELECT trace_id,
               arg_min(service_name, start_time) FILTER (WHERE parent_span_id IS NULL) AS root_service,
               arg_min(name, start_time) FILTER (WHERE parent_span_id IS NULL) AS root_name,
               min(start_time) AS start_time,
               (epoch_ns(max(end_time)) - epoch_ns(min(start_time))) AS duration_ns,
               count(*) AS spans,
               count(DISTINCT service_name) AS services,
               count(*) FILTER (WHERE status_code = 'ERROR') AS errors
        FROM spans GROUP BY trace_id""",
    "service_graph": """
        WITH edges AS (
            SELECT parent_service AS client, service_name AS server, duration_ns, status_code = 'ERROR' AS error
            FROM span_parents WHERE parent_service IS NOT NULL AND is_entry
            UNION ALL
            SELECT s.service_name, coalesce(
                       s.attributes['peer.service']::VARCHAR, s.attributes['db.system.name']::VARCHAR,
                       s.attributes['db.system']::VARCHAR, s.attributes['server.address']::VARCHAR),
                   s.duration_ns, s.status_code = 'ERROR'
            FROM spans s
            WHERE s.kind IN ('CLIENT', 'PRODUCER')
              AND NOT EXISTS (SELECT 1 FROM spans c WHERE c.trace_id = s.trace_id AND c.parent_span_id = s.span_id
                              AND c.service_name IS DISTINCT FROM s.service_name)
              AND coalesce(s.attributes['peer.service'], s.attributes['db.system.name'],
                           s.attributes['db.system'], s.attributes['server.address']) IS NOT NULL
        )
        SELECT client, server, count(*) AS calls, count(*) FILTER (WHERE error) AS errors,
               round(count(*) FILTER (WHERE error) / count(*), 4) AS error_rate,
               round(quantile_cont(duration_ns, 0.50) / 1e6, 3) AS p50_ms,
               round(quantile_cont(duration_ns, 0.95) / 1e6, 3) AS p95_ms,
               round(quantile_cont(duration_ns, 0.99) / 1e6, 3) AS p99_ms
        FROM edges GROUP BY ALL""",
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
