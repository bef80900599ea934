"""Plotly figures of traces: Polars frames from the Lab in, ``plotly.graph_objects.Figure`` out.

Nothing here touches the database: each builder takes the frame a :class:`~otlp_lab.Lab`
method returns (``service_graph()``, ``spans()``, ``span_tree(trace_id)``,
``critical_path(trace_id)``, ``red()``, ``traces()``) and draws it. Times in the frames
are UTC (naive, as the Lab stores them); latencies are drawn in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import html
import math
import os.path
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from otlp_lab.errors import ConfigError, SchemaError

__all__ = [
    "TEMPLATE",
    "fault_latency_figure",
    "latency_by_operation_figure",
    "red_figure",
    "service_colors",
    "service_graph_figure",
    "slow_traces_table_figure",
    "trace_waterfall_figure",
]

#: The plotly template every figure uses.
TEMPLATE = "plotly_white"

# Qualitative colours for services; no black or near-black (the critical path is drawn black).
_PALETTE: tuple[str, ...] = (
    tuple(qualitative.Plotly) + tuple(qualitative.Safe) + tuple(qualitative.Vivid) + tuple(qualitative.Pastel)
)
_CRITICAL = "#111111"
_ERROR = "#d62728"
_FAULT = "#d62728"

_METRIC_LABELS = {
    "p50_ms": "p50 latency (ms)",
    "p95_ms": "p95 latency (ms)",
    "p99_ms": "p99 latency (ms)",
    "rate_per_s": "requests per second",
    "requests": "requests per window",
    "errors": "errors per window",
    "error_rate": "error rate",
}
_UNITS = {
    "p50_ms": "ms",
    "p95_ms": "ms",
    "p99_ms": "ms",
    "rate_per_s": "req/s",
    "error_rate": "errors/request",
}
_QUANTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}


# ---------------------------------------------------------------------------------------------- helpers
def service_colors(services: Iterable[str]) -> dict[str, str]:
    """A colour per service, in the order given (sorted is stable across figures).

    Pass the result as ``colors=`` to several builders so a service has the same colour
    in every figure of a notebook or report.

    Examples
    --------
    >>> service_colors(["cart", "checkout"])
    {'cart': '#636EFA', 'checkout': '#EF553B'}
    """
    out: dict[str, str] = {}
    for s in services:
        if s not in out:
            out[s] = _PALETTE[len(out) % len(_PALETTE)]
    return out


def _colors_for(names: Iterable[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    """``colors`` plus a colour for each name it lacks, preferring colours it does not use."""
    out = dict(colors or {})
    missing = sorted({n for n in names if n is not None and n not in out})
    free = [c for c in _PALETTE if c not in set(out.values())] or list(_PALETTE)
    for i, n in enumerate(missing):
        out[n] = free[i % len(free)]
    return out


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str, hint: str) -> None:
    if not isinstance(frame, pl.DataFrame):
        raise ConfigError(f"{what} must be a polars.DataFrame ({hint}). Got {type(frame).__name__} instead.")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{what} needs the columns {missing} ({hint}). Got {frame.columns} instead.")


def _naive_utc(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Datetimes as naive UTC (the Lab's convention), whatever their time zone."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return expr


def _common_affixes(names: Sequence[str]) -> tuple[str, str]:
    """Prefix and suffix shared by all names, cut at a separator (``ts-`` / ``-service``)."""
    if len(names) < 2:
        return "", ""
    seps = "-._/:"

    def cut_prefix(p: str) -> str:
        i = max(p.rfind(c) for c in seps)
        return p[: i + 1] if i >= 0 else ""

    pre = cut_prefix(os.path.commonprefix(list(names)))
    suf = cut_prefix(os.path.commonprefix([n[::-1] for n in names]))[::-1]
    if any(len(n) <= len(pre) + len(suf) for n in names):
        return "", ""
    return pre, suf


def _shortener(names: Iterable[str]):
    names = sorted({n for n in names if n})
    pre, suf = _common_affixes(names)

    def short(n: str | None) -> str:
        if n is None:
            return "(unknown)"
        if pre and n.startswith(pre):
            n = n[len(pre) :]
        if suf and n.endswith(suf):
            n = n[: len(n) - len(suf)]
        return n

    return short


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=False)


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE,
        title=dict(text=title, x=0.01, xanchor="left"),
        margin=dict(l=10, r=10, t=60, b=40),
        hoverlabel=dict(align="left"),
        **kw,
    )
    return fig


def _fmt_ms(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:,.1f} ms" if v >= 10 else f"{v:,.2f} ms"


def _log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    vals, text = [], []
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        v = 10.0**e
        vals.append(float(e))
        text.append(f"{v:g} ms" if v < 1000 else f"{v / 1000:g} s")
    return vals, text


# ---------------------------------------------------------------------------------------------- service graph
def _layered_positions(
    nodes: list[str], edges: list[tuple[str, str, float]]
) -> dict[str, tuple[float, float]]:
    """Left-to-right layers by longest path from the entry services, ordered by barycentre.

    Cycles are broken at the edges a depth-first search meets going back, so any graph lays out.
    """
    idx = {n: i for i, n in enumerate(nodes)}
    succ: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    indeg = np.zeros(len(nodes), dtype=int)
    net = np.zeros(len(nodes))  # calls received minus calls made: entry services are most negative
    for a, b, w in edges:
        if a != b:
            succ[idx[a]].append(idx[b])
            indeg[idx[b]] += 1
            net[idx[b]] += w
            net[idx[a]] -= w
    # Depth-first search from the sources, then from the services that call more than they are
    # called, marks back edges: in a cycle, the caller that is mostly a caller stays on the left.
    state = np.zeros(len(nodes), dtype=int)  # 0 new, 1 on stack, 2 done
    back: set[tuple[int, int]] = set()
    order = sorted(range(len(nodes)), key=lambda i: (indeg[i] > 0, net[i], nodes[i]))
    for start in order:
        if state[start]:
            continue
        stack = [(start, iter(succ[start]))]
        state[start] = 1
        while stack:
            v, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[v] = 2
                stack.pop()
            elif state[nxt] == 1:
                back.add((v, nxt))
            elif state[nxt] == 0:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    dag = {v: [w for w in ws if (v, w) not in back] for v, ws in succ.items()}
    # Longest-path layering over the DAG, in topological order (Kahn).
    din = np.zeros(len(nodes), dtype=int)
    for ws in dag.values():
        for w in ws:
            din[w] += 1
    layer = np.zeros(len(nodes), dtype=int)
    ready = [i for i in range(len(nodes)) if din[i] == 0]
    while ready:
        v = ready.pop()
        for w in dag[v]:
            layer[w] = max(layer[w], layer[v] + 1)
            din[w] -= 1
            if din[w] == 0:
                ready.append(w)
    preds: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for v, ws in dag.items():
        for w in ws:
            preds[w].append(v)
    layers = [
        sorted(np.flatnonzero(layer == k).tolist(), key=lambda i: nodes[i])
        for k in range(int(layer.max()) + 1)
    ]
    pos = np.zeros(len(nodes))
    for members in layers:
        pos[members] = np.arange(len(members)) - (len(members) - 1) / 2
    # A few barycentre sweeps (down using callers, up using callees) to untangle edges.
    for sweep in range(4):
        seq = layers[1:] if sweep % 2 == 0 else layers[-2::-1]
        for members in seq:
            nbr = preds if sweep % 2 == 0 else dag
            key = {i: (float(np.mean(pos[nbr[i]])) if nbr[i] else float(pos[i]), nodes[i]) for i in members}
            members.sort(key=key.__getitem__)
            pos[members] = np.arange(len(members)) - (len(members) - 1) / 2
    return {nodes[i]: (float(layer[i]), float(-pos[i])) for i in range(len(nodes))}


def _circular_positions(nodes: list[str]) -> dict[str, tuple[float, float]]:
    theta = np.pi / 2 - 2 * np.pi * np.arange(len(nodes)) / max(len(nodes), 1)
    return {n: (float(np.cos(t)), float(np.sin(t))) for n, t in zip(nodes, theta, strict=True)}


def _bezier(p0: np.ndarray, p2: np.ndarray, bend: float, n: int = 9) -> np.ndarray:
    mid = (p0 + p2) / 2
    d = p2 - p0
    normal = np.array([-d[1], d[0]])
    p1 = mid + bend * normal
    t = np.linspace(0, 1, n)[:, None]
    return np.round((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2, 4)


def service_graph_figure(
    edges: pl.DataFrame,
    *,
    color_by: str = "auto",
    layout: str = "layered",
    title: str | None = None,
    height: int | None = None,
) -> go.Figure:
    """The service dependency graph: services as nodes, caller -> callee edges.

    Edge width grows with the number of calls; edge colour shows the error rate or the
    p95 latency; hovering an edge's midpoint shows calls, errors and p50/p95/p99.

    Parameters
    ----------
    edges : polars.DataFrame
        :meth:`Lab.service_graph`: ``client``, ``server``, ``calls``, ``errors``,
        ``error_rate``, ``p50_ms``, ``p95_ms``, ``p99_ms``.
    color_by : {"auto", "error_rate", "p95_ms"}
        ``"auto"`` colours by error rate when any call failed, else by p95 latency.
    layout : {"layered", "circular"}
        ``"layered"`` puts entry services on the left and each callee one layer right of
        its furthest caller; ``"circular"`` puts services on a circle.
    title : str, optional
    height : int, optional
        Pixels; grows with the widest layer by default.

    Returns
    -------
    plotly.graph_objects.Figure
        Traces: the edge lines (``name="edge"``, one trace per width and colour, edges
        separated by NaN), the edge midpoints (``name="edges"``: one point per edge, with
        the hover text and the colour bar) and the nodes (``name="services"``;
        ``customdata`` holds the full service names). An arrowhead annotation per edge
        shows the direction.

    Examples
    --------
    >>> service_graph_figure(lab.service_graph())  # doctest: +SKIP
    """
    cols = ["client", "server", "calls", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms"]
    _require(edges, cols, "service_graph_figure(edges)", "pass lab.service_graph()")
    if color_by not in {"auto", "error_rate", "p95_ms"}:
        raise ConfigError(f"color_by must be 'auto', 'error_rate' or 'p95_ms'. Got {color_by!r} instead.")
    if layout not in {"layered", "circular"}:
        raise ConfigError(f"layout must be 'layered' or 'circular'. Got {layout!r} instead.")
    e = edges.drop_nulls(["client", "server"]).sort("calls", descending=True)
    if color_by == "auto":
        color_by = "error_rate" if e.height and (e["errors"].sum() or 0) > 0 else "p95_ms"
    rows = e.to_dicts()
    calls_in: dict[str, int] = {}
    calls_out: dict[str, int] = {}
    callers: dict[str, set[str]] = {}
    callees: dict[str, set[str]] = {}
    for r in rows:
        calls_out[r["client"]] = calls_out.get(r["client"], 0) + r["calls"]
        calls_in[r["server"]] = calls_in.get(r["server"], 0) + r["calls"]
        callees.setdefault(r["client"], set()).add(r["server"])
        callers.setdefault(r["server"], set()).add(r["client"])
    nodes = sorted(set(calls_in) | set(calls_out))
    edge_list = [(r["client"], r["server"], float(r["calls"])) for r in rows]
    pos = (
        _layered_positions(nodes, edge_list) if layout == "layered" and nodes else _circular_positions(nodes)
    )
    short = _shortener(nodes)

    # Colour scale of the edges.
    if color_by == "error_rate":
        vals = np.array([r["error_rate"] or 0.0 for r in rows], dtype=float)
        cmin, cmax = 0.0, max(0.05, float(vals.max()) if len(vals) else 0.05)
        scale, cbar = "RdYlGn_r", dict(title=dict(text="error rate"), tickformat=".0%")
    else:
        p95 = np.array([max(r["p95_ms"] or 0.0, 1e-3) for r in rows], dtype=float)
        vals = np.log10(p95)
        cmin = math.floor(float(vals.min())) if len(vals) else 0.0
        cmax = max(math.ceil(float(vals.max())) if len(vals) else 1.0, cmin + 1)
        tv, tt = _log_ticks(cmin, cmax)
        scale, cbar = "Plasma", dict(title=dict(text="p95"), tickvals=tv, ticktext=tt)
    # Edge lines in 16 colour steps and half-pixel widths, one trace per (width, colour): a few
    # traces instead of one per edge keeps the figure small; the midpoints carry exact values.
    norm = np.round(np.clip((vals - cmin) / (cmax - cmin), 0, 1) * 16) / 16 if len(vals) else vals
    line_colors = sample_colorscale(scale, norm.tolist()) if len(vals) else []
    max_calls = max((r["calls"] for r in rows), default=1)

    fig = go.Figure()
    mids, hover, annotations = [], [], []
    strokes: dict[tuple[float, str], list[np.ndarray]] = {}
    for r, color in zip(rows, line_colors, strict=True):
        p0, p2 = np.array(pos[r["client"]]), np.array(pos[r["server"]])
        if r["client"] == r["server"]:
            loop = np.linspace(0, 2 * np.pi, 13)
            pts = np.round(p0 + 0.25 * np.stack([np.sin(loop), 1 - np.cos(loop)], 1), 4)
        else:
            pts = _bezier(p0, p2, bend=0.12)
        width = round(2 * (1.0 + 6.0 * math.sqrt(r["calls"] / max_calls))) / 2
        strokes.setdefault((width, color), []).extend([pts, np.full((1, 2), np.nan)])
        mids.append(pts[len(pts) // 2])
        hover.append(
            f"<b>{_esc(r['client'])} → {_esc(r['server'])}</b><br>"
            f"calls: {r['calls']:,}<br>errors: {r['errors']:,} ({(r['error_rate'] or 0):.1%})<br>"
            f"p50: {_fmt_ms(r['p50_ms'])}<br>p95: {_fmt_ms(r['p95_ms'])}<br>p99: {_fmt_ms(r['p99_ms'])}"
        )
        if r["client"] != r["server"]:
            annotations.append(
                dict(
                    x=pts[-1, 0],
                    y=pts[-1, 1],
                    ax=pts[-3, 0],
                    ay=pts[-3, 1],
                    axref="x",
                    ayref="y",
                    text="",
                    arrowhead=2,
                    arrowwidth=max(1.0, width / 2),
                    arrowcolor=color,
                    standoff=9,
                )
            )
    for (width, color), parts in sorted(strokes.items()):
        xy = np.concatenate(parts[:-1]).astype(np.float32)
        fig.add_trace(
            go.Scatter(
                x=xy[:, 0],
                y=xy[:, 1],
                mode="lines",
                name="edge",
                showlegend=False,
                connectgaps=False,
                line=dict(width=width, color=color),
                opacity=0.75,
                hoverinfo="skip",
            )
        )
    mid = np.array(mids) if mids else np.zeros((0, 2))
    fig.add_trace(
        go.Scatter(
            x=mid[:, 0],
            y=mid[:, 1],
            mode="markers",
            name="edges",
            showlegend=False,
            marker=dict(
                size=7,
                color=vals,
                colorscale=scale,
                cmin=cmin,
                cmax=cmax,
                showscale=bool(len(vals)),
                colorbar=dict(thickness=12, len=0.6, **cbar),
                line=dict(width=0.5, color="white"),
            ),
            hovertext=hover,
            hoverinfo="text",
        )
    )
    max_in = max(calls_in.values(), default=1)
    xs = [pos[n][0] for n in nodes]
    ys = [pos[n][1] for n in nodes]
    sizes = [14 + 22 * math.sqrt(calls_in.get(n, 0) / max_in) for n in nodes]
    node_hover = [
        f"<b>{_esc(n)}</b><br>served {calls_in.get(n, 0):,} calls from {len(callers.get(n, ()))} callers<br>"
        f"made {calls_out.get(n, 0):,} calls to {len(callees.get(n, ()))} callees"
        for n in nodes
    ]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers+text",
            name="services",
            showlegend=False,
            text=[short(n) for n in nodes],
            textposition="top center",
            textfont=dict(size=11),
            customdata=nodes,
            hovertext=node_hover,
            hoverinfo="text",
            marker=dict(size=sizes, color="#4C78A8", line=dict(width=1.5, color="white")),
        )
    )
    widest = max((sum(1 for n in nodes if pos[n][0] == x) for x in set(xs)), default=1)
    what = "error rate" if color_by == "error_rate" else "p95 latency"
    _layout(
        fig,
        title or f"Service graph: {len(nodes)} services, {len(rows)} edges (width: calls, colour: {what})",
        height=height or int(min(1400, max(450, 70 * widest + 160))),
        annotations=annotations,
        # Room around the outer nodes for their labels.
        xaxis=dict(visible=False, range=[min(xs, default=0) - 0.6, max(xs, default=0) + 0.6]),
        yaxis=dict(visible=False, range=[min(ys, default=0) - 0.6, max(ys, default=0) + 0.9]),
        hovermode="closest",
    )
    return fig


# ---------------------------------------------------------------------------------------------- latency by operation
def latency_by_operation_figure(
    spans: pl.DataFrame,
    top: int = 15,
    *,
    rank_by: str = "count",
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Latency distribution of the busiest operations, one box per service and span name.

    The boxes are computed here from every span (quartiles, and whiskers at the last
    value within 1.5 IQR, as Tukey's box plot draws them), so the figure stays small
    however many spans there are; a diamond marks the p99. The latency axis is
    logarithmic.

    Parameters
    ----------
    spans : polars.DataFrame
        Spans with ``service_name``, ``name`` and ``duration_ns`` (``lab.spans()``, or
        ``lab.sql("select service_name, name, duration_ns from spans")`` to move less data).
    top : int, default 15
        How many operations to draw.
    rank_by : {"count", "total", "p95"}
        Pick the operations with the most spans, the most time spent (sum of durations)
        or the highest p95.
    colors : mapping, optional
        Service -> colour (:func:`service_colors`).
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Box`` per operation (``name`` is ``"service: operation"``, first ranked
        first), then a ``"p99"`` scatter.
    """
    _require(
        spans,
        ["service_name", "name", "duration_ns"],
        "latency_by_operation_figure(spans)",
        "pass lab.spans()",
    )
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ConfigError(f"top must be a positive integer. Got {top!r} instead.")
    rank_col = {"count": "n", "total": "total_ms", "p95": "p95"}.get(rank_by)
    if rank_col is None:
        raise ConfigError(f"rank_by must be 'count', 'total' or 'p95'. Got {rank_by!r} instead.")
    df = spans.select(
        pl.col("service_name"),
        pl.col("name"),
        (pl.col("duration_ns").cast(pl.Float64) / 1e6).clip(lower_bound=1e-3).alias("ms"),
    ).drop_nulls("ms")
    q = lambda p: pl.col("ms").quantile(p, interpolation="linear")  # noqa: E731
    stats = (
        df.group_by("service_name", "name")
        .agg(
            pl.len().alias("n"),
            pl.col("ms").sum().alias("total_ms"),
            pl.col("ms").mean().alias("mean"),
            q(0.25).alias("q1"),
            q(0.5).alias("median"),
            q(0.75).alias("q3"),
            q(0.95).alias("p95"),
            q(0.99).alias("p99"),
        )
        .sort([rank_col, "service_name", "name"], descending=[True, False, False], nulls_last=True)
        .head(top)
        .with_columns(((pl.col("q3") - pl.col("q1")) * 1.5).alias("_iqr15"))
    )
    fences = (
        df.join(stats.select("service_name", "name", "q1", "q3", "_iqr15"), on=["service_name", "name"])
        .group_by("service_name", "name")
        .agg(
            pl.col("ms").filter(pl.col("ms") >= pl.col("q1") - pl.col("_iqr15")).min().alias("lowerfence"),
            pl.col("ms").filter(pl.col("ms") <= pl.col("q3") + pl.col("_iqr15")).max().alias("upperfence"),
        )
    )
    stats = stats.join(fences, on=["service_name", "name"], how="left", maintain_order="left")
    short = _shortener(stats["service_name"].to_list())
    palette = _colors_for(stats["service_name"].to_list(), colors)
    fig = go.Figure()
    labels = []
    for r in stats.iter_rows(named=True):
        label = f"{short(r['service_name'])}: {_clip(r['name'] or '', 48)}"
        while label in labels:  # same short label for two operations: keep both rows
            label += " "
        labels.append(label)
        fig.add_trace(
            go.Box(
                name=label,
                y=[label],
                q1=[r["q1"]],
                median=[r["median"]],
                q3=[r["q3"]],
                mean=[r["mean"]],
                lowerfence=[r["lowerfence"]],
                upperfence=[r["upperfence"]],
                orientation="h",
                boxmean=True,
                marker_color=palette[r["service_name"]],
                showlegend=False,
                legendgroup=r["service_name"],
                hoverinfo="x+name",
            )
        )
    if stats.height:
        fig.add_trace(
            go.Scatter(
                x=stats["p99"].to_numpy(),
                y=labels,
                mode="markers",
                name="p99",
                marker=dict(symbol="diamond", size=8, color="#444"),
                customdata=np.stack([stats["n"].to_numpy(), stats["p95"].to_numpy()], axis=1),
                hovertemplate="%{y}<br>p99 %{x:,.1f} ms · p95 %{customdata[1]:,.1f} ms · %{customdata[0]:,} spans<extra></extra>",
            )
        )
    ranked = {"count": "most spans", "total": "most time spent", "p95": "highest p95"}[rank_by]
    _layout(
        fig,
        title
        or f"Latency by operation: top {stats.height} by {ranked} (box: quartiles, whiskers 1.5 IQR, ◆ p99)",
        height=max(320, 26 * stats.height + 140),
        xaxis=dict(type="log", title=dict(text="span duration (ms, log scale)")),
        yaxis=dict(categoryorder="array", categoryarray=labels[::-1], automargin=True),
        showlegend=False,
    )
    return fig


