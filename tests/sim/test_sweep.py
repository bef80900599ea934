"""Sweeps: grid paths, seeds × parameters × policies, the same numbers on every executor, the Lab tables, the CLI."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from otlp_lab import Lab
from otlp_lab.cli import main
from otlp_lab.errors import ScenarioError
from otlp_lab.sim import Exponential, OpenLoop, Policy, Scenario, Service, run, run_many, set_path, sweep
from otlp_lab.sim._sweep import parse_grid


def tiny() -> Scenario:
    """Two M/M/2 instances behind clients that retry: a few hundred requests per run."""
    return Scenario(
        "tiny",
        duration_s=2.0,
        policies={"p": Policy(0.5, retry={"max_attempts": 3, "per_try_timeout_s": 0.05})},
        services=[Service("api", instances=2, concurrency=2, service_time=Exponential(0.02))],
        workloads=[OpenLoop("api", rate=60.0, policy="p")],
    )


GRID = {"workloads[0].rate": [40.0, 120.0], "services.api.instances": [1, 2]}
POLICIES = {"retries": {}, "no retries": {"p": {"retry": None}}}


def _stable(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop("wall_s")


def test_set_path_reaches_every_kind_of_setting() -> None:
    sc = tiny()
    assert set_path(sc, "services.api.instances", 3).service("api").instances == 3
    assert set_path(sc, "services[0].concurrency", 5).service("api").concurrency == 5
    assert set_path(sc, "workloads[0].rate", 10.0).workloads[0].rate == 10.0
    assert set_path(sc, "policies.p.retry.max_attempts", 5).policies["p"].retry.max_attempts == 5
    assert set_path(sc, "policies.p.budget.budget_percent", 20).policies["p"].budget == {"budget_percent": 20}
    assert set_path(sc, "duration_s", "2s").duration_s == 2.0
    assert (
        set_path(sc, "policies.p.retry.per_try_timeout_s", "250ms").policies["p"].retry.per_try_timeout_s
        == 0.25
    )
    with pytest.raises(ScenarioError, match=r"no item named 'cart'.*\['api'\]"):
        set_path(sc, "services.cart.instances", 2)
    with pytest.raises(ScenarioError, match=r"has no field 'instnces'"):
        set_path(sc, "services.api.instnces", 2)
    with pytest.raises(ScenarioError, match=r"services.api.instances.*positive integer.*-1"):
        set_path(sc, "services.api.instances", -1)
    with pytest.raises(ScenarioError, match=r"1 items, no \[3\]"):
        set_path(sc, "workloads[3].rate", 1.0)
    assert parse_grid(["a.b=1,2.5,x", "c=true, 10ms"]) == {"a.b": [1, 2.5, "x"], "c": [True, "10ms"]}
    with pytest.raises(ScenarioError, match="KEY=V1,V2"):
        parse_grid(["services.api.instances"])


def test_sweep_rows_summary_and_confidence_intervals(lab: Lab) -> None:
    res = sweep(tiny(), GRID, seeds=3, policies=POLICIES, workers=1, lab=lab)
    runs, summ = res.runs, res.summary
    assert runs.height == 2 * 2 * 2 * 3 and summ.height == 8
    # each row is exactly the run it names
    row = runs.filter(
        (pl.col("workloads[0].rate") == 120.0)
        & (pl.col("services.api.instances") == 1)
        & (pl.col("policy") == "no retries")
        & (pl.col("seed") == 2)
    ).row(0, named=True)
    sc = set_path(set_path(tiny(), "workloads[0].rate", 120.0), "services.api.instances", 1)
    one = run(sc, seed=2, policy_overrides={"p": {"retry": None}})
    assert row["goodput_rps"] == one.goodput_rps and row["requests"] == one.requests
    assert row["amplification"] == 1.0
    # the summary is the mean over seeds with a Student-t 95 % interval
    for rec in summ.iter_rows(named=True):
        xs = runs.filter(
            (pl.col("workloads[0].rate") == rec["workloads[0].rate"])
            & (pl.col("services.api.instances") == rec["services.api.instances"])
            & (pl.col("policy") == rec["policy"])
        )["error_rate"].to_list()
        assert rec["n"] == 3
        assert rec["error_rate_mean"] == pytest.approx(statistics.fmean(xs))
        half = 4.302652729911275 * statistics.stdev(xs) / math.sqrt(3)
        assert rec["error_rate_hi"] - rec["error_rate_mean"] == pytest.approx(half, rel=1e-9)
        assert rec["error_rate_lo"] <= rec["error_rate_mean"] <= rec["error_rate_hi"]
    # overload shows: one instance at 120/s (ρ = 1.2) fails far more than two at 40/s
    worst = summ.filter((pl.col("workloads[0].rate") == 120.0) & (pl.col("services.api.instances") == 1))
    best = summ.filter((pl.col("workloads[0].rate") == 40.0) & (pl.col("services.api.instances") == 2))
    assert worst["error_rate_mean"].min() > best["error_rate_mean"].max() + 0.1
    # in the Lab: one row per run, one summary row per point, policy and metric
    assert lab.sql("SELECT count(*) FROM sweep_runs").item() == runs.height
    assert lab.sql("SELECT count(DISTINCT params) FROM sweep_runs").item() == 4
    p = json.loads(lab.sql("SELECT params FROM sweep_runs LIMIT 1").item())
    assert set(p) == set(GRID)
    got = lab.sql("SELECT mean FROM sweep_summary WHERE metric = 'goodput_rps' ORDER BY policy, params")[
        "mean"
    ].sort()
    assert got.to_list() == pytest.approx(summ["goodput_rps_mean"].sort().to_list())
    assert sweep(tiny(), seeds=1, workers=1, lab=lab).sweep_id == "tiny/sweep#2"


def _measure(r) -> dict:  # module level: picklable for processes and Dask
    return {"failed": r.completed - r.succeeded, "saturated": r.error_rate > 0.5}


def test_same_numbers_whichever_executor_ran_them() -> None:
    distributed = pytest.importorskip("distributed")
    kw = dict(seeds=[3, 7], policies=POLICIES, measure=_measure)
    grid = {"workloads[0].rate": [40.0, 120.0]}
    serial = sweep(tiny(), grid, workers=1, **kw)
    procs = sweep(tiny(), grid, workers=2, **kw)
    assert serial.executor == "serial" and procs.executor == "processes(2)"
    assert serial.runs["failed"].sum() > 0 and "saturated_mean" in serial.summary.columns
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        host="127.0.0.1",
        protocol="tcp",
        dashboard_address=None,
    ) as cluster:
        onto = sweep(tiny(), grid, scheduler=cluster.scheduler_address, **kw)
        remote = run_many(tiny(), POLICIES, seed=3, scheduler=cluster.scheduler_address)
        cli = CliRunner().invoke(
            main,
            ["sweep", "retry_storm", "--seeds", "2", "--duration", "2s", "--no-progress"]
            + ["--scheduler", cluster.scheduler_address],
        )
    assert cli.exit_code == 0, cli.output
    assert "2 runs" in cli.output and "dask(tcp://127.0.0.1:" in cli.output
    local = run_many(tiny(), POLICIES, seed=3)
    assert list(remote) == list(POLICIES)
    for label, r in local.items():
        assert {**r.summary(), "run_id": 0} == {**remote[label].summary(), "run_id": 0}
        assert r.timeline().equals(remote[label].timeline())
    assert onto.executor.startswith("dask(tcp://127.0.0.1:")
    assert _stable(procs.runs).equals(_stable(serial.runs))
    assert _stable(onto.runs).equals(_stable(serial.runs))
    assert onto.summary.equals(serial.summary)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ScenarioError, match=r"seeds=.*Got 0"):
        sweep(tiny(), seeds=0)
    with pytest.raises(ScenarioError, match=r"workers=.*Got 0"):
        sweep(tiny(), seeds=1, workers=0)
    with pytest.raises(ScenarioError, match=r"grid key 'duration_s' has no values"):
        sweep(tiny(), {"duration_s": []}, seeds=1)
    with pytest.raises(ScenarioError, match=r"unknown Policy fields \['retries'\]"):
        sweep(tiny(), seeds=1, policies={"x": {"p": {"retries": None}}})
    with pytest.raises(ScenarioError, match=r"scheduler=.*Got 42"):
        sweep(tiny(), seeds=1, scheduler=42)
    with pytest.raises(ScenarioError, match=r"run without a Lab"):
        run_many(tiny(), POLICIES, lab=Lab(), workers=2)


def test_cli_sweep(tmp_path: Path) -> None:
    db = tmp_path / "sweep.duckdb"
    res = CliRunner().invoke(
        main,
        [
            "sweep",
            "retry_storm",
            "--grid",
            "workloads[0].rate.base_rps=60,80",
            "--seeds",
            "2",
            "--duration",
            "3s",
            "--workers",
            "1",
            "--db",
            str(db),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "4 runs (2 grid points × 2 seeds)" in res.output and "serial" in res.output
    assert "Mean over seeds" in res.output
    with Lab(db, read_only=True) as lab:
        assert lab.sql("SELECT count(*), count(DISTINCT seed) FROM sweep_runs").row(0) == (4, 2)
    bad = CliRunner().invoke(
        main, ["sweep", "retry_storm", "--grid", "services.nope.instances=1,2", "--no-progress"]
    )
    assert bad.exit_code == 2 and "'nope'" in bad.output and "services.nope.instances" in bad.output
