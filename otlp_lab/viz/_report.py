"""A self-contained HTML report of a Lab: summary, service graph, latency, RED, traces, faults.

The one part of :mod:`otlp_lab.viz` that reads a :class:`~otlp_lab.Lab`: it runs the Lab's
queries, hands the frames to the figure builders and writes one HTML file with plotly.js
embedded once, so the report opens offline and can be mailed or attached to a ticket.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from otlp_lab.errors import ConfigError, SchemaError
from otlp_lab.viz._traces import (
    TEMPLATE,
    fault_latency_figure,
    latency_by_operation_figure,
    red_figure,
    service_colors,
    service_graph_figure,
    trace_waterfall_figure,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from otlp_lab.store import Lab

__all__ = ["calls_into", "summary_frame", "write_report", "write_sim_report"]


def calls_into(lab: Lab, service: str) -> pl.DataFrame:
    """The spans in which other services called ``service``: the latency its callers saw.

    A service's own (server) spans miss time spent on the network or queued before it;
    the caller's span around the call does not. For each span of ``service`` whose parent
    is in another service, this returns that parent span.

    Parameters
    ----------
    lab : Lab
    service : str
        The called service (``service_name``).

    Returns
    -------
    polars.DataFrame
        ``trace_id``, ``span_id``, ``service_name`` (the caller), ``name``, ``start_time``,
        ``duration_ns``, ``status_code`` of the caller's span, then ``callee``,
        ``callee_name`` and ``callee_duration_ns`` of the called span; by start time.

    Examples
    --------
    >>> calls = calls_into(lab, "ts-contacts-service")  # doctest: +SKIP
    >>> fault_latency_figure(calls, faults.head(1))     # doctest: +SKIP
    """
    return lab.sql(
        """
        SELECT p.trace_id, p.span_id, p.service_name, p.name, p.start_time, p.duration_ns, p.status_code,
               c.service_name AS callee, c.name AS callee_name, c.duration_ns AS callee_duration_ns
        FROM spans c JOIN spans p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
        WHERE c.service_name = ? AND p.service_name IS DISTINCT FROM c.service_name
        ORDER BY p.start_time
        """,
        [service],
    )


def summary_frame(lab: Lab) -> pl.DataFrame:
    """What the Lab holds, one fact per row (``item``, ``value``), for a notebook or report.

    Examples
    --------
    >>> summary_frame(lab).head(3)  # doctest: +SKIP
    shape: (3, 2)
    ┌──────────┬────────┐
    │ item     ┆ value  │
    ╞══════════╪════════╡
    │ spans    ┆ 25,840 │
    │ traces   ┆ 369    │
    │ services ┆ 28     │
    └──────────┴────────┘
    """
    info = lab.info()
    t = lab.sql(
        "SELECT count(DISTINCT trace_id) AS traces, count(DISTINCT service_name) AS services, "
        "count(*) FILTER (WHERE status_code = 'ERROR') AS error_spans FROM spans"
    ).row(0, named=True)
    start, end = info["time_range"]
    rows: list[tuple[str, str]] = [
        ("spans", f"{info['tables']['spans']:,}"),
        ("traces", f"{t['traces']:,}"),
        ("services", f"{t['services']:,}"),
        ("error spans", f"{t['error_spans']:,}"),
        ("first span (UTC)", f"{start:%Y-%m-%d %H:%M:%S}" if start else "–"),
        ("last span end (UTC)", f"{end:%Y-%m-%d %H:%M:%S}" if end else "–"),
        ("first to last", _duration(end - start) if start and end else "–"),
        ("files loaded", f"{info['loads']:,}"),
    ]
    rows += [(f"{k} rows", f"{v:,}") for k, v in info["tables"].items() if k != "spans" and v]
    return pl.DataFrame(rows, schema={"item": pl.String, "value": pl.String}, orient="row")


def _duration(d: dt.timedelta) -> str:
    s = int(d.total_seconds())
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s"


# ---------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafbfc}
main{max-width:1200px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:19px;margin:36px 0 6px;border-bottom:1px solid #e3e6ea;padding-bottom:4px}
p.lead{color:#555;margin:0 0 16px}p.note{color:#555;font-size:14px;margin:4px 0 10px}
table{border-collapse:collapse;font-size:13px;margin:8px 0 12px;background:#fff}
th,td{border:1px solid #e3e6ea;padding:4px 9px;text-align:left;vertical-align:top}th{background:#eef1f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.err td{background:#fde0dd}
code{font-size:12px}.fig{background:#fff;border:1px solid #e3e6ea;margin:8px 0 12px}
nav a{margin-right:14px;font-size:14px}
"""


