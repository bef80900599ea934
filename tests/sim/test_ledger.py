"""Raft and PBFT validator networks: latency, message complexity, fault tolerance, elections, Lab output."""

from __future__ import annotations

import math

import numpy as np
import pytest

from otlp_lab import Lab
from otlp_lab.errors import ScenarioError
from otlp_lab.sim import Crash, Latency
from otlp_lab.sim.ledger import (
    Byzantine,
    LeaderCrash,
    LedgerScenario,
    NetworkSplit,
    run_ledger,
    shipped_ledger_scenarios,
    sweep_ledger,
)

D = 0.01  # one-way delay


def scenario(protocol: str, n: int, **kw) -> LedgerScenario:
    base = dict(
        name=f"{protocol}{n}",
        protocol=protocol,
        validators=n,
        duration_s=4.0,
        one_way_delay_s=D,
        tx_rate=100.0,
    )
    return LedgerScenario(**(base | kw))


@pytest.mark.parametrize(("protocol", "rounds"), [("raft", 2), ("pbft", 3)])
def test_commit_latency_is_round_trips_of_the_delay(protocol: str, rounds: int) -> None:
    """Leader to majority and back (Raft: 2d); pre-prepare, prepare, commit (PBFT: 3d)."""
    r = run_ledger(scenario(protocol, 4), seed=1)
    s = r.summary
    assert s["blocks"] >= 15
    assert s["commit_p50_s"] == pytest.approx(rounds * D, abs=1e-9)
    assert s["commit_p99_s"] == pytest.approx(rounds * D, abs=1e-9)


def test_messages_per_decision_grow_linearly_for_raft_and_quadratically_for_pbft() -> None:
    ns = np.array([4, 7, 10, 13])
    frame = sweep_ledger(scenario("raft", 4, duration_s=2.0), validators=ns.tolist())
    slope = {}
    for proto in ("raft", "pbft"):
        m = frame.filter(frame["protocol"] == proto).sort("validators")["messages_per_decision"].to_numpy()
        slope[proto] = np.polyfit(np.log(ns), np.log(m), 1)[0]
        per_block = {"raft": 2 * (ns - 1), "pbft": (ns - 1) + (ns - 1) ** 2 + ns * (ns - 1)}[proto]
        np.testing.assert_allclose(m, per_block, rtol=0.05)
    assert 0.9 < slope["raft"] < 1.3, slope
    assert 1.9 < slope["pbft"] < 2.4, slope


def test_pbft_tolerates_f_faulty_validators_and_stops_at_f_plus_one() -> None:
    n, f = 7, 2
    crash = [Crash(service=f"validator-{i}", at_s=1.0) for i in range(1, f + 1)]
    r = run_ledger(scenario("pbft", n, faults=crash), seed=2)
    assert r.commits_between(1.5, 4.0) >= 10
    liars = [Byzantine(service="validator-5", at_s=1.0), Byzantine(service="validator-6", at_s=1.0)]
    r = run_ledger(scenario("pbft", n, faults=liars), seed=2)
    assert r.commits_between(1.5, 4.0) >= 10
    crash3 = [Crash(service=f"validator-{i}", at_s=1.0) for i in range(1, f + 2)]
    r = run_ledger(scenario("pbft", n, faults=crash3), seed=2)
    assert r.commits_between(1.0 + 3 * D, 4.0) == 0
    assert r.commits_between(0, 1.0) >= 3


def test_pbft_byzantine_primary_is_replaced_by_a_view_change() -> None:
    sc = scenario(
        "pbft",
        4,
        duration_s=6.0,
        view_change_timeout_s=0.5,
        faults=[Byzantine(service="validator-0", at_s=1.0)],
    )
    r = run_ledger(sc, seed=3)
    assert r.summary["view_changes"] >= 1
    views = r.leaders()
    assert views["leader"][-1] != 0
    assert r.commits_between(views["t_s"][-1], 6.0) >= 10


def test_raft_keeps_committing_with_a_minority_crashed_and_stops_without_a_majority() -> None:
    def run(crashed: list[int]):
        # validator-0 crashes too only if asked; the leader may be anyone, so crash by index after the election
        faults = [Crash(service=f"validator-{i}", at_s=1.0) for i in crashed]
        return run_ledger(scenario("raft", 5, faults=faults), seed=4)

    r = run([1, 2])
    assert r.commits_between(1.5 + 0.5, 4.0) >= 8  # an election may be needed if the leader was among them
    r = run([0, 1, 2])
    assert r.commits_between(1.0 + 2 * D, 4.0) == 0


