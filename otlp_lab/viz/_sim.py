"""Plotly figures of fleet simulations: frames from :mod:`otlp_lab.sim` in, figures out.

Each builder takes the frames a run already returns: :func:`otlp_lab.sim.timelines` (per
simulated second and policy: offered load, goodput, failures, error rate, attempts),
:func:`breaker_timelines` (circuit-breaker states), :func:`otlp_lab.sim.compare` (one row
per policy: goodput, error rate, p50/p95/p99, amplification) and :func:`instance_load`
(per instance, read back from the Lab). A policy keeps its colour in every figure
(:func:`policy_colors`); times are simulated seconds since the start of the run.

>>> from otlp_lab.sim import run_many, timelines                           # doctest: +SKIP
>>> from otlp_lab.viz import breaker_timelines, policy_timeline_figure     # doctest: +SKIP
>>> runs = run_many("retry_storm", {"as is": {}, "no retries": {"*": {"retry": None}}}, seed=1)  # doctest: +SKIP
>>> policy_timeline_figure(timelines(runs), breaker_timelines(runs))       # doctest: +SKIP

The helpers that are not figures (:func:`breaker_timelines`, :func:`scenario_windows`,
:func:`recovery_table`, :func:`instance_load`) shape what the
simulator returns for these figures and for the notebooks' tables. The simulator and the
resilience policies are imported lazily, so ``import otlp_lab.viz`` needs neither SimPy nor
a run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from otlp_lab.errors import ConfigError, SchemaError
from otlp_lab.viz._traces import _PALETTE, _colors_for, _esc, _layout, _require

if TYPE_CHECKING:
    from otlp_lab.sim import RunResult, Scenario

__all__ = [
    "breaker_timelines",
    "instance_load",
    "instance_load_figure",
    "latency_quantiles_figure",
    "metastability_figure",
    "policy_bars_figure",
    "policy_colors",
    "policy_timeline_figure",
    "recovery_table",
    "runs_table",
    "scenario_windows",
    "strategy_bars_figure",
]

_SIM_LABELS = {
    "offered_rps": "offered load (req/s)",
    "goodput_rps": "goodput (req/s)",
    "failed_rps": "failed (req/s)",
    "attempts_rps": "attempts, all hops (req/s)",
    "error_rate": "error rate",
    "mean_latency_ms": "mean latency (ms)",
    "p50_ms": "p50 latency (ms)",
    "p95_ms": "p95 latency (ms)",
    "p99_ms": "p99 latency (ms)",
    "amplification": "amplification (attempts / call)",
    "requests": "requests",
    "hops": "hops",
    "share": "share of requests",
}
_SIM_UNITS = {
    "offered_rps": "req/s",
    "goodput_rps": "req/s",
    "failed_rps": "req/s",
    "attempts_rps": "req/s",
    "mean_latency_ms": "ms",
    "p50_ms": "ms",
    "p95_ms": "ms",
    "p99_ms": "ms",
    "amplification": "×",
}
_OFFERED = "#7f7f7f"
_WINDOW = "rgba(214, 39, 40, 0.10)"


# ---------------------------------------------------------------------------------------------- helpers
def policy_colors(policies: Iterable[str]) -> dict[str, str]:
    """A colour per policy label, in the order given: pass it as ``colors=`` to every figure.

    Examples
    --------
    >>> policy_colors(["as is", "retry budget"])
    {'as is': '#636EFA', 'retry budget': '#EF553B'}
    """
    out: dict[str, str] = {}
    for p in policies:
        if p not in out:
            out[p] = _PALETTE[len(out) % len(_PALETTE)]
    return out


def _order(frame: pl.DataFrame, by: str, policies: Iterable[str] | None) -> list[str]:
    present = frame[by].unique(maintain_order=True).to_list()
    if policies is None:
        return [p for p in present if p is not None]
    seen = set(present)
    return [p for p in policies if p in seen]


def _fmt(metric: str, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if metric == "error_rate" or metric == "share":
        return f"{v:.1%}"
    if metric == "amplification":
        return f"{v:.2f}×"
    if metric.endswith("_ms"):
        return f"{v:,.0f} ms" if v >= 100 else f"{v:,.1f} ms"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def _load_scenario(scenario: Scenario | str | os.PathLike[str]) -> Scenario:
    from otlp_lab.sim import Scenario, scenario_path

    if isinstance(scenario, Scenario):
        return scenario
    p = os.fspath(scenario)
    if p.endswith((".yaml", ".yml")) or os.path.exists(p):
        return Scenario.from_yaml(p)
    return Scenario.from_yaml(scenario_path(p))


def breaker_timelines(results: Mapping[str, RunResult]) -> pl.DataFrame:
    """The :meth:`RunResult.breaker_timeline` of several runs stacked, with a ``policy`` column.

    Parameters
    ----------
    results : mapping of str to RunResult
        What :func:`otlp_lab.sim.run_many` returns (label -> result).

    Returns
    -------
    polars.DataFrame
        ``t_s``, ``caller``, ``target``, ``closed``, ``open``, ``half_open`` (breakers in each
        state at the end of that second) and ``policy``; no row for a run without breakers.
    """
    if not isinstance(results, Mapping):
        raise ConfigError(
            f"results must be a mapping of labels to RunResult (run_many()). Got {type(results).__name__} instead."
        )
    frames = [
        r.breaker_timeline().with_columns(pl.lit(label).alias("policy")) for label, r in results.items()
    ]
    schema = {
        "t_s": pl.Int64,
        "caller": pl.String,
        "target": pl.String,
        "closed": pl.Int64,
        "open": pl.Int64,
        "half_open": pl.Int64,
        "policy": pl.String,
    }
    frames = [f for f in frames if f.height]
    return pl.concat(frames) if frames else pl.DataFrame(schema=schema)


def runs_table(results: Mapping[str, RunResult], **columns: Any) -> pl.DataFrame:
    """One row per run, as :func:`otlp_lab.sim.compare` prints it, from runs already made.

    :func:`otlp_lab.sim.compare` runs the scenario again; this reads the results of
    :func:`otlp_lab.sim.run_many` (whose runs also feed the timelines).

    Parameters
    ----------
    results : mapping of str to RunResult
        What :func:`otlp_lab.sim.run_many` returns (label -> result).
    **columns
        Constant columns to add, e.g. ``outlier_ejection="on"``, to tell stacked tables apart.

    Returns
    -------
    polars.DataFrame
        ``policy``, ``goodput_rps``, ``offered_rps``, ``error_rate``, ``p50_ms``, ``p95_ms``,
        ``p99_ms``, ``amplification``, ``requests``, ``hops``, ``run_id``, then ``columns``.
    """
    if not isinstance(results, Mapping) or not results:
        raise ConfigError(
            f"results must be a non-empty mapping of labels to RunResult (run_many()). Got {results!r} instead."
        )
    df = pl.DataFrame(
        [r.summary() for r in results.values()],
        schema_overrides={"p50_ms": pl.Float64, "p95_ms": pl.Float64, "p99_ms": pl.Float64},
    )
    return df.with_columns(pl.lit(v).alias(k) for k, v in columns.items()) if columns else df


def scenario_windows(scenario: Scenario | str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The time windows worth shading on a timeline: each fault, and each load spike (burst).

    Parameters
    ----------
    scenario : Scenario or str or path
        A scenario, a YAML file or the name of a shipped scenario.

    Returns
    -------
    list of dict
        ``{"start_s", "end_s", "label"}``, in the order of the scenario; a fault that lasts to
        the end of the run ends at ``duration_s``.

    Examples
    --------
    >>> scenario_windows("retry_storm")
    [{'start_s': 20.0, 'end_s': 24.0, 'label': 'load spike 300 req/s'}]
    """
    from otlp_lab.sim import Burst, OpenLoop

    sc = _load_scenario(scenario)
    out: list[dict[str, Any]] = []
    for w in sc.workloads:
        rate = w.rate if isinstance(w, OpenLoop) else None
        if isinstance(rate, Burst):
            out.append(
                {
                    "start_s": float(rate.start_s),
                    "end_s": float(rate.start_s + rate.duration_s),
                    "label": f"load spike {rate.burst_rps:g} req/s",
                }
            )
    for f in sc.faults:
        if f.at_s >= sc.duration_s:
            continue
        where = getattr(f, "service", None) or getattr(f, "zone", None) or ""
        inst = getattr(f, "instance", None)
        if inst is not None:
            where = f"{where}-{inst}"
        peer = getattr(f, "peer", None)
        if peer:
            where = f"{where} ↔ {peer}"
        out.append(
            {
                "start_s": float(f.at_s),
                "end_s": float(min(f.end_s, sc.duration_s)),
                "label": f"{f.kind} {where}".strip(),
            }
        )
    return out


