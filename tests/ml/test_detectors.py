"""Detectors: the scikit-learn contract, and what they flag on a simulated fault."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from otlp_lab.ml import (
    LatencyModel,
    MedianIQR,
    NSigma,
    StreamingScorer,
    WindowMatrix,
    isolation_forest,
    local_outlier_factor,
    window_features,
)

# With a fixed threshold a detector may flag no training row, which two of scikit-learn's outlier
# checks require; with ``contamination`` (as IsolationForest's) every check applies.
CHECKED = [NSigma(contamination=0.1), MedianIQR(contamination=0.1), LatencyModel(contamination=0.1)]


@parametrize_with_checks(CHECKED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_params_and_clone():
    det = LatencyModel(threshold=4.0, top_k=3)
    assert det.get_params()["top_k"] == 3
    c = clone(det)
    assert c is not det and c.get_params() == det.get_params()


def test_nsigma_flags_a_far_point():
    rng = np.random.default_rng(0)
    det = NSigma(n_sigma=4).fit(rng.normal(size=(500, 4)))
    pred = det.predict(np.array([[0.2, -0.1, 0.0, 0.3], [0.0, 0.0, 12.0, 0.0]]))
    assert pred.tolist() == [1, -1]
    assert det.decision_function(np.array([[0.0, 0.0, 12.0, 0.0]]))[0] < 0


def test_latency_model_is_one_sided_and_needs_a_real_change():
    X = np.full((50, 2), 10.0) + np.random.default_rng(1).normal(scale=0.01, size=(50, 2))
    det = LatencyModel(threshold=3, min_ratio=1.25, top_k=1).fit(X)
    # 2 % slower is below the noise floor however quiet the normal period; faster is not an anomaly
    assert det.predict(np.array([[10.2, 10.0], [2.0, 1.0]])).tolist() == [1, 1]
    assert det.predict(np.array([[40.0, 10.0]])).tolist() == [-1]


def _split(lab):
    f = lab.sql('SELECT start, "end" FROM faults').row(0, named=True)
    w = window_features(lab, window_s=5)
    t0 = w["window_start"].min()
    normal = w.filter(
        (pl.col("window_start") >= t0 + pl.duration(seconds=5)) & (pl.col("window_start") < f["start"])
    )
    return w, normal, f


@pytest.mark.parametrize(
    "detector",
    [LatencyModel(), MedianIQR(threshold=8), isolation_forest(), local_outlier_factor()],
    ids=["latency_model", "median_iqr", "isolation_forest", "lof"],
)
def test_detectors_flag_the_fault_windows(latency_lab, detector):
    w, normal, f = _split(latency_lab)
    wm = WindowMatrix().fit(normal)
    det = clone(detector).fit(wm.transform(normal)[0])
    X, windows = wm.transform(w.filter(pl.col("window_start") > w["window_start"].min()))  # after the warm-up
    flagged = windows.with_columns(
        pl.Series("a", det.predict(X) == -1), pl.Series("score", -det.score_samples(X))
    )
    fault = (pl.col("window_start") >= f["start"]) & (pl.col("window_start") < f["end"])
    # every detector ranks the fault windows above the normal ones (a 2-instance service, one slowed)
    assert roc_auc_score(flagged.select(fault).to_series(), flagged["score"]) >= 0.75
    if isinstance(detector, LatencyModel):  # the one-sided per-operation model also flags most of them
        assert flagged.filter(fault)["a"].mean() >= 0.75


def test_window_matrix_keeps_the_normal_columns(latency_lab):
    w, normal, _ = _split(latency_lab)
    wm = WindowMatrix(features=("rate_per_s", "p95_ms")).fit(normal)
    X, windows = wm.transform(w.filter(pl.col("service") != "payment"))
    assert X.shape == (windows.height, len(wm.columns_)) and np.isfinite(X).all()
    # a service with no traffic in a window: rate 0, latency its normal median
    i = wm.columns_.index("payment|rate_per_s")
    assert (X[:, i] == 0).all()


def test_streaming_scorer_returns_each_window_once(latency_lab):
    lab = latency_lab
    lab.con.execute("CREATE OR REPLACE TEMP TABLE _all_spans AS SELECT * FROM spans")
    try:
        f = lab.sql('SELECT start, "end" FROM faults').row(0, named=True)
        lab.con.execute("DELETE FROM spans WHERE start_time >= ?", [f["start"]])
        t0 = lab.sql("SELECT min(start_time) FROM spans").item()
        scorer = StreamingScorer(lab, LatencyModel(), window_s=5).fit(start=t0.replace(microsecond=0))
        first = scorer.poll()
        assert first.height >= 4 and not first["anomaly"].any()
        assert scorer.poll().is_empty()  # nothing new arrived
        # the receiver delivers the fault period
        lab.con.execute(
            "INSERT INTO spans SELECT * FROM _all_spans WHERE start_time >= ? AND start_time < ?",
            [f["start"], f["end"]],
        )
        second = scorer.poll()
        assert second["window_start"].min() > first["window_start"].max()
        assert second["anomaly"].mean() >= 0.5
    finally:
        lab.con.execute("DELETE FROM spans")
        lab.con.execute("INSERT INTO spans SELECT * FROM _all_spans")
        lab.con.execute("DROP TABLE _all_spans")
