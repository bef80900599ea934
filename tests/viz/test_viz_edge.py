"""Figures of edge and ledger runs: built from the simulators' frames, with their traces and bad input refused."""

from __future__ import annotations

import pytest

from otlp_lab.errors import SchemaError
from otlp_lab.sim import Constant
from otlp_lab.sim.edge import EdgeScenario, EdgeSite, Uplink, compare_edge, run_edge, sweep_outages
from otlp_lab.sim.ledger import LedgerScenario, run_ledger, sweep_ledger
from otlp_lab.viz import (
    buffer_timeline_figure,
    edge_bytes_figure,
    edge_policy_figure,
    ledger_commits_figure,
    ledger_sweep_figure,
)

SITE = EdgeSite(
    name="s",
    rate=5.0,
    work=Constant(0.0),
    buffer_bytes=20_000,
    uplink=Uplink(bandwidth_bytes_per_s=20_000, outages=[(10.0, 20.0)]),
)


def test_edge_figures() -> None:
    sc = EdgeScenario(name="x", sites=[SITE], duration_s=60)
    sweep = sweep_outages(sc, mean_up_s=[60, 20], policies=("drop_oldest", "sample"), duration_s=60)
    fig = edge_policy_figure(sweep)
    assert len(fig.data) == 3 * 2  # three panels, a line per policy
    assert {t.name for t in fig.data} == {"drop_oldest", "sample"}
    r = run_edge(sc, seed=0)
    fig = buffer_timeline_figure(r.buffer_timeline(), r.outages())
    assert len(fig.data) == 1 and len(fig.layout.shapes) == r.outages().height
    cmp = compare_edge(sc, {"a": {}, "b": {"metric_aggregation": True}})
    assert [b.x for b in edge_bytes_figure(cmp).data][0] == ("a", "b")
    with pytest.raises(SchemaError, match="sweep_outages"):
        edge_policy_figure(cmp)


def test_ledger_figures() -> None:
    base = LedgerScenario(name="x", duration_s=1.0)
    grid = sweep_ledger(base, validators=(4, 7))
    fig = ledger_sweep_figure(grid)
    assert len(fig.data) == 4 * 2 and fig.layout.yaxis4.type == "log"
    runs = {"raft": run_ledger(base), "pbft": run_ledger(base.replace(protocol="pbft"))}
    fig = ledger_commits_figure(runs, fault_s=0.5)
    assert [t.name for t in fig.data] == ["raft", "pbft"]
    assert fig.data[0].y[-1] == runs["raft"].summary["blocks"]
