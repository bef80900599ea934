"""A fleet twin: fit a scenario from captured traces, check it against held-out data, rehearse on it.

The capture is read as *endpoint invocations*: a span whose parent is in another service (or
that has no parent) is where a request enters a service (its "entry"); every other span of that
service under it (internal work, client spans, database spans) belongs to that invocation. An
entry span under another invocation is a downstream call of it. From these the fit takes:

- services and instances (distinct ``service.instance.id`` / ``k8s.pod.name`` / ``host.name``);
- endpoints (service, entry span name) and their call graphs: each callee's share of requests
  that call it (``probability``), calls per request when called (``count``), order by median
  start, and side-by-side calls (``parallel``) where their intervals overlap in most requests;
- local work per endpoint: the invocation's duration minus the union of its calls' intervals
  (seen from the caller's client span where there is one), fitted as lognormal, gamma or
  exponential when a Kolmogorov–Smirnov test accepts one (p ≥ 0.01), else resampled (empirical);
- each endpoint's own error share (ERROR invocations none of whose calls failed);
- workloads: arrivals per entry endpoint (a root span, or the server under a root client span,
  whose service becomes the load generator), steady or in steps per ``bucket_s``;
- retries where the spans show them (``http.request.resend_count``).

:func:`validate` simulates a fitted scenario with the arrival rates of another window and
compares it with that window: per-endpoint latency percentiles and distances (KS, Wasserstein),
end-to-end latency, calls per request on every edge, error shares.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from otlp_lab.errors import ScenarioError

__all__ = [
    "FitReport",
    "Rehearsal",
    "Validation",
    "compare_invocations",
    "fit",
    "invocations",
    "rehearse",
    "validate",
    "windows_before",
]

#: Resource attributes naming an instance, most specific first.
INSTANCE_KEYS = ("service.instance.id", "k8s.pod.name", "host.name")
KS_ACCEPT_P = 0.01
EMPIRICAL_POINTS = 200


# ---------------------------------------------------------------- reading a capture


def _bound(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = dt.datetime.fromisoformat(v)
        except ValueError as exc:
            raise ScenarioError(
                f"window bound {v!r} is not an ISO date-time such as 2023-01-30T11:39:00."
            ) from exc
    if not isinstance(v, dt.datetime):
        raise ScenarioError(f"window bounds must be datetimes or ISO strings. Got {v!r} instead.")
    return v if v.tzinfo is None else v.astimezone(dt.UTC).replace(tzinfo=None)


def _windows(window: Any) -> list[tuple[dt.datetime | None, dt.datetime | None]]:
    """``(start, end)`` or a list of such pairs, checked."""
    if window is None:
        return []
    pairs = (
        window if isinstance(window, list) and window and isinstance(window[0], (tuple, list)) else [window]
    )
    out = []
    for w in pairs:
        if not (isinstance(w, (tuple, list)) and len(w) == 2):
            raise ScenarioError(
                "window must be (start, end) as datetimes or ISO strings (either may be None), "
                f"or a list of such pairs. Got {w!r} instead."
            )
        out.append((_bound(w[0]), _bound(w[1])))
    return out


def _window_seconds(window: Any, inv: pl.DataFrame | None = None) -> float | None:
    """Total length of the windows, when every bound is given; with ``inv``, of those holding
    at least one of its requests (a list of windows may reach past what was captured)."""
    ws = _windows(window)
    if not ws or any(a is None or b is None for a, b in ws):
        return None
    if inv is not None and inv.height:
        starts = inv.filter(pl.col("caller_span").is_null())["start_ns"]
        epoch = dt.datetime(1970, 1, 1)
        ws = [
            (a, b)
            for a, b in ws
            if (
                (starts >= (a - epoch) // dt.timedelta(microseconds=1) * 1000)
                & (starts < (b - epoch) // dt.timedelta(microseconds=1) * 1000)
            ).any()  # type: ignore[operator]
        ]
    return sum((b - a).total_seconds() for a, b in ws)  # type: ignore[operator]


def _window_clause(window: Any) -> tuple[str, list[Any]]:
    ors, params = [], []
    for a, b in _windows(window):
        parts = []
        for op, v in ((">=", a), ("<", b)):
            if v is not None:
                parts.append(f"t0 {op} ?::TIMESTAMP")
                params.append(v)
        if parts:
            ors.append("(" + " AND ".join(parts) + ")")
    return (" WHERE " + " OR ".join(ors)) if ors else "", params


def _part_clause(part: Any) -> str:
    if part is None:
        return ""
    if (
        not isinstance(part, (tuple, list))
        or len(part) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in part)
        or not 0 <= part[0] < part[1]
    ):
        raise ScenarioError(
            f"part must be (k, n) with 0 <= k < n: the traces whose id hashes to k modulo n. Got {part!r} instead."
        )
    return f"hash(trace_id) % {int(part[1])} = {int(part[0])}"


def invocations(lab: Any, *, window: Any = None, part: tuple[int, int] | None = None) -> pl.DataFrame:
    """Entry spans of a capture as endpoint invocations, one row each.

    Columns: ``trace_id``, ``span_id``, ``service``, ``endpoint``, ``instance``, ``start_ns``,
    ``end_ns`` (the server's view), ``call_start_ns``/``call_end_ns`` (the caller's view: its
    client span where there is one), ``caller_span`` (the caller invocation, null for a root),
    ``load_generator`` (a root that is a load generator, not an endpoint: see below), ``error``,
    ``resend``. Identical spans loaded twice count once. ``window`` keeps whole traces whose
    first span starts in ``[start, end)`` (or in any of a list of such windows); ``part=(k, n)``
    keeps the traces whose id hashes to ``k`` modulo ``n`` (a held-out split of the same minutes).
    """
    where, params = _window_clause(window)
    pc = _part_clause(part)
    if pc:
        where = f"{where} AND {pc}" if where else f" WHERE {pc}"
        if " OR " in where:
            where = where.replace(" WHERE ", " WHERE (", 1).replace(f" AND {pc}", f") AND {pc}")
    inst = ", ".join(f"resource_attributes['{k}']::VARCHAR" for k in INSTANCE_KEYS)
    spans = lab.sql(
        f"""
        WITH s AS (
            SELECT DISTINCT ON (trace_id, span_id)
                trace_id, span_id, nullif(parent_span_id, '') AS parent_span_id, service_name AS service,
                name, kind, epoch_ns(start_time) AS start_ns, epoch_ns(end_time) AS end_ns,
                status_code = 'ERROR' AS error, coalesce({inst}, service_name) AS instance,
                coalesce(TRY_CAST(attributes['http.request.resend_count']::VARCHAR AS INTEGER), 0) AS resend
            FROM spans
        ), t AS (SELECT trace_id, min(start_ns) AS t0_ns FROM s GROUP BY trace_id)
        SELECT s.* FROM s JOIN (SELECT trace_id, make_timestamp_ns(t0_ns) AS t0 FROM t{where}) USING (trace_id)
        """,
        params or None,
    )
    if spans.is_empty():
        raise ScenarioError(
            "the capture has no spans to fit (in this window). Load traces first: lab.load(...), "
            'and check lab.sql("select min(start_time), max(end_time) from spans").'
        )
    parent = spans.select(
        "trace_id",
        pl.col("span_id").alias("parent_span_id"),
        pl.col("service").alias("p_service"),
        pl.col("kind").alias("p_kind"),
        pl.col("start_ns").alias("p_start"),
        pl.col("end_ns").alias("p_end"),
    )
    s = spans.join(parent, on=["trace_id", "parent_span_id"], how="left")
    s = s.with_columns(is_entry=pl.col("p_service").is_null() | (pl.col("p_service") != pl.col("service")))
    # each span's invocation: itself for an entry, else its parent's (walked up until stable)
    s = s.with_columns(entry=pl.when("is_entry").then("span_id").otherwise(None))
    links = s.select("trace_id", "span_id", "parent_span_id")
    for _ in range(64):
        missing = s["entry"].null_count()
        if missing == 0:
            break
        up = s.select("trace_id", pl.col("span_id").alias("parent_span_id"), pl.col("entry").alias("p_entry"))
        s = (
            s.join(up, on=["trace_id", "parent_span_id"], how="left")
            .with_columns(entry=pl.coalesce("entry", "p_entry"))
            .drop("p_entry")
        )
        if s["entry"].null_count() == missing:
            break
    del links
    entries = s.filter("is_entry")
    # the caller's invocation: the entry of the parent span
    owner = s.select(
        "trace_id", pl.col("span_id").alias("parent_span_id"), pl.col("entry").alias("caller_span")
    )
    e = entries.join(owner, on=["trace_id", "parent_span_id"], how="left")
    # the caller's view of the call: its client span, or (for captures without span kinds) the
    # caller's own span right above this entry when that span is not the caller's entry itself
    client = pl.col("p_kind").is_in(["CLIENT", "PRODUCER"]) | (
        pl.col("caller_span").is_not_null() & (pl.col("caller_span") != pl.col("parent_span_id"))
    )
    e = e.with_columns(
        call_start_ns=pl.when(client).then("p_start").otherwise("start_ns"),
        call_end_ns=pl.when(client).then("p_end").otherwise("end_ns"),
        endpoint=pl.col("name"),
    )
    # a root in a service nobody calls, that is a client or internal span, is a load generator
    # (the OTel SDK's or the simulator's loadgen): its calls are the arrivals, it is no endpoint
    called = e.filter(pl.col("caller_span").is_not_null())["service"].unique().to_list()
    e = e.with_columns(
        load_generator=pl.col("caller_span").is_null()
        & pl.col("kind").is_in(["CLIENT", "PRODUCER", "INTERNAL"])
        & ~pl.col("service").is_in(called)
    )
    return e.select(
        "trace_id",
        "span_id",
        "service",
        "endpoint",
        "kind",
        "load_generator",
        "instance",
        "start_ns",
        "end_ns",
        "call_start_ns",
        "call_end_ns",
        "caller_span",
        "error",
        "resend",
    ).sort("trace_id", "start_ns")


def _self_time(inv: pl.DataFrame) -> pl.DataFrame:
    """Per invocation: duration minus the union of its calls' intervals (clamped to it), in seconds.

    The calls' intervals are the callees' own (server) spans: the time between a client span and
    its server span (network, sidecars, serialisation) stays in the caller's local work, since the
    twin has no network of its own (``network_latency_s: 0``).
    """
    calls = (
        inv.filter(pl.col("caller_span").is_not_null())
        .select(
            "trace_id",
            pl.col("caller_span").alias("span_id"),
            pl.col("start_ns").alias("call_start_ns"),
            pl.col("end_ns").alias("call_end_ns"),
        )
        .join(inv.select("trace_id", "span_id", "start_ns", "end_ns"), on=["trace_id", "span_id"])
        .with_columns(
            a=pl.max_horizontal("call_start_ns", "start_ns"),
            b=pl.min_horizontal("call_end_ns", "end_ns"),
        )
        .filter(pl.col("b") > pl.col("a"))
        .sort("trace_id", "span_id", "a")
    )
    prev_end = pl.col("b").cum_max().shift(1).over("trace_id", "span_id")
    calls = calls.with_columns(block=(prev_end.is_null() | (pl.col("a") > prev_end)).cast(pl.Int32))
    calls = calls.with_columns(block=pl.col("block").cum_sum().over("trace_id", "span_id"))
    covered = (
        calls.group_by("trace_id", "span_id", "block")
        .agg(len_ns=pl.col("b").max() - pl.col("a").min())
        .group_by("trace_id", "span_id")
        .agg(covered_ns=pl.col("len_ns").sum())
    )
    out = inv.join(covered, on=["trace_id", "span_id"], how="left").with_columns(
        self_s=((pl.col("end_ns") - pl.col("start_ns") - pl.col("covered_ns").fill_null(0)).clip(0)) / 1e9
    )
    return out


# ---------------------------------------------------------------- distributions


def _fit_distribution(samples: np.ndarray) -> tuple[dict[str, Any], str]:
    """The service-time distribution for ``samples`` (seconds) and a note saying how it was chosen."""
    from scipy import stats

    x = np.asarray(samples, dtype=float)
    x = x[np.isfinite(x) & (x >= 0)]
    n = len(x)
    if n == 0:
        return {"kind": "constant", "value_s": 0.0}, "no samples"
    if n < 8 or np.ptp(x) == 0:
        return {"kind": "constant", "value_s": float(np.median(x))}, f"{n} samples: their median"
    pos = x[x > 0]
    candidates: list[tuple[float, dict[str, Any], str]] = []
    if len(pos) == n:
        sigma, _, scale = stats.lognorm.fit(x, floc=0)
        p = stats.kstest(x, "lognorm", args=(sigma, 0, scale)).pvalue
        candidates.append(
            (p, {"kind": "lognormal", "median_s": float(scale), "sigma": float(sigma)}, "lognormal")
        )
        a, _, scale_g = stats.gamma.fit(x, floc=0)
        p = stats.kstest(x, "gamma", args=(a, 0, scale_g)).pvalue
        mean = a * scale_g
        candidates.append(
            (p, {"kind": "gamma", "mean_s": float(mean), "cv": float(1 / math.sqrt(a))}, "gamma")
        )
    mean = float(x.mean())
    if mean > 0:
        p = stats.kstest(x, "expon", args=(0, mean)).pvalue
        candidates.append((p, {"kind": "exponential", "mean_s": mean}, "exponential"))
    best = max(candidates, key=lambda c: c[0]) if candidates else None
    if best is not None and best[0] >= KS_ACCEPT_P:
        return best[1], f"{best[2]} fit to {n} samples (KS p={best[0]:.2f})"
    qs = np.quantile(x, np.linspace(0, 1, min(n, EMPIRICAL_POINTS)))
    why = f"best fit {best[2]} rejected (KS p={best[0]:.1e})" if best else "zero self times"
    return {"kind": "empirical", "samples_s": [float(f"{v:.6g}") for v in qs]}, (
        f"empirical, {len(qs)} quantiles of {n} samples ({why})"
    )


# ---------------------------------------------------------------- the fit


@dataclass
class FitReport:
    """What :func:`fit` built: the scenario, its YAML (with comments) and the numbers behind it."""

    scenario: Any
    yaml: str
    endpoints: pl.DataFrame
    edges: pl.DataFrame
    workloads: pl.DataFrame
    window_s: float
    notes: list[str] = field(default_factory=list)
    classes: dict[tuple[str, str], list[frozenset[str]]] = field(default_factory=dict, repr=False)

    def write(self, path: Any) -> Any:
        from pathlib import Path

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.yaml)
        return p

    def __repr__(self) -> str:
        return (
            f"FitReport({self.endpoints.height} endpoints in "
            f"{self.endpoints['service'].n_unique()} services, {self.edges.height} edges, "
            f"{self.workloads.height} workloads over {self.window_s:.0f} s)"
        )


def _workloads(inv: pl.DataFrame, window_s: float, bucket_s: float, t0_ns: int) -> pl.DataFrame:
    """Arrivals per entry endpoint: roots, or the servers under a root client span (a load generator)."""
    roots = inv.filter(pl.col("caller_span").is_null())
    client_roots = roots.filter("load_generator")
    under_client = inv.join(
        client_roots.select(
            "trace_id", pl.col("span_id").alias("caller_span"), pl.col("service").alias("client")
        ),
        on=["trace_id", "caller_span"],
    )
    direct = roots.filter(~pl.col("load_generator")).with_columns(client=pl.lit("loadgen"))
    arrivals = pl.concat(
        [
            direct.select("service", "endpoint", "operation", "client", "start_ns"),
            under_client.select("service", "endpoint", "operation", "client", "start_ns"),
        ]
    )
    nb = max(1, int(math.ceil(window_s / bucket_s)))
    arrivals = arrivals.with_columns(
        bucket=((pl.col("start_ns") - t0_ns) / 1e9 // bucket_s).cast(pl.Int64).clip(0, nb - 1)
    )
    per = arrivals.group_by("service", "endpoint", "operation", "client").agg(
        n=pl.len(), buckets=pl.col("bucket").value_counts(sort=False)
    )
    rows = []
    for r in per.iter_rows(named=True):
        counts = [0] * nb
        for vc in r["buckets"]:
            counts[vc["bucket"]] = vc["count"]
        last = window_s - (nb - 1) * bucket_s
        rates = [c / (bucket_s if i < nb - 1 else max(last, 1e-9)) for i, c in enumerate(counts)]
        rows.append(
            {
                **{k: r[k] for k in ("service", "endpoint", "operation", "client", "n")},
                "rps": r["n"] / window_s,
                "rates": rates,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"rates": pl.List(pl.Float64)}) if rows else pl.DataFrame()


def fit(
    lab: Any,
    *,
    window: Any = None,
    part: tuple[int, int] | None = None,
    name: str = "twin",
    bucket_s: float = 60.0,
    steps: bool = False,
    min_calls: int = 1,
    max_variants: int = 8,
) -> FitReport:
    """Build a scenario (a fleet twin) from the traces in a Lab.

    Parameters
    ----------
    lab : Lab
        Holds the capture.
    window : (start, end) or list of them, optional
        Fit on the traces starting in this window (datetimes or ISO strings); all by default.
    part : (k, n), optional
        Fit on the traces whose id hashes to ``k`` modulo ``n`` (:func:`validate` then checks the
        twin on another part of the same minutes).
    name : str
        The scenario's name.
    bucket_s : float
        Width of the buckets in which arrival rates are counted.
    steps : bool
        Workloads follow the counted rate bucket by bucket (``Steps``) instead of its mean.
    min_calls : int
        Edges seen fewer times are left out (noise in small captures).
    max_variants : int
        At most this many classes of request per operation (1: one endpoint per operation).

    Returns
    -------
    FitReport
        ``.scenario`` (a :class:`~otlp_lab.sim.Scenario`), ``.yaml`` (the same, as a commented
        file: ``.write(path)``), and the frames behind it.

    Examples
    --------
    >>> from otlp_lab.sim import fit, run
    >>> twin = fit(lab)                                     # doctest: +SKIP
    >>> twin.write("twin.yaml"); run(twin.scenario, seed=1)  # doctest: +SKIP
    """
    import yaml

    from otlp_lab.sim._scenario import Scenario

    inv, classes = _variants(
        _self_time(invocations(lab, window=window, part=part)), max_variants=max_variants
    )
    t0_ns, t1_ns = int(inv["start_ns"].min()), int(inv["end_ns"].max())
    window_s = max(_window_seconds(window, inv) or (t1_ns - t0_ns) / 1e9, 1e-3)
    notes: list[str] = []
    # a part of the traces arrives at that share of the rate: count arrivals over a proportionally
    # longer window, so the twin's rates stand for the whole capture
    workloads = _workloads(
        inv, window_s * (part[1] if part else 1), bucket_s * (part[1] if part else 1), t0_ns
    )
    # a load generator's root client spans are not an endpoint of a service
    served = inv.filter(~pl.col("load_generator"))

    endpoints = (
        served.group_by("service", "endpoint")
        .agg(
            operation=pl.col("operation").first(),
            n=pl.len(),
            self_s=pl.col("self_s"),
            errors=pl.col("error").sum(),
            p50_ms=(pl.col("end_ns") - pl.col("start_ns")).quantile(0.5) / 1e6,
            p95_ms=(pl.col("end_ns") - pl.col("start_ns")).quantile(0.95) / 1e6,
            instances=pl.col("instance").n_unique(),
        )
        .sort("service", "endpoint")
    )
    # calls: caller invocation -> callee endpoint
    caller = served.select(
        "trace_id",
        pl.col("span_id").alias("caller_span"),
        pl.col("service").alias("c_service"),
        pl.col("endpoint").alias("c_endpoint"),
        pl.col("start_ns").alias("c_start"),
        pl.col("end_ns").alias("c_end"),
    )
    calls = served.filter(pl.col("caller_span").is_not_null()).join(caller, on=["trace_id", "caller_span"])
    calls = calls.with_columns(
        rel=((pl.col("call_start_ns") - pl.col("c_start")) / (pl.col("c_end") - pl.col("c_start")).clip(1)),
        variant=pl.col("service") + "/" + pl.col("endpoint"),
        target=pl.col("service") + "/" + pl.col("operation"),
    )
    # how often each class of the callee's requests is called, per caller and callee operation
    variant_calls = calls.group_by("c_service", "c_endpoint", "target", "variant").agg(n=pl.len())
    variants_of = dict(
        served.group_by("service", "operation")
        .agg(pl.col("endpoint").unique().sort())
        .select(pl.col("service") + "/" + pl.col("operation"), "endpoint")
        .iter_rows()
    )
    # own errors: ERROR invocations none of whose calls failed
    failed_call = calls.filter("error").select("trace_id", pl.col("caller_span").alias("span_id")).unique()
    own_err = (
        served.filter("error")
        .join(failed_call, on=["trace_id", "span_id"], how="anti")
        .group_by("service", "endpoint")
        .agg(own_errors=pl.len())
    )
    endpoints = endpoints.join(own_err, on=["service", "endpoint"], how="left").with_columns(
        pl.col("own_errors").fill_null(0)
    )
    per_inv = calls.group_by("c_service", "c_endpoint", "caller_span", "trace_id", "target").agg(
        k=pl.len(),
        rel=pl.col("rel").min(),
        a=pl.col("call_start_ns").min(),
        b=pl.col("call_end_ns").max(),
        self_overlap=(pl.len() > 1)
        & (pl.col("call_start_ns").sort().shift(-1) < pl.col("call_end_ns").sort_by("call_start_ns")).any(),
        resend=pl.col("resend").max(),
    )
    n_inv = endpoints.select(
        pl.col("service").alias("c_service"),
        pl.col("endpoint").alias("c_endpoint"),
        pl.col("n").alias("n_caller"),
    )
    edges = (
        per_inv.group_by("c_service", "c_endpoint", "target")
        .agg(
            invocations_calling=pl.len(),
            calls=pl.col("k").sum(),
            order=pl.col("rel").median(),
            fanout_parallel=pl.col("self_overlap").mean(),
            max_resend=pl.col("resend").max(),
        )
        .join(n_inv, on=["c_service", "c_endpoint"])
        .with_columns(
            probability=(pl.col("invocations_calling") / pl.col("n_caller")).clip(0, 1),
            count=pl.col("calls") / pl.col("invocations_calling"),
        )
        .filter(pl.col("calls") >= min_calls)
        .sort("c_service", "c_endpoint", "order")
    )
    # which pairs of callees of one endpoint run side by side
    pairs = per_inv.join(
        per_inv.select(
            "trace_id",
            "caller_span",
            pl.col("target").alias("t2"),
            pl.col("a").alias("a2"),
            pl.col("b").alias("b2"),
        ),
        on=["trace_id", "caller_span"],
    ).filter(pl.col("target") < pl.col("t2"))
    overlap = (
        pairs.with_columns(ov=(pl.col("a") < pl.col("b2")) & (pl.col("a2") < pl.col("b")))
        .group_by("c_service", "c_endpoint", "target", "t2")
        .agg(share=pl.col("ov").mean())
    )
    parallel_pairs = {
        (r["c_service"], r["c_endpoint"], r["target"], r["t2"])
        for r in overlap.filter(pl.col("share") > 0.5).iter_rows(named=True)
    }

    # instances and concurrency per service
    inst = served.group_by("service").agg(instances=pl.col("instance").n_unique())
    instances = dict(inst.iter_rows())
    conc = _max_concurrency(served)
    # retries seen in the spans
    retried = edges.filter(pl.col("max_resend") > 0)
    if retried.height:
        notes.append(
            f"{retried.height} edges show retries (http.request.resend_count); a retry policy is set on them"
        )

    # ---- the YAML, with comments saying where each number came from
    lines = [
        f"# A fleet twin fitted by otlp_lab.sim.fit from {inv.height:,} endpoint invocations",
        f"# ({served['trace_id'].n_unique():,} traces, {window_s:.3g} s). Each number says where it came from; edit freely.",
        f"name: {name}",
        f"description: fitted from a capture of {window_s:.3g} s ({endpoints.height} endpoints, {edges.height} edges)",
        f"duration_s: {max(60.0, round(window_s, 3))}",
        "warmup_s: 0",
        "network_latency_s: 0  # network time stays inside the callers' measured local work",
        "default_policy: observed",
        "policies:",
        "  observed:  # no client-side policy is visible in the capture except retries it shows",
        "    timeout_s: null",
    ]
    if retried.height:
        mx = int(retried["max_resend"].max())
        lines += [
            f"    retry: {{max_attempts: {mx + 1}, initial_backoff_s: 10ms}}  # resend_count up to {mx} seen"
        ]
    lines.append("services:")
    by_service: dict[str, list[dict[str, Any]]] = {}
    for r in endpoints.iter_rows(named=True):
        by_service.setdefault(r["service"], []).append(r)
    dist_notes: dict[tuple[str, str], str] = {}
    for svc, eps in by_service.items():
        c = max(32, 4 * conc.get(svc, 1))
        lines += [
            f"  {_q(svc)}:",
            f"    instances: {instances.get(svc, 1)}  # distinct {'/'.join(INSTANCE_KEYS)} seen",
            f"    concurrency: {c}  # no queueing is visible in spans: 4x the most requests seen in progress on one instance ({conc.get(svc, 1)}), at least 32",
            "    endpoints:",
        ]
        for r in eps:
            d, why = _fit_distribution(np.asarray(r["self_s"]))
            dist_notes[(svc, r["endpoint"])] = why
            lines.append(
                f"      {_q(r['endpoint'])}:  # {r['n']:,} requests, p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms"
            )
            if r["endpoint"] != r["operation"]:
                lines.append(
                    f"        operation: {_q(r['operation'])}  # a class of this operation's requests, by the calls it makes"
                )
            lines.append(f"        # local work (duration minus time in calls): {why}")
            lines.append(f"        service_time: {_flow(d)}")
            if r["own_errors"]:
                lines.append(
                    f"        error_rate: {r['own_errors'] / r['n']:.4g}  # {r['own_errors']} of {r['n']} failed with no failed call"
                )
            mine = edges.filter((pl.col("c_service") == svc) & (pl.col("c_endpoint") == r["endpoint"]))
            if mine.height:
                lines.append("        calls:")
                mine_v = variant_calls.filter(
                    (pl.col("c_service") == svc) & (pl.col("c_endpoint") == r["endpoint"])
                )

                def choices(e: dict[str, Any], mine_v: pl.DataFrame = mine_v) -> list[tuple[str, int]]:
                    if len(variants_of.get(e["target"], ())) <= 1:
                        return []
                    v = mine_v.filter(pl.col("target") == e["target"]).sort("n", descending=True)
                    return [(x["variant"], x["n"]) for x in v.iter_rows(named=True)]

                for step in _steps(mine, parallel_pairs):
                    if len(step) == 1:
                        e = step[0]
                        ch = choices(e)
                        if len(ch) > 1:
                            lines.append(f"          - one_of:  # {_why(e)}, by class of request")
                            for v, _ in ch:
                                lines.append(f"              - {_flow(_call(e, v))}")
                            lines.append(f"            weights: {_flow([n for _, n in ch])}")
                        else:
                            lines.append(
                                f"          - {_flow(_call(e, ch[0][0] if ch else None))}  # {_why(e)}"
                            )
                    else:
                        lines.append("          - parallel:  # these overlap in most requests")
                        for e in step:
                            ch = choices(e)
                            note = " (its most frequent class of request)" if len(ch) > 1 else ""
                            lines.append(
                                f"              - {_flow(_call(e, ch[0][0] if ch else None))}  # {_why(e)}{note}"
                            )
    lines.append("workloads:")
    for w in workloads.iter_rows(named=True) if workloads.height else []:
        target = f"{w['service']}/{w['endpoint']}"
        client = w["client"] if w["client"] not in by_service else f"{w['client']}-client"
        if steps and len(w["rates"]) > 1:
            rate = {
                "kind": "steps",
                "base_rps": round(w["rates"][0], 4),
                "steps": [[round(i * bucket_s, 3), round(v, 4)] for i, v in enumerate(w["rates"]) if i],
            }
        else:
            rate = round(w["rps"], 5)
        lines.append(
            f"  - {_flow({'kind': 'open', 'target': target, 'client': client, 'rate': rate})}"
            f"  # {w['n']:,} arrivals in {window_s:.3g} s"
        )
    text = "\n".join(lines) + "\n"
    try:
        scenario = Scenario.from_dict(yaml.safe_load(text))
    except ScenarioError as exc:  # pragma: no cover - a bug in the writer, not in the user's data
        raise ScenarioError(f"the fitted scenario does not validate: {exc}") from exc
    ep_frame = endpoints.drop("self_s").with_columns(
        distribution=pl.struct("service", "endpoint").map_elements(
            lambda k: dist_notes.get((k["service"], k["endpoint"]), ""), return_dtype=pl.String
        )
    )
    return FitReport(
        scenario=scenario,
        yaml=text,
        endpoints=ep_frame,
        edges=edges.drop("order"),
        workloads=workloads,
        window_s=window_s,
        notes=notes,
        classes=classes,
    )


def _variants(
    inv: pl.DataFrame,
    *,
    max_variants: int = 8,
    min_share: float = 0.05,
    min_n: int = 5,
    classes: dict[tuple[str, str], list[frozenset[str]]] | None = None,
) -> tuple[pl.DataFrame, dict[tuple[str, str], list[frozenset[str]]]]:
    """Split each operation into classes of request by the set of operations it calls.

    ``operation`` keeps the span name; ``endpoint`` becomes ``name`` for the most frequent class
    and ``name #2``, ``name #3``... for the others (each at least ``min_share`` of the operation's
    requests and ``min_n`` of them), unless its call sets look like independent branches (see
    :func:`_dependent`). Rarer call sets join the kept class they share most callees with (Jaccard).
    Given ``classes`` (from an earlier fit), requests are assigned to those instead.
    Returns the invocations and the classes per (service, operation).
    """
    inv = inv.with_columns(operation=pl.col("endpoint"))
    callees = inv.filter(pl.col("caller_span").is_not_null()).select(
        "trace_id",
        pl.col("caller_span").alias("span_id"),
        (pl.col("service") + "/" + pl.col("endpoint")).alias("op"),
    )
    sig = callees.group_by("trace_id", "span_id").agg(sig=pl.col("op").unique().sort().str.join("\n"))
    inv = inv.join(sig, on=["trace_id", "span_id"], how="left").with_columns(pl.col("sig").fill_null(""))
    counts = (
        inv.group_by("service", "operation", "sig")
        .agg(n=pl.len())
        .sort(["service", "operation", "n", "sig"], descending=[False, False, True, False])
    )
    found: dict[tuple[str, str], list[frozenset[str]]] = {}
    mapping: list[dict[str, Any]] = []
    for (svc, op), grp in counts.group_by(["service", "operation"], maintain_order=True):
        total = int(grp["n"].sum())
        rows = list(grp.iter_rows(named=True))
        kept = list((classes or {}).get((svc, op), []))
        if classes is None:
            sets = [(frozenset(filter(None, r["sig"].split("\n"))), r["n"]) for r in rows]
            split = max_variants > 1 and _dependent(sets, total)
            for sig_set, n in sets:
                if not kept or (split and len(kept) < max_variants and n >= max(min_n, min_share * total)):
                    kept.append(sig_set)
            if (
                split
            ):  # a rare call set sharing no callee with any class is a class of its own, not a branch of one
                for sig_set, _n in sets:
                    if len(kept) >= max_variants:
                        break
                    if sig_set and sig_set not in kept and not any(sig_set & k for k in kept):
                        kept.append(sig_set)
        found[(svc, op)] = kept
        for r in rows:
            ops = set(filter(None, r["sig"].split("\n")))
            best = (
                max(range(len(kept)), key=lambda k: (len(ops & kept[k]) / max(1, len(ops | kept[k])), -k))
                if kept
                else 0
            )
            mapping.append(
                {
                    "service": svc,
                    "operation": op,
                    "sig": r["sig"],
                    "endpoint": op if best == 0 else f"{op} #{best + 1}",
                }
            )
    m = pl.DataFrame(
        mapping,
        schema={"service": pl.String, "operation": pl.String, "sig": pl.String, "endpoint": pl.String},
    )
    return inv.drop("endpoint").join(m, on=["service", "operation", "sig"], how="left").drop("sig"), found


#: Above this total-variation distance from independent calls, an operation's call sets are classes.
DEPENDENCE_TV = 0.15


def _dependent(sets: list[tuple[frozenset[str], int]], total: int) -> bool:
    """Whether the calls an operation makes are far from independent branches.

    Independent branches (each callee called with its own probability) predict how often each set
    of callees occurs; classes of request (a gateway sending each request to exactly one of its
    routes) do not. The total-variation distance between the observed sets and that prediction
    tells them apart.
    """
    if len(sets) <= 1 or total == 0:
        return False
    callees = sorted(set().union(*(s for s, _ in sets)))
    p = {c: sum(n for s, n in sets if c in s) / total for c in callees}
    seen_mass = 0.0
    tv = 0.0
    for s, n in sets:
        ind = 1.0
        for c in callees:
            ind *= p[c] if c in s else 1.0 - p[c]
        seen_mass += ind
        tv += abs(n / total - ind)
    tv = 0.5 * (tv + max(0.0, 1.0 - seen_mass))
    return tv > DEPENDENCE_TV


def _max_concurrency(inv: pl.DataFrame) -> dict[str, int]:
    ev = pl.concat(
        [
            inv.select("service", "instance", pl.col("start_ns").alias("t"), pl.lit(1).alias("d")),
            inv.select("service", "instance", pl.col("end_ns").alias("t"), pl.lit(-1).alias("d")),
        ]
    ).sort("service", "instance", "t", "d")
    ev = ev.with_columns(level=pl.col("d").cum_sum().over("service", "instance"))
    return dict(ev.group_by("service").agg(pl.col("level").max()).iter_rows())


def _steps(edges: pl.DataFrame, parallel_pairs: set[tuple[str, str, str, str]]) -> list[list[dict[str, Any]]]:
    """Callees in order of their median start, grouped where they overlap in most requests."""
    out: list[list[dict[str, Any]]] = []
    for e in edges.iter_rows(named=True):
        if out:
            group = out[-1]
            key = (e["c_service"], e["c_endpoint"])
            if all((*key, *sorted((g["target"], e["target"]))) in parallel_pairs for g in group):
                group.append(e)
                continue
        out.append([e])
    return out


def _call(e: dict[str, Any], variant: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"to": variant or e["target"]}
    p = float(e["probability"])
    if p < 0.995:
        d["probability"] = round(max(p, 1e-4), 4)
    n = float(e["count"])
    if n > 1.005:
        d["count"] = round(n, 3)
    return d


def _why(e: dict[str, Any]) -> str:
    return f"in {e['invocations_calling']:,} of {e['n_caller']:,} requests, {e['count']:.2f} calls each"


def _q(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


def _flow(d: Any) -> str:
    import json

    if isinstance(d, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in d.items()) + "}"
    if isinstance(d, list):
        return "[" + ", ".join(_flow(v) for v in d) + "]"
    if isinstance(d, str):
        return json.dumps(d, ensure_ascii=False)
    if isinstance(d, float):
        return f"{d:.6g}"
    return json.dumps(d)


# ---------------------------------------------------------------- validation


@dataclass
class Validation:
    """Captured vs simulated, per endpoint and per edge, with the verdict against the targets."""

    endpoints: pl.DataFrame
    edges: pl.DataFrame
    end_to_end: pl.DataFrame
    min_spans: int
    sim_lab: Any = None
    #: End-to-end durations (ms) of the held-out requests and the simulated ones, for plots.
    e2e_ms: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def summary(self) -> dict[str, Any]:
        big = self.endpoints.filter(pl.col("n_captured") >= self.min_spans)
        e = self.edges.filter(pl.col("captured_per_request") > 0)
        return {
            "endpoints": self.endpoints.height,
            f"endpoints with >= {self.min_spans} spans": big.height,
            "p50 within 10%": int((big["p50_err"].abs() <= 0.10).sum()) if big.height else 0,
            "p95 within 20%": int((big["p95_err"].abs() <= 0.20).sum()) if big.height else 0,
            "median |p50 error|": float(self.endpoints["p50_err"].abs().median() or 0),
            "median |p95 error|": float(self.endpoints["p95_err"].abs().median() or 0),
            "edges": e.height,
            "edges within 5%": int((e["calls_err"].abs() <= 0.05).sum()),
            "median |calls error|": float(e["calls_err"].abs().median() or 0) if e.height else 0.0,
        }

    def __repr__(self) -> str:
        s = self.summary
        return (
            "Validation("
            + ", ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in s.items())
            + ")"
        )


def _requests(inv: pl.DataFrame) -> pl.DataFrame:
    """The requests as the fleet served them: roots, and the entries a load generator called."""
    gens = inv.filter("load_generator").select("trace_id", pl.col("span_id").alias("caller_span"))
    return pl.concat(
        [
            inv.filter(pl.col("caller_span").is_null() & ~pl.col("load_generator")),
            inv.join(gens, on=["trace_id", "caller_span"]),
        ]
    )


def compare_invocations(
    captured: pl.DataFrame, simulated: pl.DataFrame, *, min_spans: int = 100
) -> Validation:
    """Compare two sets of invocations (see :func:`invocations`): latency, calls per request, errors."""
    from scipy import stats

    def stats_of(inv: pl.DataFrame) -> pl.DataFrame:
        return inv.group_by("service", "endpoint").agg(
            n=pl.len(),
            d=(pl.col("end_ns") - pl.col("start_ns")) / 1e6,
            err=pl.col("error").mean(),
        )

    a = stats_of(captured.filter(~pl.col("load_generator")))
    b = stats_of(simulated.filter(~pl.col("load_generator")))
    rows = []
    for r in a.join(b, on=["service", "endpoint"], how="left", suffix="_sim").iter_rows(named=True):
        x = np.asarray(r["d"], dtype=float)
        y = np.asarray(r["d_sim"] or [], dtype=float)
        row = {
            "service": r["service"],
            "endpoint": r["endpoint"],
            "n_captured": r["n"],
            "n_simulated": len(y),
        }
        for q, tag in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            cx = float(np.quantile(x, q))
            sy = float(np.quantile(y, q)) if len(y) else float("nan")
            row[f"{tag}_ms"], row[f"{tag}_sim_ms"] = cx, sy
            row[f"{tag}_err"] = (sy - cx) / cx if cx > 0 else (0.0 if sy == cx else float("nan"))
        row["ks"] = float(stats.ks_2samp(x, y).statistic) if len(y) else float("nan")
        row["wasserstein_ms"] = float(stats.wasserstein_distance(x, y)) if len(y) else float("nan")
        row["error_rate"], row["error_rate_sim"] = r["err"], r["err_sim"]
        rows.append(row)
    endpoints = pl.DataFrame(rows).sort("n_captured", descending=True)

    def per_request(inv: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        n_req = _requests(inv).height
        caller = inv.filter(~pl.col("load_generator")).select(
            "trace_id",
            pl.col("span_id").alias("caller_span"),
            (pl.col("service") + "/" + pl.col("endpoint")).alias("caller"),
        )
        e = (
            inv.filter(pl.col("caller_span").is_not_null())
            .join(caller, on=["trace_id", "caller_span"])
            .with_columns(callee=pl.col("service") + "/" + pl.col("endpoint"))
            .group_by("caller", "callee")
            .agg(calls=pl.len())
        )
        return e, n_req

    ea, na = per_request(captured)
    eb, nb = per_request(simulated)
    edges = (
        ea.join(eb, on=["caller", "callee"], how="full", coalesce=True, suffix="_sim")
        .with_columns(
            captured_per_request=pl.col("calls").fill_null(0) / max(na, 1),
            simulated_per_request=pl.col("calls_sim").fill_null(0) / max(nb, 1),
        )
        .with_columns(
            calls_err=pl.when(pl.col("captured_per_request") > 0)
            .then(pl.col("simulated_per_request") / pl.col("captured_per_request") - 1)
            .otherwise(None)
        )
        .sort("calls", descending=True, nulls_last=True)
    )

    def e2e(inv: pl.DataFrame) -> np.ndarray:
        entry = _requests(inv)
        return ((entry["end_ns"] - entry["start_ns"]) / 1e6).to_numpy()

    x, y = e2e(captured), e2e(simulated)
    e2e_rows = []
    for q in (0.5, 0.95, 0.99):
        cx = float(np.quantile(x, q)) if len(x) else float("nan")
        sy = float(np.quantile(y, q)) if len(y) else float("nan")
        e2e_rows.append(
            {
                "quantile": q,
                "captured_ms": cx,
                "simulated_ms": sy,
                "error": (sy - cx) / cx if cx else float("nan"),
            }
        )
    e2e_frame = pl.DataFrame(e2e_rows)
    return Validation(
        endpoints=endpoints,
        edges=edges,
        end_to_end=e2e_frame,
        min_spans=min_spans,
        e2e_ms={"captured": x, "simulated": y},
    )


def validate(
    report: FitReport | Any,
    lab: Any,
    *,
    window: Any = None,
    part: tuple[int, int] | None = None,
    seed: int = 1,
    min_spans: int = 100,
    repeat: int = 5,
    keep_lab: bool = False,
) -> Validation:
    """Simulate a fitted twin with the arrivals of ``window`` and compare it with that window.

    The twin's service times, call graph and errors come from the fit; the arrival rates and
    the duration come from the held-out window, so both sides see the same offered load.

    Parameters
    ----------
    report : FitReport
        What :func:`fit` returned (fitted on another window).
    lab : Lab
        Holds the held-out capture.
    window : (start, end) or list of them, optional
        The held-out traces; all of the Lab's by default.
    part : (k, n), optional
        The held-out traces are those whose id hashes to ``k`` modulo ``n`` (fit on another ``k``).
    min_spans : int
        The accuracy targets apply to endpoints with at least this many captured spans.
    repeat : int
        The twin runs this many times the held-out window's length at its arrival rates, so that
        the simulation's own sampling noise stays small beside the capture's.
    keep_lab : bool
        Keep the simulated Lab on the result (``.sim_lab``) for a closer look.
    """
    import dataclasses

    from otlp_lab.sim._run import run
    from otlp_lab.store import Lab

    held_inv = invocations(lab, window=window, part=part)
    held_window_s = max(
        _window_seconds(window, held_inv) or (held_inv["end_ns"].max() - held_inv["start_ns"].min()) / 1e9,
        1e-3,
    )
    # the held-out arrivals, per class of request as the twin knows them (the same requests arrive)
    held_classes, _ = _variants(held_inv, classes=report.classes)
    t0 = int(held_inv["start_ns"].min())
    arrivals = _workloads(held_classes, held_window_s, held_window_s, t0)
    held_rps = {f"{r['service']}/{r['endpoint']}": r["rps"] for r in arrivals.iter_rows(named=True)}
    workloads = [
        dataclasses.replace(w, rate=held_rps[w.target])
        for w in report.scenario.workloads
        if held_rps.get(w.target)
    ]
    if not workloads:
        raise ScenarioError(
            "none of the held-out window's entry operations is in the fitted twin: fit on a window with the same traffic."
        )
    duration_s = held_window_s * repeat
    scen = report.scenario.replace(workloads=tuple(workloads), duration_s=duration_s)
    sim_lab = Lab()
    run(scen, lab=sim_lab, seed=seed, duration_s=duration_s)
    sim_inv = invocations(sim_lab)
    out = compare_invocations(held_inv, sim_inv, min_spans=min_spans)
    out.sim_lab = sim_lab if keep_lab else None
    if not keep_lab:
        sim_lab.close()
    return out


# ---------------------------------------------------------------- rehearsing a captured fault


def _held_workloads(report: FitReport, inv: pl.DataFrame, window_s: float) -> list[Any]:
    """The twin's workloads at the arrival rates of ``inv``, per class of request the twin knows."""
    import dataclasses

    classes, _ = _variants(inv, classes=report.classes)
    t0 = int(inv["start_ns"].min())
    arrivals = _workloads(classes, window_s, window_s, t0)
    rps = (
        {f"{r['service']}/{r['endpoint']}": r["rps"] for r in arrivals.iter_rows(named=True)}
        if arrivals.height
        else {}
    )
    return [
        dataclasses.replace(w, rate=rps[w.target]) for w in report.scenario.workloads if rps.get(w.target)
    ]


