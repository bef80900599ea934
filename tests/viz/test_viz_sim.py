"""Figure builders and helpers of otlp_lab.viz for fleet simulations, on small real runs."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
import pytest

from otlp_lab import ConfigError, Lab, SchemaError
from otlp_lab.sim import RunResult, run_many, timelines
from otlp_lab.viz import (
    TEMPLATE,
    breaker_timelines,
    instance_load,
    instance_load_figure,
    latency_quantiles_figure,
    policy_bars_figure,
    policy_colors,
    policy_timeline_figure,
    recovery_table,
    runs_table,
    scenario_windows,
    strategy_bars_figure,
)

BREAKER = {
    "failure_rate_threshold": 50,
    "sliding_window_size": 20,
    "minimum_number_of_calls": 20,
    "wait_duration_in_open_state_s": 1.0,
}
STORM = {"naive retries": {}, "circuit breaker": {"storm": {"breaker": BREAKER}}}


@pytest.fixture(scope="module")
def storm() -> dict[str, RunResult]:
    """The retry storm, cut to 40 s: the spike ends at 24 s, then 16 s to recover (or not)."""
    return run_many("retry_storm", STORM, seed=1, duration_s=40)


@pytest.fixture(scope="module")
def balanced() -> tuple[Lab, dict[str, RunResult]]:
    """Two balancers in front of the slow instance, 8 simulated seconds each (5 of warm-up), written into a Lab."""
    lab = Lab()
    runs = run_many(
        "slow_instance",
        {s: {"backend": {"balancer": s}} for s in ("round_robin", "power_of_two_choices")},
        lab=lab,
        seed=1,
        duration_s=8,
    )
    yield lab, runs
    lab.close()


def _named(fig: go.Figure, name: str) -> list:
    return [t for t in fig.data if t.name == name]


def _axis_of(fig: go.Figure, trace) -> str:
    return trace.yaxis or "y"


# ---------------------------------------------------------------------------------------------- helpers
def test_policy_colors_are_stable_and_distinct() -> None:
    c = policy_colors(["a", "b", "a", "c"])
    assert list(c) == ["a", "b", "c"]
    assert len(set(c.values())) == 3
    assert policy_colors(["a", "b"]) == {k: c[k] for k in ("a", "b")}


def test_breaker_timelines_stack_only_runs_with_breakers(storm) -> None:
    b = breaker_timelines(storm)
    assert set(b["policy"]) == {"circuit breaker"}
    assert {"t_s", "caller", "target", "closed", "open", "half_open", "policy"} <= set(b.columns)
    assert set(zip(b["caller"], b["target"], strict=True)) == {("gateway", "api")}
    assert b.height == 40  # one row per simulated second for the single gateway -> api breaker
    assert (b["closed"] + b["open"] + b["half_open"] == 1).all()
    assert b["open"].sum() > 0  # the spike opens it
    empty = breaker_timelines({"naive retries": storm["naive retries"]})
    assert empty.is_empty() and "policy" in empty.columns
    with pytest.raises(ConfigError, match="mapping"):
        breaker_timelines(list(storm.values()))


def test_scenario_windows_cover_spikes_and_faults() -> None:
    assert scenario_windows("retry_storm") == [
        {"start_s": 20.0, "end_s": 24.0, "label": "load spike 300 req/s"}
    ]
    # a fault with no duration lasts to the end of the run
    assert scenario_windows("slow_instance") == [{"start_s": 0.0, "end_s": 60.0, "label": "cpu backend-2"}]
    shop = scenario_windows("shop")
    assert [(w["start_s"], w["end_s"], w["label"]) for w in shop] == [
        (40.0, 60.0, "crash inventory-1"),
        (70.0, 100.0, "latency payment-0"),
    ]


def test_runs_table_has_one_row_per_run_and_the_constant_columns(storm) -> None:
    t = runs_table(storm, scenario="retry_storm")
    assert t["policy"].to_list() == list(STORM)
    assert {"goodput_rps", "error_rate", "p99_ms", "amplification", "hops", "run_id"} <= set(t.columns)
    assert t["scenario"].to_list() == ["retry_storm"] * 2
    assert t.schema["p99_ms"] == pl.Float64
    naive = t.row(0, named=True)
    assert naive["goodput_rps"] == pytest.approx(storm["naive retries"].goodput_rps, abs=1e-3)
    with pytest.raises(ConfigError, match="non-empty mapping"):
        runs_table({})


def test_recovery_table_tells_the_metastable_failure_from_recovery(storm) -> None:
    rec = recovery_table(timelines(storm), before_s=20, after_s=24)
    assert rec["policy"].to_list() == list(STORM)
    by = {r["policy"]: r for r in rec.iter_rows(named=True)}
    assert by["naive retries"]["recovered"] is False
    assert by["naive retries"]["recovery_s"] is None
    assert by["naive retries"]["goodput_after"] < 0.1
    assert by["circuit breaker"]["recovered"] is True
    assert 0 <= by["circuit breaker"]["recovery_s"] <= 6
    assert by["naive retries"]["goodput_before"] > 0.9  # healthy before the spike


def test_recovery_table_measures_the_time_to_a_healthy_window() -> None:
    # goodput is 0 until t = 15 s, then equal to the offered load
    tl = pl.DataFrame(
        {
            "t_s": list(range(40)),
            "policy": ["p"] * 40,
            "offered_rps": [100] * 40,
            "goodput_rps": [100] * 5 + [0] * 10 + [100] * 25,
        }
    )
    row = recovery_table(tl, after_s=10, hold_s=5).row(0, named=True)
    assert row["recovery_s"] == 5.0 and row["recovered"] is True
    assert row["goodput_before"] == 1.0  # t = 0..4, the 5 s before after_s - hold_s
    assert row["goodput_after"] == 1.0
    assert recovery_table(tl, before_s=10, after_s=10, hold_s=5)["goodput_before"].item() == 0.0  # t = 5..9
    never = recovery_table(tl.with_columns(pl.col("goodput_rps") * 0.5), after_s=10, hold_s=5).row(
        0, named=True
    )
    assert never["recovery_s"] is None and never["recovered"] is False
    with pytest.raises(SchemaError, match="goodput_rps"):
        recovery_table(tl.drop("goodput_rps"), after_s=10)
    with pytest.raises(ConfigError, match="threshold"):
        recovery_table(tl, after_s=10, threshold=1.5)


# ---------------------------------------------------------------------------------------------- timelines
def test_policy_timeline_figure_draws_each_policy_on_every_row(storm) -> None:
    colors = policy_colors(STORM)
    windows = scenario_windows("retry_storm")
    fig = policy_timeline_figure(timelines(storm), breaker_timelines(storm), windows=windows, colors=colors)
    assert isinstance(fig, go.Figure)
    assert fig.layout.template.layout.plot_bgcolor == pio.templates[TEMPLATE].layout.plot_bgcolor
    naive, brk = _named(fig, "naive retries"), _named(fig, "circuit breaker")
    assert len(naive) == 3  # goodput, attempts, error rate; no breaker: no line in the breaker row
    assert len(brk) == 4
    assert {t.line.color for t in naive} == {colors["naive retries"]}
    assert {t.line.color for t in brk} == {colors["circuit breaker"]}
    assert sum(bool(t.showlegend) for t in naive + brk) == 2  # one legend entry per policy
    assert {_axis_of(fig, t) for t in brk} == {"y", "y2", "y3", "y4"}
    # the offered load is drawn once, in the goodput row
    offered = _named(fig, "offered load")
    assert len(offered) == 1 and _axis_of(fig, offered[0]) == "y"
    assert offered[0].line.dash == "dash"
    # goodput: the naive run is stuck near zero at the end, the breaker run is back
    goodput = {t.name: t.y for t in fig.data if _axis_of(fig, t) == "y" and t.name in STORM}
    assert sum(goodput["naive retries"][-10:]) < 20
    assert sum(goodput["circuit breaker"][-10:]) > 900
    # breaker row: a share between 0 and 1 that is 1 at some point
    open_share = [t for t in brk if _axis_of(fig, t) == "y4"][0].y
    assert max(open_share) == 1.0 and min(open_share) == 0.0
    assert fig.layout.yaxis4.tickformat == ".0%"
    # the spike is shaded on every row, labelled once
    assert len(fig.layout.shapes) == 4
    assert all((s.x0, s.x1) == (20.0, 24.0) for s in fig.layout.shapes)
    assert [a.text for a in fig.layout.annotations] == ["load spike 300 req/s"]
    assert fig.layout.xaxis4.title.text == "simulated time (s)"
    assert len(fig.to_json()) < 100_000


def test_policy_timeline_figure_options_and_errors(storm) -> None:
    tl = timelines(storm)
    fig = policy_timeline_figure(tl, metrics=["error_rate"], offered=False, policies=["circuit breaker"])
    assert [t.name for t in fig.data] == ["circuit breaker"]
    assert fig.layout.yaxis.tickformat == ".0%"
    fig = policy_timeline_figure(tl, windows=[(20, 24)], metrics=["goodput_rps", "mean_latency_ms"])
    assert len(fig.layout.shapes) == 2 and not fig.layout.annotations
    with pytest.raises(SchemaError, match="nope"):
        policy_timeline_figure(tl, metrics=["nope"])
    with pytest.raises(ConfigError, match="at least one"):
        policy_timeline_figure(tl, metrics=[])
    with pytest.raises(SchemaError, match="half_open"):
        policy_timeline_figure(tl, tl)
    with pytest.raises(ConfigError, match="windows"):
        policy_timeline_figure(tl, windows=[5])
    with pytest.raises(ConfigError, match="polars.DataFrame"):
        policy_timeline_figure(tl.to_dict())


# ---------------------------------------------------------------------------------------------- comparisons
def test_policy_bars_figure_has_a_panel_per_metric(storm) -> None:
    summary = runs_table(storm)
    colors = policy_colors(STORM)
    fig = policy_bars_figure(summary, colors=colors)
    assert [t.name for t in fig.data] == ["goodput_rps", "error_rate", "p99_ms", "amplification"]
    for t in fig.data:
        assert list(t.y) == list(STORM) and t.orientation == "h"
        assert list(t.marker.color) == [colors[p] for p in STORM]
    amp = _named(fig, "amplification")[0]
    assert amp.x[0] > 1.5 and amp.text[0].endswith("×")  # naive retries amplify
    assert _named(fig, "error_rate")[0].text[0].endswith("%")
    assert [a.text for a in fig.layout.annotations][:4] == [
        "goodput (req/s)",
        "error rate",
        "p99 latency (ms)",
        "amplification (attempts / call)",
    ]
    with pytest.raises(SchemaError, match="p42_ms"):
        policy_bars_figure(summary, ["p42_ms"])


def test_strategy_bars_figure_groups_and_single(storm) -> None:
    summary = pl.concat([runs_table(storm, ejection="off"), runs_table(storm, ejection="on")])
    fig = strategy_bars_figure(
        summary, "p99_ms", group="ejection", log_y=True, colors={"off": "#999999", "on": "#2ca02c"}
    )
    assert [t.name for t in fig.data] == ["off", "on"]
    assert [list(t.x) for t in fig.data] == [list(STORM)] * 2
    assert fig.data[1].marker.color == "#2ca02c"
    assert fig.layout.yaxis.type == "log" and fig.layout.barmode == "group"
    single = strategy_bars_figure(runs_table(storm), "error_rate")
    assert len(single.data) == 1 and list(single.data[0].x) == list(STORM)
    assert single.layout.yaxis.tickformat == ".0%"
    with pytest.raises(SchemaError, match="zone"):
        strategy_bars_figure(summary, group="zone")


def test_latency_quantiles_figure_one_bar_group_per_quantile(storm) -> None:
    summary = runs_table(storm)
    fig = latency_quantiles_figure(summary, colors=policy_colors(STORM))
    assert [t.name for t in fig.data] == list(STORM)
    assert list(fig.data[0].x) == ["p50", "p95", "p99"]
    naive = fig.data[0].y
    assert naive[0] <= naive[1] <= naive[2]
    assert fig.layout.yaxis.type == "log"


# ---------------------------------------------------------------------------------------------- instances
def test_instance_load_reads_each_instance_back_from_the_lab(balanced) -> None:
    lab, runs = balanced
    load = instance_load(lab, "backend")
    assert load["policy"].unique(maintain_order=True).to_list() == ["round_robin", "power_of_two_choices"]
    assert load.height == 12
    shares = load.group_by("run_id").agg(pl.col("share").sum())["share"]
    assert all(math.isclose(s, 1.0) for s in shares)
    rr = load.filter(policy="round_robin")
    assert rr["share"].min() > 0.15 and rr["share"].max() < 0.18  # round robin: a sixth each
    slow = {r["policy"]: r for r in load.filter(instance="backend-2").iter_rows(named=True)}
    assert slow["power_of_two_choices"]["share"] < slow["round_robin"]["share"] / 1.5
    assert slow["round_robin"]["p99_ms"] > 5 * rr.filter(instance="backend-0")["p99_ms"].item()
    only = instance_load(lab, "backend", run_ids=[runs["round_robin"].run_id])
    assert only["policy"].unique().to_list() == ["round_robin"]
    with pytest.raises(ConfigError, match="no simulated server span"):
        instance_load(lab, "nope")


def test_instance_load_figure_bars_per_policy(balanced) -> None:
    lab, _ = balanced
    load = instance_load(lab, "backend")
    colors = policy_colors(["round_robin", "power_of_two_choices"])
    fig = instance_load_figure(load, colors=colors)
    rr = _named(fig, "round_robin")
    assert len(rr) == 2 and [bool(t.showlegend) for t in rr] == [True, False]
    assert list(rr[0].x) == [f"backend-{i}" for i in range(6)]
    assert rr[0].marker.color == colors["round_robin"]
    assert fig.layout.yaxis2.type == "log"
    assert any("even share" in (a.text or "") for a in fig.layout.annotations)
    with pytest.raises(SchemaError, match="one row per policy and instance"):
        instance_load_figure(pl.concat([load, load]))


def test_write_sim_report(tmp_path):
    from otlp_lab.sim import run_many
    from otlp_lab.viz import write_sim_report

    results = run_many(
        "retry_storm", {"as is": {}, "no retries": {"*": {"retry": None}}}, seed=3, duration_s=25
    )
    out = write_sim_report(results, tmp_path / "sim.html", scenario="retry_storm")
    html = out.read_text()
    assert "as is" in html and "no retries" in html and html.count("Plotly.newPlot") == 2
    assert "What happened, second by second" in html
