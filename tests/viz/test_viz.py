"""Figure builders, the HTML report and the bundled-dataset helpers, on real TrainTicket spans."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
import pytest

from otlp_lab import ConfigError, DecodeError, Lab, SchemaError
from otlp_lab.datasets import TRAINTICKET_ENV, trainticket_faults, trainticket_path
from otlp_lab.viz import (
    TEMPLATE,
    calls_into,
    fault_latency_figure,
    latency_by_operation_figure,
    red_figure,
    service_colors,
    service_graph_figure,
    slow_traces_table_figure,
    summary_frame,
    trace_waterfall_figure,
    write_report,
)

# The Nezha TrainTicket capture as shipped to the team, for a checkout whose datasets/ is not filled in yet.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "trainticket-nezha-2023-01-30"
FIRST_FAULT = dt.datetime(2023, 1, 30, 11, 51, 46, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tt_dir() -> Path:
    try:
        return trainticket_path()
    except ConfigError:
        if SHARED.is_dir():
            return SHARED
        pytest.skip("the TrainTicket dataset is neither in datasets/trainticket nor in ../shared/datasets")


@pytest.fixture(scope="module")
def faults(tt_dir: Path) -> pl.DataFrame:
    return trainticket_faults(tt_dir)


@pytest.fixture(scope="module")
def tt_lab(tt_dir: Path):
    """The first two minutes of the capture: the first fault (network delay on ts-contacts-service) and after."""
    files = sorted((tt_dir / "faulty").glob("*.otlp.jsonl.gz"))[:2]
    assert files, f"no faulty/*.otlp.jsonl.gz in {tt_dir}"
    lab = Lab()
    lab.load(*files)
    yield lab
    lab.close()


def _trace(fig: go.Figure, name: str):
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, f"expected one trace named {name!r}, found {[t.name for t in fig.data]}"
    return found[0]


def _faults_in_capture(faults: pl.DataFrame, lab: Lab) -> pl.DataFrame:
    lo, hi = lab.sql("SELECT min(start_time) lo, max(end_time) hi FROM spans").row(0)
    inside = faults.filter(pl.col("time").dt.replace_time_zone(None).is_between(lo, hi))
    if inside.is_empty():
        pytest.skip("no fault in the loaded minutes")
    return inside


# ---------------------------------------------------------------------------------------------- service graph
def test_service_graph_draws_every_service_as_a_node_and_every_edge(tt_lab: Lab) -> None:
    edges = tt_lab.service_graph()
    fig = service_graph_figure(edges)
    assert isinstance(fig, go.Figure)
    nodes = _trace(fig, "services")
    assert set(nodes.customdata) == set(edges["client"]) | set(edges["server"])
    assert len(nodes.customdata) == len(set(nodes.customdata))
    mids = _trace(fig, "edges")
    assert len(mids.x) == edges.height
    assert all(
        f"{c} → {s}" in h for c, s, h in zip(edges["client"], edges["server"], mids.hovertext, strict=True)
    )
    assert (
        len(fig.layout.annotations) == edges.filter(pl.col("client") != pl.col("server")).height
    )  # arrowheads
    # TrainTicket records no status: the edges are coloured by p95 latency.
    assert mids.marker.colorbar.title.text == "p95"
    assert fig.layout.template.layout.plot_bgcolor == pio.templates[TEMPLATE].layout.plot_bgcolor
    assert "services" in fig.layout.title.text


def test_service_graph_layers_callers_left_of_callees_and_survives_cycles() -> None:
    edges = pl.DataFrame(
        {
            "client": ["web", "web", "cart", "db", "cart"],
            "server": ["cart", "db", "db", "web", "cart"],
            "calls": [10, 5, 8, 1, 2],
            "errors": [0, 1, 0, 0, 0],
            "error_rate": [0.0, 0.2, 0.0, 0.0, 0.0],
            "p50_ms": [1.0, 2.0, 3.0, 4.0, 5.0],
            "p95_ms": [2.0, 4.0, 6.0, 8.0, 9.0],
            "p99_ms": [3.0, 5.0, 7.0, 9.0, 9.5],
        }
    )
    fig = service_graph_figure(edges)
    nodes = _trace(fig, "services")
    x = dict(zip(nodes.customdata, nodes.x, strict=True))
    assert x == {"web": 0.0, "cart": 1.0, "db": 2.0}
    assert (
        _trace(fig, "edges").marker.colorbar.title.text == "error rate"
    )  # a call failed: colour by error rate
    circ = service_graph_figure(edges, layout="circular", color_by="p95_ms")
    assert set(_trace(circ, "services").customdata) == {"web", "cart", "db"}
    with pytest.raises(ConfigError, match="layout"):
        service_graph_figure(edges, layout="spring")


def test_figure_builders_name_the_columns_they_miss(tt_lab: Lab) -> None:
    spans = tt_lab.spans(limit=5)
    with pytest.raises(SchemaError, match="client"):
        service_graph_figure(spans)
    with pytest.raises(SchemaError, match="window_start"):
        red_figure(spans)
    with pytest.raises(ConfigError, match="polars.DataFrame"):
        latency_by_operation_figure({"service_name": []})


# ---------------------------------------------------------------------------------------------- latency by operation
def test_latency_by_operation_boxes_are_exact_quartiles_of_the_busiest_operations(tt_lab: Lab) -> None:
    spans = tt_lab.sql("SELECT service_name, name, duration_ns FROM spans")
    fig = latency_by_operation_figure(spans, top=7)
    boxes = [t for t in fig.data if isinstance(t, go.Box)]
    assert len(boxes) == 7
    assert fig.layout.xaxis.type == "log"
    assert "ms" in fig.layout.xaxis.title.text
    busiest = (
        spans.group_by("service_name", "name")
        .agg(pl.len().alias("n"), (pl.col("duration_ns") / 1e6).alias("ms"))
        .sort(["n", "service_name", "name"], descending=[True, False, False])
    )
    first = busiest.row(0, named=True)
    ms = pl.Series(first["ms"])
    assert boxes[0].name.endswith(first["name"][:40]) or first["name"][:40] in boxes[0].name
    assert boxes[0].median[0] == pytest.approx(ms.quantile(0.5, interpolation="linear"))
    assert boxes[0].q1[0] == pytest.approx(ms.quantile(0.25, interpolation="linear"))
    assert boxes[0].q3[0] == pytest.approx(ms.quantile(0.75, interpolation="linear"))
    assert boxes[0].lowerfence[0] <= boxes[0].q1[0] <= boxes[0].q3[0] <= boxes[0].upperfence[0]
    p99 = _trace(fig, "p99")
    assert len(p99.x) == 7


def test_latency_by_operation_ranks_by_time_spent(tt_lab: Lab) -> None:
    spans = tt_lab.sql("SELECT service_name, name, duration_ns FROM spans")
    fig = latency_by_operation_figure(spans, top=3, rank_by="total")
    top = (
        spans.group_by("service_name", "name")
        .agg(pl.col("duration_ns").sum())
        .sort("duration_ns", descending=True)
    )
    assert top["name"][0][:40] in fig.data[0].name
    with pytest.raises(ConfigError, match="rank_by"):
        latency_by_operation_figure(spans, rank_by="median")


# ---------------------------------------------------------------------------------------------- waterfall
def test_waterfall_has_one_bar_per_span_and_highlights_the_critical_path(tt_lab: Lab) -> None:
    trace_id = tt_lab.traces(limit=1)["trace_id"][0]
    tree = tt_lab.span_tree(trace_id)
    cp = tt_lab.critical_path(trace_id)
    fig = trace_waterfall_figure(tree, cp)
    bars = [t for t in fig.data if isinstance(t, go.Bar) and t.name != "critical path"]
    rows = sorted(int(r) for t in bars for r in t.y)
    assert rows == list(range(tree.height))  # one bar per span, one row each
    assert {t.name for t in bars} == set(tree["service_name"])
    assert len(fig.layout.yaxis.ticktext) == tree.height
    assert fig.layout.yaxis.autorange == "reversed"
    # Rows follow the tree: the root first, children indented under their parent.
    assert not fig.layout.yaxis.ticktext[0].startswith("\u00a0")
    assert fig.layout.yaxis.ticktext[1].startswith("\u00a0")
    crit = _trace(fig, "critical path")
    assert len(crit.y) == cp.height
    # Each critical segment lies inside the bar of its span.
    span_bar = {int(r): (b, b + w) for t in bars for r, b, w in zip(t.y, t.base, t.x, strict=True)}
    for r, b, w in zip(crit.y, crit.base, crit.x, strict=True):
        lo, hi = span_bar[int(r)]
        assert lo - 1e-2 <= b and b + w <= hi + 1e-2
    # The path covers the whole trace, from its start to its end.
    total_ms = tt_lab.traces(limit=1)["duration_ms"][0]
    assert sum(crit.x) == pytest.approx(total_ms, rel=1e-3)
    assert "time since trace start (ms)" in fig.layout.xaxis.title.text


def _tiny_trace(status_last: str = "ERROR") -> pl.DataFrame:
    t0 = dt.datetime(2024, 1, 1, 12, 0, 0)
    rows = [  # given out of order: the figure orders by the tree
        ("c", "b", "db", "SELECT", 30, 20, status_last),
        ("a", None, "web", "GET /", 0, 100, "UNSET"),
        ("b", "a", "cart", "add", 10, 60, "OK"),
        ("d", "a", "web", "render", 75, 20, "UNSET"),
    ]
    return pl.DataFrame(
        {
            "trace_id": ["0" * 31 + "1"] * len(rows),
            "span_id": [r[0] for r in rows],
            "parent_span_id": [r[1] for r in rows],
            "service_name": [r[2] for r in rows],
            "name": [r[3] for r in rows],
            "start_time": [t0 + dt.timedelta(milliseconds=r[4]) for r in rows],
            "duration_ns": [r[5] * 1_000_000 for r in rows],
            "status_code": [r[6] for r in rows],
        }
    )


def test_waterfall_orders_rows_by_the_tree_and_marks_errors() -> None:
    fig = trace_waterfall_figure(_tiny_trace())
    labels = [s.replace("\u00a0", " ") for s in fig.layout.yaxis.ticktext]
    assert labels == ["web: GET /", "  cart: add", "    db: SELECT", "  web: render"]
    err = _trace(fig, "error")
    assert list(err.y) == [2] and list(err.x) == [pytest.approx(50.0)]
    db = _trace(fig, "db")
    assert db.marker.line.color[0] != "rgba(0,0,0,0)"
    assert "1 errors" in fig.layout.title.text
    assert not [t for t in trace_waterfall_figure(_tiny_trace("OK")).data if t.name == "error"]


def test_waterfall_refuses_several_traces(tt_lab: Lab) -> None:
    with pytest.raises(ConfigError, match="one trace"):
        trace_waterfall_figure(tt_lab.spans(limit=1000))


# ---------------------------------------------------------------------------------------------- RED
def test_red_figure_draws_a_line_per_service_busiest_first(tt_lab: Lab) -> None:
    red = tt_lab.red("30s")
    fig = red_figure(red)
    assert {t.name for t in fig.data} == set(red["service_name"])
    assert fig.layout.yaxis.type == "log"
    assert fig.layout.xaxis.type == "date"
    top3 = red_figure(red, "rate_per_s", top=3)
    busiest = (
        red.group_by("service_name")
        .agg(pl.col("requests").sum())
        .sort(["requests", "service_name"], descending=[True, False])["service_name"][:3]
        .to_list()
    )
    assert [t.name for t in top3.data] == busiest
    assert top3.layout.yaxis.type != "log"
    # Points are the windows, in ms since the epoch (UTC).
    gw = red.filter(pl.col("service_name") == busiest[0]).sort("window_start")
    first_ms = gw["window_start"].dt.epoch("ms")[0]
    assert top3.data[0].x[0] == pytest.approx(first_ms)
    assert top3.data[0].y[0] == pytest.approx(gw["rate_per_s"][0], rel=1e-5)


def test_red_figure_stacks_several_metrics(tt_lab: Lab) -> None:
    fig = red_figure(tt_lab.red("1m"), ("rate_per_s", "error_rate", "p95_ms"), top=4)
    assert len(fig.data) == 12
    assert {t.yaxis for t in fig.data} == {"y", "y2", "y3"}
    assert sum(t.showlegend is not False for t in fig.data) == 4  # one legend entry per service
    assert fig.layout.yaxis2.tickformat == ".0%"


def test_red_figure_breaks_lines_across_gaps() -> None:
    t0 = dt.datetime(2024, 1, 1)
    red = pl.DataFrame(
        {
            "window_start": [t0, t0 + dt.timedelta(minutes=1), t0 + dt.timedelta(minutes=10)],
            "service_name": ["a"] * 3,
            "requests": [1, 2, 3],
            "p95_ms": [1.0, 2.0, 3.0],
        }
    )
    fig = red_figure(red)
    y = list(fig.data[0].y)
    assert len(y) == 4 and y[2] != y[2]  # NaN between 00:01 and 00:10


# ---------------------------------------------------------------------------------------------- faults
def test_fault_latency_marks_each_fault_in_range(tt_lab: Lab, faults: pl.DataFrame) -> None:
    inside = _faults_in_capture(faults, tt_lab)
    fig = fault_latency_figure(tt_lab.red("15s"), faults)  # faults outside the capture are left out
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == inside.height
    assert {t.name for t in fig.data} == set(inside["service"])
    assert inside["kind"][0] in fig.layout.annotations[0].text
    shaded = fault_latency_figure(
        tt_lab.red("15s"), inside.head(1), "ts-gateway-service", fault_duration_s=60
    )
    assert [s.type for s in shaded.layout.shapes] == ["line", "rect"]
    assert [t.name for t in shaded.data] == ["ts-gateway-service"]


def test_fault_latency_from_spans_shows_what_callers_saw(tt_lab: Lab, faults: pl.DataFrame) -> None:
    first = faults.filter(pl.col("time") == FIRST_FAULT)
    calls = calls_into(tt_lab, "ts-contacts-service")
    assert calls.height > 0
    assert (calls["callee"] == "ts-contacts-service").all()
    assert (calls["service_name"] != "ts-contacts-service").all()
    assert (calls["duration_ns"] >= calls["callee_duration_ns"]).all()
    fig = fault_latency_figure(calls, first)
    callers = set(calls["service_name"])
    assert {t.name for t in fig.data} == callers | {f"{c} spans" for c in callers}
    dots = sum(len(t.x) for t in fig.data if t.name.endswith(" spans"))
    shown = calls.filter(
        pl.col("start_time").is_between(
            dt.datetime(2023, 1, 30, 11, 49, 46), dt.datetime(2023, 1, 30, 11, 56, 46)
        )
    )
    assert dots == shown.height
    assert fig.layout.yaxis.type == "log"


def test_fault_latency_refuses_faults_outside_the_data(tt_lab: Lab, faults: pl.DataFrame) -> None:
    later = faults.with_columns(pl.col("time") + pl.duration(days=2))
    with pytest.raises(ConfigError, match="time range"):
        fault_latency_figure(tt_lab.red("15s"), later)


# ---------------------------------------------------------------------------------------------- tables, colours
def test_slow_traces_table_lists_the_traces(tt_lab: Lab) -> None:
    traces = tt_lab.traces(limit=5)
    fig = slow_traces_table_figure(traces)
    table = fig.data[0]
    assert isinstance(table, go.Table)
    assert list(table.cells.values[0]) == traces["trace_id"].to_list()


def test_service_colors_are_stable_and_distinct() -> None:
    names = [f"svc-{i}" for i in range(30)]
    colors = service_colors(names)
    assert list(colors) == names
    assert len(set(colors.values())) == 30
    assert service_colors(names) == colors


def test_summary_frame_counts_what_the_lab_holds(tt_lab: Lab) -> None:
    s = dict(summary_frame(tt_lab).iter_rows())
    assert s["spans"] == f"{tt_lab.counts()['spans']:,}"
    assert s["traces"] == f"{tt_lab.sql('SELECT count(DISTINCT trace_id) n FROM spans')['n'][0]:,}"
    assert s["files loaded"] == "2"


# ---------------------------------------------------------------------------------------------- report
def test_write_report_is_one_self_contained_html_file(
    tt_lab: Lab, faults: pl.DataFrame, tmp_path: Path
) -> None:
    from plotly.offline import get_plotlyjs

    out = write_report(tt_lab, tmp_path / "sub" / "report.html", faults=faults, title="TrainTicket <test>")
    assert out == tmp_path / "sub" / "report.html" and out.is_file()
    html = out.read_text(encoding="utf-8")
    assert html.count(get_plotlyjs()[:200]) == 1  # plotly.js embedded once, no CDN
    assert "<script src=" not in html  # nothing to fetch: opens offline
    assert html.count("cdn.plot.ly") == get_plotlyjs().count(
        "cdn.plot.ly"
    )  # only plotly.js' own optional URLs
    assert "TrainTicket &lt;test&gt;" in html
    for section in ("summary", "graph", "latency", "red", "traces", "waterfall", "critical", "faults"):
        assert f'<section id="{section}">' in html
    # Every figure refers to the one shared template rather than inlining its own copy.
    calls = re.findall(
        r'Plotly\.newPlot\("([^"]+)", (.*?), Object\.assign\(\{template: OTLP_LAB_TEMPLATE\}, ', html
    )
    ids = [c[0] for c in calls]
    assert len(ids) == html.count("Plotly.newPlot(")
    assert len(ids) == len(set(ids)) >= 6  # graph, latency, RED, waterfall, two per fault in range
    for fid in ids:
        assert f'<div id="{fid}"' in html
    data = [json.loads(d) for _, d in calls]
    assert any(t.get("name") == "services" for d in data for t in d)  # the service graph's nodes
    assert any(t.get("name") == "critical path" for d in data for t in d)
    assert f'<td class="num">{tt_lab.counts()["spans"]:,}</td>' in html  # summary table
    slowest = tt_lab.traces(limit=1)["trace_id"][0]
    assert slowest in html
    assert "ts-contacts-service" in html and "network_delay" in html
    assert out.stat().st_size < 5_200_000


def test_write_report_refuses_an_empty_lab(tmp_path: Path) -> None:
    with Lab() as lab, pytest.raises(ConfigError, match="no spans"):
        write_report(lab, tmp_path / "r.html")


# ---------------------------------------------------------------------------------------------- datasets
def test_trainticket_faults_reads_the_ground_truth(faults: pl.DataFrame) -> None:
    assert faults.columns == ["time", "service", "pod", "kind"]
    assert faults.schema["time"] == pl.Datetime("us", "UTC")
    assert faults.height == 17
    first = faults.row(0, named=True)
    assert first["time"] == FIRST_FAULT
    assert (first["service"], first["kind"]) == ("ts-contacts-service", "network_delay")
    assert first["pod"].startswith(first["service"])
    assert faults["time"].is_sorted()
    assert set(faults["kind"]) == {"network_delay", "cpu_contention"}


def test_trainticket_faults_names_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "faults.json").write_text(json.dumps({"inject_timestamp": "1"}))
    with pytest.raises(DecodeError, match="inject_timestamp"):
        trainticket_faults(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        trainticket_faults(tmp_path / "missing")


def test_trainticket_path_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRAINTICKET_ENV, str(tmp_path))
    assert trainticket_path() == tmp_path.resolve()
    monkeypatch.setenv(TRAINTICKET_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=TRAINTICKET_ENV):
        trainticket_path()


# ---------------------------------------------------------------------------------------------- large traces, gaps
def _wide_trace() -> tuple[pl.DataFrame, pl.DataFrame]:
    """171 spans: a root, 10 sequential calls, each with 16 sequential steps; one step fails."""
    from otlp_lab.store import critical_path

    t0 = dt.datetime(2024, 1, 1, 12, 0, 0)
    rows = [("r", None, "web", "GET /", 0, 1000, "UNSET")]
    for c in range(10):
        rows.append((f"c{c}", "r", f"svc{c % 4}", f"call {c}", c * 100, 95, "UNSET"))
        for g in range(16):
            rows.append(
                (
                    f"c{c}g{g}",
                    f"c{c}",
                    f"svc{c % 4}",
                    f"step {g}",
                    c * 100 + g * 5 + 1,
                    4,
                    "ERROR" if (c, g) == (7, 3) else "UNSET",
                )
            )
    frame = pl.DataFrame(
        {
            "trace_id": ["0" * 31 + "2"] * len(rows),
            "span_id": [r[0] for r in rows],
            "parent_span_id": [r[1] for r in rows],
            "service_name": [r[2] for r in rows],
            "name": [r[3] for r in rows],
            "start_time": [t0 + dt.timedelta(milliseconds=r[4]) for r in rows],
            "duration_ns": [r[5] * 1_000_000 for r in rows],
            "status_code": [r[6] for r in rows],
        }
    )
    start_ns = frame["start_time"].dt.epoch("ns")
    cp = critical_path(
        frame.select("trace_id", "span_id", "parent_span_id", "service_name", "name").with_columns(
            start_ns=start_ns, end_ns=start_ns + frame["duration_ns"]
        )
    )
    return frame, cp


def test_waterfall_folds_a_170_span_trace_and_keeps_the_whole_critical_path() -> None:
    tree, cp = _wide_trace()
    fig = trace_waterfall_figure(tree, cp, max_rows=40)
    labels = fig.layout.yaxis.ticktext
    assert len(labels) <= 40 < tree.height
    folded = _trace(fig, "folded spans")
    shown = sum(
        len(t.y)
        for t in fig.data
        if isinstance(t, go.Bar) and t.name not in ("critical path", "folded spans")
    )
    counts = [int(lab.split("⋯ ")[1].split(" ")[0]) for lab in labels if "⋯" in lab]
    assert shown + sum(counts) == tree.height  # every span is a row or counted in a fold
    assert len(folded.y) == len(counts) and "folded" in fig.layout.title.text
    crit = _trace(fig, "critical path")
    assert sum(crit.x) == pytest.approx(cp["self_ms"].sum(), rel=1e-4)  # drawn in full
    assert set(int(r) for r in crit.y) <= set(range(len(labels)))
    assert list(_trace(fig, "error").y)  # the failing step keeps its own row
    assert any("step 3" in lab for lab in labels)
    # without max_rows: one row per span, as before
    assert len(trace_waterfall_figure(tree, cp).layout.yaxis.ticktext) == tree.height


def test_red_figure_cuts_long_idle_stretches_out_of_the_time_axis() -> None:
    t0 = dt.datetime(2024, 1, 1, 12, 0, 0)
    starts = [t0 + dt.timedelta(minutes=m) for m in (0, 1, 2, 180, 181, 600)]
    red = pl.DataFrame(
        {
            "window_start": starts,
            "service_name": ["a"] * 6,
            "requests": [5] * 6,
            "p95_ms": [1.0, 2, 3, 4, 5, 6],
        }
    )
    fig = red_figure(red, "p95_ms")
    assert len(fig.layout.xaxis.rangebreaks) == 2 and "2 idle stretches cut out" in fig.layout.title.text
    lo, hi = fig.layout.xaxis.rangebreaks[0].bounds
    assert hi - lo == pytest.approx((180 - 3) * 60_000)
    assert not red_figure(red, "p95_ms", break_gaps=None).layout.xaxis.rangebreaks
