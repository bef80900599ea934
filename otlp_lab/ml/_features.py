"""Features for anomaly detection and root-cause ranking, from any Lab, as Polars frames.

Everything starts from :func:`span_frame`: one row per span with its exclusive (self) time
and where that time and its errors belong. A span whose child runs in another service
(a client call) or that named a peer it never reached is an *edge* span: its own time is
the gap around the callee (network, queueing, a timeout) and its origin is the pair
caller -> callee. Every other span is a *self* span of its own service. The frames
aggregate it per time window in Polars (vectorised; no Python loop per span).

The simulator marks faulty spans and writes fault start/end logs (``sim.fault.*``); they
are ground truth, so nothing here reads them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

from otlp_lab.errors import ConfigError

__all__ = [
    "span_frame",
    "window_features",
    "log_features",
    "metric_features",
    "trace_features",
    "normal_stats",
    "LogTemplates",
]

#: Span, log and metric attributes that carry ground truth in simulated runs: never used as features.
GROUND_TRUTH_PREFIX = "sim.fault"

Time = dt.datetime | str | int | None


def _ts(value: Time, name: str) -> str | None:
    """A SQL TIMESTAMP_NS literal for a datetime, an ISO string or Unix nanoseconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(
            f"{name} must be a datetime, an ISO time or Unix nanoseconds. Got {value!r} instead."
        )
    if isinstance(value, int):
        return f"make_timestamp_ns({value})"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return f"'{value.isoformat(sep=' ')}'::TIMESTAMP_NS"
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(
                f"{name} must be a datetime, an ISO time or Unix nanoseconds. Got {value!r} instead."
            ) from None
        return _ts(parsed, name)
    raise ConfigError(f"{name} must be a datetime, an ISO time or Unix nanoseconds. Got {value!r} instead.")


def _where(column: str, start: Time, end: Time, where: str | None) -> str:
    parts = []
    if (s := _ts(start, "start")) is not None:
        parts.append(f"{column} >= {s}")
    if (e := _ts(end, "end")) is not None:
        parts.append(f"{column} < {e}")
    if where:
        parts.append(f"({where})")
    return " AND ".join(parts) or "true"


def _window_s(window_s: float) -> float:
    if isinstance(window_s, bool) or not isinstance(window_s, (int, float)) or not window_s > 0:
        raise ConfigError(f"window_s must be a positive number of seconds. Got {window_s!r} instead.")
    return float(window_s)


