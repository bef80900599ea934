"""Root-cause ranking: which service (pod, operation) most likely caused an anomaly, with its evidence.

Every ranker reads an :class:`Incident` (the spans, logs and metrics of a baseline period and of
the anomalous period after an alarm) and returns a :class:`Ranking`: services, pods and
operations in order, and the evidence behind each (what moved, from what to what).

* :class:`RandomRanker` and :class:`NSigmaRanker` are the baselines.
* :class:`SpectrumRanker` scores operations by how strongly they go with abnormal traces
  (support and confidence, combined as the Ochiai coefficient), in the spirit of MicroRank and
  TraceRCA.
* :class:`BlameRanker` attributes each span's *exclusive* time and its *originating* errors to the
  component that owns them (a span's own service; the callee of a cross-service call, and the
  caller at half weight), compares them per operation with the baseline, and ranks services by
  the excess they own, weighed by how far above their own baseline it is.
* :class:`MultimodalRanker` adds log-template and metric shifts per service to the blame.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from otlp_lab.errors import ConfigError
from otlp_lab.ml._features import LogTemplates, Time, log_features, metric_features, span_frame

__all__ = [
    "Incident",
    "Ranking",
    "RandomRanker",
    "NSigmaRanker",
    "SpectrumRanker",
    "BlameRanker",
    "MultimodalRanker",
]

_RANK_SCHEMA = {"rank": pl.Int64, "service": pl.String, "score": pl.Float64}
_EVIDENCE_SCHEMA = {
    "service": pl.String,
    "kind": pl.String,
    "name": pl.String,
    "baseline": pl.Float64,
    "observed": pl.Float64,
    "change": pl.Float64,
    "score": pl.Float64,
}


@dataclass
class Incident:
    """The data of one anomaly: a baseline period and the anomalous period after the alarm.

    Build one with :meth:`from_lab`. ``spans_*`` are :func:`span_frame` frames; ``logs_*`` are
    :func:`log_features` frames (one window each); ``metrics`` a :func:`metric_features` frame
    over both periods. ``alarm`` is when the anomaly started (or was detected).
    """

    alarm: dt.datetime
    spans_base: pl.DataFrame
    spans_abn: pl.DataFrame
    base_s: float
    abn_s: float
    logs_base: pl.DataFrame | None = None
    logs_abn: pl.DataFrame | None = None
    metrics: pl.DataFrame | None = None

    @classmethod
    def from_lab(
        cls,
        lab: Any,
        alarm: dt.datetime,
        *,
        after_s: float = 120.0,
        before_s: float = 60.0,
        baseline: list[tuple[Time, Time]] | None = None,
        where: str | None = None,
        logs: bool = True,
        metrics: bool = True,
        templates: LogTemplates | None = None,
        spans: pl.DataFrame | None = None,
    ) -> Incident:
        """Read an incident from a Lab.

        Parameters
        ----------
        lab : Lab
        alarm : datetime
            Start of the anomalous period (UTC, naive).
        after_s : float
            Length of the anomalous period.
        before_s : float
            The ``before_s`` seconds before the alarm are part of the baseline.
        baseline : list of (start, end), optional
            More baseline periods (a fault-free capture, say).
        where : str, optional
            SQL predicate on spans/logs/metrics (one simulated run of several).
        logs, metrics : bool
            Also read logs and metrics (when the Lab has them).
        templates : LogTemplates, optional
            A miner shared across incidents (mined on first use otherwise).
        spans : polars.DataFrame, optional
            A :func:`span_frame` covering the periods (read from the Lab otherwise).
        """
        if not after_s > 0 or before_s < 0:
            raise ConfigError(
                f"after_s must be positive and before_s non-negative. Got {after_s!r}, {before_s!r}."
            )
        a0, a1 = alarm, alarm + dt.timedelta(seconds=after_s)
        periods = [(alarm - dt.timedelta(seconds=before_s), alarm)] if before_s > 0 else []
        periods += [(_dt(s), _dt(e)) for s, e in baseline or []]

        def read(start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
            if spans is not None:
                return spans.filter((pl.col("time") >= start) & (pl.col("time") < end))
            return span_frame(lab, start=start, end=end, where=where)

        spans_base = pl.concat([read(s, e) for s, e in periods]) if periods else read(a0, a0)
        spans_abn = read(a0, a1)
        base_s = sum((e - s).total_seconds() for s, e in periods)
        logs_base = logs_abn = mets = None
        if logs and lab.sql("SELECT count(*) FROM logs").item() > 0:
            miner = templates if templates is not None else LogTemplates()
            lb = [
                log_features(lab, window_s=1e9, start=s, end=e, where=where, templates=miner)
                for s, e in periods
            ]
            logs_base = pl.concat(lb) if lb else None
            logs_abn = log_features(lab, window_s=1e9, start=a0, end=a1, where=where, templates=miner)
        if (
            metrics
            and lab.sql("SELECT count(*) FROM metric_gauge").item()
            + lab.sql("SELECT count(*) FROM metric_sum").item()
            > 0
        ):
            parts = []
            for label, (s, e) in [("base", p) for p in periods] + [("abn", (a0, a1))]:
                m = metric_features(lab, window_s=10, start=s, end=e, where=where)
                parts.append(m.with_columns(pl.lit(label).alias("period")))
            mets = pl.concat(parts) if parts else None
        return cls(alarm, spans_base, spans_abn, base_s, float(after_s), logs_base, logs_abn, mets)

    def services(self) -> list[str]:
        """Every service seen in either period (the candidates)."""
        s = pl.concat([self.spans_base.select("service"), self.spans_abn.select("service")])
        p = pl.concat(
            [
                self.spans_base.select(pl.col("peer_service").alias("service")),
                self.spans_abn.select(pl.col("peer_service").alias("service")),
            ]
        )
        return sorted(set(s["service"].drop_nulls().to_list()) | set(p["service"].drop_nulls().to_list()))


def _dt(value: Time) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=value // 1000)
    if isinstance(value, str):
        return _dt(dt.datetime.fromisoformat(value))
    raise ConfigError(f"baseline periods must be (start, end) datetimes. Got {value!r} instead.")


@dataclass
class Ranking:
    """A ranked list of likely root causes, with the evidence behind it.

    Attributes
    ----------
    method : str
    services : polars.DataFrame
        ``rank``, ``service``, ``score`` (higher = more likely the cause).
    pods : polars.DataFrame
        ``rank``, ``service``, ``pod``, ``score`` (empty when the ranker does not rank pods).
    operations : polars.DataFrame
        ``rank``, ``service``, ``operation``, ``score``.
    evidence : polars.DataFrame
        ``service``, ``kind`` (``self_time``, ``call_time``, ``errors``, ``log_template``,
        ``metric``, ``latency``, ``spectrum``), ``name``, ``baseline``, ``observed``, ``change``
        (observed - baseline, or the ratio for spectra) and ``score`` (its share of the service's score).
    seconds : float
        Time the ranking took.
    """

    method: str
    services: pl.DataFrame
    pods: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={**_RANK_SCHEMA, "pod": pl.String})
    )
    operations: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={**_RANK_SCHEMA, "operation": pl.String})
    )
    evidence: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=_EVIDENCE_SCHEMA))
    seconds: float = 0.0

    def top(self, k: int = 5) -> list[str]:
        """The ``k`` most likely services."""
        return self.services.head(k).get_column("service").to_list()

    def rank_of(self, service: str, *, pod: str | None = None) -> int | None:
        """1-based rank of a service (or of a pod, with ``pod``); None when not ranked."""
        frame, col, value = (
            (self.pods, "pod", pod) if pod is not None else (self.services, "service", service)
        )
        hit = frame.filter(pl.col(col) == value)
        return int(hit.item(0, "rank")) if hit.height else None

    def explain(self, service: str | None = None, *, limit: int = 10) -> pl.DataFrame:
        """The evidence for one service (the top one by default), strongest first."""
        service = service if service is not None else (self.top(1) or [None])[0]
        return self.evidence.filter(pl.col("service") == service).sort("score", descending=True).head(limit)

    def __repr__(self) -> str:
        top = ", ".join(
            f"{s} ({v:.3g})" for s, v in self.services.head(3).select("service", "score").iter_rows()
        )
        return f"Ranking({self.method}: {top})"


def _ranked(scores: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Sort by score (ties by name, so rankings are reproducible) and number the rows."""
    return (
        scores.filter(pl.col("score").is_finite())
        .sort(["score", *keys], descending=[True, *([False] * len(keys))])
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64))
        .select("rank", *keys, "score")
    )


