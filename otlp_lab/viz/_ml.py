"""Plotly figures of anomaly detection and root-cause ranking (otlp_lab.ml): frames in, figures out."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from otlp_lab.errors import SchemaError
from otlp_lab.viz._traces import _FAULT, _PALETTE, TEMPLATE

__all__ = ["anomaly_scores_figure", "ranking_figure", "evidence_figure"]


def _need(frame: pl.DataFrame, cols: tuple[str, ...], what: str, hint: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise SchemaError(f"{what} needs the columns {missing}. {hint}")


def anomaly_scores_figure(
    windows: pl.DataFrame, *, title: str | None = None, normalise: bool = True
) -> go.Figure:
    """Anomaly scores over time, one panel per detector, with the fault window shaded.

    Parameters
    ----------
    windows : polars.DataFrame
        :attr:`otlp_lab.ml.Evaluation.windows` for one case (or the same columns: ``window_start``,
        ``method``, ``score``, ``flagged``, and ``fault_start`` / ``fault_end`` to shade).
    normalise : bool
        Divide each detector's scores by its largest, so the panels share a 0-1 axis.

    Returns
    -------
    plotly.graph_objects.Figure
        A line per detector; flagged windows as red markers; the fault as a shaded band.
    """
    _need(
        windows,
        ("window_start", "method", "score", "flagged"),
        "anomaly_scores_figure",
        "Pass Evaluation.windows.",
    )
    methods = windows["method"].unique(maintain_order=True).to_list()
    fig = make_subplots(
        rows=len(methods), cols=1, shared_xaxes=True, subplot_titles=methods, vertical_spacing=0.04
    )
    for i, m in enumerate(methods, start=1):
        w = windows.filter(pl.col("method") == m).sort("window_start")
        y = w["score"]
        if normalise and y.len() and (top := y.abs().max()):
            y = y / top
        color = _PALETTE[(i - 1) % len(_PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=w["window_start"], y=y, mode="lines", name=m, line={"color": color}, showlegend=False
            ),
            row=i,
            col=1,
        )
        hit = w.with_columns(y.alias("_y")).filter(pl.col("flagged"))
        fig.add_trace(
            go.Scatter(
                x=hit["window_start"],
                y=hit["_y"],
                mode="markers",
                marker={"color": _FAULT, "size": 7},
                name="flagged",
                showlegend=i == 1,
            ),
            row=i,
            col=1,
        )
    if {"fault_start", "fault_end"} <= set(windows.columns) and windows.height:
        for s, e in windows.select("fault_start", "fault_end").unique().iter_rows():
            fig.add_vrect(
                x0=s,
                x1=e,
                fillcolor=_FAULT,
                opacity=0.12,
                line_width=0,
                annotation_text="fault" if s else None,
            )
    fig.update_layout(
        template=TEMPLATE,
        title=title or "Anomaly score per window (fault shaded)",
        height=max(260, 150 * len(methods)),
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
    )
    return fig


def ranking_figure(ranking: Any, *, k: int = 10, truth: str | None = None) -> go.Figure:
    """The top ``k`` services of a :class:`~otlp_lab.ml.Ranking` as horizontal bars (the true cause in red)."""
    top = ranking.services.head(k)
    colors = [_FAULT if s == truth else _PALETTE[0] for s in top["service"]]
    fig = go.Figure(
        go.Bar(
            x=top["score"].to_list()[::-1],
            y=top["service"].to_list()[::-1],
            orientation="h",
            marker={"color": colors[::-1]},
            hovertemplate="%{y}: %{x:.3g}<extra></extra>",
        )
    )
    fig.update_layout(
        template=TEMPLATE,
        title=f"Likely root cause ({ranking.method})",
        xaxis_title="score",
        height=120 + 28 * top.height,
        margin={"l": 10, "r": 20, "t": 50, "b": 40},
    )
    return fig


def evidence_figure(ranking: Any, service: str | None = None, *, limit: int = 8) -> go.Figure:
    """The evidence behind one service's rank: baseline vs observed for what moved most."""
    ev = ranking.explain(service, limit=limit)
    if ev.is_empty():
        raise SchemaError(
            f"no evidence for {service!r} in this ranking. Pick a service from ranking.services."
        )
    labels = [f"{k}: {n}"[:70] for k, n in ev.select("kind", "name").iter_rows()]
    fig = go.Figure(
        [
            go.Bar(
                y=labels[::-1],
                x=ev["baseline"].to_list()[::-1],
                orientation="h",
                name="baseline",
                marker={"color": "#9aa5b1"},
            ),
            go.Bar(
                y=labels[::-1],
                x=ev["observed"].to_list()[::-1],
                orientation="h",
                name="observed",
                marker={"color": _FAULT},
            ),
        ]
    )
    svc = ev["service"][0]
    fig.update_layout(
        template=TEMPLATE,
        barmode="group",
        title=f"Evidence for {svc}: what moved (ms, error ratio, rate or metric value)",
        height=140 + 46 * ev.height,
        margin={"l": 10, "r": 20, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.1},
    )
    fig.update_xaxes(type="log")
    return fig
