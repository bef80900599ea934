"""Edge sites: store-and-forward buffers against queueing theory, buffer policies, edge processing, Lab output."""

from __future__ import annotations

import math
import statistics

import polars as pl
import pytest
from scipy import stats

from otlp_lab import Lab
from otlp_lab.errors import ScenarioError
from otlp_lab.sim import Constant
from otlp_lab.sim.edge import (
    EdgeScenario,
    EdgeSite,
    TailSampling,
    Uplink,
    compare_edge,
    run_edge,
    shipped_edge_scenarios,
    unreliable_mm1_wq,
)


def queue_site(uplink: Uplink, **kw) -> EdgeSite:
    """A site whose telemetry is a Poisson stream of exponentially sized items (mean 1 s of transfer)."""
    base = dict(
        name="s",
        rate=0.5,
        work=Constant(0.0),
        error_rate=0.0,
        spans_per_trace=1,
        span_bytes=1000,
        trace_size="exponential",
        buffer_bytes=10**12,
        metric_point_bytes=0,
        histogram_bytes=0,
        uplink=uplink,
    )
    return EdgeSite(**(base | kw))


def test_closed_form_value() -> None:
    assert unreliable_mm1_wq(0.5, 1.0, 0.1, 0.5) == pytest.approx(2.30, abs=1e-9)
    assert unreliable_mm1_wq(0.5, 1.0, 0.0, 0.5) == pytest.approx(1.0)  # plain M/M/1: rho / (mu - lam)
    with pytest.raises(ScenarioError, match="unstable"):
        unreliable_mm1_wq(0.9, 1.0, 0.1, 0.5)


def test_buffer_wait_matches_unreliable_server_mm1() -> None:
    """A link that fails only while sending (rate 0.1, repairs at rate 0.5) behind a Poisson stream (0.5/s)
    of Exp(1 s) transfers: the mean wait in the buffer is M/G/1 with the completion time (Wq = 2.30)."""
    uplink = Uplink(
        bandwidth_bytes_per_s=1000, latency_s=0, mean_up_s=10, mean_down_s=2, fail_only_while_busy=True
    )
    sc = EdgeScenario(
        name="unreliable-mm1", sites=[queue_site(uplink)], duration_s=15_000, timeline_interval_s=5_000
    )
    waits = [run_edge(sc, seed=s).deliveries()["wait_s"].mean() for s in range(8)]
    m = statistics.fmean(waits)
    half = stats.t.ppf(0.995, len(waits) - 1) * statistics.stdev(waits) / math.sqrt(len(waits))
    theory = unreliable_mm1_wq(0.5, 1.0, 0.1, 0.5)
    assert half < 0.2 * theory, f"interval too wide to test anything: {m:.3f} +- {half:.3f}"
    assert m - half <= theory <= m + half, f"Wq {theory:.3f} outside [{m - half:.3f}, {m + half:.3f}]"
    assert m - half > 1.0 * 1.3  # well above the reliable M/M/1 (Wq = 1): the failures are modelled


def outage_site(policy: str, **kw) -> EdgeSite:
    """10 traces/s of 1 kB, 2 % errors, a 50 kB buffer and a 60 s outage at t=30 s on a 20 kB/s link."""
    base = dict(
        name="site",
        rate=10.0,
        work=Constant(0.0),
        error_rate=0.02,
        spans_per_trace=1,
        span_bytes=1000,
        buffer_bytes=50_000,
        policy=policy,
        metric_point_bytes=0,
        histogram_bytes=0,
        uplink=Uplink(bandwidth_bytes_per_s=20_000, latency_s=0.1, outages=[(30.0, 60.0)]),
    )
    return EdgeSite(**(base | kw))


@pytest.fixture(scope="module")
def policies() -> dict[str, object]:
    return {
        p: run_edge(EdgeScenario(name="outage", sites=[outage_site(p)], duration_s=150), seed=3)
        for p in ("drop_oldest", "drop_newest", "sample")
    }


def test_counts_add_up_and_outage_loses_data(policies) -> None:
    for p, r in policies.items():
        row = r.summary().row(0, named=True)
        assert row["offered"] == row["delivered"] + row["dropped"] + row["shed"] + row["pending"], p
        # 600 traces arrive during the outage, 50 fit: most are lost whatever the policy
        assert 30 < row["lost_pct"] < 45, p
        assert row["max_buffer_bytes"] <= 50_000
        out = r.outages().row(0, named=True)
        assert (out["start_s"], out["end_s"]) == (30.0, 90.0)


def test_drop_newest_keeps_the_start_of_the_outage_drop_oldest_its_end(policies) -> None:
    def created_in_outage(r):
        # the first item after the link went down is in transfer (never evicted); look past it
        return r.deliveries().filter(pl.col("created_s").is_between(31, 90))["created_s"]

    newest, oldest = created_in_outage(policies["drop_newest"]), created_in_outage(policies["drop_oldest"])
    assert newest.max() < 40  # the buffer filled in the first ~5 s and refused the rest
    assert oldest.min() > 80  # the buffer kept the last ~5 s before the link came back
    assert 35 <= newest.len() <= 50 and 35 <= oldest.len() <= 50  # 50 kB of 1 kB traces


