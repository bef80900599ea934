"""Figures of anomaly scores and root-cause rankings (otlp_lab.viz._ml)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from otlp_lab.errors import SchemaError
from otlp_lab.ml import Ranking
from otlp_lab.viz import anomaly_scores_figure, evidence_figure, ranking_figure

T0 = dt.datetime(2025, 1, 1)


def _windows() -> pl.DataFrame:
    rows = []
    for m in ("nsigma", "latency_model"):
        for i in range(12):
            rows.append(
                {
                    "window_start": T0 + dt.timedelta(seconds=5 * i),
                    "method": m,
                    "score": 10.0 if 6 <= i < 9 else 1.0,
                    "flagged": 6 <= i < 9,
                    "fault_start": T0 + dt.timedelta(seconds=30),
                    "fault_end": T0 + dt.timedelta(seconds=45),
                }
            )
    return pl.DataFrame(rows)


def test_anomaly_scores_figure_shades_the_fault_and_marks_flags():
    fig = anomaly_scores_figure(_windows())
    lines = [t for t in fig.data if t.mode == "lines"]
    marks = [t for t in fig.data if t.mode == "markers"]
    assert len(lines) == 2 and all(len(t.x) == 12 for t in lines)
    assert all(len(t.x) == 3 for t in marks)
    assert max(lines[0].y) == 1.0  # normalised per detector
    shapes = [s for s in fig.layout.shapes if s.type == "rect"]
    # one band per detector's panel, over the fault
    assert len(shapes) == 2 and {s.x0 for s in shapes} == {T0 + dt.timedelta(seconds=30)}


def test_anomaly_scores_figure_names_missing_columns():
    with pytest.raises(SchemaError, match="score"):
        anomaly_scores_figure(_windows().drop("score"))


def _ranking() -> Ranking:
    services = pl.DataFrame(
        {"rank": [1, 2, 3], "service": ["payment", "checkout", "frontend"], "score": [0.9, 0.2, 0.1]}
    )
    evidence = pl.DataFrame(
        {
            "service": ["payment", "payment"],
            "kind": ["self_time", "call_time"],
            "name": ["charge", "from checkout"],
            "baseline": [15.0, 0.4],
            "observed": [65.0, 0.5],
            "change": [50.0, 0.1],
            "score": [0.95, 0.05],
        }
    )
    return Ranking("blame", services, evidence=evidence)


def test_ranking_and_evidence_figures():
    r = _ranking()
    fig = ranking_figure(r, truth="payment")
    bar = fig.data[0]
    assert list(bar.y) == ["frontend", "checkout", "payment"]  # best at the top
    assert bar.marker.color[-1] != bar.marker.color[0]  # the true cause stands out
    ev = evidence_figure(r)
    assert [t.name for t in ev.data] == ["baseline", "observed"]
    assert list(ev.data[1].x)[::-1] == [65.0, 0.5]
    with pytest.raises(SchemaError, match="no evidence"):
        evidence_figure(r, "frontend")