def _impact(inv: pl.DataFrame) -> pl.DataFrame:
    return (
        inv.filter(~pl.col("load_generator"))
        .group_by("service")
        .agg(
            n=pl.len(),
            p50_ms=((pl.col("end_ns") - pl.col("start_ns")) / 1e6).median(),
            p95_ms=((pl.col("end_ns") - pl.col("start_ns")) / 1e6).quantile(0.95),
            errors=pl.col("error").mean(),
        )
    )


@dataclass
class Rehearsal:
    """A captured fault replayed on a twin: per service, the latency change seen vs simulated."""

    services: pl.DataFrame
    fault: Any
    calibration: str

    @property
    def summary(self) -> dict[str, Any]:
        s = self.services.drop_nans().drop_nulls(["ratio_p50", "ratio_p50_sim"])
        if s.height < 2:
            return {"services": s.height}
        rho = s.select(pl.corr("ratio_p50", "ratio_p50_sim", method="spearman")).item()
        hit = s["ratio_p50"] >= IMPACTED
        hit_sim = s["ratio_p50_sim"] >= IMPACTED
        both = int((hit & hit_sim).sum())
        return {
            "services": s.height,
            "impacted (captured)": int(hit.sum()),
            "impacted (twin)": int(hit_sim.sum()),
            "impacted in both": both,
            "agreement": float((hit == hit_sim).mean()),
            "spearman rho of p50 ratios": float(rho) if rho is not None else float("nan"),
        }

    def __repr__(self) -> str:
        return (
            f"Rehearsal({self.fault!r}, {self.calibration}; "
            + ", ".join(
                f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in self.summary.items()
            )
            + ")"
        )