def _windows(windows: Iterable[Any] | None) -> list[tuple[float, float, str]]:
    out = []
    for w in windows or ():
        if isinstance(w, Mapping):
            out.append((float(w["start_s"]), float(w["end_s"]), str(w.get("label", ""))))
        elif isinstance(w, Sequence) and len(w) in (2, 3):
            out.append((float(w[0]), float(w[1]), str(w[2]) if len(w) == 3 else ""))
        else:
            raise ConfigError(
                f"windows must hold (start_s, end_s[, label]) or scenario_windows() dicts. Got {w!r} instead."
            )
    return out


def recovery_table(
    timeline: pl.DataFrame,
    *,
    after_s: float,
    before_s: float | None = None,
    hold_s: float = 10.0,
    threshold: float = 0.9,
    policies: Iterable[str] | None = None,
) -> pl.DataFrame:
    """Did each policy recover after a disturbance, and how long did it take?

    Recovery is goodput back to ``threshold`` of the offered load over ``hold_s`` seconds in a
    row (a metastable failure never gets there although the load went back to normal).

    Parameters
    ----------
    timeline : polars.DataFrame
        :func:`otlp_lab.sim.timelines`: ``t_s``, ``policy``, ``offered_rps``, ``goodput_rps``.
    after_s : float
        When the disturbance ended (the end of the load spike or fault).
    before_s : float, optional
        When it started: the baseline is the ``hold_s`` seconds before. Default ``after_s - hold_s``.
    hold_s : float, default 10
        Width of the window that must stay healthy.
    threshold : float, default 0.9
        Goodput / offered load counted as healthy.
    policies : iterable of str, optional
        Row order (default: as they appear in ``timeline``).

    Returns
    -------
    polars.DataFrame
        One row per policy: ``policy``, ``goodput_before`` and ``goodput_after`` (goodput /
        offered load over the ``hold_s`` seconds before ``before_s``, and over the last ``hold_s``
        seconds of the run),
        ``recovered`` (``goodput_after >= threshold``) and ``recovery_s`` (seconds from
        ``after_s`` to the start of the first healthy window; null when it never came).
    """
    _require(
        timeline,
        ["t_s", "policy", "offered_rps", "goodput_rps"],
        "recovery_table(timeline)",
        "pass otlp_lab.sim.timelines(results)",
    )
    if not (isinstance(hold_s, (int, float)) and hold_s >= 1):
        raise ConfigError(f"hold_s must be at least 1 second. Got {hold_s!r} instead.")
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ConfigError(f"threshold must be in (0, 1]. Got {threshold!r} instead.")
    hold = int(hold_s)
    rows = []
    for p in _order(timeline, "policy", policies):
        part = timeline.filter(pl.col("policy") == p).sort("t_s")
        t = part["t_s"].to_list()
        off = [float(v or 0) for v in part["offered_rps"].to_list()]
        good = [float(v or 0) for v in part["goodput_rps"].to_list()]

        def ratio(i0: int, i1: int, off=off, good=good) -> float | None:
            o = sum(off[i0:i1])
            return sum(good[i0:i1]) / o if o else None

        start = after_s - hold if before_s is None else before_s
        before_end = next((i for i, ts in enumerate(t) if ts >= start), len(t))
        before_start = next((i for i, ts in enumerate(t) if ts >= start - hold), 0)
        recovery = None
        for i, ts in enumerate(t):
            if ts < after_s or i + hold > len(t):
                continue
            r = ratio(i, i + hold)
            if r is not None and r >= threshold:
                recovery = float(ts - after_s)
                break
        after = ratio(max(0, len(t) - hold), len(t))
        rows.append(
            {
                "policy": p,
                "goodput_before": ratio(before_start, before_end),
                "goodput_after": after,
                "recovered": after is not None and after >= threshold,
                "recovery_s": recovery,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "policy": pl.String,
            "goodput_before": pl.Float64,
            "goodput_after": pl.Float64,
            "recovered": pl.Boolean,
            "recovery_s": pl.Float64,
        },
    )