def _timed(fn: Any) -> Any:
    def wrapper(self: Any, incident: Incident) -> Ranking:
        import time

        t = time.perf_counter()
        r = fn(self, incident)
        r.seconds = time.perf_counter() - t
        return r

    wrapper.__doc__ = fn.__doc__
    wrapper.__name__ = fn.__name__
    return wrapper


# ---------------------------------------------------------------- baselines


class RandomRanker:
    """Services in a random order (the floor any method must beat)."""

    name = "random"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    @_timed
    def rank(self, incident: Incident) -> Ranking:
        """Rank the incident's services at random."""
        services = incident.services()
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(services))
        scores = pl.DataFrame(
            {"service": [services[i] for i in order], "score": np.linspace(1, 0, len(services))}
        )
        return Ranking(self.name, _ranked(scores, ["service"]))


class NSigmaRanker:
    """Services by the largest N-sigma shift of their operations' latency or error ratio.

    Per ``(service, operation)`` of the requests entering services: ``(mean_abnormal - mean_base) / std_base``
    of the duration, and the same for the error ratio (binomial standard error); a service scores its
    largest. The textbook baseline: it blames whoever's latency moved most, callers included.
    """

    name = "nsigma"

    def __init__(self, *, min_std_ms: float = 0.1) -> None:
        self.min_std_ms = min_std_ms

    @_timed
    def rank(self, incident: Incident) -> Ranking:
        """Rank services by their largest latency or error z-score."""
        keys = ["service", "operation"]
        b = incident.spans_base.group_by(keys).agg(
            pl.col("duration_ms").mean().alias("mu"),
            pl.col("duration_ms").std().alias("sd"),
            pl.col("error").mean().alias("pe"),
        )
        a = incident.spans_abn.group_by(keys).agg(
            pl.col("duration_ms").mean().alias("m"), pl.col("error").mean().alias("e"), pl.len().alias("n")
        )
        j = a.join(b, on=keys, how="inner").with_columns(
            ((pl.col("m") - pl.col("mu")) / pl.col("sd").fill_null(0).clip(self.min_std_ms)).alias("z_lat"),
            ((pl.col("e") - pl.col("pe")) / (pl.col("pe") * (1 - pl.col("pe"))).clip(0.01).sqrt()).alias(
                "z_err"
            ),
        )
        j = j.with_columns(pl.max_horizontal("z_lat", "z_err").alias("score"))
        scores = j.group_by("service").agg(pl.col("score").max())
        ops = _ranked(j.select(*keys, "score"), keys)
        ev = j.select(
            "service",
            pl.lit("latency").alias("kind"),
            pl.col("operation").alias("name"),
            pl.col("mu").alias("baseline"),
            pl.col("m").alias("observed"),
            (pl.col("m") - pl.col("mu")).alias("change"),
            "score",
        )
        return Ranking(
            self.name, _ranked(scores, ["service"]), operations=ops, evidence=ev.cast(_EVIDENCE_SCHEMA)
        )


