"""Score detectors and root-cause rankers against ground truth: a labelled folder or the simulated suite.

:func:`evaluate` takes either a folder laid out like the shared TrainTicket capture (``faulty/``,
optional ``normal/``, ``logs/``, ``metrics/`` and ``faults.json`` with ``inject_timestamp`` (Unix s),
``inject_service``, ``inject_pod``, ``inject_type``) or cases of the simulated suite
(:func:`~otlp_lab.ml.suite_cases`), and reports, per method side by side: window-level precision,
recall, F1, ROC-AUC and detection delay of each detector; AC@1/3/5 and Avg@5 of each ranker at
service and pod level; and the time each took per case.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from otlp_lab.errors import ConfigError, DecodeError
from otlp_lab.ml._detectors import (
    LatencyModel,
    MedianIQR,
    NSigma,
    WindowMatrix,
    isolation_forest,
    local_outlier_factor,
)
from otlp_lab.ml._features import LogTemplates, span_frame, window_features
from otlp_lab.ml._rca import (
    BlameRanker,
    Incident,
    MultimodalRanker,
    NSigmaRanker,
    RandomRanker,
    SpectrumRanker,
)
from otlp_lab.ml._suite import SuiteCase, suite_cases, suite_scenario

__all__ = ["Evaluation", "evaluate", "default_detectors", "default_rankers", "read_faults"]


def default_detectors() -> dict[str, Any]:
    """The detectors compared by :func:`evaluate` (fresh, unfitted).

    Thresholds were chosen on seeds 1 and 2 of the simulated suite (benchmarks/bench_ml.py): with
    dozens of columns and a short normal period, a column-wise N-sigma rule needs a high bar.
    """
    return {
        "nsigma": NSigma(n_sigma=10.0),
        "median_iqr": MedianIQR(threshold=16.0),
        "isolation_forest": isolation_forest(),
        "lof": local_outlier_factor(),
        "latency_model": LatencyModel(),
    }


def default_rankers() -> dict[str, Any]:
    """The root-cause rankers compared by :func:`evaluate`."""
    return {
        "random": RandomRanker(),
        "nsigma": NSigmaRanker(),
        "spectrum": SpectrumRanker(),
        "blame": BlameRanker(),
        "multimodal": MultimodalRanker(),
    }


@dataclass
class _Case:
    """One labelled fault and where its data is."""

    name: str
    kind: str
    service: str
    pods: list[str]
    start: dt.datetime
    end: dt.datetime
    lab: Any
    spans: pl.DataFrame  # the case's period and its baselines, as span_frame
    train: list[tuple[dt.datetime, dt.datetime]]  # normal periods to fit detectors on
    eval_range: tuple[dt.datetime, dt.datetime]  # windows scored for detection
    before_s: float  # baseline before the alarm for ranking
    baseline: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list)  # more ranking baselines
    train_spans: pl.DataFrame | None = None  # normal spans from elsewhere (a fault-free run)
    templates: LogTemplates | None = None


@dataclass
class Evaluation:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    detection : polars.DataFrame
        Per detector: ``precision``, ``recall``, ``f1`` (windows pooled over cases), ``roc_auc``
        (mean over cases), ``median_delay_s`` (from the fault's start to the end of the first
        flagged window), ``detected`` (share of faults flagged while active) and ``ms_per_case``.
    ranking : polars.DataFrame
        Per ranker: ``ac1``, ``ac3``, ``ac5``, ``avg5`` (service level), ``pod_ac1``, ``pod_ac3``
        (pod level, where the faults name pods) and ``ms_per_case``.
    cases : polars.DataFrame
        Per case and ranker: the true service, its rank, the pod's rank, the top 3.
    windows : polars.DataFrame
        Per case, detector and window: ``window_start``, ``case``, ``method``, ``fault_start``,
        ``fault_end``, ``label`` (the window overlaps the fault), ``score`` (higher is worse) and
        ``flagged`` (the detector's verdict).
    settings : dict
        Window width and periods used.
    """

    detection: pl.DataFrame
    ranking: pl.DataFrame
    cases: pl.DataFrame
    windows: pl.DataFrame
    settings: dict[str, Any]
    feature_s: float = 0.0

    def markdown(self) -> str:
        """Both tables as GitHub markdown (README-ready)."""
        return "\n\n".join([_md(self.detection), _md(self.ranking)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: both tables, the per-case ranks and the settings."""
        return {
            "settings": self.settings,
            "detection": self.detection.to_dicts(),
            "ranking": self.ranking.to_dicts(),
            "cases": self.cases.with_columns(pl.col(pl.Datetime).dt.to_string()).to_dicts(),
        }


def _md(frame: pl.DataFrame) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    head = "| " + " | ".join(frame.columns) + " |"
    sep = "|" + "|".join(" --- " for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(fmt(v) for v in r) + " |" for r in frame.iter_rows()]
    return "\n".join([head, sep, *rows])


# ---------------------------------------------------------------- labelled folders


def read_faults(path: str | os.PathLike[str]) -> pl.DataFrame:
    """``faults.json`` of a labelled folder: ``time`` (UTC, naive), ``service``, ``pod``, ``kind``.

    Raises
    ------
    ConfigError
        No ``faults.json`` there.
    DecodeError
        Not a JSON list of objects with ``inject_timestamp``, ``inject_service`` (``inject_pod`` and
        ``inject_type`` optional).
    """
    p = Path(path)
    f = p / "faults.json" if p.is_dir() else p
    if not f.is_file():
        raise ConfigError(f"{str(f)!r} does not exist: a labelled folder needs faults.json beside faulty/.")
    try:
        rows = [
            {
                "time": dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(float(r["inject_timestamp"]))),
                "service": str(r["inject_service"]),
                "pod": str(r["inject_pod"]) if r.get("inject_pod") else None,
                "kind": str(r.get("inject_type", "unknown")),
            }
            for r in json.loads(f.read_text(encoding="utf-8"))
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DecodeError(
            f"expected a JSON list of objects with inject_timestamp (Unix s) and inject_service; {type(exc).__name__}: {exc}",
            source=str(f),
        ) from exc
    schema = {"time": pl.Datetime("us"), "service": pl.String, "pod": pl.String, "kind": pl.String}
    return pl.DataFrame(rows, schema=schema).sort("time")


def _folder_cases(
    path: Path, *, lab: Any, before_s: float, after_s: float, progress: bool
) -> Iterator[_Case]:
    from otlp_lab import Lab

    faults = read_faults(path)
    if not (path / "faulty").is_dir():
        raise ConfigError(f"{str(path)!r} has no faulty/ folder: lay it out like the TrainTicket dataset.")
    lab = lab if lab is not None else Lab()
    if lab.counts()["spans"] == 0:
        for sub in ("normal", "faulty"):
            if (path / sub).is_dir():
                lab.load(path / sub, signal="traces")
        for sub in ("logs", "metrics"):
            if (path / sub).is_dir():
                lab.load(path / sub, on_error="skip")
    # the fault-free period: the spans loaded from normal/ (a Lab may hold the folder already)
    lo, hi = lab.sql(
        "SELECT min(start_time), max(start_time) FROM spans WHERE load_id IN "
        "(SELECT load_id FROM loads WHERE replace(source, '\\', '/') LIKE '%/normal/%' AND source NOT LIKE '%/logs/%')"
    ).row(0)
    normal = [(lo, hi + dt.timedelta(microseconds=1))] if lo is not None else []
    t0 = time.perf_counter()
    spans = span_frame(lab)
    templates = LogTemplates()
    if progress:
        print(f"features of {spans.height:,} spans in {time.perf_counter() - t0:.1f} s")
    for i, f in enumerate(faults.iter_rows(named=True)):
        start = f["time"]
        end = start + dt.timedelta(seconds=after_s)
        if spans.filter((pl.col("time") >= start) & (pl.col("time") < end)).height < 10:
            if progress:
                print(f"fault {i + 1} ({f['kind']} on {f['service']} at {start}): no spans after it, skipped")
            continue
        lo = start - dt.timedelta(seconds=before_s)
        yield _Case(
            name=f"{i + 1:02d} {f['kind']} {f['service']}",
            kind=f["kind"],
            service=f["service"],
            pods=[f["pod"]] if f["pod"] else [],
            start=start,
            end=end,
            lab=lab,
            spans=spans,
            train=normal,
            eval_range=(lo, end),
            before_s=before_s,
            baseline=normal,
            templates=templates,
        )


# ---------------------------------------------------------------- the simulated suite


def _suite_cases(cases: Sequence[SuiteCase], *, progress: bool) -> Iterator[_Case]:
    from otlp_lab import Lab
    from otlp_lab.sim import run

    normal_runs: dict[tuple[int, float, float], tuple[pl.DataFrame, dt.datetime]] = {}
    for c in cases:
        key = (c.seed, c.run_s, c.load)
        sc = suite_scenario(c)
        if key not in normal_runs:  # a fault-free run of the same seed: the detectors' normal period
            with Lab() as nl:
                run(sc.replace(faults=()), lab=nl, seed=c.seed, duration_s=c.at_s)
                normal_runs[key] = (span_frame(nl), _t0(nl))
        lab = Lab()
        t = time.perf_counter()
        run(sc, lab=lab, seed=c.seed)
        rows = lab.sql('SELECT service, instance, start, "end" FROM faults').to_dicts()
        if progress:
            print(f"{c.name}: simulated in {time.perf_counter() - t:.1f} s")
        t0 = _t0(lab)
        warm = t0 + dt.timedelta(seconds=sc.warmup_s)
        train_spans, nt0 = normal_runs[key]
        train_spans = train_spans.filter(pl.col("time") >= nt0 + dt.timedelta(seconds=sc.warmup_s))
        start, end = rows[0]["start"], rows[0]["end"]
        yield _Case(
            name=c.name,
            kind=c.kind,
            service=rows[0]["service"],
            pods=[r["instance"] for r in rows if r["instance"]],
            start=start,
            end=end,
            lab=lab,
            spans=span_frame(lab),
            train=[(warm, warm + dt.timedelta(seconds=c.at_s - sc.warmup_s))],
            eval_range=(warm, t0 + dt.timedelta(seconds=c.run_s)),
            before_s=c.at_s - sc.warmup_s,
            train_spans=train_spans,
        )
        lab.close()


def _t0(lab: Any) -> dt.datetime:
    return lab.sql("SELECT started FROM sim_runs").item(0, 0)


# ---------------------------------------------------------------- scoring


def evaluate(
    source: str | os.PathLike[str] | Sequence[SuiteCase] | None = None,
    *,
    window_s: float | None = None,
    detectors: Mapping[str, Any] | None = None,
    rankers: Mapping[str, Any] | None = None,
    before_s: float = 60.0,
    after_s: float = 120.0,
    lab: Any = None,
    progress: bool = False,
) -> Evaluation:
    """Score detectors and root-cause rankers against labelled faults.

    Parameters
    ----------
    source : path or sequence of SuiteCase, optional
        A labelled folder (``faulty/``, ``faults.json``, optional ``normal/``, ``logs/``, ``metrics/``),
        or cases of the simulated suite; the whole suite (:func:`suite_cases`) by default.
    window_s : float, optional
        Detection window (5 s for the simulated suite, 10 s for a folder by default).
    detectors, rankers : mapping of name to estimator / ranker, optional
        What to compare (:func:`default_detectors`, :func:`default_rankers`).
    before_s, after_s : float
        For a folder: the baseline before each fault's injection, and how long after it the fault
        counts as active (the folder does not say). The simulated suite knows both.
    lab : Lab, optional
        For a folder: a Lab to load it into (in memory by default), or one already holding it.
    progress : bool
        Print a line per case.

    Returns
    -------
    Evaluation

    Examples
    --------
    >>> ev = evaluate("datasets/trainticket")          # doctest: +SKIP
    >>> print(ev.markdown())                          # doctest: +SKIP
    """
    if source is None or (isinstance(source, Sequence) and not isinstance(source, str)):
        cases: Any = _suite_cases(list(source) if source is not None else suite_cases(), progress=progress)
        w = 5.0 if window_s is None else float(window_s)
        kind = "simulated suite"
    else:
        path = Path(source)
        if not path.is_dir():
            raise ConfigError(
                f"evaluate() needs a labelled folder or suite cases. Got {str(source)!r}, not a folder."
            )
        cases = _folder_cases(path, lab=lab, before_s=before_s, after_s=after_s, progress=progress)
        w = 10.0 if window_s is None else float(window_s)
        kind = str(path)
    dets = dict(detectors) if detectors is not None else default_detectors()
    rks = dict(rankers) if rankers is not None else default_rankers()
    det_rows, rank_rows, win_frames = [], [], []
    feature_s = 0.0
    n = 0
    for case in cases:
        n += 1
        t = time.perf_counter()
        win_frames += _detect(case, dets, w, det_rows)
        t1 = time.perf_counter()
        rank_rows += _rank(case, rks)
        feature_s += time.perf_counter() - t1 - sum(r["seconds"] for r in rank_rows[-len(rks) :])
        if progress:
            top = {r["method"]: r["rank"] for r in rank_rows[-len(rks) :]}
            print(f"{case.name}: detection {t1 - t:.1f} s, ranks {top}")
    if n == 0:
        raise ConfigError("no labelled faults to evaluate: faults.json is empty.")
    detection = _detection_table(pl.DataFrame(det_rows), list(dets))
    cases_frame = pl.DataFrame(rank_rows)
    ranking = _ranking_table(cases_frame, list(rks))
    settings = {"source": kind, "window_s": w, "cases": n, "before_s": before_s, "after_s": after_s}
    windows = pl.concat(win_frames) if win_frames else pl.DataFrame()
    return Evaluation(detection, ranking, cases_frame, windows, settings, feature_s / n)


def _detect(case: _Case, dets: Mapping[str, Any], w: float, rows: list[dict]) -> list[pl.DataFrame]:
    spans = case.spans
    if case.train_spans is not None:
        train = window_features(case.train_spans, window_s=w)
    else:
        parts = [spans.filter((pl.col("time") >= s) & (pl.col("time") < e)) for s, e in case.train]
        train = window_features(pl.concat(parts), window_s=w) if parts else None
    lo, hi = case.eval_range
    ev = window_features(spans.filter((pl.col("time") >= lo) & (pl.col("time") < hi)), window_s=w)
    # only whole windows inside the evaluated range
    ev = ev.filter((pl.col("window_start") >= lo) & (pl.col("window_start") + pl.duration(seconds=w) <= hi))
    if train is None or train.is_empty() or ev.is_empty():
        return []
    train = train.filter(pl.col("window_start").is_in(_whole(train, w).implode()))
    wm = WindowMatrix().fit(train)
    Xtr, _ = wm.transform(train)
    X, windows = wm.transform(ev)
    wend = windows.select(pl.col("window_start") + pl.duration(seconds=w)).to_series().alias("end")
    label = ((windows["window_start"] < case.end) & (wend > case.start)).to_numpy()
    out = []
    for name, det in dets.items():
        t = time.perf_counter()
        d = clone(det).fit(Xtr)
        score = -np.asarray(d.score_samples(X), dtype=float)
        flagged = np.asarray(d.predict(X)) == -1
        secs = time.perf_counter() - t
        hits = windows.with_columns(pl.Series("flagged", flagged), wend).filter(
            pl.col("flagged") & (pl.col("end") > case.start) & (pl.col("window_start") < case.end)
        )
        delay = (hits["end"].min() - case.start).total_seconds() if hits.height else None
        auc = roc_auc_score(label, score) if 0 < label.sum() < len(label) else None
        rows.append(
            {
                "case": case.name,
                "method": name,
                "tp": int((flagged & label).sum()),
                "fp": int((flagged & ~label).sum()),
                "fn": int((~flagged & label).sum()),
                "auc": auc,
                "delay_s": delay,
                "seconds": secs,
            }
        )
        out.append(
            windows.with_columns(
                pl.lit(case.name).alias("case"),
                pl.lit(name).alias("method"),
                pl.lit(case.start).cast(pl.Datetime("ns")).alias("fault_start"),
                pl.lit(case.end).cast(pl.Datetime("ns")).alias("fault_end"),
                pl.Series("label", label),
                pl.Series("score", score),
                pl.Series("flagged", flagged),
            )
        )
    return out


def _whole(frame: pl.DataFrame, w: float) -> pl.Series:
    """Window starts except the first and last of the frame (often partial)."""
    ws = frame["window_start"].unique().sort()
    return ws[1:-1] if ws.len() > 3 else ws


def _rank(case: _Case, rks: Mapping[str, Any]) -> list[dict]:
    after = (case.end - case.start).total_seconds()
    inc = Incident.from_lab(
        case.lab,
        case.start,
        after_s=after,
        before_s=case.before_s,
        baseline=case.baseline,
        spans=case.spans,
        templates=case.templates,
    )
    rows = []
    for name, rk in rks.items():
        r = rk.rank(inc)
        pod_ranks = [r.rank_of(case.service, pod=p) for p in case.pods]
        pod_ranks = [p for p in pod_ranks if p is not None]
        if r.pods.is_empty() and case.pods:  # a ranker without pods: its service's rank stands for the pod
            pod_rank = r.rank_of(case.service)
        else:
            pod_rank = min(pod_ranks) if pod_ranks else 10**6  # the faulty pod was not ranked: a miss
        rows.append(
            {
                "case": case.name,
                "kind": case.kind,
                "service": case.service,
                "method": name,
                "rank": r.rank_of(case.service),
                "pod_rank": pod_rank if case.pods else None,
                "top3": ", ".join(r.top(3)),
                "seconds": r.seconds,
            }
        )
    return rows


def _detection_table(rows: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    if rows.is_empty():
        return pl.DataFrame()
    g = rows.group_by("method").agg(
        pl.col("tp").sum(),
        pl.col("fp").sum(),
        pl.col("fn").sum(),
        pl.col("auc").mean().alias("roc_auc"),
        pl.col("delay_s").median().alias("median_delay_s"),
        pl.col("delay_s").is_not_null().mean().alias("detected"),
        (pl.col("seconds").mean() * 1e3).alias("ms_per_case"),
    )
    g = g.with_columns(
        (pl.col("tp") / (pl.col("tp") + pl.col("fp"))).fill_nan(0.0).alias("precision"),
        (pl.col("tp") / (pl.col("tp") + pl.col("fn"))).fill_nan(0.0).alias("recall"),
    ).with_columns(
        (2 * pl.col("precision") * pl.col("recall") / (pl.col("precision") + pl.col("recall")))
        .fill_nan(0.0)
        .alias("f1")
    )
    cols = ["method", "precision", "recall", "f1", "roc_auc", "median_delay_s", "detected", "ms_per_case"]
    return (
        g.select(cols)
        .with_columns(
            pl.col("method").replace_strict({m: i for i, m in enumerate(order)}, default=99).alias("_o")
        )
        .sort("_o")
        .drop("_o")
    )


def _ranking_table(cases: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    def ac(col: str, k: int) -> pl.Expr:
        return (pl.col(col).fill_null(10**6) <= k).mean()

    g = cases.group_by("method").agg(
        ac("rank", 1).alias("ac1"),
        ac("rank", 3).alias("ac3"),
        ac("rank", 5).alias("ac5"),
        pl.mean_horizontal([ac("rank", k) for k in range(1, 6)]).alias("avg5"),
        (pl.col("pod_rank") <= 1).drop_nulls().mean().alias("pod_ac1"),
        (pl.col("pod_rank") <= 3).drop_nulls().mean().alias("pod_ac3"),
        (pl.col("seconds").mean() * 1e3).alias("ms_per_case"),
        pl.len().alias("cases"),
    )
    return (
        g.with_columns(
            pl.col("method").replace_strict({m: i for i, m in enumerate(order)}, default=99).alias("_o")
        )
        .sort("_o")
        .drop("_o")
    )