def _table(
    frame: pl.DataFrame,
    *,
    numeric: Iterable[str] = (),
    error_col: str | None = None,
    code: Iterable[str] = (),
) -> str:
    numeric, code = set(numeric), set(code)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for r in frame.iter_rows(named=True):
        cls = ' class="err"' if error_col and r.get(error_col) else ""
        cells = []
        for c, v in r.items():
            if isinstance(v, float):
                text = f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
            elif isinstance(v, int) and not isinstance(v, bool):
                text = f"{v:,}"
            elif isinstance(v, dt.datetime):
                text = f"{v:%Y-%m-%d %H:%M:%S}"
            else:
                text = "–" if v is None else str(v)
            text = html.escape(text)
            if c in code:
                text = f"<code>{text}</code>"
            cells.append(f'<td class="num">{text}</td>' if c in numeric else f"<td>{text}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _fig_html(fig: go.Figure, div_id: str, template: dict[str, Any]) -> str:
    """A figure as a div and a ``Plotly.newPlot`` call; the shared template is referenced, not repeated.

    ``fig.to_html`` would inline the whole template (about 7 kB) in every figure.
    """
    from plotly.io.json import to_json_plotly

    spec = fig.to_plotly_json()
    layout = dict(spec.get("layout", {}))
    shared = layout.get("template") == template
    if shared:
        del layout["template"]
    height = layout.get("height") or 450
    tpl = "Object.assign({template: OTLP_LAB_TEMPLATE}, " if shared else "("
    return (
        f'<div class="fig"><div id="{div_id}" class="plotly-graph-div" style="height:{int(height)}px;width:100%"></div>'
        f'<script type="text/javascript">Plotly.newPlot("{div_id}", {to_json_plotly(spec.get("data", []))}, '
        f"{tpl}{to_json_plotly(layout)}), {to_json_plotly(_PLOTLY_CONFIG)});</script></div>"
    )


_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def _faults_frame(faults: pl.DataFrame) -> pl.DataFrame:
    if not isinstance(faults, pl.DataFrame):
        raise ConfigError(
            f"faults must be a polars.DataFrame with time and service. Got {type(faults).__name__} instead."
        )
    missing = [c for c in ("time", "service") if c not in faults.columns]
    if missing:
        raise SchemaError(
            f"faults needs the columns {missing} (see trainticket_faults()). Got {faults.columns} instead."
        )
    tz = faults.schema["time"]
    col = pl.col("time")
    if isinstance(tz, pl.Datetime) and tz.time_zone is not None:
        col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return faults.with_columns(col.cast(pl.Datetime("us")).alias("time")).sort("time")


def write_report(
    lab: Lab,
    path: str | os.PathLike[str],
    *,
    faults: pl.DataFrame | None = None,
    title: str = "otlp_lab trace report",
    trace_id: str | None = None,
    red_window: str = "1m",
    top_operations: int = 15,
    top_services: int = 10,
    max_fault_panels: int = 3,
    waterfall_rows: int = 60,
) -> Path:
    """Write a self-contained HTML report of the traces in ``lab``.

    Sections: a summary table (counts, time range, services); the service graph and its
    busiest edges; latency by operation; RED (rate, errors, duration) over time; the
    slowest traces (and error traces, when any); a waterfall with the critical path of
    the slowest (or most failing) trace; the operations holding most critical time over all
    traces; and, with ``faults``, latency around each fault
    that falls in the captured time range, as the faulty service and as its callers saw it.

    plotly.js is embedded once (about 4.8 MB), so the file opens without network access;
    the figures themselves stay small (box plots are precomputed, lines are per window).

    Parameters
    ----------
    lab : Lab
    path : str or Path
        The HTML file to write; parent folders are created.
    faults : polars.DataFrame, optional
        ``time``, ``service`` and optionally ``kind``, ``pod``
        (:func:`otlp_lab.datasets.trainticket_faults`).
    title : str
    trace_id : str, optional
        The trace to draw as a waterfall; the trace with the most errors, else the slowest.
    red_window : str, default "1m"
        Window of the RED figure.
    top_operations, top_services : int
        How many operations (latency figure) and services (RED figure) to draw.
    max_fault_panels : int, default 3
        Faults with their own zoomed figures (the first ones in the capture).
    waterfall_rows : int, default 60
        A larger trace is folded to about this many rows (see ``trace_waterfall_figure``).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ConfigError
        The Lab holds no span.

    Examples
    --------
    >>> from otlp_lab.datasets import trainticket_faults
    >>> write_report(lab, "out/report.html", faults=trainticket_faults())  # doctest: +SKIP
    PosixPath('out/report.html')
    """
    out = Path(path)
    n_spans = lab.counts()["spans"]
    if n_spans == 0:
        raise ConfigError(
            "the Lab holds no spans: load OTLP traces with lab.load(path) before writing a report."
        )
    colors = service_colors(
        sorted(
            lab.sql("SELECT DISTINCT service_name FROM spans WHERE service_name IS NOT NULL")[
                "service_name"
            ].to_list()
        )
    )
    sections: list[tuple[str, str, str]] = []  # (anchor, heading, html)

    import plotly.io as pio

    template = pio.templates[TEMPLATE].to_plotly_json()
    fig = _figure_writer(template)

    # Summary
    summary = summary_frame(lab)
    services = lab.info()["services"]
    sections.append(
        (
            "summary",
            "Summary",
            _table(summary, numeric=["value"])
            + f"<p class='note'><b>Services ({len(services)}):</b> {html.escape(', '.join(services))}</p>",
        )
    )

    # Service graph
    edges = lab.service_graph()
    body = (
        "<p class='note'>Who calls whom"
        + (
            ", paired as Tempo's service-graph processor pairs spans (a CLIENT or PRODUCER span and the SERVER "
            "or CONSUMER span under it; <code>user</code> calls root spans). "
            if edges.height and edges["mode"][0] == "tempo"
            else ": this capture records no span kinds, so edges are inferred where a span's parent is in "
            "another service (<code>mode = inferred</code>), and <code>user</code> calls root spans. "
        )
        + "Width shows calls; hover an edge's midpoint for calls, errors and latency percentiles.</p>"
    )
    if edges.height:
        body += fig(service_graph_figure(edges))
        shown = edges.select(
            "client",
            "server",
            "connection_type",
            "calls",
            "errors",
            "error_rate",
            "p50_ms",
            "p95_ms",
            "p99_ms",
        )
        body += "<p class='note'>Busiest edges (server-side latency):</p>" + _table(
            shown.head(15), numeric=shown.columns[3:]
        )
    else:
        body += "<p class='note'>No edges: every trace stays within one service.</p>"
    sections.append(("graph", "Service graph", body))

    # Latency by operation
    ops = lab.sql("SELECT service_name, name, duration_ns FROM spans")
    sections.append(
        (
            "latency",
            "Latency by operation",
            "<p class='note'>The busiest operations. Boxes are quartiles computed from every span; "
            "the axis is logarithmic, so a box twice as far right is ten times slower.</p>"
            + fig(latency_by_operation_figure(ops, top_operations, colors=colors)),
        )
    )
    del ops

    # RED over time
    red = lab.red(red_window)
    any_errors = bool(red.height and red["errors"].sum())
    metrics = ("rate_per_s", "error_rate", "p95_ms") if any_errors else ("rate_per_s", "p95_ms")
    body = (
        f"<p class='note'>Requests entering each service (roots, and spans whose parent is in another service) "
        f"per {html.escape(red_window)} window: rate, {'error rate, ' if any_errors else ''}p95 latency. "
        f"The {top_services} busiest services; click a legend entry to hide a line.</p>"
    )
    body += fig(red_figure(red, metrics, top=top_services, colors=colors))
    if not any_errors:
        body += "<p class='note'>No span has status ERROR, so the error rate is left out.</p>"
    sections.append(("red", "Rate, errors, duration over time", body))

    # Slowest and failing traces
    slow = lab.traces(limit=15)
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
    body = _table(slow.select(cols), numeric=cols[4:], error_col="errors", code=["trace_id"])
    err = lab.traces(order="errors", limit=10, errors_only=True)
    if err.height:
        body += "<p class='note'>Traces with the most error spans:</p>"
        body += _table(err.select(cols), numeric=cols[4:], error_col="errors", code=["trace_id"])
    else:
        body += "<p class='note'>No trace has an error span (status ERROR).</p>"
    sections.append(("traces", "Slowest traces", body))

    # Waterfall with critical path
    if trace_id is None:
        trace_id = err["trace_id"][0] if err.height else slow["trace_id"][0]
        why = "the trace with the most errors" if err.height else "the slowest trace"
    else:
        why = "the trace asked for"
    tree = lab.span_tree(trace_id)
    cp = lab.critical_path(trace_id)
    by_svc = (
        cp.group_by("service_name")
        .agg(pl.col("self_ms").sum().round(3).alias("critical_ms"), pl.col("share").sum().alias("share"))
        .sort("critical_ms", descending=True)
        .head(8)
        .with_columns((pl.col("share") * 100).round(1).alias("share_%"))
        .drop("share")
    )
    body = (
        f"<p class='note'>{html.escape(why.capitalize())}, <code>{html.escape(trace_id)}</code>. The black strip "
        "is the critical path: the segments that determined the end-to-end time (shortening anything else "
        "would not have made the request faster).</p>"
    )
    if tree.height > waterfall_rows:
        body += (
            f"<p class='note'>{tree.height} spans: the waterfall keeps about {waterfall_rows} rows (the root, the "
            "spans holding most critical-path time, errors and their ancestors); grey hatched rows fold the "
            "others (hover them for what they hold). The critical path is drawn in full, folded parts included.</p>"
        )
    body += fig(trace_waterfall_figure(tree, cp, colors=colors, max_rows=waterfall_rows))
    body += "<p class='note'>Where the critical path spent its time:</p>" + _table(
        by_svc, numeric=["critical_ms", "share_%"]
    )
    sections.append(("waterfall", "Trace waterfall and critical path", body))

    # Critical time over every trace
    summary_cp = lab.critical_path_summary(by=["service_name", "name"]).head(15)
    if summary_cp.height:
        shown = summary_cp.select(
            "service_name",
            pl.col("name").alias("operation"),
            pl.col("critical_ms").round(1),
            "traces",
            pl.col("mean_ms_per_trace").round(2),
            (pl.col("share") * 100).round(1).alias("share_%"),
        )
        body = (
            "<p class='note'>The same critical-path rules run on every trace, summed: the operations that held "
            "requests up the most, over the whole capture. <code>traces</code> counts the traces where the "
            "operation was on the critical path; <code>share_%</code> is its part of all critical time.</p>"
        ) + _table(shown, numeric=["critical_ms", "traces", "mean_ms_per_trace", "share_%"])
        sections.append(("critical", "Where critical time goes, over all traces", body))

    # Faults
    if faults is not None:
        sections.append(
            (
                "faults",
                "Latency around injected faults",
                _faults_section(lab, faults, fig, colors, max_fault_panels),
            )
        )

    lead = f"{n_spans:,} spans from {html.escape(str(lab.path or 'an in-memory Lab'))}"
    return _write_page(out, title, lead, sections, template)


def _figure_writer(template: dict[str, Any]) -> Any:
    """A function turning figures into numbered divs that share ``template``."""
    count = 0

    def fig(f: go.Figure) -> str:
        nonlocal count
        count += 1
        return _fig_html(f, f"otlp-lab-fig-{count}", template)

    return fig


def _write_page(
    out: Path, title: str, lead: str, sections: list[tuple[str, str, str]], template: dict[str, Any]
) -> Path:
    """Assemble sections ``(anchor, heading, html)`` into one self-contained HTML file (plotly.js inlined once)."""
    from plotly.io.json import to_json_plotly
    from plotly.offline import get_plotlyjs

    nav = "".join(f'<a href="#{a}">{html.escape(h)}</a>' for a, h, _ in sections)
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        f'<script type="text/javascript">const OTLP_LAB_TEMPLATE = {to_json_plotly(template)};</script>',
        "</head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='lead'>{lead}; written by otlp_lab on {made}. All times UTC.</p>",
        f"<nav>{nav}</nav>",
    ]
    doc += [f'<section id="{a}"><h2>{html.escape(h)}</h2>{b}</section>' for a, h, b in sections]
    doc.append("</main></body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(doc), encoding="utf-8")
    return out


def write_sim_report(
    results: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    scenario: str = "",
    title: str | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> Path:
    """Write a self-contained HTML report comparing simulation runs of one scenario.

    Parameters
    ----------
    results : mapping of policy label to :class:`otlp_lab.sim.RunResult`
        As :func:`otlp_lab.sim.run_many` returns (the same seed, so the same arrivals).
    path : str or Path
    scenario : str
        The scenario's name or path, to shade its fault and load-spike windows.
    title : str, optional
    descriptions : mapping of policy label to str, optional
        Each policy in words (``ImportedPolicies.describe()``), shown first.

    Returns
    -------
    Path
    """
    import plotly.io as pio

    from otlp_lab.sim import timelines
    from otlp_lab.viz._sim import (
        breaker_timelines,
        policy_bars_figure,
        policy_colors,
        policy_timeline_figure,
        scenario_windows,
    )

    if not results:
        raise ConfigError("results is empty: pass the mapping that otlp_lab.sim.run_many returns.")
    template = pio.templates[TEMPLATE].to_plotly_json()
    fig = _figure_writer(template)
    colors = policy_colors(results)
    summary = pl.DataFrame([r.summary() for r in results.values()])
    cols = [
        c
        for c in (
            "policy",
            "goodput_rps",
            "offered_rps",
            "error_rate",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "amplification",
            "requests",
            "hops",
        )
        if c in summary.columns
    ]
    windows = scenario_windows(scenario) if scenario else None
    sections = []
    if descriptions:
        items = "".join(
            f"<li><b>{html.escape(str(label))}</b>: {html.escape(str(text))}</li>"
            for label, text in descriptions.items()
        )
        sections.append(("policies", "The policies, in words", f"<ul>{items}</ul>"))
    sections += [
        (
            "summary",
            "Policies compared",
            _table(summary.select(cols), numeric=cols[1:]) + fig(policy_bars_figure(summary, colors=colors)),
        ),
        (
            "timeline",
            "What happened, second by second",
            "<p class='note'>Goodput against the offered load, the load on the fleet (retries included), the "
            "error rate and the share of circuit breakers open. Shaded: the scenario's faults and load changes.</p>"
            + fig(
                policy_timeline_figure(
                    timelines(results), breaker_timelines(results), windows=windows, colors=colors
                )
            ),
        ),
    ]
    title = title or f"Simulation: {scenario or 'scenario'} under {len(results)} policies"
    n = sum(int(r.summary().get("requests") or 0) for r in results.values())
    return _write_page(Path(path), title, f"{n:,} simulated requests", sections, template)


def _faults_section(lab: Lab, faults: pl.DataFrame, fig: Any, colors: dict[str, str], max_panels: int) -> str:
    f = _faults_frame(faults)
    lo, hi = lab.sql("SELECT min(start_time) AS lo, max(end_time) AS hi FROM spans").row(0)
    f = f.with_columns(pl.col("time").is_between(lo, hi).alias("in capture"))
    shown = [c for c in ("time", "service", "kind", "pod", "in capture") if c in f.columns]
    body = (
        "<p class='note'>The faults injected while the capture was recorded (dashed red line in the figures). "
        "A fault inside a service shows in its own spans (CPU contention slows its handlers); a network fault "
        "on its pod may only show in the spans of its callers, which wait for the slow network.</p>"
    )
    body += _table(f.select(shown))
    inside = f.filter(pl.col("in capture"))
    if inside.height == 0:
        return body + "<p class='note'>None of these faults falls within the captured time range.</p>"
    red = lab.red("15s")
    for r in inside.head(max_panels).iter_rows(named=True):
        one = inside.filter(pl.col("time") == r["time"]).head(1)
        svc = r["service"]
        kind = f"{r['kind']} " if r.get("kind") else ""
        body += f"<h3>{html.escape(kind)}on {html.escape(svc)} at {r['time']:%H:%M:%S}</h3>"
        body += fig(
            fault_latency_figure(
                red,
                one,
                svc,
                colors=colors,
                after_s=240,
                title=f"p95 latency of {svc} (its own spans, per 15 s)",
            )
        )
        calls = calls_into(lab, svc)
        try:
            body += fig(
                fault_latency_figure(
                    calls,
                    one,
                    colors=colors,
                    after_s=240,
                    title=f"Calls into {svc} as its callers saw them (dots: spans; line: p95 per 15 s)",
                )
            )
        except ConfigError:
            body += f"<p class='note'>No caller spans of {html.escape(svc)} around this fault.</p>"
    if inside.height > max_panels:
        body += f"<p class='note'>{inside.height - max_panels} more faults in the capture are not drawn (max_fault_panels).</p>"
    return body