def instance_load(lab: Any, service: str, *, run_ids: Iterable[str] | None = None) -> pl.DataFrame:
    """Requests, share, errors and server-side p99 per instance of ``service``, per simulated run.

    Read from the server spans a run wrote into the Lab (the run summary has no per-instance
    figures): how a load balancer spread the load, and what each instance made of it.

    Parameters
    ----------
    lab : Lab
        Holding one or more simulated runs (``otlp_lab.sim.run(..., lab=lab)``).
    service : str
        The service whose instances to compare.
    run_ids : iterable of str, optional
        Only these runs (``sim_runs.run_id``); all by default.

    Returns
    -------
    polars.DataFrame
        ``policy``, ``run_id``, ``instance``, ``requests``, ``share`` (of the run's requests to
        the service), ``errors``, ``error_rate``, ``p50_ms``, ``p99_ms``; ordered by run, then
        instance (runs in the order they were loaded).
    """
    if not hasattr(lab, "sql"):
        raise ConfigError(f"lab must be an otlp_lab.Lab. Got {type(lab).__name__} instead.")
    ids = None if run_ids is None else list(run_ids)
    where = (
        ""
        if ids is None
        else "AND resource_attributes['sim.run_id']::VARCHAR IN (SELECT unnest(?::VARCHAR[]))"
    )
    params: list[Any] = [service] + ([ids] if ids is not None else [])
    df = lab.sql(
        f"""
        SELECT resource_attributes['sim.policy']::VARCHAR AS policy,
               resource_attributes['sim.run_id']::VARCHAR AS run_id,
               resource_attributes['service.instance.id']::VARCHAR AS instance,
               count(*) AS requests,
               count(*) FILTER (WHERE status_code = 'ERROR') AS errors,
               quantile_cont(duration_ns, 0.5) / 1e6 AS p50_ms,
               quantile_cont(duration_ns, 0.99) / 1e6 AS p99_ms,
               min(load_id) AS first_load
        FROM spans
        WHERE kind = 'SERVER' AND service_name = ? AND resource_attributes['sim.run_id'] IS NOT NULL {where}
        GROUP BY ALL
        """,
        params,
    )
    if df.is_empty():
        raise ConfigError(
            f"the Lab holds no simulated server span of service {service!r}"
            + (f" in runs {ids}." if ids else ".")
        )
    first = df.group_by("run_id").agg(pl.col("first_load").min().alias("_t0"))
    return (
        df.join(first, on="run_id")
        .with_columns(
            (pl.col("requests") / pl.col("requests").sum().over("run_id")).alias("share"),
            (pl.col("errors") / pl.col("requests")).alias("error_rate"),
        )
        .sort(["_t0", "run_id", "instance"])
        .select(
            "policy", "run_id", "instance", "requests", "share", "errors", "error_rate", "p50_ms", "p99_ms"
        )
    )


