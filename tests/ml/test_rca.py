"""Root-cause ranking: the faulty service and pod come first, with evidence a user can check."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from otlp_lab.errors import ConfigError
from otlp_lab.ml import (
    BlameRanker,
    Incident,
    MultimodalRanker,
    NSigmaRanker,
    RandomRanker,
    SpectrumRanker,
)


def _incident(lab, **kw):
    f = lab.sql('SELECT start, "end" FROM faults').row(0, named=True)
    t0 = lab.sql("SELECT started FROM sim_runs").item()
    before = (f["start"] - t0).total_seconds() - 5  # after the warm-up
    after = (f["end"] - f["start"]).total_seconds()
    return Incident.from_lab(lab, f["start"], after_s=after, before_s=before, **kw)


def test_blame_finds_the_slow_pod_and_says_why(latency_lab):
    r = BlameRanker().rank(_incident(latency_lab))
    assert r.top(1) == ["payment"]
    assert r.pods.row(0, named=True)["pod"] == "payment-0"
    ev = r.explain("payment")
    charge = ev.filter((pl.col("kind") == "self_time") & (pl.col("name") == "charge")).row(0, named=True)
    # 100 ms on half of payment's instances: about +50 ms on the mean
    assert 25 < charge["change"] < 100 and charge["observed"] > charge["baseline"]
    assert r.operations.row(0, named=True)["service"] == "payment"


def test_blame_puts_a_crash_on_the_callee_not_the_callers(crash_lab):
    r = BlameRanker().rank(_incident(crash_lab))
    assert r.top(1) == ["inventory"]
    assert r.rank_of("inventory", pod="inventory-0") == 1
    errors = r.explain("inventory").filter(pl.col("kind") == "errors")
    # the failed attempts were calls from inventory's callers, with no server span behind them
    assert errors.height > 0 and errors["name"].str.starts_with("from ").all()
    assert (errors["observed"] > errors["baseline"]).all()


def test_baselines_rank_every_candidate(latency_lab):
    inc = _incident(latency_lab)
    candidates = set(inc.services())
    rnd = RandomRanker(random_state=3).rank(inc)
    assert set(rnd.services["service"]) == candidates
    assert rnd.top(5) == RandomRanker(random_state=3).rank(inc).top(5)
    ns = NSigmaRanker().rank(inc)
    assert ns.rank_of("payment") is not None
    pay = ns.explain("payment").filter(pl.col("name") == "charge").row(0, named=True)
    assert pay["observed"] > pay["baseline"]


def test_spectrum_support_and_confidence(latency_lab):
    r = SpectrumRanker().rank(_incident(latency_lab))
    ev = r.evidence
    assert ev["baseline"].is_between(0, 1).all() and ev["observed"].is_between(0, 1).all()
    # half the calls to payment (those to instance 0) are slow: its confidence is well above the typical operation's
    charge = ev.filter((pl.col("service") == "payment") & (pl.col("name") == "charge")).row(0, named=True)
    assert charge["observed"] > 2 * ev["observed"].median()


def test_multimodal_on_real_logs_and_metrics(trainticket_lab):
    alarm = dt.datetime(2023, 1, 30, 11, 51, 46)  # network delay on ts-contacts-service (faults.json)
    inc = Incident.from_lab(trainticket_lab, alarm, after_s=120, before_s=60)
    assert inc.logs_abn is not None and inc.metrics is not None and not inc.metrics.is_empty()
    r = MultimodalRanker().rank(inc)
    assert r.top(1) == ["ts-contacts-service"]
    kinds = set(r.evidence["kind"].unique())
    assert {"call_time", "metric"} <= kinds
    # the evidence of the top service: calls into it got slower
    top = r.explain().filter(pl.col("kind") == "call_time")
    assert top.height > 0 and (top["change"] > 0).all()


def test_bad_settings_are_refused(latency_lab):
    inc = _incident(latency_lab)
    with pytest.raises(ConfigError, match="score must be"):
        BlameRanker(score="vibes").rank(inc)
    with pytest.raises(ConfigError, match="after_s"):
        Incident.from_lab(latency_lab, inc.alarm, after_s=0)