def test_raft_elects_a_new_leader_within_the_election_timeout_after_the_leader_crashes() -> None:
    lo, hi, hb = 0.15, 0.3, 0.05
    delays = []
    for seed in range(8):
        sc = scenario(
            "raft",
            5,
            duration_s=3.0,
            election_timeout_s=(lo, hi),
            heartbeat_s=hb,
            faults=[LeaderCrash(at_s=1.0, duration_s=1.0)],
        )
        r = run_ledger(sc, seed=seed)
        lead = r.leaders()
        after = lead.filter((lead["t_s"] > 1.0) & lead["leader"].is_not_null())
        assert after.height >= 1, f"seed {seed}: no new leader"
        delays.append(after["t_s"][0] - 1.0)
        assert r.commits_between(after["t_s"][0], 3.0) >= 5
    # last heartbeat heard in [crash - hb + d, crash + d]; a timeout in [lo, hi]; one vote round trip
    assert all(lo - hb <= x <= hi + 3 * D for x in delays), delays
    assert np.median(delays) < (lo + hi) / 2 + 3 * D


def test_a_network_split_leaves_the_majority_side_committing() -> None:
    split = NetworkSplit(group=["validator-0", "validator-1"], at_s=1.0)
    r = run_ledger(scenario("raft", 5, faults=[split]), seed=5)
    assert r.commits_between(2.0, 4.0) >= 8
    final = r.leaders()["leader"][-1]
    assert final not in (0, 1)


def test_execution_cost_and_slow_validators() -> None:
    fast = run_ledger(scenario("pbft", 4), seed=1).summary
    costly = run_ledger(scenario("pbft", 4, tx_exec_s=0.001), seed=1).summary
    assert costly["tx_p50_s"] > fast["tx_p50_s"] + 0.005  # about 20 transactions x 1 ms before proposing
    slow = run_ledger(
        scenario("pbft", 4, faults=[Latency(service="validator-3", delay_s=0.05)]), seed=1
    ).summary
    assert slow["commit_p50_s"] == pytest.approx(
        3 * D, abs=1e-9
    )  # one slow backup of four: the quorum does without it


def test_lab_output(lab: Lab) -> None:
    r = run_ledger(scenario("raft", 5, faults=[LeaderCrash(at_s=1.0, duration_s=1.0)]), lab=lab, seed=1)
    spans = lab.sql(
        "SELECT count(*) n, median(duration_ns) / 1e9 p50 FROM spans WHERE name = 'raft.block'"
    ).row(0, named=True)
    assert spans["n"] == r.summary["blocks"]
    assert spans["p50"] == pytest.approx(2 * D, abs=1e-6)
    assert lab.sql("SELECT kind FROM faults WHERE run_id = ?", [r.run_id]).rows() == [("leader_crash",)]
    assert (
        lab.sql("SELECT count(*) FROM logs WHERE event_name = 'ledger.leader'").item()
        == r.summary["elections"]
    )
    row = lab.sql("SELECT * FROM ledger_runs").row(0, named=True)
    assert row["blocks"] == r.summary["blocks"] and row["protocol"] == "raft"
    hist = lab.sql(
        "SELECT count FROM metric_histogram WHERE metric_name = 'ledger.commit.latency' ORDER BY time DESC LIMIT 1"
    ).item()
    assert hist == r.summary["blocks"]


def test_checks_and_yaml(tmp_path) -> None:
    with pytest.raises(ScenarioError, match="at least 4 for PBFT"):
        LedgerScenario(name="x", protocol="pbft", validators=3)
    with pytest.raises(ScenarioError, match=r"faults\[0\].service' must name a service"):
        LedgerScenario(name="x", validators=3, faults=[Crash(service="validator-7")])
    p = tmp_path / "chain.yaml"
    p.write_text(
        "kind: ledger\nprotocol: pbft\nvalidators: 4\nduration_s: 2s\none_way_delay_s: 10ms\n"
        "faults:\n  - {kind: byzantine, service: validator-2, at_s: 500ms}\n"
    )
    sc = LedgerScenario.from_yaml(p)
    assert sc.name == "chain" and sc.faults[0].at_s == 0.5 and math.isclose(sc.one_way_delay_s, 0.01)
    assert run_ledger(sc, seed=0).summary["blocks"] > 0
    assert shipped_ledger_scenarios() == ["consortium"]
    r = run_ledger("consortium", seed=0, duration_s=25)
    assert r.summary["view_changes"] >= 1 and r.commits_between(22.0, 25.0) > 0  # the primary crash at 20 s
    with pytest.raises(ScenarioError, match="no shipped ledger scenario"):
        run_ledger("consortum")