# ---------------------------------------------------------------- traces


class SpectrumRanker:
    """Operations by how strongly they go with abnormal traces (MicroRank/TraceRCA-style spectrum).

    A trace of the anomalous period is abnormal when one of its spans took longer than its
    operation's baseline p99 times ``slack``, or failed where the baseline never did. Per operation:
    *support* = abnormal traces through it / abnormal traces, *confidence* = abnormal traces through
    it / traces through it; the score is their geometric mean (the Ochiai coefficient of spectrum-based
    fault localisation). A service scores its best operation.

    Parameters
    ----------
    slack : float
        A span is slow past ``slack`` times its operation's baseline p99.
    """

    name = "spectrum"

    def __init__(self, *, slack: float = 1.2) -> None:
        self.slack = slack

    @_timed
    def rank(self, incident: Incident) -> Ranking:
        """Rank operations by abnormal-trace support and confidence; services by their best operation."""
        keys = ["service", "operation"]
        b = incident.spans_base.group_by(keys).agg(
            pl.col("duration_ms").quantile(0.99, "linear").alias("p99"), pl.col("error").mean().alias("pe")
        )
        a = incident.spans_abn.join(b, on=keys, how="left").with_columns(
            (
                (pl.col("duration_ms") > pl.col("p99").fill_null(0.0) * self.slack)
                | (pl.col("error") & (pl.col("pe").fill_null(0.0) < 0.01))
            ).alias("bad")
        )
        bad_traces = a.group_by("trace_id").agg(pl.col("bad").any().alias("abn"))
        n_abn = int(bad_traces["abn"].sum())
        per_op = (
            a.select("trace_id", *keys)
            .unique()
            .join(bad_traces, on="trace_id")
            .group_by(keys)
            .agg(pl.len().alias("traces"), pl.col("abn").sum().alias("abn_traces"))
            .with_columns(
                (pl.col("abn_traces") / max(n_abn, 1)).alias("support"),
                (pl.col("abn_traces") / pl.col("traces")).alias("confidence"),
            )
            .with_columns((pl.col("support") * pl.col("confidence")).sqrt().alias("score"))
        )
        scores = per_op.group_by("service").agg(pl.col("score").max())
        ev = per_op.select(
            "service",
            pl.lit("spectrum").alias("kind"),
            pl.col("operation").alias("name"),
            pl.col("support").alias("baseline"),
            pl.col("confidence").alias("observed"),
            pl.col("abn_traces").cast(pl.Float64).alias("change"),
            "score",
        )
        return Ranking(
            self.name,
            _ranked(scores, ["service"]),
            operations=_ranked(per_op.select(*keys, "score"), keys),
            evidence=ev.cast(_EVIDENCE_SCHEMA),
        )