def test_degrade_to_sampling_sheds_ok_traces_and_keeps_errors(policies) -> None:
    s = policies["sample"].summary().row(0, named=True)
    n = policies["drop_newest"].summary().row(0, named=True)
    assert s["shed"] > 0
    assert s["errors_lost_pct"] < 5, s["errors_lost_pct"]
    assert n["errors_lost_pct"] > 25  # without priority, errors are lost like the rest


def test_sync_after_the_outage_is_limited_by_bandwidth(policies) -> None:
    """Backlog B drains at bandwidth minus arrival rate: 50 kB / (20 - 10) kB/s = 5 s after the link returns."""
    tl = policies["drop_oldest"].buffer_timeline()
    after = tl.filter((pl.col("t_s") > 90) & (pl.col("buffer_bytes") <= 3_000))["t_s"].min()
    assert 92 <= after <= 100
    # staleness of what was buffered through the outage: up to the outage length plus the drain
    d = policies["drop_newest"].deliveries()
    assert d["staleness_s"].max() == pytest.approx(60 + 5, abs=6)


def test_tail_sampling_and_metric_aggregation_cut_uplink_bytes() -> None:
    site = EdgeSite(
        name="edge",
        rate=20.0,
        work=Constant(0.01),
        error_rate=0.05,
        buffer_bytes=10**9,
        metrics_interval_s=5.0,
        uplink=Uplink(bandwidth_bytes_per_s=10**7, latency_s=0.05),
    )
    sc = EdgeScenario(name="processing", sites=[site], duration_s=120)
    frame = compare_edge(
        sc,
        {
            "raw": {},
            "edge processing": {
                "tail_sampling": TailSampling(slow_threshold_s=0.5, sample_rate=0.1),
                "metric_aggregation": True,
            },
        },
        seed=2,
    )
    raw, edge = frame.row(0, named=True), frame.row(1, named=True)
    assert raw["requests"] == edge["requests"]  # same seed, same traffic
    assert edge["uplink_bytes"] < 0.25 * raw["uplink_bytes"]
    assert edge["telemetry_cpu_s"] > 0 == raw["telemetry_cpu_s"]
    # every error trace survives sampling (5 % errors + ~10 % of the rest are kept)
    assert 0.1 < edge["offered"] / edge["requests"] < 0.2
    assert edge["sampled_out"] == edge["requests"] - edge["offered"]


def test_tail_sampling_keeps_every_error_and_slow_trace() -> None:
    ts = TailSampling(slow_threshold_s=0.5, sample_rate=0.0)
    assert ts.keeps(True, 0.01, 0.99) and ts.keeps(False, 0.6, 0.99) and not ts.keeps(False, 0.1, 0.0)


def test_lab_output(lab: Lab) -> None:
    sc = EdgeScenario(
        name="outage", sites=[outage_site("drop_oldest", metric_point_bytes=50)], duration_s=120
    )
    r = run_edge(sc, lab=lab, seed=1)
    d = r.deliveries().filter(pl.col("kind") == "traces")
    spans = lab.sql(
        "SELECT count(*) n, quantile_cont(duration_ns / 1e9, 0.95) p95 FROM spans "
        "WHERE name = 'edge.upload' AND attributes['edge.item']::VARCHAR = 'traces'"
    ).row(0, named=True)
    assert spans["n"] == d.height
    assert spans["p95"] == pytest.approx(d["staleness_s"].quantile(0.95, "linear"), rel=1e-6)
    roots = lab.sql(
        "SELECT count(*) FILTER (status_code = 'ERROR') e, count(*) n FROM spans WHERE name = 'GET /work'"
    )
    assert roots.row(0) == (d["error"].sum(), d.height)
    faults = lab.sql('SELECT kind, epoch("end" - start) s FROM faults WHERE run_id = ?', [r.run_id])
    assert faults.rows() == [("uplink_outage", 60.0)]
    er = lab.sql("SELECT * FROM edge_runs")
    assert er["lost_pct"][0] == pytest.approx(r.summary()["lost_pct"][0])
    up = lab.sql("SELECT max(value) FROM metric_gauge WHERE metric_name = 'edge.buffer.usage'").item()
    assert 40_000 < up <= 50_000
    assert lab.sql("SELECT count(*) FROM logs WHERE event_name = 'edge.uplink.down'").item() == 1


def test_same_seed_same_output() -> None:
    sc = EdgeScenario(name="x", sites=[outage_site("sample", error_rate=0.2)], duration_s=100)
    a, b = run_edge(sc, seed=5), run_edge(sc, seed=5)
    assert a.summary().equals(b.summary())


def test_yaml_scenarios() -> None:
    assert "retail_sites" in shipped_edge_scenarios()
    r = run_edge("retail_sites", seed=0, duration_s=60)
    assert set(r.summary()["site"]) == {"store-north", "store-south", "warehouse"}
    with pytest.raises(ScenarioError, match=r"sites.a.uplink.bandwith_bytes_per_s' is not a known setting"):
        EdgeScenario.from_dict({"name": "x", "sites": {"a": {"uplink": {"bandwith_bytes_per_s": 1}}}})
    with pytest.raises(ScenarioError, match=r"'sites.a.policy' must be one of"):
        EdgeScenario.from_dict({"name": "x", "sites": {"a": {"policy": "drop_all"}}})