#: A service counts as impacted when its median latency grows by this factor.
IMPACTED = 1.25


def rehearse(
    report: FitReport,
    lab: Any,
    *,
    service: str,
    kind: str,
    at: Any,
    baseline_s: float = 60.0,
    during_s: float = 120.0,
    seed: int = 1,
    repeat: int = 5,
) -> Rehearsal:
    """Replay a fault of a capture on a twin and compare its impact per service with the capture.

    The fault's size is calibrated on the faulty service alone (its median latency during the
    fault against the ``baseline_s`` before it: a delay for ``network_delay``, a slow-down factor
    of its local work for ``cpu_contention``); what the comparison tests is how the twin spreads
    it to the other services. Both sides are steady states at the baseline's arrival rates.

    Parameters
    ----------
    report : FitReport
        The twin (fitted on fault-free traffic).
    lab : Lab
        Holds the captured fault.
    service, kind : str
        The faulty service, and ``"network_delay"``, ``"latency"``, ``"cpu_contention"`` or ``"cpu"``.
    at : datetime, ISO string or Unix seconds
        When the fault was injected.
    """
    from otlp_lab.sim._faults import CpuContention, Latency
    from otlp_lab.sim._run import run
    from otlp_lab.store import Lab

    if isinstance(at, (int, float)) and not isinstance(at, bool):
        at = dt.datetime.fromtimestamp(float(at), dt.UTC).replace(tzinfo=None)
    at = _bound(at)
    if service not in {s.name for s in report.scenario.services}:
        raise ScenarioError(f"the twin has no service {service!r}: the fault cannot be replayed on it.")
    base = invocations(lab, window=(at - dt.timedelta(seconds=baseline_s), at))
    during = invocations(lab, window=(at, at + dt.timedelta(seconds=during_s)))
    b, d = _impact(base), _impact(during)
    captured = b.join(d, on="service", suffix="_during")
    tgt = captured.filter(pl.col("service") == service)
    if tgt.is_empty():
        raise ScenarioError(
            f"the capture has no spans of {service!r} both before and during the fault at {at}."
        )
    if kind in ("network_delay", "latency"):
        # as its callers see it: the calls to the service (their client spans) slow down by the delay
        def seen(inv: pl.DataFrame) -> float:
            c = inv.filter((pl.col("service") == service) & pl.col("caller_span").is_not_null())
            if c.is_empty():
                c = inv.filter(pl.col("service") == service)
            return float(((c["call_end_ns"] - c["call_start_ns"]) / 1e9).median() or 0.0)

        delay = max(0.0, seen(during) - seen(base))
        fault: Any = Latency(service=service, at_s=0.0, delay_s=delay)
        calibration = (
            f"delay {delay * 1e3:.1f} ms: the rise of the median call to {service} as its callers see it"
        )
    elif kind in ("cpu_contention", "cpu"):
        sb = _self_time(base).filter(pl.col("service") == service)["self_s"].median() or 0.0
        sd = _self_time(during).filter(pl.col("service") == service)["self_s"].median() or 0.0
        factor = max(1.0, sd / sb) if sb else 1.0
        fault = CpuContention(service=service, at_s=0.0, factor=factor)
        calibration = f"work x{factor:.2f}: the rise of {service}'s median local work"
    else:
        raise ScenarioError(
            f"fault kind must be 'network_delay', 'latency', 'cpu_contention' or 'cpu'. Got {kind!r} instead."
        )
    workloads = _held_workloads(report, base, baseline_s)
    if not workloads:
        raise ScenarioError(
            "none of the twin's entry operations arrives in the baseline window before the fault."
        )
    duration = during_s * repeat
    sims = {}
    for tag, faults in (("base", ()), ("fault", (fault,))):
        scen = report.scenario.replace(workloads=tuple(workloads), duration_s=duration, faults=faults)
        with Lab() as sim_lab:
            run(scen, lab=sim_lab, seed=seed, duration_s=duration)
            sims[tag] = _impact(invocations(sim_lab))
    sim = sims["base"].join(sims["fault"], on="service", suffix="_during")
    out = (
        captured.select(
            "service",
            "n",
            "n_during",
            "p50_ms",
            "p50_ms_during",
            ratio_p50=pl.col("p50_ms_during") / pl.col("p50_ms"),
            ratio_p95=pl.col("p95_ms_during") / pl.col("p95_ms"),
            errors_during=pl.col("errors_during"),
        )
        .join(
            sim.select(
                "service",
                ratio_p50_sim=pl.col("p50_ms_during") / pl.col("p50_ms"),
                ratio_p95_sim=pl.col("p95_ms_during") / pl.col("p95_ms"),
                errors_during_sim=pl.col("errors_during"),
            ),
            on="service",
            how="left",
        )
        .sort("ratio_p50", descending=True)
    )
    return Rehearsal(services=out, fault=fault, calibration=calibration)


def windows_before(
    times: Any, *, before_s: float = 50.0, gap_s: float = 2.0
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Fault-free windows of a labelled capture: the ``before_s`` seconds before each fault.

    ``times`` are the faults' injection times: datetimes, ISO strings or Unix seconds, or a frame
    with a ``time`` column (:func:`otlp_lab.datasets.trainticket_faults`). The windows end
    ``gap_s`` before each injection. Pass them (plus any normal window) as ``window=`` to :func:`fit`.
    """
    if isinstance(times, pl.DataFrame):
        if "time" not in times.columns:
            raise ScenarioError(
                f"the faults frame needs a 'time' column. Got columns {times.columns} instead."
            )
        times = times["time"].to_list()
    out = []
    for t in times:
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            t = dt.datetime.fromtimestamp(float(t), dt.UTC)
        b = _bound(t)
        out.append((b - dt.timedelta(seconds=before_s), b - dt.timedelta(seconds=gap_s)))
    return out