# ---------------------------------------------------------------------------------------------- timelines
def policy_timeline_figure(
    timeline: pl.DataFrame,
    breakers: pl.DataFrame | None = None,
    *,
    metrics: Sequence[str] = ("goodput_rps", "attempts_rps", "error_rate"),
    offered: bool = True,
    windows: Iterable[Any] | None = None,
    policies: Iterable[str] | None = None,
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Per-second timelines of several policies, one row per metric on a shared time axis.

    Parameters
    ----------
    timeline : polars.DataFrame
        :func:`otlp_lab.sim.timelines` of the runs: ``t_s``, ``policy`` and the metrics.
    breakers : polars.DataFrame, optional
        :func:`breaker_timelines` of the same runs: adds a last row with the share of circuit
        breakers open (solid) and half-open (dotted) per policy. Policies without breakers
        have no line there.
    metrics : sequence of str
        Columns of ``timeline``, one row each: ``goodput_rps``, ``attempts_rps`` (load on the
        fleet, retries included), ``offered_rps``, ``failed_rps``, ``error_rate``,
        ``mean_latency_ms``.
    offered : bool, default True
        Draw the offered load (the mean over policies; the same arrivals for one seed) as a
        grey dashed line in the goodput and failure rows (root requests; ``attempts_rps``
        counts every hop, so it has no such line).
    windows : iterable, optional
        Time windows to shade on every row: :func:`scenario_windows` or ``(start_s, end_s,
        label)`` tuples.
    policies : iterable of str, optional
        Which policies to draw, in this order (default: all, in the frame's order).
    colors : mapping, optional
        Policy -> colour (:func:`policy_colors`).
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Scatter`` per policy and row named by the policy (legend on the first row
        only), ``"offered load"`` lines, and ``"<policy> half-open"`` lines in the breaker row.
    """
    metrics = list(metrics)
    if not metrics:
        raise ConfigError("metrics must name at least one column. Got an empty sequence instead.")
    _require(
        timeline,
        ["t_s", "policy", *metrics],
        "policy_timeline_figure(timeline)",
        "pass otlp_lab.sim.timelines(results)",
    )
    order = _order(timeline, "policy", policies)
    palette = _colors_for(order, colors)
    brk = None
    if breakers is not None:
        _require(
            breakers,
            ["t_s", "policy", "closed", "open", "half_open"],
            "policy_timeline_figure(breakers)",
            "pass breaker_timelines(results)",
        )
        if breakers.height:
            brk = (
                breakers.group_by("policy", "t_s")
                .agg(pl.col("closed").sum(), pl.col("open").sum(), pl.col("half_open").sum())
                .with_columns((pl.col("closed") + pl.col("open") + pl.col("half_open")).alias("_n"))
                .with_columns(
                    (pl.col("open") / pl.col("_n")).alias("open_share"),
                    (pl.col("half_open") / pl.col("_n")).alias("half_share"),
                )
                .sort("policy", "t_s")
            )
    rows = len(metrics) + (1 if brk is not None else 0)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.05 if rows > 2 else 0.08)
    off = None
    if offered and "offered_rps" in timeline.columns:
        off = (
            timeline.filter(pl.col("policy").is_in(order))
            .group_by("t_s")
            .agg(pl.col("offered_rps").mean())
            .sort("t_s")
        )
    for k, m in enumerate(metrics, start=1):
        unit = _SIM_UNITS.get(m, "")
        fmt = ".1%" if m == "error_rate" else ",.3g"
        for p in order:
            part = timeline.filter(pl.col("policy") == p).sort("t_s")
            fig.add_trace(
                go.Scatter(
                    x=part["t_s"].to_list(),
                    y=part[m].to_list(),
                    mode="lines",
                    name=p,
                    legendgroup=p,
                    showlegend=k == 1,
                    line=dict(color=palette[p], width=1.8),
                    connectgaps=False,
                    hovertemplate=f"%{{y:{fmt}}} {unit}<extra>{_esc(p)}</extra>",
                ),
                row=k,
                col=1,
            )
        if off is not None and m in ("goodput_rps", "failed_rps"):
            fig.add_trace(
                go.Scatter(
                    x=off["t_s"].to_list(),
                    y=off["offered_rps"].to_list(),
                    mode="lines",
                    name="offered load",
                    legendgroup="offered load",
                    showlegend=k == 1 or "offered load" not in {t.name for t in fig.data},
                    line=dict(color=_OFFERED, width=1.2, dash="dash"),
                    hovertemplate="%{y:,.3g} req/s<extra>offered</extra>",
                ),
                row=k,
                col=1,
            )
        axis: dict[str, Any] = dict(title=dict(text=_SIM_LABELS.get(m, m)), rangemode="tozero")
        if m == "error_rate":
            axis["tickformat"] = ".0%"
        fig.update_yaxes(**axis, row=k, col=1)
    if brk is not None:
        k = rows
        for p in [p for p in order if p in set(brk["policy"].to_list())]:
            part = brk.filter(pl.col("policy") == p)
            fig.add_trace(
                go.Scatter(
                    x=part["t_s"].to_list(),
                    y=part["open_share"].to_list(),
                    mode="lines",
                    name=p,
                    legendgroup=p,
                    showlegend=False,
                    line=dict(color=palette[p], width=1.8, shape="hv"),
                    hovertemplate=f"open %{{y:.0%}}<extra>{_esc(p)}</extra>",
                ),
                row=k,
                col=1,
            )
            if part["half_open"].sum() > 0:
                fig.add_trace(
                    go.Scatter(
                        x=part["t_s"].to_list(),
                        y=part["half_share"].to_list(),
                        mode="lines",
                        name=f"{p} half-open",
                        legendgroup=p,
                        showlegend=False,
                        line=dict(color=palette[p], width=1.2, dash="dot", shape="hv"),
                        hovertemplate=f"half-open %{{y:.0%}}<extra>{_esc(p)}</extra>",
                    ),
                    row=k,
                    col=1,
                )
        fig.update_yaxes(title=dict(text="breakers open"), tickformat=".0%", range=[0, 1.05], row=k, col=1)
    t_max = float(timeline["t_s"].max() or 0) + 1
    for start, end, label in _windows(windows):
        for k in range(1, rows + 1):
            note = (
                dict(annotation_text=_esc(label), annotation_position="top left", annotation_font_size=10)
                if k == 1 and label
                else {}
            )
            fig.add_vrect(
                x0=start,
                x1=min(end, t_max),
                fillcolor=_WINDOW,
                line_width=0,
                layer="below",
                row=k,
                col=1,
                **note,
            )
    fig.update_xaxes(title=dict(text="simulated time (s)"), row=rows, col=1)
    names = ", ".join(_SIM_LABELS.get(m, m).split(" (")[0] for m in metrics) + (
        ", breakers" if brk is not None else ""
    )
    _layout(
        fig,
        title or f"{names} per second, {len(order)} policies",
        height=max(360, 200 * rows + 100),
        hovermode="x unified",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0, font=dict(size=11)),
    )
    fig.update_layout(margin=dict(t=90))
    return fig


# ---------------------------------------------------------------------------------------------- comparisons
def policy_bars_figure(
    summary: pl.DataFrame,
    metrics: Sequence[str] = ("goodput_rps", "error_rate", "p99_ms", "amplification"),
    *,
    by: str = "policy",
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Small multiples of horizontal bars: one panel per metric, one bar per policy.

    Parameters
    ----------
    summary : polars.DataFrame
        :func:`otlp_lab.sim.compare` (or rows of ``RunResult.summary()``): ``by`` and the metrics.
    metrics : sequence of str
        ``goodput_rps``, ``offered_rps``, ``error_rate``, ``p50_ms``/``p95_ms``/``p99_ms``,
        ``amplification``, ``hops``...
    by : str, default "policy"
    colors : mapping, optional
        Policy -> colour (:func:`policy_colors`).
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Bar`` per metric (``name`` is the metric), policies top to bottom in the
        frame's order, the value printed on each bar. Amplification has a reference line at 1.
    """
    metrics = list(metrics)
    if not metrics:
        raise ConfigError("metrics must name at least one column. Got an empty sequence instead.")
    _require(summary, [by, *metrics], "policy_bars_figure(summary)", "pass otlp_lab.sim.compare(...)")
    order = _order(summary, by, None)
    palette = _colors_for(order, colors)
    fig = make_subplots(
        rows=1,
        cols=len(metrics),
        shared_yaxes=True,
        horizontal_spacing=0.03,
        subplot_titles=[_SIM_LABELS.get(m, m) for m in metrics],
    )
    for j, m in enumerate(metrics, start=1):
        vals = [summary.filter(pl.col(by) == p)[m].item(0) for p in order]
        xs = [v if v is not None else 0 for v in vals]
        fig.add_trace(
            go.Bar(
                y=order,
                x=xs,
                orientation="h",
                name=m,
                showlegend=False,
                marker_color=[palette[p] for p in order],
                text=[_fmt(m, v) for v in vals],
                textposition="outside",
                textangle=0,
                cliponaxis=False,
                hovertemplate=f"%{{y}}: %{{text}}<extra>{_esc(_SIM_LABELS.get(m, m))}</extra>",
            ),
            row=1,
            col=j,
        )
        top = max([abs(v) for v in xs] + [1.0 if m == "amplification" else 0.0]) or 1.0
        fig.update_xaxes(range=[0, top * 1.35], row=1, col=j)
        if m == "error_rate":
            fig.update_xaxes(tickformat=".0%", row=1, col=j)
        if m == "amplification":
            fig.add_vline(x=1.0, line=dict(color=_OFFERED, width=1, dash="dash"), row=1, col=j)
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], automargin=True)
    fig.update_annotations(font_size=12)
    _layout(
        fig,
        title or f"{len(order)} policies compared",
        height=max(260, 34 * len(order) + 140),
        showlegend=False,
    )
    return fig


