"""Figures of forecasts: a series, its forecast and the seasonal-naive forecast; capacity warnings."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import polars as pl

from otlp_lab.viz._traces import TEMPLATE

__all__ = ["forecast_figure", "capacity_figure"]


def forecast_figure(result: Any, *, service: str, title: str | None = None, unit: str = "") -> go.Figure:
    """Actual values, the model's forecasts and the seasonal-naive ones for one series, over time."""
    f = result.forecasts.filter(pl.col(result.forecasts.columns[1]) == service).sort("window_start")
    s = result.scores.filter(pl.col(result.scores.columns[0]) == service)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=f["window_start"], y=f["actual"], name="actual", line={"color": "#444"}))
    fig.add_trace(
        go.Scatter(
            x=f["window_start"], y=f["naive"], name="seasonal naive", line={"color": "#bbb", "dash": "dot"}
        )
    )
    fig.add_trace(
        go.Scatter(x=f["window_start"], y=f["forecast"], name="forecast", line={"color": "#d62728"})
    )
    score = ""
    if s.height:
        r = s.row(0, named=True)
        score = f": MASE {r['mase']:.2f} (seasonal naive {r['mase_naive']:.2f})"
    fig.update_layout(
        template=TEMPLATE,
        height=340,
        title=title or f"{service}{score}",
        yaxis_title=unit,
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def capacity_figure(
    frame: pl.DataFrame, warnings: pl.DataFrame, *, service: str, capacity_rps: float
) -> go.Figure:
    """Request rate against capacity, with when the warning came and when the fleet saturated."""
    f = frame.filter(pl.col("service") == service).sort("window_start")
    w = warnings.filter(pl.col("service") == service).row(0, named=True)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=f["window_start"], y=f["rate_per_s"], name="request rate", line={"color": "#1f77b4"})
    )
    fig.add_trace(
        go.Scatter(x=f["window_start"], y=f["p95_ms"], name="p95 (ms)", yaxis="y2", line={"color": "#ff7f0e"})
    )
    fig.add_hline(y=capacity_rps, line_dash="dot", line_color="grey", annotation_text="capacity")
    if w["warned_at"] is not None:
        fig.add_vline(x=w["warned_at"], line_color="#2ca02c", annotation_text="warning")
    if w["saturated_at"] is not None:
        fig.add_vline(x=w["saturated_at"], line_color="#d62728", annotation_text="saturated")
    lead = f"{w['lead_time_s']:.0f} s of warning" if w["lead_time_s"] is not None else "no lead time"
    fig.update_layout(
        template=TEMPLATE,
        height=360,
        title=f"{service}: {lead}",
        yaxis={"title": "requests/s"},
        yaxis2={"title": "p95 (ms)", "overlaying": "y", "side": "right", "type": "log"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
