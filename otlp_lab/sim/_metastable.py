"""The metastability explorer: does the fleet come back after a trigger, over trigger size × duration × load?

A metastable failure (Bronson et al., *Metastable Failures in Distributed Systems*, HotOS 2021;
Huang et al., *Metastable Failures in the Wild*, OSDI 2022) is a bad state that a trigger
pushes a fleet into and that sustains itself after the trigger is gone: typically retries of
timed-out requests keep a server saturated. Whether a trigger tips the fleet depends on how
big it is, how long it lasts, and how loaded the fleet was. :func:`metastability` maps that
space for a scenario and one or more policies: each point is a run with a load spike of
``size`` × the base load for ``duration_s`` seconds, and the verdict is whether goodput came
back to ``threshold`` of the offered load, and how long after the spike ended that took.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from otlp_lab.errors import ScenarioError
from otlp_lab.sim._scenario import Scenario, load_scenario
from otlp_lab.sim._sweep import execute
from otlp_lab.sim._workload import Burst, OpenLoop

__all__ = ["metastability", "MetastabilityMap"]


@dataclass(frozen=True, slots=True)
class _Point:
    scenario: Scenario
    load_rps: float
    size: float
    duration_s: float
    policy: str
    overrides: Mapping[str, Any] | None
    seed: int
    trigger_at_s: float
    hold_s: float
    threshold: float


def _run_point(p: _Point) -> dict[str, Any]:
    from otlp_lab.sim._run import run

    r = run(p.scenario, seed=p.seed, policy_overrides=p.overrides or None, label=p.policy)
    tl = r.timeline()
    off = [float(v or 0) for v in tl["offered_rps"].to_list()]
    good = [float(v or 0) for v in tl["goodput_rps"].to_list()]
    hold = max(1, int(round(p.hold_s)))
    t0 = int(p.trigger_at_s)
    end = p.trigger_at_s + p.duration_s

    def ratio(i: int, j: int) -> float | None:
        o = sum(off[i:j])
        return sum(good[i:j]) / o if o else None

    before = ratio(max(0, t0 - hold), t0)
    recovery = None
    for i in range(int(end), len(off) - hold + 1):
        v = ratio(i, i + hold)
        if v is not None and v >= p.threshold:
            recovery = max(0.0, i - end)
            break
    after = ratio(len(off) - hold, len(off))
    return {
        "load_rps": p.load_rps,
        "size": p.size,
        "duration_s": p.duration_s,
        "policy": p.policy,
        "seed": p.seed,
        "stable_before": before is not None and before >= p.threshold,
        "recovered": after is not None and after >= p.threshold,
        "recovery_s": recovery if after is not None and after >= p.threshold else None,
        "goodput_after": after,
        "amplification": r.amplification,
    }


@dataclass
class MetastabilityMap:
    """What :func:`metastability` returns.

    Attributes
    ----------
    runs : polars.DataFrame
        One row per run: ``load_rps``, ``rho`` (base load / capacity, when the capacity is known),
        ``size``, ``duration_s``, ``policy``, ``seed``, ``stable_before`` (goodput at
        ``threshold`` of the offered load before the trigger), ``recovered`` (over the last
        ``hold_s`` seconds of the run), ``recovery_s`` (seconds from the end of the trigger to
        the first healthy window; null when it never came), ``goodput_after``, ``amplification``.
    points : polars.DataFrame
        One row per point and policy: ``recovered_share`` over the seeds (1.0 = always came
        back), ``recovery_s`` (mean over the seeds that recovered), ``stable_before``.
    settle_s : float
        How long after the trigger each run went on.
    """

    scenario: str
    runs: pl.DataFrame
    points: pl.DataFrame
    settle_s: float
    capacity_rps: float | None

    def stable_share(self) -> pl.DataFrame:
        """Per policy and base load: the share of (size, duration) triggers the fleet recovered from."""
        by = ["policy", "load_rps"] + (["rho"] if "rho" in self.points.columns else [])
        return (
            self.points.group_by(by, maintain_order=True)
            .agg(pl.col("recovered_share").mean().alias("stable_share"), pl.len().alias("triggers"))
            .sort("policy", "load_rps", maintain_order=True)
        )


def metastability(
    scenario: Scenario | str | os.PathLike[str],
    *,
    loads_rps: Sequence[float],
    sizes: Sequence[float],
    durations_s: Sequence[float],
    policies: Mapping[str, Mapping[str, Any] | None] | None = None,
    seeds: int | Sequence[int] = 1,
    workload: int = 0,
    trigger_at_s: float = 10.0,
    settle_s: float = 20.0,
    hold_s: float = 5.0,
    threshold: float = 0.9,
    capacity_rps: float | None = None,
    workers: int | None = 1,
    scheduler: Any = None,
    progress: bool = False,
) -> MetastabilityMap:
    """Map where a fleet recovers from a load spike: trigger size × trigger duration × base load, per policy.

    Each point runs the scenario with its open-loop workload ``workload`` replaced by a steady
    ``load_rps`` and a spike to ``size × load_rps`` from ``trigger_at_s`` for ``duration_s``,
    then ``settle_s`` more seconds.

    Parameters
    ----------
    scenario : Scenario or str or path
    loads_rps : sequence of float
        Base loads (requests per second of the workload).
    sizes : sequence of float
        Spike height as a multiple of the base load (2.0 = twice the load).
    durations_s : sequence of float
        Spike lengths.
    policies : mapping of label to overrides, optional
        As for :func:`compare`; the scenario as written when omitted.
    seeds : int or sequence of int, default 1
    workload : int, default 0
        Which workload carries the spike (an open loop).
    trigger_at_s, settle_s : float
        When the spike starts; how long the run goes on after it ends.
    hold_s, threshold : float
        Recovered: goodput at least ``threshold`` of the offered load over ``hold_s`` seconds.
    capacity_rps : float, optional
        What the bottleneck serves per second; adds ``rho`` = load / capacity to the frames.
    workers, scheduler :
        Where the runs go (see :func:`sweep`): ``workers=1`` in this process (the default),
        more for a process pool, ``scheduler`` for a Dask cluster.

    Returns
    -------
    MetastabilityMap
        ``.points`` feeds :func:`otlp_lab.viz.metastability_figure`.

    Examples
    --------
    >>> m = metastability("retry_storm", loads_rps=[80, 120, 150], sizes=[1.5, 2.5], durations_s=[2, 5],
    ...                   policies={"naive": {}, "budget": {"storm": {"budget": {"budget_percent": 20}}}})  # doctest: +SKIP
    >>> m.stable_share()  # doctest: +SKIP
    """
    sc = load_scenario(scenario)
    if not isinstance(workload, int) or not 0 <= workload < len(sc.workloads):
        raise ScenarioError(
            f"metastability(workload=...) must index one of the {len(sc.workloads)} workloads. Got {workload!r} instead."
        )
    if not isinstance(sc.workloads[workload], OpenLoop):
        raise ScenarioError(
            f"metastability(workload={workload}) must be an open-loop workload (a load spike needs a rate). "
            f"Got {type(sc.workloads[workload]).__name__} instead."
        )
    for name, vals in (("loads_rps", loads_rps), ("sizes", sizes), ("durations_s", durations_s)):
        if not vals or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in vals):
            raise ScenarioError(
                f"metastability({name}=...) must be a non-empty list of positive numbers. Got {vals!r} instead."
            )
    from otlp_lab.sim._sweep import _seed_list

    seed_list = _seed_list(seeds)
    variants = dict(policies) if policies else {"default": None}
    for ov in variants.values():
        sc.with_policies(ov)
    points = []
    for load in loads_rps:
        for size in sizes:
            for dur in durations_s:
                rate = Burst(float(load), float(load) * float(size), float(trigger_at_s), float(dur))
                wl = list(sc.workloads)
                wl[workload] = dataclasses.replace(wl[workload], rate=rate)
                s = sc.replace(
                    workloads=tuple(wl), duration_s=float(trigger_at_s + dur + settle_s), warmup_s=0.0
                )
                for label, ov in variants.items():
                    for seed in seed_list:
                        points.append(
                            _Point(
                                s,
                                float(load),
                                float(size),
                                float(dur),
                                label,
                                ov or None,
                                seed,
                                float(trigger_at_s),
                                hold_s,
                                threshold,
                            )
                        )
    rows, _ = execute(
        _run_point,
        points,
        workers=workers,
        scheduler=scheduler,
        progress=progress,
        name=sc.name,
        caller="metastability",
    )
    runs = pl.DataFrame(rows, schema_overrides={"recovery_s": pl.Float64, "goodput_after": pl.Float64})
    if capacity_rps:
        runs = runs.with_columns((pl.col("load_rps") / capacity_rps).round(4).alias("rho"))
    by = ["policy", "load_rps", *(["rho"] if capacity_rps else []), "size", "duration_s"]
    pts = runs.group_by(by, maintain_order=True).agg(
        pl.col("recovered").cast(pl.Float64).mean().alias("recovered_share"),
        pl.col("recovery_s").mean().alias("recovery_s"),
        pl.col("stable_before").all().alias("stable_before"),
        pl.len().alias("seeds"),
    )
    return MetastabilityMap(sc.name, runs, pts, float(settle_s), capacity_rps)