def _bucket(col: str, window_s: float) -> pl.Expr:
    """Epoch-aligned window start of a Datetime column (the same grid for spans, logs and metrics)."""
    w = int(round(window_s * 1e9))
    ns = pl.col(col).dt.cast_time_unit("ns").cast(pl.Int64)
    return ((ns // w) * w).cast(pl.Datetime("ns")).alias("window_start")


_POD = (
    "coalesce(resource_attributes['k8s.pod.name']::VARCHAR, "
    "resource_attributes['service.instance.id']::VARCHAR, service_name)"
)

_SPANS_SQL = """
WITH s AS MATERIALIZED (
    SELECT trace_id, span_id, parent_span_id, service_name AS service, {pod} AS pod, name AS operation,
           start_time, end_time, duration_ns, status_code = 'ERROR' AS error,
           coalesce(TRY_CAST(attributes['http.request.resend_count']::VARCHAR AS BIGINT), 0) > 0 AS retry,
           attributes['peer.service']::VARCHAR AS peer_attr, attributes['server.address']::VARCHAR AS addr_attr,
           regexp_matches(lower(coalesce(attributes['error.type']::VARCHAR, '') || ' ' || coalesce(status_message, '')),
                          '{local_reject}') AS local_reject
    FROM spans WHERE {where}),
kids AS (
    SELECT c.trace_id, c.parent_span_id AS span_id,
           greatest(c.start_time, p.start_time) AS cs, least(c.end_time, p.end_time) AS ce,
           c.service IS DISTINCT FROM p.service AS remote, c.service AS child_service, c.pod AS child_pod,
           c.error AS child_error, c.span_id AS child_span_id
    FROM s c JOIN s p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id),
seq AS (
    SELECT *, lead(cs) OVER w AS next_cs, max(ce) OVER (w ROWS UNBOUNDED PRECEDING) AS run_ce
    FROM kids WINDOW w AS (PARTITION BY trace_id, span_id ORDER BY cs, ce)),
waits AS (  -- idle time after a failed call until the next one starts: waiting caused by the failure
    SELECT trace_id, span_id, child_span_id, greatest(epoch_ns(next_cs) - epoch_ns(run_ce), 0) AS wait_ns
    FROM seq WHERE child_error AND next_cs IS NOT NULL AND next_cs > run_ce),
parent_wait AS (SELECT trace_id, span_id, sum(wait_ns) AS wait_ns FROM waits GROUP BY ALL),
child_wait AS (SELECT trace_id, child_span_id AS span_id, sum(wait_ns) AS wait_ns FROM waits GROUP BY ALL),
ordered AS (
    SELECT trace_id, span_id, cs, ce,
           max(ce) OVER (PARTITION BY trace_id, span_id ORDER BY cs, ce
                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_e
    FROM kids WHERE ce > cs),
islands AS (
    SELECT *, sum(CASE WHEN prev_e IS NULL OR cs > prev_e THEN 1 ELSE 0 END)
              OVER (PARTITION BY trace_id, span_id ORDER BY cs, ce ROWS UNBOUNDED PRECEDING) AS grp
    FROM ordered),
covered AS (
    SELECT trace_id, span_id, sum(epoch_ns(e) - epoch_ns(b)) AS covered_ns
    FROM (SELECT trace_id, span_id, grp, min(cs) AS b, max(ce) AS e FROM islands GROUP BY ALL)
    GROUP BY ALL),
kid_info AS (
    SELECT trace_id, span_id, count(*) AS children, bool_or(remote) AS has_remote,
           arg_max(child_service, epoch_ns(ce) - epoch_ns(cs)) FILTER (WHERE remote) AS remote_service,
           arg_max(child_pod, epoch_ns(ce) - epoch_ns(cs)) FILTER (WHERE remote) AS remote_pod,
           bool_or(child_error) AS child_error
    FROM kids GROUP BY ALL),
parents AS (SELECT DISTINCT ON (trace_id, span_id) trace_id, span_id, service FROM s)
SELECT s.start_time AS time, s.trace_id, s.span_id, s.parent_span_id, s.service, s.pod, s.operation,
       s.duration_ns / 1e6 AS duration_ms,
       (greatest(s.duration_ns - coalesce(covered.covered_ns, 0) - coalesce(pw.wait_ns, 0), 0)
        + coalesce(cw.wait_ns, 0)) / 1e6 AS self_ms,
       s.error, s.retry,
       (p.service IS NULL OR p.service IS DISTINCT FROM s.service) AS is_entry,
       p.service AS parent_service,
       CASE WHEN coalesce(k.has_remote, false) OR (k.children IS NULL AND s.peer_attr IS NOT NULL)
            THEN 'edge' ELSE 'self' END AS unit,
       coalesce(k.remote_service, s.peer_attr) AS peer_service,
       coalesce(k.remote_pod, s.addr_attr) AS peer_pod,
       s.error AND NOT coalesce(k.child_error, false) AND NOT s.local_reject AS origin_error
FROM s
LEFT JOIN covered USING (trace_id, span_id)
LEFT JOIN parent_wait pw ON pw.trace_id = s.trace_id AND pw.span_id = s.span_id
LEFT JOIN child_wait cw ON cw.trace_id = s.trace_id AND cw.span_id = s.span_id
LEFT JOIN kid_info k USING (trace_id, span_id)
LEFT JOIN parents p ON p.trace_id = s.trace_id AND p.span_id = s.parent_span_id
ORDER BY s.start_time
"""


#: Errors a client-side policy raised locally (a breaker open, a bulkhead or rate limit full, a retry
#: budget spent): consequences of trouble elsewhere, never where a failure started.
LOCAL_REJECT = "circuit|breaker|overflow|bulkhead|budget|rate.?limit|rejected|shed"


def span_frame(lab: Any, *, start: Time = None, end: Time = None, where: str | None = None) -> pl.DataFrame:
    """One row per span with its exclusive time and the component its time and errors belong to.

    Parameters
    ----------
    lab : Lab
    start, end : datetime, ISO string or Unix ns, optional
        Spans that start in ``[start, end)``.
    where : str, optional
        An extra SQL predicate on the ``spans`` table, e.g.
        ``"resource_attributes['sim.run_id']::VARCHAR = 'shop/default/seed=1'"``.

    Returns
    -------
    polars.DataFrame
        ``time`` (span start), ``trace_id``, ``span_id``, ``parent_span_id``, ``service``, ``pod``
        (``k8s.pod.name``, else ``service.instance.id``, else the service), ``operation``,
        ``duration_ms``, ``self_ms`` (duration minus the union of its children's intervals; the idle
        time after a failed call until the parent's next call, a retry's backoff, moves from the
        parent to the failed call, whose failure caused the wait),
        ``error``, ``retry`` (``http.request.resend_count`` > 0), ``is_entry`` (a root, or a child
        of another service's span), ``parent_service``, ``unit`` (``"edge"`` for a call to another
        service, ``"self"`` otherwise), ``peer_service`` / ``peer_pod`` (the callee of an edge span:
        its child's service and pod, else ``peer.service`` / ``server.address``) and ``origin_error``
        (an error none of whose children failed, and not a local rejection such as a circuit breaker
        open (:data:`LOCAL_REJECT` on ``error.type`` or the status message): where the failure started).

    Examples
    --------
    >>> from otlp_lab import Lab
    >>> from otlp_lab.sim import run
    >>> lab = Lab(); _ = run("shop", lab=lab, seed=1, duration_s=5)   # doctest: +SKIP
    >>> span_frame(lab).select("service", "operation", "self_ms", "unit", "peer_service").head(3)  # doctest: +SKIP
    """
    sql = _SPANS_SQL.format(
        pod=_POD, where=_where("start_time", start, end, where), local_reject=LOCAL_REJECT
    )
    return lab.sql(sql)


_SPAN_AGG = [
    pl.len().alias("requests"),
    pl.col("error").sum().alias("errors"),
    pl.col("error").mean().alias("error_ratio"),
    pl.col("duration_ms").quantile(0.5, "linear").alias("p50_ms"),
    pl.col("duration_ms").quantile(0.95, "linear").alias("p95_ms"),
    pl.col("duration_ms").quantile(0.99, "linear").alias("p99_ms"),
    pl.col("self_ms").mean().alias("self_mean_ms"),
]


def window_features(
    source: Any,
    *,
    window_s: float = 10.0,
    by: str = "service",
    start: Time = None,
    end: Time = None,
    where: str | None = None,
) -> pl.DataFrame:
    """Request rate, error ratio, latency p50/p95/p99 and retry ratio per time window.

    Parameters
    ----------
    source : Lab or polars.DataFrame
        A Lab, or a :func:`span_frame` already read.
    window_s : float
        Window width in seconds (windows are aligned on the Unix epoch).
    by : {"service", "operation", "pod"}
        ``"service"`` counts the requests entering each service (its entry spans: one per call);
        ``"operation"`` every span per ``(service, operation)``; ``"pod"`` entry spans per
        ``(service, pod)``.
    start, end, where
        As for :func:`span_frame` (ignored when ``source`` is a frame).

    Returns
    -------
    polars.DataFrame
        ``window_start``, the ``by`` keys, ``requests``, ``rate_per_s``, ``errors``, ``error_ratio``,
        ``p50_ms``, ``p95_ms``, ``p99_ms``, ``self_mean_ms`` (mean exclusive time) and
        ``retry_ratio`` (share of the calls this service or operation sent that were resends).
    """
    w = _window_s(window_s)
    keys = {"service": ["service"], "operation": ["service", "operation"], "pod": ["service", "pod"]}
    if by not in keys:
        raise ConfigError(f"by must be one of {sorted(keys)}. Got {by!r} instead.")
    spans = (
        source if isinstance(source, pl.DataFrame) else span_frame(source, start=start, end=end, where=where)
    )
    spans = spans.with_columns(_bucket("time", w))
    k = ["window_start", *keys[by]]
    base = spans.filter(pl.col("is_entry")) if by != "operation" else spans
    main = base.group_by(k).agg(_SPAN_AGG)
    calls = (
        spans.filter(pl.col("unit") == "edge")
        .group_by(k)
        .agg(pl.len().alias("calls"), pl.col("retry").sum().alias("retries"))
    )
    out = main.join(calls, on=k, how="full", coalesce=True).with_columns(
        pl.col("requests").fill_null(0),
        pl.col("errors").fill_null(0),
        (pl.col("requests").fill_null(0) / w).alias("rate_per_s"),
        (pl.col("retries") / pl.col("calls")).fill_null(0.0).alias("retry_ratio"),
    )
    cols = [*k, "requests", "rate_per_s", "errors", "error_ratio", "p50_ms", "p95_ms", "p99_ms"]
    return out.select(*cols, "self_mean_ms", "retry_ratio").sort(k)


# ---------------------------------------------------------------- logs

_MASKS = [
    (r"\b[0-9a-fA-F]{16,}\b", "<HEX>"),
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<UUID>"),
    (r"\d+(\.\d+)?", "<NUM>"),
]


class LogTemplates:
    """Log templates mined with Drain (the maintained ``drain3`` miner), after masking ids and numbers.

    Bodies are masked in DuckDB (hex ids, UUIDs, numbers) and deduplicated before Drain sees
    them, so mining 100k lines costs a few thousand Drain calls. Fit on one period and
    :meth:`match` another: a line that fits no known template gets template id -1.

    Parameters
    ----------
    sim_th : float
        Drain's similarity threshold (drain3's default 0.4).
    depth : int
        Drain's parse-tree depth (drain3's default 4).
    max_chars : int
        Bodies are cut to this many characters before mining (long payload dumps add nothing).
    """

    def __init__(self, *, sim_th: float = 0.4, depth: int = 4, max_chars: int = 300) -> None:
        try:
            from drain3 import TemplateMiner
            from drain3.template_miner_config import TemplateMinerConfig
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "log templates need drain3: pip install 'otlp-lab[lab]' (or pip install drain3)."
            ) from exc
        cfg = TemplateMinerConfig()
        cfg.drain_sim_th = sim_th
        cfg.drain_depth = depth
        cfg.profiling_enabled = False
        self.max_chars = max_chars
        self._miner = TemplateMiner(config=cfg)

    def add(self, masked: Iterable[str]) -> list[int]:
        """Mine (learn from) masked lines; return each line's template id."""
        return [self._miner.add_log_message(m)["cluster_id"] for m in masked]

    def match(self, masked: Iterable[str]) -> list[int]:
        """Template id of each masked line without learning (-1 when none fits)."""
        out = []
        for m in masked:
            c = self._miner.match(m, full_search_strategy="fallback")
            out.append(c.cluster_id if c is not None else -1)
        return out

    def templates(self) -> pl.DataFrame:
        """``template_id``, ``template`` and ``size`` (lines mined into it)."""
        rows = [(c.cluster_id, c.get_template(), c.size) for c in self._miner.drain.clusters]
        return pl.DataFrame(
            rows, schema={"template_id": pl.Int64, "template": pl.String, "size": pl.Int64}, orient="row"
        )

    def mask_sql(self, expr: str) -> str:
        """DuckDB SQL that masks a text expression the way the miner expects."""
        out = f"left({expr}, {int(self.max_chars)})"
        for pattern, repl in _MASKS:
            out = f"regexp_replace({out}, '{pattern}', '{repl}', 'g')"
        return out


def log_features(
    lab: Any,
    *,
    window_s: float = 10.0,
    start: Time = None,
    end: Time = None,
    where: str | None = None,
    templates: LogTemplates | None = None,
    learn: bool = True,
) -> pl.DataFrame:
    """Log records per window, service, pod, severity and mined template.

    Parameters
    ----------
    lab : Lab
    window_s : float
    start, end, where
        Which records (``where`` is a SQL predicate on the ``logs`` table).
    templates : LogTemplates, optional
        A miner to reuse (fit on a normal period, say); a new one otherwise.
    learn : bool
        Let the miner learn templates from these records (``False``: match only; unknown lines
        get template -1, itself a signal).

    Returns
    -------
    polars.DataFrame
        ``window_start``, ``service``, ``pod``, ``severity`` (``severity_text``, else derived from
        ``severity_number``), ``template_id``, ``template``, ``count``.
    """
    w = _window_s(window_s)
    miner = templates if templates is not None else LogTemplates()
    cond = _where("time", start, end, where)
    cond += f" AND coalesce(event_name, '') NOT LIKE '{GROUND_TRUTH_PREFIX}%'"
    masked = miner.mask_sql(
        "CASE WHEN variant_typeof(body) = 'VARCHAR' THEN body::VARCHAR ELSE body::JSON::VARCHAR END"
    )
    sev = (
        "coalesce(nullif(upper(severity_text), ''), CASE WHEN severity_number >= 17 THEN 'ERROR' "
        "WHEN severity_number >= 13 THEN 'WARN' WHEN severity_number >= 9 THEN 'INFO' "
        "WHEN severity_number >= 1 THEN 'DEBUG' ELSE 'UNSPECIFIED' END)"
    )
    us = int(round(w * 1e6))
    rows = lab.sql(
        f"""SELECT time_bucket(to_microseconds({us}), time::TIMESTAMP, TIMESTAMP '1970-01-01') AS window_start,
                   service_name AS service, {_POD} AS pod, {sev} AS severity, {masked} AS masked, count(*) AS count
            FROM logs WHERE {cond} GROUP BY ALL"""
    )
    schema = {
        "window_start": pl.Datetime("ns"),
        "service": pl.String,
        "pod": pl.String,
        "severity": pl.String,
        "template_id": pl.Int64,
        "template": pl.String,
        "count": pl.Int64,
    }
    if rows.is_empty():
        return pl.DataFrame(schema=schema)
    distinct = rows.get_column("masked").unique(maintain_order=True).to_list()
    ids = miner.add(distinct) if learn else miner.match(distinct)
    lookup = pl.DataFrame({"masked": distinct, "template_id": pl.Series(ids, dtype=pl.Int64)})
    tmpl = miner.templates().select("template_id", "template")
    return (
        rows.join(lookup, on="masked", how="left")
        .join(tmpl, on="template_id", how="left")
        .group_by("window_start", "service", "pod", "severity", "template_id", "template")
        .agg(pl.col("count").sum())
        .with_columns(pl.col("window_start").cast(pl.Datetime("ns")), pl.col("count").cast(pl.Int64))
        .select(list(schema))
        .sort("window_start", "service", "template_id")
    )


# ---------------------------------------------------------------- metrics


def metric_features(
    lab: Any,
    *,
    window_s: float = 10.0,
    start: Time = None,
    end: Time = None,
    where: str | None = None,
    metrics: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Gauges (and the rate of monotonic sums) per window, service and pod, on the same grid as spans.

    Parameters
    ----------
    lab : Lab
    window_s : float
    start, end, where
        Which points (``where`` is a SQL predicate on the metric tables).
    metrics : sequence of str, optional
        Only these metric names.

    Returns
    -------
    polars.DataFrame
        ``window_start``, ``service``, ``pod``, ``metric``, ``value`` (mean of the gauge's points in
        the window; for a cumulative monotonic sum, its increase per second). A point whose
        attributes name a peer (``peer.service``) becomes metric ``name{peer}``.
    """
    w = _window_s(window_s)
    cond = _where("time", start, end, where)
    if metrics:
        names = ", ".join("'" + m.replace("'", "''") + "'" for m in metrics)
        cond += f" AND metric_name IN ({names})"
    us = int(round(w * 1e6))
    name = "metric_name || coalesce('{' || (attributes['peer.service']::VARCHAR) || '}', '')"
    bucket = f"time_bucket(to_microseconds({us}), time::TIMESTAMP, TIMESTAMP '1970-01-01')"
    gauges = lab.sql(
        f"""SELECT {bucket} AS window_start, service_name AS service, {_POD} AS pod, {name} AS metric,
                   avg(coalesce(value, int_value::DOUBLE)) AS value
            FROM metric_gauge WHERE {cond} GROUP BY ALL"""
    )
    sums = lab.sql(
        f"""WITH p AS (
                SELECT service_name AS service, {_POD} AS pod, {name} AS metric, time,
                       coalesce(value, int_value::DOUBLE) AS v, aggregation_temporality AS temp
                FROM metric_sum WHERE {cond} AND is_monotonic),
            d AS (SELECT *, CASE WHEN temp = 'DELTA' THEN v
                            ELSE v - lag(v) OVER (PARTITION BY service, pod, metric ORDER BY time) END AS inc,
                         epoch(time - lag(time) OVER (PARTITION BY service, pod, metric ORDER BY time)) AS dt_s
                  FROM p)
            SELECT {bucket} AS window_start, service, pod, metric || '.rate' AS metric,
                   sum(greatest(inc, 0)) / nullif(sum(dt_s), 0) AS value
            FROM d WHERE inc IS NOT NULL GROUP BY ALL"""
    )
    frames = [
        f.with_columns(pl.col("window_start").cast(pl.Datetime("ns")))
        for f in (gauges, sums)
        if not f.is_empty()
    ]
    schema = {
        "window_start": pl.Datetime("ns"),
        "service": pl.String,
        "pod": pl.String,
        "metric": pl.String,
        "value": pl.Float64,
    }
    if not frames:
        return pl.DataFrame(schema=schema)
    return (
        pl.concat([f.select(list(schema)).cast(schema) for f in frames])
        .drop_nulls("value")
        .sort("window_start", "service", "pod", "metric")
    )


# ---------------------------------------------------------------- traces


def trace_features(
    source: Any,
    *,
    start: Time = None,
    end: Time = None,
    where: str | None = None,
    critical_path: bool = True,
    max_traces: int | None = None,
) -> pl.DataFrame:
    """One row per trace: root, call path, duration, errors and critical-path time per service.

    Parameters
    ----------
    source : Lab or polars.DataFrame
        A Lab, or a :func:`span_frame`.
    critical_path : bool
        Also compute each trace's critical path (the store's algorithm, one trace at a time;
        the slowest part, so it can be turned off or limited with ``max_traces``).
    max_traces : int, optional
        Critical paths for the slowest ``max_traces`` traces only (the others get null).

    Returns
    -------
    polars.DataFrame
        ``trace_id``, ``start``, ``root_service``, ``root_operation``, ``duration_ms``, ``spans``,
        ``errors``, ``call_path`` (the distinct ``service:operation`` of its entry spans, in start
        order, joined by ``" > "``), ``critical_path`` (list of ``{service, ms}``: time on the critical
        path per service, largest first) and ``critical_ms`` (its total).
    """
    spans = (
        source if isinstance(source, pl.DataFrame) else span_frame(source, start=start, end=end, where=where)
    )
    roots = (
        spans.filter(pl.col("parent_span_id").is_null())
        .group_by("trace_id")
        .agg(
            pl.col("service").sort_by("time").first().alias("root_service"),
            pl.col("operation").sort_by("time").first().alias("root_operation"),
        )
    )
    per = spans.group_by("trace_id").agg(
        pl.col("time").min().alias("start"),
        (
            (pl.col("time") + pl.duration(microseconds=pl.col("duration_ms") * 1000)).max()
            - pl.col("time").min()
        )
        .dt.total_microseconds()
        .truediv(1000)
        .alias("duration_ms"),
        pl.len().alias("spans"),
        pl.col("error").sum().alias("errors"),
        (pl.col("service") + ":" + pl.col("operation"))
        .filter(pl.col("is_entry"))
        .sort_by(pl.col("time").filter(pl.col("is_entry")))
        .unique(maintain_order=True)
        .str.join(" > ")
        .alias("call_path"),
    )
    out = per.join(roots, on="trace_id", how="left")
    if critical_path and not spans.is_empty():
        out = out.join(_critical_paths(spans, out, max_traces), on="trace_id", how="left")
    else:
        out = out.with_columns(
            pl.lit(None, dtype=pl.List(pl.Struct({"service": pl.String, "ms": pl.Float64}))).alias(
                "critical_path"
            ),
            pl.lit(None, dtype=pl.Float64).alias("critical_ms"),
        )
    cols = [
        "trace_id",
        "start",
        "root_service",
        "root_operation",
        "duration_ms",
        "spans",
        "errors",
        "call_path",
    ]
    return out.select(*cols, "critical_path", "critical_ms").sort("start")


def _critical_paths(spans: pl.DataFrame, traces: pl.DataFrame, max_traces: int | None) -> pl.DataFrame:
    from otlp_lab.store._critical import critical_path

    ids = traces.sort("duration_ms", descending=True).get_column("trace_id")
    if max_traces is not None:
        ids = ids.head(int(max_traces))
    sub = spans.filter(pl.col("trace_id").is_in(ids.implode())).select(
        "trace_id",
        "span_id",
        "parent_span_id",
        pl.col("service").alias("service_name"),
        pl.col("operation").alias("name"),
        pl.col("time").dt.cast_time_unit("ns").cast(pl.Int64).alias("start_ns"),
        (
            pl.col("time").dt.cast_time_unit("ns").cast(pl.Int64)
            + (pl.col("duration_ms") * 1e6).round().cast(pl.Int64)
        ).alias("end_ns"),
    )
    rows = []
    for (tid,), part in sub.group_by("trace_id"):
        cp = critical_path(part.drop("trace_id"))
        per = cp.group_by("service_name").agg(pl.col("self_ms").sum()).sort("self_ms", descending=True)
        rows.append(
            {
                "trace_id": tid,
                "critical_path": [{"service": s, "ms": float(m)} for s, m in per.iter_rows()],
                "critical_ms": float(cp.get_column("self_ms").sum()),
            }
        )
    schema = {
        "trace_id": pl.String,
        "critical_path": pl.List(pl.Struct({"service": pl.String, "ms": pl.Float64})),
        "critical_ms": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


# ---------------------------------------------------------------- normal statistics


def normal_stats(spans: pl.DataFrame, *, by: Sequence[str] = ("service", "operation")) -> pl.DataFrame:
    """Per-operation statistics of a normal period: the baseline detectors and rankers compare against.

    Parameters
    ----------
    spans : polars.DataFrame
        A :func:`span_frame` of a fault-free period.
    by : sequence of str
        Grouping keys (``("service", "operation")`` by default; add ``"unit"`` to keep client and
        server time apart).

    Returns
    -------
    polars.DataFrame
        The keys, ``count``, ``error_ratio``, and for ``duration_ms`` and ``self_ms``: ``mean``,
        ``std``, ``median``, ``iqr`` (p75 - p25), ``p95``, ``p99``.
    """
    aggs: list[pl.Expr] = [pl.len().alias("count"), pl.col("error").mean().alias("error_ratio")]
    for c in ("duration_ms", "self_ms"):
        p = c.removesuffix("_ms")
        aggs += [
            pl.col(c).mean().alias(f"{p}_mean_ms"),
            pl.col(c).std().fill_null(0.0).alias(f"{p}_std_ms"),
            pl.col(c).median().alias(f"{p}_median_ms"),
            (pl.col(c).quantile(0.75, "linear") - pl.col(c).quantile(0.25, "linear")).alias(f"{p}_iqr_ms"),
            pl.col(c).quantile(0.95, "linear").alias(f"{p}_p95_ms"),
            pl.col(c).quantile(0.99, "linear").alias(f"{p}_p99_ms"),
        ]
    return spans.group_by(list(by)).agg(aggs).sort(list(by))