# ---------------------------------------------------------------------------------------------- waterfall
def _dfs_order(ids: list[str], parents: list[str | None], starts: list[int]) -> tuple[list[int], list[int]]:
    """Rows in Jaeger's order: each span followed by its children by start time; and each depth."""
    index = {s: i for i, s in enumerate(ids)}
    kids: dict[int, list[int]] = {}
    roots = []
    for i, p in enumerate(parents):
        j = index.get(p) if p is not None else None
        if j is None or j == i:
            roots.append(i)
        else:
            kids.setdefault(j, []).append(i)
    key = lambda i: (starts[i], ids[i])  # noqa: E731
    order, depth = [], []
    seen: set[int] = set()
    stack = [(i, 0) for i in sorted(roots, key=key, reverse=True)]
    while stack:
        i, d = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        order.append(i)
        depth.append(d)
        stack.extend((c, d + 1) for c in sorted(kids.get(i, []), key=key, reverse=True))
    for i in sorted(set(range(len(ids))) - seen, key=key):  # parent cycles: keep every span
        order.append(i)
        depth.append(0)
    return order, depth


def _fold(
    df: pl.DataFrame, critical_path: pl.DataFrame | None, max_rows: int
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Keep about ``max_rows`` rows of a tree-ordered trace; fold the others under their nearest kept ancestor.

    Returns the rows to draw (kept spans, and after each kept span with folded descendants a
    row with ``_folded`` set whose times cover them) and, per folded row, its count and hover.
    """
    ids = df["span_id"].to_list()
    parents = df["parent_span_id"].to_list()
    depth = df["_depth"].to_list()
    pos = {s: i for i, s in enumerate(ids)}
    parent_pos = [
        pos.get(p, -1) if p is not None and p != s else -1 for s, p in zip(ids, parents, strict=True)
    ]
    errors = df["_error"].to_list() if "_error" in df.columns else (df["status_code"] == "ERROR").to_list()
    crit_order: list[int] = []
    if critical_path is not None and {"span_id", "start_ns", "end_ns"} <= set(critical_path.columns):
        crit = (
            critical_path.group_by("span_id")
            .agg((pl.col("end_ns") - pl.col("start_ns")).sum().alias("_ms"))
            .sort("_ms", "span_id", descending=[True, False])
        )
        crit_order = [pos[s] for s in crit["span_id"].to_list() if s in pos]
    shallow = sorted(range(len(ids)), key=lambda k: (depth[k], k))

    def choose(budget: int) -> list[bool]:
        keep = [False] * len(ids)
        n = 0

        def keep_with_ancestors(i: int) -> int:
            added = 0
            while i >= 0 and not keep[i]:
                keep[i] = True
                added += 1
                i = parent_pos[i]
            return added

        for i, d in enumerate(depth):
            if d == 0 or errors[i]:  # roots and errors always show
                n += keep_with_ancestors(i)
        for i in crit_order:  # then the spans holding most critical time
            need, j = 0, i
            while j >= 0 and not keep[j]:
                need += 1
                j = parent_pos[j]
            if need and n + need <= budget:
                n += keep_with_ancestors(i)
        for i in shallow:  # then the shallowest, to the budget
            if n >= budget:
                break
            if not keep[i] and (parent_pos[i] < 0 or keep[parent_pos[i]]):
                keep[i] = True
                n += 1
        return keep

    def rows_needed(keep: list[bool]) -> int:
        owners = set()
        for i in range(len(ids)):
            if not keep[i]:
                j = parent_pos[i]
                while j >= 0 and not keep[j]:
                    j = parent_pos[j]
                owners.add(j)
        return sum(keep) + len(owners)

    budget = max_rows
    keep = choose(budget)
    while budget > 1 and rows_needed(keep) > max_rows:  # folded rows count too
        budget -= max(1, (rows_needed(keep) - max_rows) // 2)
        keep = choose(budget)
    # nearest kept ancestor of each folded span
    owner = [-1] * len(ids)
    for i in range(len(ids)):
        if not keep[i]:
            j = parent_pos[i]
            while j >= 0 and not keep[j]:
                j = parent_pos[j]
            owner[i] = j
    groups: dict[int, list[int]] = {}
    for i, o in enumerate(owner):
        if not keep[i]:
            groups.setdefault(o, []).append(i)
    start = df["_start_ns"].to_list()
    dur = df["duration_ns"].to_list()
    names = [f"{s}: {n}" for s, n in zip(df["service_name"].to_list(), df["name"].to_list(), strict=True)]
    rows: list[int] = []
    fold_rows: list[dict[str, Any]] = []
    folded: list[dict[str, Any]] = []
    cols = df.columns
    for i in range(len(ids)):
        if not keep[i]:
            continue
        rows.append(i)
        if i in groups:
            members = groups[i]
            lo = min(start[k] for k in members)
            hi = max(start[k] + (dur[k] or 0) for k in members)
            ops: dict[str, int] = {}
            for k in members:
                ops[names[k]] = ops.get(names[k], 0) + 1
            top = sorted(ops.items(), key=lambda kv: -kv[1])[:6]
            hover = (
                f"<b>{len(members)} spans folded</b><br>"
                + "<br>".join(f"{c} × {_esc(_clip(n, 60))}" for n, c in top)
                + ("<br>…" if len(ops) > 6 else "")
            )
            fold_rows.append({"after": len(rows) - 1, "start": lo, "dur": hi - lo, "depth": depth[i] + 1})
            folded.append({"count": len(members), "hover": hover, "members": [ids[k] for k in members]})
    kept = df[rows].with_columns(pl.lit(False).alias("_folded"))
    if not fold_rows:
        return kept, []
    blank = {c: None for c in cols}
    extra = pl.DataFrame(
        [
            {**blank, "_start_ns": f["start"], "duration_ns": f["dur"], "_depth": f["depth"], "_folded": True}
            for f in fold_rows
        ],
        schema={**kept.schema},
    )
    order = []
    fi = 0
    for r in range(kept.height):
        order.append(("k", r))
        while fi < len(fold_rows) and fold_rows[fi]["after"] == r:
            order.append(("f", fi))
            fi += 1
    out = pl.concat([kept, extra])
    idx = [r if kind == "k" else kept.height + r for kind, r in order]
    return out[idx], folded


def _fold_info(df: pl.DataFrame, folded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row: the folded-row info (in row order) or an empty dict."""
    it = iter(folded)
    return [next(it) if f else {} for f in df["_folded"].to_list()]


def trace_waterfall_figure(
    span_tree_frame: pl.DataFrame,
    critical_path: pl.DataFrame | None = None,
    *,
    colors: Mapping[str, str] | None = None,
    row_height_px: int = 16,
    title: str | None = None,
    max_rows: int | None = None,
) -> go.Figure:
    """One trace as a waterfall (Gantt chart): a bar per span, children under their parent.

    Rows follow the trace tree (each span followed by its children, by start time) and
    labels are indented by depth. Bars are coloured by service; error spans get a red
    outline and a red ✕; critical-path segments, when given, are drawn as a thin black
    bar inside the spans that determined the trace's end-to-end time.

    Parameters
    ----------
    span_tree_frame : polars.DataFrame
        The spans of one trace: :meth:`Lab.span_tree` with a ``trace_id``, or
        ``lab.spans("trace_id = '...'")``. Needs ``trace_id``, ``span_id``,
        ``parent_span_id``, ``service_name``, ``name``, ``start_time``, ``duration_ns``
        and ``status_code``; uses ``self_time_ns`` when present.
    critical_path : polars.DataFrame, optional
        :meth:`Lab.critical_path` of the same trace.
    colors : mapping, optional
        Service -> colour (:func:`service_colors`).
    row_height_px : int, default 16
    title : str, optional
    max_rows : int, optional
        Fold a larger trace to about this many rows (legible for traces of hundreds of
        spans): the root, the spans on the critical path, error spans and their ancestors
        keep their rows (then the shallowest others, up to ``max_rows``); the rest are folded
        into one grey ``"folded spans"`` row under their nearest shown ancestor, whose bar
        covers them and whose hover says how many there are and of which operations.

    Returns
    -------
    plotly.graph_objects.Figure
        One horizontal ``go.Bar`` per service (one bar per shown span in all), a
        ``"critical path"`` bar trace (one bar per segment) and an ``"error"`` marker
        trace when a span failed. Bars are placed at ms since the trace started.

    Raises
    ------
    ConfigError
        The frame holds no span, or spans of more than one trace.
    """
    cols = [
        "trace_id",
        "span_id",
        "parent_span_id",
        "service_name",
        "name",
        "start_time",
        "duration_ns",
        "status_code",
    ]
    _require(span_tree_frame, cols, "trace_waterfall_figure(span_tree_frame)", "pass lab.span_tree(trace_id)")
    traces = span_tree_frame["trace_id"].unique()
    if len(traces) != 1:
        raise ConfigError(
            f"trace_waterfall_figure draws one trace; the frame holds {len(traces)}. "
            "Pass lab.span_tree(trace_id) for a trace_id from lab.traces()."
        )
    trace_id = traces[0]
    df = span_tree_frame.with_columns(
        _naive_utc(pl.col("start_time"), span_tree_frame.schema["start_time"])
        .dt.epoch("ns")
        .alias("_start_ns"),
        pl.col("duration_ns").cast(pl.Int64),
        (
            pl.col("self_time_ns").cast(pl.Float64)
            if "self_time_ns" in span_tree_frame.columns
            else pl.lit(None, pl.Float64)
        ).alias("_self_ns"),
    )
    ids = df["span_id"].to_list()
    order, depth = _dfs_order(ids, df["parent_span_id"].to_list(), df["_start_ns"].to_list())
    df = df[order].with_columns(pl.Series("_depth", depth, dtype=pl.Int64))
    t0 = int(df["_start_ns"].min())
    n_spans = df.height
    folded: list[dict[str, Any]] = []
    if max_rows is not None and df.height > max_rows:
        df, folded = _fold(df, critical_path, int(max_rows))
    df = df.with_columns(pl.Series("_row", range(df.height), dtype=pl.Int64))
    df = df.with_columns(
        ((pl.col("_start_ns") - t0) / 1e6).alias("_off_ms"),
        (pl.col("duration_ns") / 1e6).alias("_dur_ms"),
        (pl.col("status_code") == "ERROR").fill_null(False).alias("_error"),
    )
    short = _shortener(df["service_name"].drop_nulls().unique().to_list())
    palette = _colors_for(df["service_name"].drop_nulls().to_list(), colors)
    labels = [
        "\u00a0\u00a0" * d + f"{short(s)}: {_clip(n or '', 50)}"
        for d, s, n in zip(
            df["_depth"].to_list(), df["service_name"].to_list(), df["name"].to_list(), strict=True
        )
    ]
    fig = go.Figure()
    if folded:
        fold_rows = df.filter(pl.col("_folded"))
        labels = [
            "\u00a0\u00a0" * d + f"⋯ {f['count']} more span{'s' if f['count'] > 1 else ''}"
            if is_fold
            else lab
            for lab, d, is_fold, f in zip(
                labels,
                df["_depth"].to_list(),
                df["_folded"].to_list(),
                _fold_info(df, folded),
                strict=True,
            )
        ]
        fig.add_trace(
            go.Bar(
                y=fold_rows["_row"].to_numpy().astype(np.int32),
                x=np.maximum(fold_rows["_dur_ms"].to_numpy(), 1e-3).astype(np.float32),
                base=np.round(fold_rows["_off_ms"].to_numpy(), 3),
                orientation="h",
                name="folded spans",
                marker=dict(color="#bbbbbb", opacity=0.6, pattern=dict(shape="/")),
                hovertext=[f["hover"] for f in folded],
                hovertemplate="%{hovertext}<extra></extra>",
                width=0.8,
            )
        )
        df_spans = df.filter(~pl.col("_folded"))
    else:
        df_spans = df
    for svc in sorted(df_spans["service_name"].unique().to_list(), key=lambda s: (s is None, s or "")):
        part = df_spans.filter(pl.col("service_name").eq_missing(svc))
        has_self = part["_self_ns"].null_count() < part.height
        custom = np.stack(
            [part["_off_ms"].to_numpy(), part["_self_ns"].fill_null(float("nan")).to_numpy() / 1e6], axis=1
        ).astype(np.float32)
        names = [
            _esc(n) + (" · <b>ERROR</b>" if e else "")
            for n, e in zip(part["name"].fill_null("").to_list(), part["_error"].to_list(), strict=True)
        ]
        template = (
            f"<b>{_esc(svc)}</b><br>%{{hovertext}}<br>start +%{{customdata[0]:,.2f}} ms · "
            "duration %{x:,.2f} ms"
            + (" · self %{customdata[1]:,.2f} ms" if has_self else "")
            + "<extra></extra>"
        )
        err = part["_error"].to_numpy()
        fig.add_trace(
            go.Bar(
                y=part["_row"].to_numpy().astype(np.int32),
                x=np.maximum(part["_dur_ms"].to_numpy(), 1e-3).astype(np.float32),
                base=np.round(part["_off_ms"].to_numpy(), 3),
                orientation="h",
                name=svc if svc is not None else "(unknown)",
                legendgroup=svc,
                marker=dict(
                    color=palette.get(svc, "#999"),
                    opacity=0.8,
                    line=dict(
                        color=np.where(err, _ERROR, "rgba(0,0,0,0)").tolist(),
                        width=np.where(err, 2, 0).tolist(),
                    )
                    if err.any()
                    else dict(width=0),
                ),
                hovertext=names,
                customdata=custom,
                hovertemplate=template,
                width=0.8,
            )
        )
    if critical_path is not None:
        _require(
            critical_path,
            ["span_id", "start_ns", "end_ns"],
            "critical_path",
            "pass lab.critical_path(trace_id)",
        )
        rows = dict(zip(df_spans["span_id"].to_list(), df_spans["_row"].to_list(), strict=True))
        if folded:  # a folded span's critical segments go on its folded row
            fold_row = df.filter(pl.col("_folded"))["_row"].to_list()
            rows |= {sid: r for f, r in zip(folded, fold_row, strict=True) for sid in f["members"]}
        cp = critical_path.filter(pl.col("span_id").is_in(list(rows)))
        seg_ms = np.round((cp["end_ns"] - cp["start_ns"]).to_numpy() / 1e6, 3)
        share = cp["share"].to_numpy() if "share" in cp.columns else None
        fig.add_trace(
            go.Bar(
                y=np.array([rows[s] for s in cp["span_id"].to_list()], dtype=np.int32),
                x=np.maximum(seg_ms, 1e-3).astype(np.float32),
                base=np.round((cp["start_ns"] - t0).to_numpy() / 1e6, 3),
                orientation="h",
                name="critical path",
                width=0.3,
                marker=dict(color=_CRITICAL),
                customdata=share.astype(np.float32) if share is not None else None,
                hovertemplate="critical path: %{x:,.2f} ms"
                + (" (%{customdata:.1%} of the trace)" if share is not None else "")
                + "<extra></extra>",
            )
        )
    errors = df_spans.filter(pl.col("_error"))
    if errors.height:
        fig.add_trace(
            go.Scatter(
                x=(errors["_off_ms"] + errors["_dur_ms"]).to_numpy(),
                y=errors["_row"].to_numpy(),
                mode="markers",
                name="error",
                marker=dict(symbol="x", size=9, color=_ERROR),
                hoverinfo="skip",
            )
        )
    total_ms = (int((df["_start_ns"] + df["duration_ns"]).max()) - t0) / 1e6
    root = df.row(0, named=True)
    _layout(
        fig,
        title
        or f"Trace {trace_id[:16]}…: {root['service_name']} {_clip(root['name'] or '', 40)} · "
        f"{_fmt_ms(total_ms)}, {n_spans} spans"
        + (f" ({sum(f['count'] for f in folded)} folded)" if folded else "")
        + (f", {errors.height} errors" if errors.height else ""),
        barmode="overlay",
        bargap=0.1,
        height=max(300, row_height_px * df.height + 160),
        xaxis=dict(title=dict(text="time since trace start (ms)"), side="top", rangemode="tozero"),
        yaxis=dict(
            tickmode="array",
            tickvals=list(range(df.height)),
            ticktext=labels,
            autorange="reversed",
            automargin=True,
            tickfont=dict(size=10),
            range=None,
        ),
        legend=dict(orientation="h", yanchor="top", y=-0.02, xanchor="left", x=0),
        hovermode="closest",
    )
    return fig


# ---------------------------------------------------------------------------------------------- RED over time
def _with_gaps(x: np.ndarray, step: float, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Insert a break (NaN in each of ``cols``) where consecutive windows are more than 1.5 steps apart.

    Values come back as float32 (x stays float64: it holds ms since the epoch), halving the
    size of the figure's JSON.
    """
    x = np.asarray(x, dtype=np.float64)
    cols = tuple(np.asarray(c, dtype=np.float32) for c in cols)
    if len(x) < 2:
        return (x, *cols)
    cut = np.flatnonzero(np.diff(x) > 1.5 * step) + 1
    if not len(cut):
        return (x, *cols)
    return (np.insert(x, cut, (x[cut - 1] + x[cut]) / 2), *(np.insert(c, cut, np.nan) for c in cols))


def _epoch_ms(frame: pl.DataFrame, col: str) -> np.ndarray:
    return frame.select(_naive_utc(pl.col(col), frame.schema[col]).dt.epoch("ns"))[col].to_numpy() / 1e6


def red_figure(
    red_frame: pl.DataFrame,
    metric: str | Sequence[str] = "p95_ms",
    *,
    by: str = "service_name",
    services: Iterable[str] | None = None,
    top: int | None = None,
    log_y: bool | None = None,
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
    break_gaps: float | None = 10,
) -> go.Figure:
    """Rate, errors or duration over time: a line per service (or other ``by`` column).

    Parameters
    ----------
    red_frame : polars.DataFrame
        :meth:`Lab.red`: ``window_start``, ``by`` and the metric columns.
    metric : str or sequence of str, default "p95_ms"
        ``p50_ms``, ``p95_ms``, ``p99_ms``, ``rate_per_s``, ``requests``, ``errors`` or
        ``error_rate``. Several metrics stack as rows sharing the time axis.
    by : str, default "service_name"
    services : iterable of str, optional
        Only these lines.
    top : int, optional
        Only the lines with the most requests.
    log_y : bool, optional
        Logarithmic y axis; by default for latencies.
    colors : mapping, optional
        Service -> colour (:func:`service_colors`).
    title : str, optional
    break_gaps : float or None, default 10
        Captures with gaps (several recording windows hours apart) would squeeze the data
        into slivers: stretches with no request longer than this many windows are cut out
        of the time axis (plotly ``rangebreaks``; the title says how many). ``None`` keeps
        the axis continuous.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Scatter`` per line and metric, named by the ``by`` value; ``x`` is the
        window start in ms since the epoch (UTC) on a date axis, which keeps the figure
        small. Windows with no request are gaps, not interpolated.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    if not metrics:
        raise ConfigError("metric must name at least one column. Got an empty sequence instead.")
    _require(red_frame, ["window_start", by, *metrics], "red_figure(red_frame)", "pass lab.red()")
    df = red_frame.filter(pl.col(by).is_not_null())
    groups = df[by].unique().to_list()
    if services is not None:
        wanted = list(services)
        groups = [g for g in wanted if g in set(groups)]
    weight = "requests" if "requests" in df.columns else None
    totals = (
        df.group_by(by)
        .agg(pl.col(weight).sum().alias("_w") if weight else pl.len().alias("_w"))
        .filter(pl.col(by).is_in(groups))
        .sort(["_w", by], descending=[True, False])
    )
    ordered = totals[by].to_list()
    if top is not None:
        ordered = ordered[: int(top)]
    palette = _colors_for(ordered, colors)
    x_all = np.unique(_epoch_ms(df, "window_start")) if df.height else np.array([])
    step = float(np.min(np.diff(x_all))) if len(x_all) > 1 else 60_000.0
    fig = (
        make_subplots(rows=len(metrics), cols=1, shared_xaxes=True, vertical_spacing=0.06)
        if len(metrics) > 1
        else go.Figure()
    )
    for k, m in enumerate(metrics, start=1):
        for g in ordered:
            part = df.filter(pl.col(by) == g).sort("window_start")
            x, y = _with_gaps(_epoch_ms(part, "window_start"), step, part[m].cast(pl.Float64).to_numpy())
            tr = go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=g,
                legendgroup=g,
                showlegend=k == 1,
                line=dict(color=palette[g], width=1.6),
                connectgaps=False,
                hovertemplate=f"%{{x|%H:%M:%S}} %{{y:,.3g}} {_UNITS.get(m, '')}<extra>{_esc(g)}</extra>",
            )
            fig.add_trace(tr, row=k, col=1) if len(metrics) > 1 else fig.add_trace(tr)
        is_latency = m.endswith("_ms")
        axis = dict(title=dict(text=_METRIC_LABELS.get(m, m)))
        if (log_y if log_y is not None else is_latency) and is_latency:
            axis["type"] = "log"
        if m == "error_rate":
            axis["tickformat"] = ".0%"
        fig.update_yaxes(**axis, row=k, col=1) if len(metrics) > 1 else fig.update_yaxes(**axis)
    names = ", ".join(_METRIC_LABELS.get(m, m) for m in metrics)
    shown = f"top {len(ordered)} of {len(groups)}" if len(ordered) < len(groups) else f"{len(ordered)}"
    breaks = []
    if break_gaps is not None and len(x_all) > 1:
        gaps = np.flatnonzero(np.diff(x_all) > float(break_gaps) * step)
        # cut from one window after the last data to the next window with data
        breaks = [dict(bounds=[float(x_all[i] + step), float(x_all[i + 1])]) for i in gaps]
    cut = f", {len(breaks)} idle stretch{'es' if len(breaks) > 1 else ''} cut out" if breaks else ""
    _layout(
        fig,
        title or f"{names} over time, {shown} {by.replace('_name', '')}s (UTC{cut})",
        height=max(380, 260 * len(metrics) + 80),
        hovermode="closest",
        legend=dict(font=dict(size=10)),
    )
    fig.update_xaxes(title=None, type="date")
    if breaks:
        fig.update_xaxes(rangebreaks=breaks)
    return fig


# ---------------------------------------------------------------------------------------------- faults
def fault_latency_figure(
    red_or_spans: pl.DataFrame,
    faults: pl.DataFrame,
    service: str | Iterable[str] | None = None,
    *,
    metric: str = "p95_ms",
    window_s: float = 15.0,
    before_s: float = 120.0,
    after_s: float = 300.0,
    fault_duration_s: float | None = None,
    by: str = "service_name",
    max_points: int = 5000,
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Latency over time around injected faults, with a marker at each fault.

    Parameters
    ----------
    red_or_spans : polars.DataFrame
        Either :meth:`Lab.red` (``window_start``, ``by``, ``metric``), drawn as is, or
        spans (``start_time``, ``duration_ns``, ``by``) such as ``lab.spans(...)`` or
        :func:`otlp_lab.viz.calls_into`: then each span is a faint dot and the line is the
        ``metric`` quantile per ``window_s``.
    faults : polars.DataFrame
        ``time`` (Datetime; naive means UTC) and ``service``; ``kind`` labels the marker
        (:func:`otlp_lab.datasets.trainticket_faults`). Faults outside the data's time
        range are left out.
    service : str or iterable of str, optional
        The lines to draw (values of ``by``). By default the faulty services present in
        the data, or else every line (at most 10, busiest first).
    metric : {"p50_ms", "p95_ms", "p99_ms"}
    window_s : float, default 15
        Window of the quantile line, for spans.
    before_s, after_s : float
        Time shown before the first and after the last fault.
    fault_duration_s : float, optional
        Shade this long after each fault (how long it was injected), when known.
    by : str, default "service_name"
    max_points : int, default 5000
        At most this many span dots (an even sample), to keep the figure small.
    colors : mapping, optional
        Service -> colour (:func:`service_colors`).
    title : str, optional

    Returns
    -------
    plotly.graph_objects.Figure
        A line per service (``name`` is the service; for spans also a dot trace named
        ``"<service> spans"``), ``x`` in ms since the epoch (UTC) on a date axis;
        ``layout.shapes`` holds one dashed vertical line per fault shown (and a shaded
        window with ``fault_duration_s``).

    Raises
    ------
    ConfigError
        No fault falls within the data's time range.
    """
    if metric not in _QUANTILES:
        raise ConfigError(f"metric must be one of {sorted(_QUANTILES)}. Got {metric!r} instead.")
    _require(
        faults,
        ["time", "service"],
        "fault_latency_figure(faults)",
        "pass otlp_lab.datasets.trainticket_faults()",
    )
    is_red = "window_start" in red_or_spans.columns
    if is_red:
        _require(
            red_or_spans,
            ["window_start", by, metric],
            "fault_latency_figure(red_or_spans)",
            "pass lab.red() or spans",
        )
        tcol = "window_start"
    else:
        _require(
            red_or_spans,
            ["start_time", "duration_ns", by],
            "fault_latency_figure(red_or_spans)",
            "pass lab.red() or spans",
        )
        tcol = "start_time"
    data = red_or_spans.with_columns(_naive_utc(pl.col(tcol), red_or_spans.schema[tcol]).alias("_t")).filter(
        pl.col(by).is_not_null()
    )
    f = faults.with_columns(
        _naive_utc(pl.col("time"), faults.schema["time"]).cast(pl.Datetime("us")).alias("_t")
    )
    if data.height == 0:
        raise ConfigError("fault_latency_figure needs data: red_or_spans is empty.")
    lo, hi = data["_t"].min(), data["_t"].max()
    f = f.filter((pl.col("_t") >= lo - dt.timedelta(seconds=after_s)) & (pl.col("_t") <= hi)).sort("_t")
    if f.height == 0:
        raise ConfigError(
            f"none of the {faults.height} faults falls within the data's time range {lo} to {hi} (UTC). "
            "Load the capture of the minutes around the fault, or pick a fault in that range."
        )
    t_from = f["_t"].min() - dt.timedelta(seconds=before_s)
    t_to = f["_t"].max() + dt.timedelta(seconds=max(after_s, fault_duration_s or 0))
    data = data.filter((pl.col("_t") >= t_from) & (pl.col("_t") <= t_to))
    present = data[by].unique().to_list()
    counts = (
        data.group_by(by).agg(pl.len().alias("_n")).sort(["_n", by], descending=[True, False])[by].to_list()
    )
    if service is None:
        groups = [s for s in f["service"].unique(maintain_order=True).to_list() if s in present] or counts[
            :10
        ]
    else:
        groups = [service] if isinstance(service, str) else list(service)
    palette = _colors_for(groups, colors)
    fig = go.Figure()
    q = _QUANTILES[metric]
    for g in groups:
        part = data.filter(pl.col(by) == g).sort("_t")
        if is_red:
            line = part.select(pl.col("_t"), pl.col(metric).cast(pl.Float64).alias("_v"))
            step = window_s * 1000.0
            if part.height > 1:
                step = float(np.min(np.diff(np.unique(part["_t"].dt.epoch("ns").to_numpy())))) / 1e6 or step
        else:
            ms = (pl.col("duration_ns").cast(pl.Float64) / 1e6).alias("_ms")
            pts = part.select(pl.col("_t").dt.epoch("ms").cast(pl.Float64), ms.round(3))
            if pts.height > max_points:
                pts = pts.gather(np.linspace(0, pts.height - 1, max_points).astype(np.int64))
            fig.add_trace(
                go.Scatter(
                    x=pts["_t"].to_numpy(),
                    y=pts["_ms"].to_numpy().astype(np.float32),
                    mode="markers",
                    name=f"{g} spans",
                    legendgroup=g,
                    showlegend=False,
                    marker=dict(size=4, color=palette[g], opacity=0.3),
                    hovertemplate=f"{_esc(g)}<br>%{{x|%H:%M:%S.%L}}: %{{y:,.1f}} ms<extra></extra>",
                )
            )
            every = f"{int(window_s * 1_000_000)}us"
            line = (
                part.with_columns(pl.col("_t").dt.truncate(every))
                .group_by("_t")
                .agg(
                    (pl.col("duration_ns").cast(pl.Float64) / 1e6)
                    .quantile(q, interpolation="linear")
                    .alias("_v")
                )
                .sort("_t")
                .with_columns(pl.col("_t") + pl.duration(microseconds=int(window_s * 500_000)))  # mid-window
            )
            step = window_s * 1000.0
        x, y = _with_gaps(line["_t"].dt.epoch("ns").to_numpy() / 1e6, step, line["_v"].to_numpy())
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=g,
                legendgroup=g,
                line=dict(color=palette[g], width=2),
                marker=dict(size=5),
                connectgaps=False,
                hovertemplate=f"{_esc(g)}<br>%{{x|%H:%M:%S}}: {metric.split('_')[0]} %{{y:,.1f}} ms<extra></extra>",
            )
        )
    shapes, notes = [], []
    for r in f.iter_rows(named=True):
        t = r["_t"]
        shapes.append(
            dict(
                type="line",
                xref="x",
                yref="paper",
                x0=t,
                x1=t,
                y0=0,
                y1=1,
                line=dict(color=_FAULT, width=1.5, dash="dash"),
            )
        )
        if fault_duration_s:
            shapes.append(
                dict(
                    type="rect",
                    xref="x",
                    yref="paper",
                    x0=t,
                    x1=t + dt.timedelta(seconds=fault_duration_s),
                    y0=0,
                    y1=1,
                    fillcolor=_FAULT,
                    opacity=0.08,
                    line=dict(width=0),
                    layer="below",
                )
            )
        kind = r.get("kind")
        notes.append(
            dict(
                x=t,
                y=1,
                xref="x",
                yref="paper",
                yanchor="bottom",
                xanchor="left",
                showarrow=False,
                text=f"⚡ {_esc(kind + ' on ' if kind else '')}{_esc(r['service'])}",
                font=dict(size=11, color=_FAULT),
            )
        )
    what = f"{metric.split('_')[0]} latency" + ("" if is_red else f" per {window_s:g} s")
    _layout(
        fig,
        title
        or f"{what} around {f.height} injected fault{'s' if f.height > 1 else ''} (dashed line: injection, UTC)",
        shapes=shapes,
        annotations=notes,
        height=460,
        hovermode="closest",
        xaxis=dict(range=[t_from, t_to], type="date"),
        yaxis=dict(
            type="log",
            title=dict(
                text=f"{_METRIC_LABELS[metric]}, log scale" if is_red else "span duration (ms, log scale)"
            ),
        ),
    )
    fig.update_layout(margin=dict(t=80))
    return fig


# ---------------------------------------------------------------------------------------------- tables
def slow_traces_table_figure(
    traces: pl.DataFrame, *, max_rows: int = 20, title: str | None = None
) -> go.Figure:
    """The traces of :meth:`Lab.traces` as a plotly table (slowest first, as given).

    Returns
    -------
    plotly.graph_objects.Figure
        One ``go.Table``: trace id, root service and operation, start (UTC), duration,
        spans, services, errors.
    """
    cols = [
        "trace_id",
        "root_service",
        "root_name",
        "start_time",
        "duration_ms",
        "spans",
        "services",
        "errors",
    ]
    _require(traces, cols, "slow_traces_table_figure(traces)", "pass lab.traces()")
    t = traces.head(max_rows)
    start = t.select(
        _naive_utc(pl.col("start_time"), t.schema["start_time"]).dt.strftime("%Y-%m-%d %H:%M:%S%.3f")
    )
    cells = [
        t["trace_id"].to_list(),
        t["root_service"].fill_null("–").to_list(),
        t["root_name"].fill_null("–").to_list(),
        start["start_time"].to_list(),
        [f"{v:,.1f}" for v in t["duration_ms"].to_list()],
        t["spans"].to_list(),
        t["services"].to_list(),
        t["errors"].to_list(),
    ]
    err = [("#fde0dd" if e else "white") for e in t["errors"].to_list()]
    fig = go.Figure(
        go.Table(
            columnwidth=[2.6, 1.6, 1.6, 1.7, 1, 0.7, 0.8, 0.7],
            header=dict(
                values=[
                    "trace id",
                    "root service",
                    "root operation",
                    "start (UTC)",
                    "duration (ms)",
                    "spans",
                    "services",
                    "errors",
                ],
                fill_color="#eef1f6",
                align="left",
                font=dict(size=12),
            ),
            cells=dict(
                values=cells,
                align=["left"] * 4 + ["right"] * 4,
                fill_color=[err],
                font=dict(size=11),
                height=24,
            ),
        )
    )
    return _layout(fig, title or f"Slowest {t.height} traces", height=120 + 25 * t.height)
