"""Figures of a fleet twin: how far its latencies are from the capture's, and a replayed fault."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from otlp_lab.viz._traces import TEMPLATE

__all__ = ["twin_validation_figure", "twin_rehearsal_figure"]

CAPTURED, SIMULATED = "#1f77b4", "#ff7f0e"


def _short(s: str, n: int = 38) -> str:
    return s if len(s) <= n else "…" + s[-(n - 1) :]


def twin_validation_figure(validation: Any, *, top: int = 12, title: str | None = None) -> go.Figure:
    """Left: p50 and p95 per operation, captured against simulated (the diagonal is a perfect twin,
    the band ±10 %). Right: end-to-end latency distributions (ECDF) side by side."""
    ep = validation.endpoints.filter(pl.col("n_simulated") > 0).head(top)
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.5, 0.5],
        subplot_titles=(f"Per operation (the {ep.height} busiest), ms", "End to end, ms"),
    )
    lo = max(min(ep["p50_ms"].min() or 1, ep["p50_sim_ms"].min() or 1) * 0.7, 0.01)
    hi = max(ep["p95_ms"].max() or 10, ep["p95_sim_ms"].max() or 10) * 1.4
    xs = np.geomspace(lo, hi, 20)
    fig.add_trace(go.Scatter(x=xs, y=xs * 1.1, line={"width": 0}, showlegend=False, hoverinfo="skip"), 1, 1)
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=xs * 0.9,
            fill="tonexty",
            fillcolor="rgba(0,0,0,0.07)",
            line={"width": 0},
            name="±10 %",
            hoverinfo="skip",
        ),
        1,
        1,
    )
    fig.add_trace(go.Scatter(x=xs, y=xs, line={"color": "grey", "dash": "dot"}, showlegend=False), 1, 1)
    names = [f"{r['service']}: {_short(r['endpoint'])}" for r in ep.iter_rows(named=True)]
    for q, sym in (("p50", "circle"), ("p95", "diamond")):
        fig.add_trace(
            go.Scatter(
                x=ep[f"{q}_ms"],
                y=ep[f"{q}_sim_ms"],
                mode="markers",
                marker={"symbol": sym, "size": 9},
                name=q,
                text=names,
                hovertemplate="%{text}<br>captured %{x:.1f} ms<br>twin %{y:.1f} ms<extra>" + q + "</extra>",
            ),
            1,
            1,
        )
    fig.update_xaxes(type="log", title="captured", row=1, col=1)
    fig.update_yaxes(type="log", title="twin", row=1, col=1)
    for tag, color in (("captured", CAPTURED), ("simulated", SIMULATED)):
        x = np.sort(np.asarray(validation.e2e_ms.get(tag, []), dtype=float))
        if len(x):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=np.arange(1, len(x) + 1) / len(x),
                    mode="lines",
                    line={"color": color, "shape": "hv"},
                    name="held-out capture" if tag == "captured" else "twin",
                ),
                1,
                2,
            )
    fig.update_xaxes(type="log", title="latency (ms)", row=1, col=2)
    fig.update_yaxes(title="share of requests", range=[0, 1.02], row=1, col=2)
    s = validation.summary
    big = [k for k in s if k.startswith("endpoints with")]
    fig.update_layout(
        template=TEMPLATE,
        height=430,
        title=title
        or (
            f"Twin vs held-out traces: p50 within 10 % for {s['p50 within 10%']} of {s[big[0]]} operations, "
            f"p95 within 20 % for {s['p95 within 20%']}"
        ),
        legend={"orientation": "h", "y": -0.18},
    )
    return fig


def twin_rehearsal_figure(rehearsal: Any, *, top: int = 15, title: str | None = None) -> go.Figure:
    """Median latency during a fault over before it, per service: the capture beside the twin."""
    s = rehearsal.services.head(top)
    fig = go.Figure()
    for col, name, color in (("ratio_p50", "captured", CAPTURED), ("ratio_p50_sim", "twin", SIMULATED)):
        fig.add_trace(go.Bar(y=s["service"], x=s[col], orientation="h", name=name, marker_color=color))
    fig.add_vline(
        x=1.25,
        line_dash="dot",
        line_color="grey",
        annotation_text="impacted (x1.25)",
        annotation_position="bottom right",
    )
    fig.update_layout(
        template=TEMPLATE,
        barmode="group",
        height=max(320, 26 * s.height + 120),
        xaxis={"title": "median latency during the fault / before it", "type": "log"},
        yaxis={"autorange": "reversed"},
        title=title or f"{rehearsal.fault.service}: {rehearsal.calibration}",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig
