"""Anomaly detection and root-cause ranking on OpenTelemetry data, scored against ground truth.

* Features (:func:`span_frame`, :func:`window_features`, :func:`log_features`,
  :func:`metric_features`, :func:`trace_features`, :func:`normal_stats`): Polars frames from any
  Lab (simulated, loaded or live), per time window x service / operation / pod.
* Detectors with the scikit-learn contract (:class:`NSigma`, :class:`MedianIQR`,
  :class:`LatencyModel`, :func:`isolation_forest`, :func:`local_outlier_factor`) on the matrix
  :class:`WindowMatrix` builds; :class:`StreamingScorer` scores new windows of a growing Lab.
* Root-cause rankers (:class:`RandomRanker`, :class:`NSigmaRanker`, :class:`SpectrumRanker`,
  :class:`BlameRanker`, :class:`MultimodalRanker`) on an :class:`Incident`, each returning a
  :class:`Ranking` with its evidence.
* :func:`evaluate` scores them all against labelled faults: a folder laid out like the TrainTicket
  dataset, or the simulated suite (:func:`suite_cases`).

Beside them, on the same features: forecasting (:func:`forecast`, :func:`capacity_warnings`), alert rules
(:func:`evaluate_alerts` and the sinks) and policy tuning by simulation (:func:`tune`).

>>> from otlp_lab import Lab
>>> from otlp_lab.sim import run
>>> from otlp_lab.ml import window_features, WindowMatrix, LatencyModel
>>> lab = Lab(); _ = run("shop", lab=lab, seed=1, duration_s=60)           # doctest: +SKIP
>>> w = window_features(lab, window_s=5)                                     # doctest: +SKIP
>>> wm = WindowMatrix().fit(w.filter(w["window_start"] < w["window_start"].min() + ...))  # doctest: +SKIP
"""

from otlp_lab.ml._alerts import (
    AlertRule,
    JsonLinesSink,
    LogSink,
    WebhookSink,
    alertmanager_payload,
    evaluate_alerts,
    load_rules,
    store_alerts,
)
from otlp_lab.ml._detectors import (
    DEFAULT_FEATURES,
    LatencyModel,
    MedianIQR,
    NSigma,
    WindowMatrix,
    isolation_forest,
    local_outlier_factor,
)
from otlp_lab.ml._evaluate import Evaluation, default_detectors, default_rankers, evaluate, read_faults
from otlp_lab.ml._features import (
    LogTemplates,
    log_features,
    metric_features,
    normal_stats,
    span_frame,
    trace_features,
    window_features,
)
from otlp_lab.ml._forecast import (
    ForecastResult,
    capacity_warnings,
    fleet_capacity,
    forecast,
    forecast_series,
    mase,
    seasonal_naive,
)
from otlp_lab.ml._rca import (
    BlameRanker,
    Incident,
    MultimodalRanker,
    NSigmaRanker,
    RandomRanker,
    Ranking,
    SpectrumRanker,
)
from otlp_lab.ml._streaming import StreamingScorer
from otlp_lab.ml._suite import SUITE_KINDS, SuiteCase, suite_cases, suite_scenario
from otlp_lab.ml._tune import TuneResult, policy_snippets, tune

__all__ = [
    # forecasting
    "forecast",
    "forecast_series",
    "seasonal_naive",
    "mase",
    "capacity_warnings",
    "fleet_capacity",
    "ForecastResult",
    # alerts
    "AlertRule",
    "load_rules",
    "evaluate_alerts",
    "store_alerts",
    "alertmanager_payload",
    "LogSink",
    "JsonLinesSink",
    "WebhookSink",
    # policy tuning
    "tune",
    "TuneResult",
    "policy_snippets",
    # features
    "span_frame",
    "window_features",
    "log_features",
    "metric_features",
    "trace_features",
    "normal_stats",
    "LogTemplates",
    # detectors
    "DEFAULT_FEATURES",
    "NSigma",
    "MedianIQR",
    "LatencyModel",
    "isolation_forest",
    "local_outlier_factor",
    "WindowMatrix",
    "StreamingScorer",
    # root-cause ranking
    "Incident",
    "Ranking",
    "RandomRanker",
    "NSigmaRanker",
    "SpectrumRanker",
    "BlameRanker",
    "MultimodalRanker",
    # evaluation
    "evaluate",
    "Evaluation",
    "default_detectors",
    "default_rankers",
    "read_faults",
    "SUITE_KINDS",
    "SuiteCase",
    "suite_cases",
    "suite_scenario",
]
