"""Anomaly detectors with the scikit-learn estimator contract, and the window matrix they read.

Every detector follows scikit-learn's outlier detectors (``IsolationForest``): ``fit`` on
normal windows, ``score_samples`` (higher = more normal), ``decision_function`` (negative =
anomalous), ``predict`` (-1 anomalous, 1 normal); ``get_params``, ``clone`` and grid search
work. :class:`WindowMatrix` turns :func:`~otlp_lab.ml.window_features` into the matrix
(one row per window, one column per service and feature) and back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import RobustScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from otlp_lab.errors import ConfigError

__all__ = [
    "NSigma",
    "MedianIQR",
    "LatencyModel",
    "isolation_forest",
    "local_outlier_factor",
    "WindowMatrix",
    "DEFAULT_FEATURES",
]

#: The window features the detectors read by default (columns of :func:`window_features`).
DEFAULT_FEATURES = ("rate_per_s", "error_ratio", "p50_ms", "p95_ms", "retry_ratio", "self_mean_ms")


class _ColumnScore(OutlierMixin, BaseEstimator):
    """Shared plumbing: a per-column deviation, combined into one anomaly score per row."""

    def _deviation(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_columns(self, X: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _threshold(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X: Any, y: Any = None) -> _ColumnScore:
        X = validate_data(self, X, dtype=np.float64)
        self._fit_columns(X)
        contamination = getattr(self, "contamination", None)
        if contamination is None:
            self.offset_ = -float(self._threshold())
        else:
            if not 0.0 < float(contamination) <= 0.5:
                raise ConfigError(
                    f"contamination must be in (0, 0.5] or None. Got {contamination!r} instead."
                )
            self.offset_ = float(np.percentile(self.score_samples(X), 100.0 * float(contamination)))
        return self

    def anomaly_score(self, X: Any) -> np.ndarray:
        """The combined deviation per row (0 = typical; larger = more anomalous)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._combine(self._deviation(X))

    def _combine(self, dev: np.ndarray) -> np.ndarray:
        k = int(getattr(self, "top_k", 1) or 1)
        if dev.shape[1] == 0:
            return np.zeros(dev.shape[0])
        if k <= 1:
            return dev.max(axis=1)
        k = min(k, dev.shape[1])
        return np.sort(dev, axis=1)[:, -k:].mean(axis=1)

    def score_samples(self, X: Any) -> np.ndarray:
        """Opposite of the anomaly score (scikit-learn's convention: higher is more normal)."""
        return -self.anomaly_score(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples - offset_``: negative for anomalous rows."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """-1 for anomalous rows, 1 for normal ones."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    def column_scores(self, X: Any) -> np.ndarray:
        """The per-column deviations behind the score (the evidence: which feature moved)."""
        check_is_fitted(self)
        return self._deviation(validate_data(self, X, dtype=np.float64, reset=False))


class NSigma(_ColumnScore):
    """N-sigma per column: ``|x - mean| / std`` of the normal period; a row is anomalous past ``n_sigma``.

    Parameters
    ----------
    n_sigma : float
        Threshold on the largest column deviation.
    min_std : float
        Floor on each column's standard deviation (constant columns in the normal period).
    contamination : float, optional
        Set the threshold from the training scores instead (share of training rows flagged).

    Examples
    --------
    >>> import numpy as np
    >>> det = NSigma(n_sigma=3).fit(np.random.default_rng(0).normal(size=(200, 3)))
    >>> det.predict([[0.1, 0.0, -0.2], [9.0, 0.0, 0.0]]).tolist()
    [1, -1]
    """

    def __init__(
        self, n_sigma: float = 3.0, *, min_std: float = 1e-6, contamination: float | None = None
    ) -> None:
        self.n_sigma = n_sigma
        self.min_std = min_std
        self.contamination = contamination

    def _fit_columns(self, X: np.ndarray) -> None:
        self.mean_ = X.mean(axis=0)
        self.std_ = np.maximum(X.std(axis=0), float(self.min_std))

    def _threshold(self) -> float:
        return float(self.n_sigma)

    def _deviation(self, X: np.ndarray) -> np.ndarray:
        return np.abs(X - self.mean_) / self.std_


class MedianIQR(_ColumnScore):
    """Median/IQR per column (BARO's robust baseline): ``|x - median| / IQR``.

    Parameters
    ----------
    threshold : float
        Threshold on the largest column deviation, in IQRs.
    min_scale : float
        Absolute floor on the IQR.
    rel_scale : float
        Relative floor: the scale is at least ``rel_scale * |median|`` (a column that never moved in
        the normal period is not infinitely sensitive).
    contamination : float, optional
        Set the threshold from the training scores instead.
    """

    def __init__(
        self,
        threshold: float = 5.0,
        *,
        min_scale: float = 1e-6,
        rel_scale: float = 0.1,
        contamination: float | None = None,
    ) -> None:
        self.threshold = threshold
        self.min_scale = min_scale
        self.rel_scale = rel_scale
        self.contamination = contamination

    def _fit_columns(self, X: np.ndarray) -> None:
        q25, q50, q75 = np.percentile(X, [25, 50, 75], axis=0)
        self.median_ = q50
        self.scale_ = np.maximum.reduce(
            [q75 - q25, float(self.rel_scale) * np.abs(q50), np.full_like(q50, float(self.min_scale))]
        )

    def _threshold(self) -> float:
        return float(self.threshold)

    def _deviation(self, X: np.ndarray) -> np.ndarray:
        return np.abs(X - self.median_) / self.scale_


class LatencyModel(_ColumnScore):
    """A per-operation latency model: log-normal, robust, one-sided, with a relative noise floor.

    Each column (a latency, error or retry feature of one operation) is modelled in log space,
    ``log1p(x / unit)``, by its median and MAD of the normal period. A window deviates when it is
    *worse* (higher), by ``(log1p(x) - median) / scale``, where the scale is at least
    ``log(min_ratio)``: a change smaller than that factor never counts, however quiet the
    operation was. The row's score is the mean of its ``top_k`` largest deviations (``top_k=2`` or
    more: one noisy operation alone does not raise an alarm). The defaults (``threshold=4``,
    ``top_k=1``) were chosen on the simulated suite (seeds 1 and 2).

    Parameters
    ----------
    threshold : float
        Anomalous past this many scales.
    min_ratio : float
        Smallest multiplicative change worth one scale (1.25: 25 % slower).
    top_k : int
        Deviations averaged per row.
    direction : {"up", "both"}
        Only increases count (latency, errors, retries), or both directions.
    contamination : float, optional
        Set the threshold from the training scores instead.
    """

    def __init__(
        self,
        threshold: float = 4.0,
        *,
        min_ratio: float = 1.25,
        top_k: int = 1,
        direction: str = "up",
        contamination: float | None = None,
    ) -> None:
        self.threshold = threshold
        self.min_ratio = min_ratio
        self.top_k = top_k
        self.direction = direction
        self.contamination = contamination

    def _fit_columns(self, X: np.ndarray) -> None:
        if self.direction not in ("up", "both"):
            raise ConfigError(f"direction must be 'up' or 'both'. Got {self.direction!r} instead.")
        if not float(self.min_ratio) > 1.0:
            raise ConfigError(f"min_ratio must be greater than 1. Got {self.min_ratio!r} instead.")
        L = np.log1p(np.maximum(X, 0.0))
        self.median_ = np.median(L, axis=0)
        mad = 1.4826 * np.median(np.abs(L - self.median_), axis=0)
        self.scale_ = np.maximum(mad, np.log(float(self.min_ratio)))

    def _threshold(self) -> float:
        return float(self.threshold)

    def _deviation(self, X: np.ndarray) -> np.ndarray:
        z = (np.log1p(np.maximum(X, 0.0)) - self.median_) / self.scale_
        return np.maximum(z, 0.0) if self.direction == "up" else np.abs(z)


def isolation_forest(
    *, n_estimators: int = 200, contamination: Any = "auto", random_state: int = 0
) -> Pipeline:
    """scikit-learn's ``IsolationForest`` behind a ``RobustScaler`` (a pipeline: clone and grid search work)."""
    return make_pipeline(
        RobustScaler(),
        IsolationForest(n_estimators=n_estimators, contamination=contamination, random_state=random_state),
    )


def local_outlier_factor(*, n_neighbors: int = 5, contamination: Any = "auto") -> Pipeline:
    """scikit-learn's ``LocalOutlierFactor`` in novelty mode behind a ``RobustScaler``."""
    return make_pipeline(
        RobustScaler(), LocalOutlierFactor(n_neighbors=n_neighbors, novelty=True, contamination=contamination)
    )


class WindowMatrix:
    """Window features (long: one row per window and service) <-> a detector's matrix (wide).

    ``fit`` learns the columns (``service|feature``) and, per column, the value a window with no
    traffic gets (0 for rates, counts and ratios; the normal median for latencies), so the
    matrix of a new period has exactly the columns of the normal one.

    Parameters
    ----------
    features : sequence of str
        Columns of :func:`window_features` to use.
    key : str
        The entity column (``"service"``; ``"operation"`` for per-operation frames).

    Examples
    --------
    >>> wm = WindowMatrix().fit(normal_windows)          # doctest: +SKIP
    >>> X, windows = wm.transform(all_windows)           # doctest: +SKIP
    """

    _ZERO = ("rate_per_s", "requests", "errors", "error_ratio", "retry_ratio")

    def __init__(self, features: Sequence[str] = DEFAULT_FEATURES, *, key: str = "service") -> None:
        self.features = tuple(features)
        self.key = key
        self.columns_: list[str] | None = None
        self.fill_: dict[str, float] = {}

    def _wide(self, frame: pl.DataFrame) -> pl.DataFrame:
        missing = [c for c in (self.key, "window_start", *self.features) if c not in frame.columns]
        if missing:
            raise ConfigError(
                f"window features lack the columns {missing}. Pass a frame from window_features()."
            )
        keyed = frame.with_columns(pl.col(self.key).cast(pl.String).alias("_k"))
        if self.key == "operation" and "service" in frame.columns:
            keyed = keyed.with_columns((pl.col("service") + ":" + pl.col("operation")).alias("_k"))
        long = keyed.unpivot(
            index=["window_start", "_k"], on=list(self.features), variable_name="_f"
        ).with_columns((pl.col("_k") + "|" + pl.col("_f")).alias("_col"))
        return long.pivot(on="_col", index="window_start", values="value", aggregate_function="first").sort(
            "window_start"
        )

    def fit(self, frame: pl.DataFrame) -> WindowMatrix:
        """Learn the columns and fill values from a normal period's window features."""
        wide = self._wide(frame)
        self.columns_ = [c for c in wide.columns if c != "window_start"]
        for c in self.columns_:
            feat = c.rsplit("|", 1)[1]
            med = wide.get_column(c).cast(pl.Float64).median()
            self.fill_[c] = 0.0 if feat in self._ZERO or med is None else float(med)
        return self

    def transform(self, frame: pl.DataFrame) -> tuple[np.ndarray, pl.DataFrame]:
        """The matrix (windows x columns) and the ``window_start`` of each row."""
        if self.columns_ is None:
            raise ConfigError("WindowMatrix is not fitted: call fit() on a normal period first.")
        if frame.is_empty():
            return np.zeros((0, len(self.columns_))), pl.DataFrame(schema={"window_start": pl.Datetime("ns")})
        wide = self._wide(frame)
        exprs = []
        for c in self.columns_:
            e = pl.col(c).cast(pl.Float64) if c in wide.columns else pl.lit(None, dtype=pl.Float64)
            exprs.append(e.fill_nan(None).fill_null(self.fill_[c]).alias(c))
        out = wide.select("window_start", *exprs)
        return out.drop("window_start").to_numpy(), out.select("window_start")
