"""The metastability explorer reproduces the literature: naive retries shrink the stable region as load grows."""

from __future__ import annotations

import polars as pl
import pytest

from otlp_lab.errors import ScenarioError
from otlp_lab.sim import metastability
from otlp_lab.viz import metastability_figure

POLICIES = {
    "naive retries": {},
    "retry budget": {"storm": {"budget": {"budget_percent": 20, "min_retry_concurrency": 3}}},
}


@pytest.fixture(scope="module")
def storm_map():
    # the shipped retry storm: api serves 200 req/s; base loads at ρ 0.3 and 0.7; size 1.0 = no trigger
    return metastability(
        "retry_storm",
        loads_rps=[60, 140],
        sizes=[1.0, 2.5],
        durations_s=[1.0],
        policies=POLICIES,
        trigger_at_s=5,
        settle_s=15,
        capacity_rps=200,
    )


def test_naive_retries_lose_stability_as_load_grows_and_a_budget_widens_it(storm_map) -> None:
    share = {
        (p, load): s
        for p, load, s in storm_map.stable_share().select("policy", "load_rps", "stable_share").iter_rows()
    }
    assert share[("naive retries", 140.0)] < share[("naive retries", 60.0)]
    assert share[("retry budget", 140.0)] > share[("naive retries", 140.0)]
    pts = storm_map.points
    # the shipped storm is a fleet that is stable until triggered, even at ρ = 0.7
    quiet = pts.filter(pl.col("size") == 1.0)
    assert quiet["stable_before"].all() and (quiet["recovered_share"] == 1.0).all()
    # the same trigger that the budget rides out (recovering within the settle time) leaves naive retries stuck
    hit = pts.filter((pl.col("size") == 2.5) & (pl.col("load_rps") == 140.0))
    naive = hit.filter(policy="naive retries").row(0, named=True)
    budget = hit.filter(policy="retry budget").row(0, named=True)
    assert naive["recovered_share"] == 0.0 and naive["recovery_s"] is None
    assert budget["recovered_share"] == 1.0 and 0 <= budget["recovery_s"] < storm_map.settle_s
    runs = storm_map.runs
    assert runs.height == 8 and set(runs["rho"]) == {0.3, 0.7}
    assert runs.filter(policy="naive retries", load_rps=140.0, size=2.5)["amplification"].item() > 2


def test_metastability_figure_and_bad_arguments(storm_map) -> None:
    fig = metastability_figure(storm_map.points)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 2  # one per policy (one trigger duration)
    naive = next(t for t in heat if "naive retries" in t.hovertemplate)
    assert "stuck" in [c for row in naive.text for c in row]
    assert list(naive.x) == ["ρ 0.30", "ρ 0.70"] and list(naive.y) == ["×1", "×2.5"]
    with pytest.raises(ScenarioError, match=r"sizes=.*positive numbers"):
        metastability("retry_storm", loads_rps=[100], sizes=[0], durations_s=[1])
    with pytest.raises(ScenarioError, match=r"workload=.*one of the 1 workloads. Got 3"):
        metastability("retry_storm", loads_rps=[100], sizes=[2], durations_s=[1], workload=3)
