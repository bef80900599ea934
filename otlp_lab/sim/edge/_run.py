"""Run an edge scenario (optionally into a Lab), compare buffer policies, and the queueing closed form."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import simpy

from otlp_lab.errors import ScenarioError
from otlp_lab.sim._emit import KIND_CLIENT, KIND_SERVER, STATUS_ERROR, STATUS_UNSET
from otlp_lab.sim._output import emitter, new_run, write_faults, write_frame, write_run_row
from otlp_lab.sim.edge._config import EdgeScenario, load_edge_scenario
from otlp_lab.sim.edge._model import METRICS, TRACE, Item, SiteModel

__all__ = ["EdgeResult", "run_edge", "compare_edge", "sweep_outages", "unreliable_mm1_wq"]

BATCH_SPANS = 50_000


def unreliable_mm1_wq(lam: float, mu: float, failure_rate: float, repair_rate: float) -> float:
    """Mean wait in queue of M/M/1 whose server fails only while busy (preemptive resume).

    A job's *completion time* C is its service S ~ Exp(mu) plus the repairs R ~ Exp(r) of the
    failures (a Poisson process of rate f while it is served) that interrupt it. Given S, the
    number of failures is Poisson(f S), so (Gaver 1962; Avi-Itzhak and Naor 1963)::

        E[C]   = E[S] (1 + f/r)
        E[C^2] = (1 + f/r)^2 E[S^2] + f E[S] E[R^2]      with E[S^2] = 2/mu^2, E[R^2] = 2/r^2

    An idle server cannot fail, so a job always starts on a working server, and the queue is
    M/G/1 with service time C; Pollaczek-Khinchine gives::

        Wq = lam E[C^2] / (2 (1 - lam E[C]))

    For lam = 0.5, mu = 1, f = 0.1, r = 0.5: E[C] = 1.2, E[C^2] = 3.68, Wq = 2.30.

    References: D. P. Gaver, "A waiting line with interrupted service, including priorities",
    J. R. Stat. Soc. B 24 (1962) 73-90; B. Avi-Itzhak and P. Naor, "Some queuing problems with
    the service station subject to breakdown", Operations Research 11 (1963) 303-320.

    Raises
    ------
    ScenarioError
        The queue is unstable (``lam * E[C] >= 1``) or a rate is not positive.
    """
    for name, v in (("lam", lam), ("mu", mu), ("failure_rate", failure_rate), ("repair_rate", repair_rate)):
        if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)) or (
            name in ("mu", "repair_rate") and v == 0
        ):
            raise ScenarioError(
                f"unreliable_mm1_wq({name}=...) must be a positive number. Got {v!r} instead."
            )
    es = 1 / mu
    ec = es * (1 + failure_rate / repair_rate)
    ec2 = (1 + failure_rate / repair_rate) ** 2 * 2 / mu**2 + failure_rate * es * 2 / repair_rate**2
    rho = lam * ec
    if rho >= 1:
        raise ScenarioError(f"the queue is unstable: lam * E[C] = {rho:.3f} must be below 1.")
    return lam * ec2 / (2 * (1 - rho))


@dataclass
class EdgeResult:
    """The outcome of one edge run.

    Attributes
    ----------
    run_id, scenario, label : str
    seed : int
    duration_s : float
    per_site : polars.DataFrame
        One row per site (see :meth:`summary`).
    spans : int
        Spans written to the Lab (0 without one).
    wall_s : float
    """

    run_id: str
    scenario: str
    label: str
    seed: int
    duration_s: float
    per_site: pl.DataFrame
    spans: int
    wall_s: float
    _deliveries: pl.DataFrame = field(repr=False)
    _timeline: pl.DataFrame = field(repr=False)
    _outages: pl.DataFrame = field(repr=False)

    def summary(self) -> pl.DataFrame:
        """Per site: requests, traces offered to the buffer, lost (%), staleness p50/p95/p99, uplink bytes, CPU.

        ``lost_pct`` counts traces the buffer dropped or shed among those the edge meant to send
        (tail sampling's deliberate drops are ``sampled_out``, not lost); ``errors_lost_pct`` the
        same for error traces; ``pending`` were still buffered at the end.
        """
        return self.per_site

    def deliveries(self) -> pl.DataFrame:
        """One row per item that reached the collector: site, kind, created, wait in buffer, staleness, bytes, error."""
        return self._deliveries

    def buffer_timeline(self) -> pl.DataFrame:
        """Per site every ``timeline_interval_s``: buffer bytes and items, link up or down."""
        return self._timeline

    def outages(self) -> pl.DataFrame:
        """Per site, every uplink outage: start and end in simulated seconds."""
        return self._outages


class _Output:
    """Spans, metrics and logs of a run for the Lab: one resource per site app, one per site collector."""

    def __init__(self, sc: EdgeScenario, run_id: str, label: str, salt: int, start_ns: int) -> None:
        contexts = []
        for s in sc.sites:
            common = {
                "sim.run_id": run_id,
                "sim.policy": label,
                "edge.site": s.name,
                "edge.buffer.policy": s.policy,
            }
            contexts.append({"service.name": f"{s.name}-app", **common})
            contexts.append({"service.name": f"{s.name}-collector", **common})
        self.em = emitter(contexts, salt=salt, start_ns=start_ns)
        self.n_trace = 0
        self.n_span = 0

    def delivered(self, m: SiteModel, item: Item) -> None:
        em, pool = self.em, self.em.pool
        ctx_app, ctx_col = 2 * m.index, 2 * m.index + 1
        self.n_trace += 1
        trace = self.n_trace
        if item.kind == TRACE:
            self.n_span += 1
            root = self.n_span
            em.spans.append(
                (
                    trace,
                    root,
                    0,
                    "GET /work",
                    KIND_SERVER,
                    item.t0_s,
                    item.created_s,
                    STATUS_ERROR if item.error else STATUS_UNSET,
                    "",
                    ctx_app,
                    pool.many({"edge.site": m.site.name}),
                )
            )
        else:
            root = 0
        self.n_span += 1
        em.spans.append(
            (
                trace,
                self.n_span,
                root,
                "edge.upload",
                KIND_CLIENT,
                item.created_s,
                item.arrived_s,
                STATUS_UNSET,
                "",
                ctx_col,
                pool.many(
                    {"edge.site": m.site.name, "edge.item": item.kind, "edge.buffer.policy": m.site.policy}
                ),
            )
        )

    def link(self, m: SiteModel, up: bool) -> None:
        now = m.env.now
        self.em.logs.append(
            (
                now,
                "INFO" if up else "WARN",
                f"uplink of {m.site.name} {'up' if up else 'down'}",
                "edge.uplink.up" if up else "edge.uplink.down",
                2 * m.index + 1,
                self.em.pool.many({"edge.site": m.site.name}),
            )
        )

    def metrics(self, m: SiteModel) -> None:
        em, pool, now, b = self.em, self.em.pool, m.env.now, m.buffer
        ctx = 2 * m.index + 1
        site = {"edge.site": m.site.name}
        a = pool.many(site)
        for name, unit, desc, value in (
            ("edge.buffer.usage", "By", "Bytes in the store-and-forward buffer", float(b.occupancy)),
            ("edge.buffer.items", "{item}", "Items in the buffer", len(b.items) + (b.inflight is not None)),
            ("edge.uplink.up", "1", "1 while the uplink is up", int(m.link.up)),
            (
                "edge.cpu.utilization",
                "1",
                "Busy share of the site's workers so far",
                m.busy_s / max(now, 1e-9) / (m.site.nodes * m.site.workers),
            ),
        ):
            em.gauges.append((name, unit, desc, now, value, ctx, a))
        em.sums.append(
            ("edge.uplink.sent", "By", "Bytes put on the uplink", now, int(m.uplink_bytes), ctx, a, True)
        )
        for kind in (TRACE, METRICS):
            for outcome, n in (
                ("offered", b.offered[kind]),
                ("dropped", b.dropped[kind]),
                ("shed", b.shed[kind]),
            ):
                em.sums.append(
                    (
                        "edge.items",
                        "{item}",
                        "Telemetry items by outcome",
                        now,
                        n,
                        ctx,
                        pool.many({**site, "edge.item": kind, "edge.outcome": outcome}),
                        True,
                    )
                )


def run_edge(
    scenario: EdgeScenario | str | os.PathLike[str],
    *,
    lab: Any = None,
    seed: int = 0,
    duration_s: float | None = None,
    label: str | None = None,
) -> EdgeResult:
    """Simulate an edge scenario; with a Lab, write its telemetry and summary there.

    Parameters
    ----------
    scenario : EdgeScenario or str or path
        An :class:`EdgeScenario`, a YAML file or a shipped name (``"retail_sites"``).
    lab : Lab, optional
        Receives, per delivered trace, its root span (service ``<site>-app``) and an
        ``edge.upload`` span from the trace's end to its arrival at the collector (its duration
        is the staleness); per site, metrics every ``metrics_interval_s`` (``edge.buffer.usage``,
        ``edge.buffer.items``, ``edge.uplink.up``, ``edge.uplink.sent``, ``edge.items`` by outcome,
        ``edge.cpu.utilization``), a log per uplink change; the outages in ``faults``
        (kind ``uplink_outage``), a ``sim_runs`` row and the per-site summary in ``edge_runs``.
    seed : int
    duration_s : float, optional
        Overrides the scenario's ``duration_s``.
    label : str, optional
        Names the variant (``sim.policy``); defaults to the sites' buffer policies.

    Examples
    --------
    >>> from otlp_lab.sim.edge import run_edge
    >>> r = run_edge("retail_sites", seed=1, duration_s=120)     # doctest: +SKIP
    >>> r.summary().select("site", "lost_pct", "staleness_p95_s")  # doctest: +SKIP
    """
    sc = load_edge_scenario(scenario)
    if duration_s is not None:
        sc = sc.replace(duration_s=float(duration_s))
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ScenarioError(f"run_edge(seed=...) must be a non-negative integer. Got {seed!r} instead.")
    label = label or "+".join(sorted({s.policy for s in sc.sites}))
    run_id, salt = new_run(lab, f"{sc.name}/{label}/seed={seed}")
    start_ns = sc.start_ns()
    t_wall = time.perf_counter()
    env = simpy.Environment()
    end = sc.duration_s
    out = _Output(sc, run_id, label, salt, start_ns) if lab is not None else None
    models = [SiteModel(env, s, i, seed, end) for i, s in enumerate(sc.sites)]
    timeline: dict[str, list] = {"t_s": [], "site": [], "buffer_bytes": [], "buffer_items": [], "link_up": []}

    def observe():
        while True:
            for m in models:
                timeline["t_s"].append(float(env.now))
                timeline["site"].append(m.site.name)
                timeline["buffer_bytes"].append(float(m.buffer.occupancy))
                timeline["buffer_items"].append(len(m.buffer.items) + (m.buffer.inflight is not None))
                timeline["link_up"].append(m.link.up)
            yield env.timeout(sc.timeline_interval_s)

    env.process(observe())
    loaded = 0
    batches: list[dict] = []
    if out is not None:
        for m in models:
            m.on_link = out.link

            def metrics(m: SiteModel = m):
                while True:
                    yield env.timeout(m.site.metrics_interval_s)
                    out.metrics(m)

            env.process(metrics())
    seen = [0] * len(models)
    t = 0.0
    stop = end + sc.drain_s
    while t < stop:
        t = min(stop, t + 60.0)
        env.run(until=t)
        if out is not None:
            for i, m in enumerate(models):
                for item in m.delivered[seen[i] :]:
                    out.delivered(m, item)
                seen[i] = len(m.delivered)
            if len(out.em.spans) >= BATCH_SPANS and (b := out.em.flush()):
                batches.append(b)
    if out is not None:
        for m in models:
            out.metrics(m)
        if b := out.em.flush():
            batches.append(b)
        if batches:
            loaded = lab.load_batches(batches, source=f"sim:{sc.name}").get("spans", 0)
    wall = time.perf_counter() - t_wall
    per_site = _per_site(sc, models, stop)
    deliveries = _deliveries(models)
    outages = pl.DataFrame(
        [(m.site.name, a, min(b, stop)) for m in models for a, b in m.link.outages],
        schema={"site": pl.String, "start_s": pl.Float64, "end_s": pl.Float64},
        orient="row",
    )
    result = EdgeResult(
        run_id=run_id,
        scenario=sc.name,
        label=label,
        seed=seed,
        duration_s=end,
        per_site=per_site,
        spans=loaded,
        wall_s=wall,
        _deliveries=deliveries,
        _timeline=pl.DataFrame(timeline),
        _outages=outages,
    )
    if lab is not None:
        _write(lab, sc, result, start_ns)
    return result


def _q(xs: np.ndarray, p: float) -> float | None:
    return float(np.quantile(xs, p)) if xs.size else None


def _per_site(sc: EdgeScenario, models: list[SiteModel], stop: float) -> pl.DataFrame:
    rows = []
    for m in models:
        s, b = m.site, m.buffer
        traces = [i for i in m.delivered if i.kind == TRACE]
        stale = np.array([i.arrived_s - i.created_s for i in traces])
        waits = np.array([i.started_s - i.enqueued_s for i in m.delivered])
        pending = b.pending()
        offered = b.offered[TRACE]
        lost = b.dropped[TRACE] + b.shed[TRACE]
        m_off = b.offered[METRICS]
        rows.append(
            {
                "site": s.name,
                "policy": s.policy,
                "requests": m.requests,
                "sampled_out": m.sampled_out,
                "offered": offered,
                "delivered": len(traces),
                "dropped": b.dropped[TRACE],
                "shed": b.shed[TRACE],
                "pending": sum(i.kind == TRACE for i in pending),
                "lost_pct": 100 * lost / offered if offered else 0.0,
                "errors_lost_pct": 100 * b.errors_lost / b.errors_offered if b.errors_offered else 0.0,
                "metrics_lost_pct": 100 * (b.dropped[METRICS] + b.shed[METRICS]) / m_off if m_off else 0.0,
                "staleness_p50_s": _q(stale, 0.5),
                "staleness_p95_s": _q(stale, 0.95),
                "staleness_p99_s": _q(stale, 0.99),
                "mean_wait_s": float(waits.mean()) if waits.size else None,
                "uplink_bytes": int(m.uplink_bytes),
                "wasted_bytes": int(m.wasted_bytes),
                "max_buffer_bytes": int(b.max_occupancy),
                "downtime_pct": 100
                * (m.link.downtime_s + sum(stop - a for a, e in m.link.outages if e == math.inf))
                / stop,
                "cpu_utilization": m.busy_s / stop / (s.nodes * s.workers),
                "telemetry_cpu_s": m.telemetry_cpu_s,
            }
        )
    return pl.DataFrame(rows)


def _deliveries(models: list[SiteModel]) -> pl.DataFrame:
    cols: dict[str, list] = {
        k: [] for k in ("site", "kind", "created_s", "wait_s", "staleness_s", "bytes", "error")
    }
    for m in models:
        for i in m.delivered:
            cols["site"].append(m.site.name)
            cols["kind"].append(i.kind)
            cols["created_s"].append(i.created_s)
            cols["wait_s"].append(i.started_s - i.enqueued_s)
            cols["staleness_s"].append(i.arrived_s - i.created_s)
            cols["bytes"].append(float(i.nbytes))
            cols["error"].append(i.error)
    return pl.DataFrame(
        cols,
        schema={
            "site": pl.String,
            "kind": pl.String,
            "created_s": pl.Float64,
            "wait_s": pl.Float64,
            "staleness_s": pl.Float64,
            "bytes": pl.Float64,
            "error": pl.Boolean,
        },
    )


def _write(lab: Any, sc: EdgeScenario, r: EdgeResult, start_ns: int) -> None:
    ps = r.per_site
    offered = int(ps["offered"].sum())
    lost = int(ps["dropped"].sum() + ps["shed"].sum())
    stale = r.deliveries().filter(pl.col("kind") == TRACE)["staleness_s"]
    with lab.transaction():  # every table of the run or none, under the Lab's lock
        write_run_row(
            lab,
            run_id=r.run_id,
            scenario=sc.name,
            seed=r.seed,
            policy=r.label,
            start_ns=start_ns,
            duration_s=r.duration_s,
            requests=int(ps["requests"].sum()),
            goodput=int(ps["delivered"].sum()) / r.duration_s,
            error_rate=lost / offered if offered else 0.0,
            p99_s=float(stale.quantile(0.99)) if stale.len() else None,
            amplification=1.0,
            spans=r.spans,
            wall_s=r.wall_s,
        )
        write_faults(
            lab,
            r.run_id,
            start_ns,
            [
                (
                    f"{row['site']}-collector",
                    None,
                    "uplink_outage",
                    row["start_s"],
                    row["end_s"],
                    json.dumps({}),
                )
                for row in r.outages().iter_rows(named=True)
            ],
        )
        write_frame(
            lab,
            "edge_runs",
            ps.select(pl.lit(r.run_id).alias("run_id"), pl.lit(r.label).alias("label"), pl.all()),
        )


def compare_edge(
    scenario: EdgeScenario | str | os.PathLike[str],
    variants: Mapping[str, Mapping[str, Any] | None],
    *,
    lab: Any = None,
    seed: int = 0,
    duration_s: float | None = None,
) -> pl.DataFrame:
    """:func:`run_edge` once per variant of the sites' settings; the per-site summaries stacked with a ``variant`` column.

    Parameters
    ----------
    variants : mapping of label to site changes
        ``{"drop oldest": {"policy": "drop_oldest"}, "sample": {"policy": "sample"},
        "tail sampling": {"tail_sampling": TailSampling()}}``; the changes apply to every site
        (:meth:`EdgeScenario.with_sites`). Same seed: the same requests and outages.

    Examples
    --------
    >>> compare_edge("retail_sites", {p: {"policy": p} for p in ("drop_oldest", "drop_newest", "sample")})  # doctest: +SKIP
    """
    sc = load_edge_scenario(scenario)
    if not isinstance(variants, Mapping) or not variants:
        raise ScenarioError(
            f"variants must be a non-empty mapping of labels to site changes. Got {variants!r} instead."
        )
    frames = []
    for name, changes in variants.items():
        r = run_edge(sc.with_sites(**(changes or {})), lab=lab, seed=seed, duration_s=duration_s, label=name)
        frames.append(r.summary().select(pl.lit(name).alias("variant"), pl.all()))
    return pl.concat(frames)


def sweep_outages(
    scenario: EdgeScenario | str | os.PathLike[str],
    *,
    mean_up_s: Iterable[float],
    mean_down_s: float | None = None,
    policies: Iterable[str] = ("drop_oldest", "drop_newest", "sample"),
    seeds: Iterable[int] = (0,),
    duration_s: float | None = None,
) -> pl.DataFrame:
    """Per-site summaries over outage rates (Markov uplinks with mean up time ``mean_up_s``) x buffer policies x seeds.

    Every site's uplink gets the on/off process (``mean_down_s`` keeps each site's own when None);
    the frame adds ``mean_up_s``, ``outages_per_h`` (3600 / (up + down)), ``policy`` and ``seed``.

    Examples
    --------
    >>> sweep_outages("retail_sites", mean_up_s=[600, 120], seeds=[0, 1], duration_s=300)  # doctest: +SKIP
    """
    sc = load_edge_scenario(scenario)
    frames = []
    for up in mean_up_s:
        for policy in policies:
            sites = []
            for s in sc.sites:
                down = s.uplink.mean_down_s if mean_down_s is None else mean_down_s
                link = dataclasses.replace(s.uplink, mean_up_s=float(up), mean_down_s=float(down))
                sites.append(dataclasses.replace(s, policy=policy, uplink=link))
            variant = sc.replace(sites=tuple(sites))
            for seed in seeds:
                r = run_edge(variant, seed=seed, duration_s=duration_s, label=policy)
                down_of = {s.name: s.uplink.mean_down_s for s in sites}
                frames.append(
                    r.summary().with_columns(
                        pl.lit(float(up)).alias("mean_up_s"),
                        (
                            3600
                            / (float(up) + pl.col("site").replace_strict(down_of, return_dtype=pl.Float64))
                        ).alias("outages_per_h"),
                        pl.lit(seed).alias("seed"),
                    )
                )
    return pl.concat(frames)