def strategy_bars_figure(
    frame: pl.DataFrame,
    metric: str = "p99_ms",
    *,
    x: str = "policy",
    group: str | None = None,
    colors: Mapping[str, str] | None = None,
    log_y: bool = False,
    title: str | None = None,
) -> go.Figure:
    """One metric per strategy as vertical bars, optionally grouped (e.g. outlier ejection on / off).

    Parameters
    ----------
    frame : polars.DataFrame
        One row per strategy (and group): :func:`otlp_lab.sim.compare`, or several stacked with
        a column that tells them apart.
    metric : str, default "p99_ms"
    x : str, default "policy"
        The column along the x axis (strategies, in the frame's order).
    group : str, optional
        A column whose values become side-by-side bars, one colour each.
    colors : mapping, optional
        x value (or group value with ``group``) -> colour.
    log_y : bool, default False
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Bar`` per group value (named by it), or a single one named by ``metric``.
    """
    _require(
        frame,
        [x, metric] + ([group] if group else []),
        "strategy_bars_figure(frame)",
        "pass otlp_lab.sim.compare(...)",
    )
    xs = _order(frame, x, None)
    fig = go.Figure()
    label = _SIM_LABELS.get(metric, metric)
    if group is None:
        palette = _colors_for(xs, colors)
        vals = [frame.filter(pl.col(x) == v)[metric].item(0) for v in xs]
        fig.add_trace(
            go.Bar(
                x=xs,
                y=vals,
                name=metric,
                marker_color=[palette[v] for v in xs],
                text=[_fmt(metric, v) for v in vals],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"%{{x}}: %{{text}}<extra>{_esc(label)}</extra>",
            )
        )
    else:
        groups = _order(frame, group, None)
        palette = _colors_for([str(g) for g in groups], colors)
        for g in groups:
            part = frame.filter(pl.col(group) == g)
            vals = [(part.filter(pl.col(x) == v)[metric].to_list() or [None])[0] for v in xs]
            fig.add_trace(
                go.Bar(
                    x=xs,
                    y=vals,
                    name=str(g),
                    marker_color=palette[str(g)],
                    text=[_fmt(metric, v) for v in vals],
                    textposition="outside",
                    cliponaxis=False,
                    hovertemplate=f"%{{x}}, {_esc(group)}={_esc(g)}: %{{text}}<extra></extra>",
                ),
            )
    yaxis: dict[str, Any] = dict(title=dict(text=label + (" (log scale)" if log_y else "")))
    if log_y:
        yaxis["type"] = "log"
    if metric == "error_rate":
        yaxis["tickformat"] = ".0%"
    _layout(
        fig,
        title or f"{label.split(' (')[0]} by {x}" + (f" and {group}" if group else ""),
        height=420,
        barmode="group",
        yaxis=yaxis,
        xaxis=dict(title=None),
        showlegend=group is not None,
        legend=dict(title=dict(text=group or "")),
    )
    return fig


