"""Forecasting request rate and latency per service, and capacity warnings with a measured lead time.

The model is scikit-learn's :class:`~sklearn.linear_model.Ridge` on features every operator reads
off a dashboard: the last value, the level and slope of the last few windows, and, for a seasonal
series, the value one season ago at the target's phase and the mean of the last seasons there.
One model per series and horizon (the *direct* strategy). It is scored against the seasonal-naive
forecast (the value one season before the target; the last value for a series with no season)
with the MASE of Hyndman & Koehler (2006): mean absolute error over the in-sample mean absolute
error of the seasonal-naive forecast; below 1 beats it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from otlp_lab.errors import ConfigError

__all__ = [
    "ForecastResult",
    "capacity_warnings",
    "fleet_capacity",
    "forecast",
    "forecast_series",
    "mase",
    "seasonal_naive",
]


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ConfigError(f"{name} must be an integer >= {lo}. Got {v!r} instead.")
    return int(v)


def seasonal_naive(y: np.ndarray, t: int, horizon: int, season: int | None) -> float:
    """The seasonal-naive forecast of ``y[t + horizon]`` made at ``t``."""
    if season:
        k = math.ceil(horizon / season)
        return float(y[t + horizon - k * season])
    return float(y[t])


def _features(y: np.ndarray, t: int, horizon: int, season: int | None, lags: int) -> list[float]:
    """Features of the change from ``y[t]`` to ``y[t + horizon]``, all relative to ``y[t]``: a level shift
    the training windows never saw (a step) moves the forecast with it."""
    last = y[t]
    recent = y[max(0, t - lags + 1) : t + 1]
    f = [float(recent.mean()) - last, float(last - y[max(0, t - lags)]) / max(1, min(lags, t)) * horizon]
    if season:
        k = math.ceil(horizon / season)
        same_phase = [y[t + horizon - j * season] for j in range(k, k + 3) if t + horizon - j * season >= 0]
        f += [float(same_phase[0]) - last, float(np.mean(same_phase)) - last]
        # the target's and today's phase in the season, as a few harmonics: the model learns the
        # season's shape from all the training windows instead of copying one noisy window
        for when in (t + horizon, t):
            phase = 2 * math.pi * (when % season) / season
            f += [v for h in (1, 2, 3) for v in (math.sin(h * phase), math.cos(h * phase))]
    return f


def _min_history(season: int | None, lags: int, horizon: int) -> int:
    return max(lags, math.ceil(horizon / season) * season if season else lags)


def forecast_series(
    y: Any,
    *,
    horizon: int = 1,
    season: int | None = None,
    lags: int = 6,
    train: int | None = None,
    alpha: float = 1.0,
) -> dict[str, Any]:
    """Fit on the first ``train`` points of ``y`` and forecast every later point ``horizon`` ahead.

    Returns ``t`` (the target indices), ``y`` (actual), ``model`` and ``naive`` forecasts, and the
    scores: ``mase`` (model), ``mase_naive`` (the seasonal-naive forecast itself), ``mae``.
    """
    from sklearn.linear_model import HuberRegressor

    y = np.asarray(y, dtype=float)
    horizon = _check_int("horizon", horizon, 1)
    lags = _check_int("lags", lags, 1)
    if season is not None:
        season = _check_int("season", season, 2)
    n = len(y)
    start = _min_history(season, lags, horizon)
    train = train if train is not None else int(n * 0.6)
    if train - horizon <= start + 3 or train >= n - horizon:
        raise ConfigError(
            f"the series is too short to forecast {horizon} windows ahead with a season of {season}: "
            f"{n} windows, {train} for training, {start} needed before the first training example. "
            "Use a longer capture, smaller windows or a shorter horizon."
        )
    rows = range(start, n - horizon)
    X = np.array([_features(y, t, horizon, season, lags) for t in rows])
    last = np.array([y[t] for t in rows])
    target = np.array([y[t + horizon] for t in rows])
    tidx = np.array([t + horizon for t in rows])
    fit_mask = tidx < train
    model = HuberRegressor(alpha=alpha * 1e-3, max_iter=500).fit(X[fit_mask], (target - last)[fit_mask])
    test = ~fit_mask
    pred = last[test] + model.predict(X[test])
    naive = np.array([seasonal_naive(y, t, horizon, season) for t in np.array(list(rows))[test]])
    scale = mase_scale(y[:train], season or 1)
    actual = target[test]
    return {
        "t": tidx[test],
        "y": actual,
        "model": pred,
        "naive": naive,
        "mae": float(np.mean(np.abs(actual - pred))),
        "mase": float(np.mean(np.abs(actual - pred)) / scale) if scale > 0 else float("nan"),
        "mase_naive": float(np.mean(np.abs(actual - naive)) / scale) if scale > 0 else float("nan"),
        "estimator": model,
    }


def mase_scale(y_train: np.ndarray, m: int) -> float:
    """In-sample mean absolute error of the seasonal-naive forecast with period ``m`` (MASE's denominator)."""
    y_train = np.asarray(y_train, dtype=float)
    if len(y_train) <= m:
        return float("nan")
    return float(np.mean(np.abs(y_train[m:] - y_train[:-m])))


def mase(actual: Any, predicted: Any, y_train: Any, m: int = 1) -> float:
    """Mean absolute scaled error (Hyndman & Koehler 2006)."""
    scale = mase_scale(np.asarray(y_train, dtype=float), m)
    return float(np.mean(np.abs(np.asarray(actual, float) - np.asarray(predicted, float))) / scale)


@dataclass
class ForecastResult:
    """Per service: scores against the seasonal-naive forecast, and every forecast made."""

    scores: pl.DataFrame
    forecasts: pl.DataFrame

    def __repr__(self) -> str:
        s = self.scores
        return f"ForecastResult({s.height} series; median MASE {s['mase'].median():.2f} vs seasonal naive {s['mase_naive'].median():.2f})"


def forecast(
    frame: pl.DataFrame,
    *,
    target: str = "rate_per_s",
    by: str = "service",
    horizon: int = 1,
    season: int | None = None,
    lags: int = 6,
    train_share: float = 0.6,
    min_points: int = 20,
) -> ForecastResult:
    """Forecast ``target`` per ``by`` (series of :func:`otlp_lab.ml.window_features`) ``horizon`` windows ahead.

    Parameters
    ----------
    frame : polars.DataFrame
        ``window_start``, ``by`` and ``target`` columns: e.g. ``window_features(lab, window_s=10)``.
    target : str
        ``rate_per_s``, ``p95_ms``... any numeric column.
    horizon : int
        Windows ahead.
    season : int, optional
        Windows per season (a diurnal cycle of 24 h in 10 min windows is 144); none for no season.
    train_share : float
        The first share of each series trains the model; the rest is forecast and scored.

    Returns
    -------
    ForecastResult
        ``.scores`` (per series: ``mase``, ``mase_naive``, ``mae``, ``points``) and ``.forecasts``
        (``window_start``, series, ``actual``, ``forecast``, ``naive``).
    """
    for c in ("window_start", by, target):
        if c not in frame.columns:
            raise ConfigError(f"the frame has no column {c!r}. Columns: {frame.columns}.")
    if not 0.1 <= train_share <= 0.9:
        raise ConfigError(f"train_share must be between 0.1 and 0.9. Got {train_share!r} instead.")
    scores, rows = [], []
    for (key,), g in frame.sort("window_start").group_by([by], maintain_order=True):
        # a regular grid: windows with no requests are zeros for rates, carried forward for latencies
        g = g.select("window_start", target).upsample("window_start", every=_every(frame))
        counts = "rate" in target or target in ("requests", "errors")
        g = g.with_columns(
            pl.col(target).fill_null(0.0) if counts else pl.col(target).forward_fill().fill_null(0.0)
        )
        g = g.slice(
            1, max(0, g.height - 2)
        )  # the first and last windows are partial: a capture starts and ends mid-window
        if g.height < min_points:
            continue
        y = g[target].to_numpy()
        try:
            r = forecast_series(y, horizon=horizon, season=season, lags=lags, train=int(len(y) * train_share))
        except ConfigError:
            continue
        scores.append(
            {
                by: key,
                "points": len(r["t"]),
                "mase": r["mase"],
                "mase_naive": r["mase_naive"],
                "mae": r["mae"],
            }
        )
        ws = g["window_start"].gather(r["t"])
        rows.append(
            pl.DataFrame(
                {
                    "window_start": ws,
                    by: [key] * len(ws),
                    "actual": r["y"],
                    "forecast": r["model"],
                    "naive": r["naive"],
                }
            )
        )
    if not scores:
        raise ConfigError(
            f"no series of {target!r} per {by!r} is long enough to forecast (at least {min_points} windows "
            "and a few seasons). Use a longer capture or smaller windows."
        )
    return ForecastResult(scores=pl.DataFrame(scores), forecasts=pl.concat(rows))


def _every(frame: pl.DataFrame) -> str:
    return f"{int(round(_step_s(frame) * 1000))}ms"


def capacity_warnings(
    frame: pl.DataFrame,
    capacity_rps: dict[str, float],
    *,
    threshold: float = 0.8,
    horizon: int = 3,
    season: int | None = None,
    lags: int = 6,
    train_share: float = 0.4,
    slow_factor: float = 5.0,
) -> pl.DataFrame:
    """When forecast utilisation first crosses ``threshold``, per service, and how long before the fleet saturated.

    ``capacity_rps`` is each service's sustainable request rate (for a simulated fleet,
    :func:`fleet_capacity`: instances x concurrency / mean service time). Utilisation is the
    forecast request rate over it. ``warned_at`` is when the first crossing forecast was *made*
    (``horizon`` windows before the window it is about); ``saturated_at`` is the first window whose
    p95 latency reached ``slow_factor`` times its median over the training windows (the fleet
    actually saturating); ``lead_time_s`` is the time between them (positive: warned in time).
    """
    res = forecast(
        frame.filter(pl.col("service").is_in(list(capacity_rps))),
        target="rate_per_s",
        horizon=horizon,
        season=season,
        lags=lags,
        train_share=train_share,
        min_points=10,
    )
    step_s = _step_s(frame)
    out = []
    for (svc,), g in res.forecasts.group_by(["service"], maintain_order=True):
        cap = capacity_rps[svc]
        g = g.with_columns(util_forecast=pl.col("forecast") / cap)
        warn = g.filter(pl.col("util_forecast") >= threshold)
        warned = warn["window_start"].min() - _td(horizon * step_s) if warn.height else None
        lat = frame.filter(pl.col("service") == svc).sort("window_start")
        first_test = g["window_start"].min()
        base = lat.filter(pl.col("window_start") < first_test)["p95_ms"].median()
        slow = lat.filter(
            (pl.col("window_start") >= first_test) & (pl.col("p95_ms") >= slow_factor * (base or 0))
        )
        saturated = slow["window_start"].min() if slow.height and base else None
        lead = (saturated - warned).total_seconds() if warned is not None and saturated is not None else None
        out.append(
            {
                "service": svc,
                "capacity_rps": round(cap, 3),
                "warned_at": warned,
                "saturated_at": saturated,
                "lead_time_s": lead,
                "peak_forecast_utilisation": round(float(g["util_forecast"].max()), 3),
            }
        )
    return pl.DataFrame(out)


def _step_s(frame: pl.DataFrame) -> float:
    ts = frame["window_start"].unique().sort()
    return (ts[1] - ts[0]).total_seconds() if len(ts) > 1 else 1.0


def _td(seconds: float) -> Any:
    import datetime as dt

    return dt.timedelta(seconds=seconds)


def fleet_capacity(scenario: Any) -> dict[str, float]:
    """Each service's sustainable request rate: instances x concurrency / mean holding time.

    A worker is held for the endpoint's own work plus the calls it waits for (sequential calls add
    up, a parallel step takes its slowest mean), averaged over the service's endpoints.
    """
    from otlp_lab.sim._model import OneOf, Parallel
    from otlp_lab.sim._scenario import load_scenario

    sc = load_scenario(scenario)
    memo: dict[tuple[str, str], float] = {}

    def held(svc_name: str, ep_name: str | None) -> float:
        svc, ep = sc.resolve(f"{svc_name}/{ep_name}" if ep_name else svc_name)
        key = (svc.name, ep.name)
        if key in memo:
            return memo[key]
        t = (ep.service_time or svc.service_time).mean_s

        def call_s(c: Any) -> float:
            target, _, endpoint = c.to.partition("/")
            return c.probability * c.count * held(target, endpoint or None)

        for step in ep.calls:
            if isinstance(step, Parallel):
                t += max(call_s(c) for c in step.calls)
            elif isinstance(step, OneOf):
                w = step.weights or (1.0,) * len(step.calls)
                t += sum(x * call_s(c) for x, c in zip(w, step.calls, strict=True)) / sum(w)
            else:
                t += call_s(step)
        memo[key] = t
        return t

    out = {}
    for svc in sc.services:
        mean = sum(held(svc.name, ep.name) for ep in svc.endpoints) / len(svc.endpoints)
        out[svc.name] = svc.instances * svc.concurrency / mean if mean > 0 else float("inf")
    return out
