"""Score windows as they arrive, on a Lab that a receiver (or a live simulation) is filling."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl

from otlp_lab.errors import ConfigError
from otlp_lab.ml._detectors import WindowMatrix
from otlp_lab.ml._features import Time, _window_s, window_features

__all__ = ["StreamingScorer"]


class StreamingScorer:
    """Score each new complete window of a growing Lab with a fitted detector.

    A window counts as complete once the newest span in the Lab started ``lag_s`` seconds
    after its end (spans arrive a little out of order: batches, retries, exporters' queues).
    Each :meth:`poll` returns the complete windows newer than the last one returned.

    Parameters
    ----------
    lab : Lab
    detector : estimator
        A detector with ``score_samples`` and ``predict`` (fitted by :meth:`fit`, or before).
    window_s : float
        Window width, seconds.
    matrix : WindowMatrix, optional
        Fitted columns; :meth:`fit` makes one.
    lag_s : float, optional
        Grace period before a window is scored (one window by default).
    where : str, optional
        SQL predicate on the ``spans`` table (one service, one run).

    Examples
    --------
    >>> scorer = StreamingScorer(lab, LatencyModel(), window_s=5).fit(end=t_normal_end)  # doctest: +SKIP
    >>> scorer.poll()  # the windows completed since the last call                      # doctest: +SKIP
    """

    def __init__(
        self,
        lab: Any,
        detector: Any,
        *,
        window_s: float = 10.0,
        matrix: WindowMatrix | None = None,
        lag_s: float | None = None,
        where: str | None = None,
    ) -> None:
        self.lab = lab
        self.detector = detector
        self.window_s = _window_s(window_s)
        self.matrix = matrix
        self.lag_s = self.window_s if lag_s is None else float(lag_s)
        self.where = where
        self.last_window: dt.datetime | None = None

    def fit(self, *, start: Time = None, end: Time = None) -> StreamingScorer:
        """Fit the window matrix and the detector on the Lab's spans in ``[start, end)`` (a normal period)."""
        frame = window_features(self.lab, window_s=self.window_s, start=start, end=end, where=self.where)
        if frame.is_empty():
            raise ConfigError(
                "no spans in the normal period given to StreamingScorer.fit(start=..., end=...)."
            )
        self.matrix = (self.matrix or WindowMatrix()).fit(frame)
        X, _ = self.matrix.transform(frame)
        self.detector.fit(X)
        return self

    def _now(self) -> dt.datetime | None:
        w = f"WHERE {self.where}" if self.where else ""
        rows = self.lab.sql(f"SELECT max(start_time) AS t FROM spans {w}")
        return rows.item(0, 0) if rows.height else None

    def poll(self, *, flush: bool = False) -> pl.DataFrame:
        """Score the complete windows newer than the last poll.

        Parameters
        ----------
        flush : bool
            Also score the newest, still incomplete window (at the end of a capture).

        Returns
        -------
        polars.DataFrame
            ``window_start``, ``score`` (the detector's anomaly score: higher is worse) and
            ``anomaly`` (the detector's verdict), oldest first; empty when nothing new completed.
        """
        if self.matrix is None or self.matrix.columns_ is None:
            raise ConfigError(
                "StreamingScorer is not fitted: call fit(start=..., end=...) on a normal period first."
            )
        empty = pl.DataFrame(
            schema={"window_start": pl.Datetime("ns"), "score": pl.Float64, "anomaly": pl.Boolean}
        )
        now = self._now()
        if now is None:
            return empty
        w = dt.timedelta(seconds=self.window_s)
        start = None
        if self.last_window is not None:
            start = self.last_window + w
        frame = window_features(self.lab, window_s=self.window_s, start=start, where=self.where)
        if not flush:
            horizon = now - dt.timedelta(seconds=self.lag_s)
            frame = frame.filter(pl.col("window_start") + pl.duration(seconds=self.window_s) <= horizon)
        if frame.is_empty():
            return empty
        X, windows = self.matrix.transform(frame)
        score = -np.asarray(self.detector.score_samples(X), dtype=float)
        anomaly = np.asarray(self.detector.predict(X)) == -1
        out = windows.with_columns(pl.Series("score", score), pl.Series("anomaly", anomaly))
        self.last_window = out.get_column("window_start").max()
        return out