def latency_quantiles_figure(
    summary: pl.DataFrame,
    *,
    by: str = "policy",
    quantiles: Sequence[str] = ("p50_ms", "p95_ms", "p99_ms"),
    colors: Mapping[str, str] | None = None,
    log_y: bool = True,
    title: str | None = None,
) -> go.Figure:
    """End-to-end latency quantiles side by side, one colour per policy.

    Parameters
    ----------
    summary : polars.DataFrame
        :func:`otlp_lab.sim.compare`: ``by`` and the quantile columns (milliseconds).
    by : str, default "policy"
    quantiles : sequence of str
        Columns along the x axis.
    colors : mapping, optional
        Policy -> colour (:func:`policy_colors`).
    log_y : bool, default True
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Bar`` per policy (named by it) over the quantiles.
    """
    quantiles = list(quantiles)
    _require(summary, [by, *quantiles], "latency_quantiles_figure(summary)", "pass otlp_lab.sim.compare(...)")
    order = _order(summary, by, None)
    palette = _colors_for(order, colors)
    xs = [q.removesuffix("_ms") for q in quantiles]
    fig = go.Figure()
    for p in order:
        row = summary.filter(pl.col(by) == p).row(0, named=True)
        vals = [row[q] for q in quantiles]
        fig.add_trace(
            go.Bar(
                x=xs,
                y=vals,
                name=p,
                marker_color=palette[p],
                text=[_fmt(q, v) for q, v in zip(quantiles, vals, strict=True)],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"%{{x}} %{{text}}<extra>{_esc(p)}</extra>",
            )
        )
    _layout(
        fig,
        title or f"End-to-end latency quantiles, {len(order)} policies",
        height=420,
        barmode="group",
        yaxis=dict(
            title=dict(text="latency (ms" + (", log scale)" if log_y else ")")),
            type="log" if log_y else "linear",
        ),
        xaxis=dict(title=None),
    )
    return fig