def _owned(spans: pl.DataFrame, caller_weight: float) -> pl.DataFrame:
    """Each span's exclusive time and originating error, assigned to the component(s) that own them."""
    cols = ["service", "pod", "key", "kind", "self_ms", "origin_error", "w"]
    own = spans.filter(pl.col("unit") == "self").select(
        "service",
        "pod",
        pl.col("operation").alias("key"),
        pl.lit("self_time").alias("kind"),
        "self_ms",
        "origin_error",
        pl.lit(1.0).alias("w"),
    )
    edges = spans.filter(pl.col("unit") == "edge")
    callee = edges.select(
        pl.col("peer_service").alias("service"),
        pl.coalesce("peer_pod", "peer_service").alias("pod"),
        (pl.lit("from ") + pl.col("service")).alias("key"),
        pl.lit("call_time").alias("kind"),
        "self_ms",
        "origin_error",
        pl.lit(1.0).alias("w"),
    )
    caller = edges.select(
        "service",
        "pod",
        (pl.lit("to ") + pl.col("peer_service")).alias("key"),
        pl.lit("call_time").alias("kind"),
        "self_ms",
        "origin_error",
        pl.lit(float(caller_weight)).alias("w"),
    )
    return pl.concat([own.select(cols), callee.select(cols), caller.select(cols)]).drop_nulls("service")


