"""Figures of edge and ledger simulations (:mod:`otlp_lab.sim.edge`, :mod:`otlp_lab.sim.ledger`): frames in, figures out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from otlp_lab.viz._traces import _PALETTE, _layout, _require

__all__ = [
    "edge_policy_figure",
    "buffer_timeline_figure",
    "edge_bytes_figure",
    "ledger_sweep_figure",
    "ledger_commits_figure",
]


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


def edge_policy_figure(frame: pl.DataFrame, *, title: str | None = None) -> go.Figure:
    """Data lost, error traces lost and p95 staleness against outages per hour, one line per buffer policy.

    ``frame`` is :func:`otlp_lab.sim.edge.sweep_outages` output (averaged over seeds and sites here).
    """
    _require(
        frame,
        ["policy", "outages_per_h", "lost_pct", "errors_lost_pct", "staleness_p95_s"],
        "edge_policy_figure(frame)",
        "use sweep_outages()",
    )
    agg = (
        frame.group_by("policy", "outages_per_h")
        .agg(pl.col("lost_pct", "errors_lost_pct", "staleness_p95_s").mean())
        .sort("policy", "outages_per_h")
    )
    policies = agg["policy"].unique(maintain_order=True).to_list()
    colors = _colors(policies)
    panels = [
        ("lost_pct", "traces lost (%)"),
        ("errors_lost_pct", "error traces lost (%)"),
        ("staleness_p95_s", "p95 staleness (s)"),
    ]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.08)
    for col, (metric, _label) in enumerate(panels, start=1):
        for p in policies:
            d = agg.filter(pl.col("policy") == p)
            fig.add_trace(
                go.Scatter(
                    x=d["outages_per_h"].to_list(),
                    y=d[metric].to_list(),
                    mode="lines+markers",
                    name=p,
                    legendgroup=p,
                    showlegend=col == 1,
                    line=dict(color=colors[p]),
                    hovertemplate=f"{p}<br>%{{x:.1f}} outages/h<br>%{{y:.2f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="outages per hour", row=1, col=col)
    return _layout(fig, title or "Buffer policies under intermittent uplinks", height=380)


def buffer_timeline_figure(
    timeline: pl.DataFrame, outages: pl.DataFrame | None = None, *, title: str | None = None
) -> go.Figure:
    """Buffer occupancy over time per site (:meth:`EdgeResult.buffer_timeline`), outages shaded (:meth:`EdgeResult.outages`)."""
    _require(
        timeline,
        ["t_s", "site", "buffer_bytes"],
        "buffer_timeline_figure(timeline)",
        "use EdgeResult.buffer_timeline()",
    )
    sites = timeline["site"].unique(maintain_order=True).to_list()
    colors = _colors(sites)
    fig = make_subplots(
        rows=len(sites), cols=1, shared_xaxes=True, subplot_titles=sites, vertical_spacing=0.06
    )
    for row, s in enumerate(sites, start=1):
        d = timeline.filter(pl.col("site") == s)
        fig.add_trace(
            go.Scatter(
                x=d["t_s"].to_list(),
                y=(d["buffer_bytes"] / 1e3).to_list(),
                mode="lines",
                name=s,
                line=dict(color=colors[s]),
                showlegend=False,
                hovertemplate=f"{s}<br>t=%{{x:.0f}} s<br>%{{y:,.0f}} kB<extra></extra>",
            ),
            row=row,
            col=1,
        )
        if outages is not None:
            for o in outages.filter(pl.col("site") == s).iter_rows(named=True):
                fig.add_vrect(
                    x0=o["start_s"],
                    x1=o["end_s"],
                    fillcolor="#d62728",
                    opacity=0.12,
                    line_width=0,
                    row=row,
                    col=1,
                )
        fig.update_yaxes(title_text="kB buffered", row=row, col=1)
    fig.update_xaxes(title_text="simulated seconds (red: uplink down)", row=len(sites), col=1)
    return _layout(
        fig,
        title or "Store-and-forward buffers: fill while the uplink is down, drain at its bandwidth",
        height=220 * len(sites) + 80,
    )


def edge_bytes_figure(frame: pl.DataFrame, *, title: str | None = None) -> go.Figure:
    """Uplink bytes, traces lost and p95 staleness per variant (:func:`otlp_lab.sim.edge.compare_edge` output)."""
    _require(
        frame,
        ["variant", "uplink_bytes", "lost_pct", "staleness_p95_s"],
        "edge_bytes_figure(frame)",
        "use compare_edge()",
    )
    agg = frame.group_by("variant", maintain_order=True).agg(
        (pl.col("uplink_bytes").sum() / 1e6).alias("mb"), pl.col("lost_pct", "staleness_p95_s").mean()
    )
    variants = agg["variant"].to_list()
    colors = _colors(variants)
    panels = (("mb", "uplink MB"), ("lost_pct", "traces lost (%)"), ("staleness_p95_s", "p95 staleness (s)"))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels])
    for col, (metric, _label) in enumerate(panels, start=1):
        fig.add_trace(
            go.Bar(
                x=variants,
                y=agg[metric].to_list(),
                marker_color=[colors[v] for v in variants],
                showlegend=False,
                text=[f"{v:,.1f}" for v in agg[metric].to_list()],
                textposition="outside",
            ),
            row=1,
            col=col,
        )
    return _layout(fig, title or "What edge processing saves on the uplink", height=380)


def ledger_sweep_figure(frame: pl.DataFrame, *, title: str | None = None) -> go.Figure:
    """Commit latency, throughput and messages per decision against validators, per protocol (and variant, dashed).

    ``frame`` is :func:`otlp_lab.sim.ledger.sweep_ledger` output.
    """
    _require(
        frame,
        ["protocol", "validators", "variant", "commit_p50_s", "throughput_tps", "messages_per_decision"],
        "ledger_sweep_figure(frame)",
        "use sweep_ledger()",
    )
    agg = (
        frame.group_by("protocol", "variant", "validators", maintain_order=True)
        .agg(pl.col("commit_p50_s", "tx_p99_s", "throughput_tps", "messages_per_decision").mean())
        .sort("protocol", "variant", "validators")
    )
    protocols = agg["protocol"].unique(maintain_order=True).to_list()
    variants = agg["variant"].unique(maintain_order=True).to_list()
    colors = _colors(protocols)
    dashes = dict(zip(variants, ("solid", "dash", "dot", "dashdot", "longdash"), strict=False))
    panels = [
        ("commit_p50_s", "block commit p50 (ms)", 1e3),
        ("tx_p99_s", "transaction p99 (ms)", 1e3),
        ("throughput_tps", "throughput (tx/s)", 1.0),
        ("messages_per_decision", "messages per block", 1.0),
    ]
    fig = make_subplots(rows=1, cols=4, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.06)
    for col, (metric, _label, scale) in enumerate(panels, start=1):
        for p in protocols:
            for v in variants:
                d = agg.filter((pl.col("protocol") == p) & (pl.col("variant") == v))
                if d.height == 0:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=d["validators"].to_list(),
                        y=[None if y is None else y * scale for y in d[metric].to_list()],
                        mode="lines+markers",
                        name=f"{p} · {v}",
                        legendgroup=f"{p}{v}",
                        showlegend=col == 1,
                        line=dict(color=colors[p], dash=dashes.get(v, "solid")),
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text="validators", row=1, col=col)
    fig.update_yaxes(type="log", row=1, col=4)
    return _layout(fig, title or "Raft vs PBFT as the network grows", height=400)


def ledger_commits_figure(
    results: Mapping[str, Any], *, fault_s: float | None = None, title: str | None = None
) -> go.Figure:
    """Cumulative blocks decided over time for several runs (a mapping of label to :class:`LedgerResult`)."""
    labels = list(results)
    colors = _colors(labels)
    fig = go.Figure()
    for label in labels:
        b = results[label].blocks().filter(pl.col("committed_s").is_not_null()).sort("committed_s")
        fig.add_trace(
            go.Scatter(
                x=b["committed_s"].to_list(),
                y=list(range(1, b.height + 1)),
                mode="lines",
                name=label,
                line=dict(color=colors[label], shape="hv"),
            )
        )
    if fault_s is not None:
        fig.add_vline(x=fault_s, line_dash="dot", line_color="#d62728", annotation_text="faults start")
    fig.update_xaxes(title_text="simulated seconds")
    fig.update_yaxes(title_text="blocks decided")
    return _layout(fig, title or "Who keeps committing", height=380)