def instance_load_figure(
    load: pl.DataFrame,
    *,
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Per instance and policy: the share of requests it got, and its server-side p99.

    Parameters
    ----------
    load : polars.DataFrame
        :func:`instance_load`: ``policy``, ``instance``, ``share``, ``p99_ms``.
    colors : mapping, optional
        Policy -> colour (:func:`policy_colors`).
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        Two rows sharing the instance axis; one ``go.Bar`` per policy and row (named by the
        policy; legend on the first row). The p99 axis is logarithmic.
    """
    _require(
        load,
        ["policy", "instance", "share", "p99_ms"],
        "instance_load_figure(load)",
        "pass instance_load(lab, service)",
    )
    if load.select(pl.struct("policy", "instance").is_duplicated().any()).item():
        raise SchemaError(
            "instance_load_figure(load) needs one row per policy and instance; pass instance_load(lab, service, run_ids=[...]) "
            "with one run per policy."
        )
    order = _order(load, "policy", None)
    palette = _colors_for(order, colors)
    insts = sorted(load["instance"].unique().to_list())
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for k, (col, fmt) in enumerate((("share", ".1%"), ("p99_ms", ",.3g")), start=1):
        for p in order:
            part = load.filter(pl.col("policy") == p)
            by_inst = dict(zip(part["instance"].to_list(), part[col].to_list(), strict=True))
            fig.add_trace(
                go.Bar(
                    x=insts,
                    y=[by_inst.get(i) for i in insts],
                    name=p,
                    legendgroup=p,
                    showlegend=k == 1,
                    marker_color=palette[p],
                    hovertemplate=f"%{{x}}: %{{y:{fmt}}}<extra>{_esc(p)}</extra>",
                ),
                row=k,
                col=1,
            )
    even = 1 / len(insts) if insts else None
    if even is not None:
        fig.add_hline(
            y=even,
            line=dict(color=_OFFERED, width=1, dash="dash"),
            row=1,
            col=1,
            annotation_text="even share",
            annotation_position="top right",
            annotation_font_size=10,
        )
    fig.update_yaxes(title=dict(text="share of requests"), tickformat=".0%", row=1, col=1)
    fig.update_yaxes(title=dict(text="server p99 (ms, log scale)"), type="log", row=2, col=1)
    _layout(
        fig,
        title or f"Load and server-side p99 per instance, {len(order)} policies",
        height=560,
        barmode="group",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0),
    )
    fig.update_layout(margin=dict(t=90))
    return fig


def metastability_figure(points: pl.DataFrame, *, title: str | None = None) -> go.Figure:
    """Heatmaps of where a fleet recovers from a trigger: one row per policy, one column per trigger duration.

    Each cell is a base load (x) and a trigger size (y): green when every seed recovered after
    the trigger, red when none did (the share of seeds in between); the text is the mean time to
    recover after the trigger ended, or ``stuck``. A point where the fleet was not even stable
    before the trigger is marked ``unstable``.

    Parameters
    ----------
    points : polars.DataFrame
        :attr:`otlp_lab.sim.MetastabilityMap.points` (``policy``, ``load_rps``, optionally
        ``rho``, ``size``, ``duration_s``, ``recovered_share``, ``recovery_s``, ``stable_before``).
    """
    _require(
        points,
        ["policy", "load_rps", "size", "duration_s", "recovered_share", "recovery_s", "stable_before"],
        "metastability_figure(points)",
        "pass otlp_lab.sim.metastability(...).points",
    )
    x_col = "rho" if "rho" in points.columns else "load_rps"
    policies = _order(points, "policy", None)
    durations = sorted(set(points["duration_s"].to_list()))
    xs = sorted(set(points[x_col].to_list()))
    ys = sorted(set(points["size"].to_list()))
    fig = make_subplots(
        rows=len(policies),
        cols=len(durations),
        shared_xaxes=True,
        shared_yaxes=True,
        horizontal_spacing=0.03,
        vertical_spacing=0.08,
        column_titles=[f"trigger {d:g} s" for d in durations],
        row_titles=[_esc(p) for p in policies],
    )
    xlabels = [f"ρ {x:.2f}" if x_col == "rho" else f"{x:g}/s" for x in xs]
    ylabels = [f"×{y:g}" for y in ys]
    for r, p in enumerate(policies, start=1):
        for c, d in enumerate(durations, start=1):
            part = points.filter((pl.col("policy") == p) & (pl.col("duration_s") == d))
            cell = {(row[x_col], row["size"]): row for row in part.iter_rows(named=True)}
            z, text = [], []
            for y in ys:
                zr, tr = [], []
                for x in xs:
                    row = cell.get((x, y))
                    if row is None:
                        zr.append(None)
                        tr.append("")
                        continue
                    zr.append(row["recovered_share"])
                    if not row["stable_before"]:
                        tr.append("unstable")
                    elif row["recovery_s"] is None or row["recovered_share"] == 0:
                        tr.append("stuck")
                    else:
                        tr.append(f"{row['recovery_s']:.0f} s")
                z.append(zr)
                text.append(tr)
            fig.add_trace(
                go.Heatmap(
                    z=z,
                    x=xlabels,
                    y=ylabels,
                    text=text,
                    texttemplate="%{text}",
                    zmin=0,
                    zmax=1,
                    colorscale=[[0, "#d62728"], [0.5, "#ffdd57"], [1, "#2ca02c"]],
                    showscale=r == 1 and c == 1,
                    colorbar=dict(title="recovered<br>(share of seeds)", len=0.6),
                    hovertemplate=f"{_esc(p)}, trigger {d:g} s<br>base load %{{x}}, spike %{{y}}<br>"
                    "recovered %{z:.0%}: %{text}<extra></extra>",
                ),
                row=r,
                col=c,
            )
    fig.update_xaxes(title_text="base load", row=len(policies))
    fig.update_yaxes(title_text="spike (× load)", col=1)
    return _layout(
        fig,
        title or "Does the fleet recover after the trigger? (text: seconds to recover after it ends)",
        height=max(320, 230 * len(policies) + 80),
    )