class BlameRanker:
    """Services by the excess exclusive time and originating errors they own, against the baseline.

    Each span's exclusive (self) time and its error, when no child failed, belong to the span's
    service; for a call to another service (time around the callee: network, queueing, timeouts;
    a callee that never answered) they belong to the callee, and to the caller at ``caller_weight``
    (a delay on a pod's network shows on its callers' calls to it and on its own calls out, so the
    pod common to the slow calls collects the most). Per owner and operation, the abnormal period's
    mean is compared with the baseline's: a shift counts when it is significant (a t statistic over
    ``min_t``), and its excess is ``(mean - baseline mean) x calls``. A service's excess time and
    excess errors are each scored as ``share x log(1 + ratio)``: its share of all the excess, times
    how large the excess is against what the service normally takes (so a front door that only
    waits on others scores low, a small service that suddenly doubles scores high); the two add up.

    Parameters
    ----------
    caller_weight : float
        Weight of a call's time and errors for the caller (the callee gets 1).
    min_t : float
        Significance gate on each shift.
    score : {"share_log_ratio", "ratio", "share"}
        How a service's excess becomes its score (see above; ``"ratio"`` and ``"share"`` alone are
        kept for comparison).
    """

    name = "blame"

    def __init__(
        self, *, caller_weight: float = 0.5, min_t: float = 3.0, score: str = "share_log_ratio"
    ) -> None:
        self.caller_weight = caller_weight
        self.min_t = min_t
        self.score = score

    def _components(self, incident: Incident) -> pl.DataFrame:
        keys = ["service", "pod", "key", "kind", "w"]
        ub = _owned(incident.spans_base, self.caller_weight)
        ua = _owned(incident.spans_abn, self.caller_weight)
        b = ub.group_by(keys).agg(
            pl.col("self_ms").mean().alias("mu"),
            pl.col("self_ms").std().alias("sd"),
            pl.col("origin_error").mean().alias("pe"),
            pl.len().alias("nb"),
        )
        a = ua.group_by(keys).agg(
            pl.col("self_ms").mean().alias("m"),
            pl.col("origin_error").mean().alias("e"),
            pl.len().alias("n"),
        )
        j = a.join(b, on=keys, how="left").with_columns(
            pl.col("mu").fill_null(0.0), pl.col("pe").fill_null(0.0), pl.col("nb").fill_null(0)
        )
        # t statistics; an operation unseen in the baseline is significant when it is not trivial
        se_t = (
            pl.col("sd").fill_null(0.0).pow(2) / pl.col("n")
            + pl.col("sd").fill_null(0.0).pow(2) / pl.col("nb").clip(1)
        ).sqrt()
        se_e = ((pl.col("pe") * (1 - pl.col("pe"))).clip(1e-4) / pl.col("n")).sqrt()
        j = j.with_columns(
            ((pl.col("m") - pl.col("mu")) / se_t.clip(1e-3)).alias("t_time"),
            ((pl.col("e") - pl.col("pe")) / se_e).alias("t_err"),
        )
        return j.with_columns(
            pl.when(pl.col("t_time") > self.min_t)
            .then((pl.col("m") - pl.col("mu")) * pl.col("n") * pl.col("w"))
            .otherwise(0.0)
            .alias("excess_ms"),
            (pl.col("mu") * pl.col("n") * pl.col("w")).alias("expected_ms"),
            pl.when(pl.col("t_err") > self.min_t)
            .then((pl.col("e") - pl.col("pe")) * pl.col("n") * pl.col("w"))
            .otherwise(0.0)
            .alias("excess_err"),
            (pl.col("pe") * pl.col("n") * pl.col("w")).alias("expected_err"),
            (pl.col("n") * pl.col("w")).alias("calls"),
        )

    def _score(self, comp: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        g = comp.group_by(keys).agg(
            pl.col("excess_ms").sum(),
            pl.col("expected_ms").sum(),
            pl.col("excess_err").sum(),
            pl.col("expected_err").sum(),
            pl.col("calls").sum(),
        )
        tot_t = max(float(g["excess_ms"].sum()), 1e-9)
        tot_e = max(float(g["excess_err"].sum()), 1e-9)
        share_t = pl.col("excess_ms") / tot_t
        share_e = pl.col("excess_err") / tot_e
        # a floor on the expectation: 1 ms per call of time, 1 error in all (an operation that never failed)
        ratio_t = pl.col("excess_ms") / (pl.col("expected_ms") + pl.col("calls") * 0.01 + 1.0)
        ratio_e = pl.col("excess_err") / (pl.col("expected_err") + 1.0)
        if self.score == "share_log_ratio":
            s = share_t * ratio_t.log1p() + share_e * ratio_e.log1p()
        elif self.score == "ratio":
            s = ratio_t + ratio_e
        elif self.score == "share":
            s = share_t + share_e
        else:
            raise ConfigError(
                f"score must be 'share_log_ratio', 'ratio' or 'share'. Got {self.score!r} instead."
            )
        return g.with_columns(s.alias("score"))

    def _ranking(self, incident: Incident) -> tuple[Ranking, pl.DataFrame]:
        comp = self._components(incident)
        services = self._score(comp, ["service"])
        pods = self._score(comp, ["service", "pod"])
        ops = self._score(
            comp.filter(pl.col("kind") == "self_time").rename({"key": "operation"}), ["service", "operation"]
        )
        tot = services.select("service", pl.col("score").alias("_s"))
        err = comp.filter(pl.col("excess_err") > 0).select(
            "service",
            pl.lit("errors").alias("kind"),
            pl.col("key").alias("name"),
            pl.col("pe").alias("baseline"),
            pl.col("e").alias("observed"),
            (pl.col("e") - pl.col("pe")).alias("change"),
            pl.col("excess_err").alias("score"),
        )
        tim = comp.filter(pl.col("excess_ms") > 0).select(
            "service",
            "kind",
            pl.col("key").alias("name"),
            pl.col("mu").alias("baseline"),
            pl.col("m").alias("observed"),
            (pl.col("m") - pl.col("mu")).alias("change"),
            pl.col("excess_ms").alias("score"),
        )
        ev = pl.concat([tim.cast(_EVIDENCE_SCHEMA), err.cast(_EVIDENCE_SCHEMA)])
        # evidence score: the item's share of its service's excess (time and errors apart)
        ev = (
            ev.with_columns(
                (pl.col("score") / pl.col("score").sum().over("service", pl.col("kind") == "errors")).alias(
                    "score"
                )
            )
            .join(tot, on="service", how="left")
            .sort("_s", "score", descending=True)
            .drop("_s")
        )
        r = Ranking(
            self.name,
            _ranked(services.select("service", "score"), ["service"]),
            pods=_ranked(pods.select("service", "pod", "score"), ["service", "pod"]).select(
                "rank", "service", "pod", "score"
            ),
            operations=_ranked(ops.select("service", "operation", "score"), ["service", "operation"]),
            evidence=ev,
        )
        return r, services

    @_timed
    def rank(self, incident: Incident) -> Ranking:
        """Rank services, pods and operations by the excess time and errors they own."""
        return self._ranking(incident)[0]


# ---------------------------------------------------------------- logs and metrics


def log_shift(incident: Incident, *, min_z: float = 3.0) -> pl.DataFrame:
    """Per service and log template: baseline and anomalous rates (per s) and a Poisson z of the change.

    Returns ``service``, ``template``, ``severity``, ``baseline`` (per s), ``observed`` (per s), ``z``;
    only significant increases (``z > min_z``), a template unseen before the alarm included.
    """
    if incident.logs_abn is None or incident.logs_base is None or incident.logs_abn.is_empty():
        return pl.DataFrame(
            schema={
                "service": pl.String,
                "template": pl.String,
                "severity": pl.String,
                "baseline": pl.Float64,
                "observed": pl.Float64,
                "z": pl.Float64,
            }
        )
    keys = ["service", "template", "severity"]
    b = incident.logs_base.group_by(keys).agg(pl.col("count").sum().alias("cb"))
    a = incident.logs_abn.group_by(keys).agg(pl.col("count").sum().alias("ca"))
    tb, ta = max(incident.base_s, 1.0), max(incident.abn_s, 1.0)
    j = a.join(b, on=keys, how="full", coalesce=True).with_columns(
        pl.col("ca").fill_null(0), pl.col("cb").fill_null(0)
    )
    lam = (
        (pl.col("cb") + 0.5) / tb * ta
    )  # expected count in the anomalous period (half a line when never seen)
    j = j.with_columns(
        (pl.col("cb") / tb).alias("baseline"),
        (pl.col("ca") / ta).alias("observed"),
        ((pl.col("ca") - lam) / (lam + 1.0).sqrt()).alias("z"),
    )
    return j.filter(pl.col("z") > min_z).select(*keys, "baseline", "observed", "z")


def metric_shift(incident: Incident, *, min_z: float = 3.0, rel_floor: float = 0.05) -> pl.DataFrame:
    """Per service, pod and metric: baseline mean, anomalous mean and a robust z of the change.

    The scale is the baseline's standard deviation, at least ``rel_floor`` of its mean. Returns
    ``service``, ``pod``, ``metric``, ``baseline``, ``observed``, ``z`` (absolute), significant ones only.
    """
    schema = {
        "service": pl.String,
        "pod": pl.String,
        "metric": pl.String,
        "baseline": pl.Float64,
        "observed": pl.Float64,
        "z": pl.Float64,
    }
    m = incident.metrics
    if m is None or m.is_empty():
        return pl.DataFrame(schema=schema)
    keys = ["service", "pod", "metric"]
    b = (
        m.filter(pl.col("period") == "base")
        .group_by(keys)
        .agg(pl.col("value").mean().alias("baseline"), pl.col("value").std().alias("sd"))
    )
    a = m.filter(pl.col("period") == "abn").group_by(keys).agg(pl.col("value").mean().alias("observed"))
    j = a.join(b, on=keys, how="inner").with_columns(
        (
            (pl.col("observed") - pl.col("baseline")).abs()
            / pl.max_horizontal(
                pl.col("sd").fill_null(0.0), pl.col("baseline").abs() * rel_floor, pl.lit(1e-9)
            )
        ).alias("z")
    )
    return j.filter(pl.col("z") > min_z).select(*keys, "baseline", "observed", "z").cast(schema)


class MultimodalRanker(BlameRanker):
    """:class:`BlameRanker` plus the services' log-template and metric shifts.

    A service's score is its blame score plus ``log_weight`` times its share of the significant
    log-template increases (Poisson z, summed per service) and ``metric_weight`` times its share of
    the significant metric shifts (robust z, the largest per service). Logs and metrics add evidence
    a trace cannot give (an error logged without a failed span, a pod starved of CPU).

    Parameters
    ----------
    log_weight, metric_weight : float
        Weights of the log and metric shares (the blame score sums to at most 2).
    caller_weight, min_t, score
        As :class:`BlameRanker`.
    """

    name = "multimodal"

    def __init__(
        self,
        *,
        log_weight: float = 0.25,
        metric_weight: float = 0.25,
        caller_weight: float = 0.5,
        min_t: float = 3.0,
        score: str = "share_log_ratio",
    ) -> None:
        super().__init__(caller_weight=caller_weight, min_t=min_t, score=score)
        self.log_weight = log_weight
        self.metric_weight = metric_weight

    @_timed
    def rank(self, incident: Incident) -> Ranking:
        """Rank services by blame plus log and metric shifts."""
        r, services = self._ranking(incident)
        logs = log_shift(incident)
        mets = metric_shift(incident)
        ls = logs.group_by("service").agg(pl.col("z").clip(upper_bound=50).sum().alias("lz"))
        ms = mets.group_by("service").agg(pl.col("z").clip(upper_bound=50).max().alias("mz"))
        lsum = max(float(ls["lz"].sum()), 1e-9) if ls.height else 1.0
        msum = max(float(ms["mz"].sum()), 1e-9) if ms.height else 1.0
        all_s = pl.DataFrame(
            {"service": sorted(set(services["service"]) | set(ls["service"]) | set(ms["service"]))}
        )
        s = (
            all_s.join(services.select("service", "score"), on="service", how="left")
            .join(ls, on="service", how="left")
            .join(ms, on="service", how="left")
            .with_columns(
                (
                    pl.col("score").fill_null(0.0)
                    + self.log_weight * pl.col("lz").fill_null(0.0) / lsum
                    + self.metric_weight * pl.col("mz").fill_null(0.0) / msum
                ).alias("score")
            )
        )
        ev_logs = logs.select(
            "service",
            pl.lit("log_template").alias("kind"),
            (pl.col("severity") + " " + pl.col("template")).alias("name"),
            "baseline",
            "observed",
            (pl.col("observed") - pl.col("baseline")).alias("change"),
            (pl.col("z") / lsum).alias("score"),
        )
        ev_mets = mets.select(
            "service",
            pl.lit("metric").alias("kind"),
            (pl.col("metric") + " @" + pl.col("pod")).alias("name"),
            "baseline",
            "observed",
            (pl.col("observed") - pl.col("baseline")).alias("change"),
            (pl.col("z") / msum).alias("score"),
        )
        r.method = self.name
        r.services = _ranked(s.select("service", "score"), ["service"])
        r.evidence = pl.concat([r.evidence, ev_logs.cast(_EVIDENCE_SCHEMA), ev_mets.cast(_EVIDENCE_SCHEMA)])
        return r
