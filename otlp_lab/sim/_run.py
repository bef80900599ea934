"""Run a scenario (optionally into a Lab), compare policies, and read timelines back."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from otlp_lab import __version__
from otlp_lab._config import check_number
from otlp_lab.errors import ScenarioError
from otlp_lab.sim._emit import Emitter
from otlp_lab.sim._engine import LogHist, Simulation
from otlp_lab.sim._scenario import Scenario, load_scenario

__all__ = ["RunResult", "run", "run_many", "compare", "timelines", "lab_timeline", "DEFAULT_BATCH_ROWS"]

DEFAULT_BATCH_ROWS = 50_000
ROWS_PER_LOAD = 250_000  # spans per Lab load (one transaction each)
MAX_DRAIN_S = 60.0  # simulated seconds allowed after the end for requests in flight to finish
SCOPE = ("otlp_lab.sim", __version__)  # the instrumentation scope of everything a run writes

RUNS_DDL = """CREATE TABLE IF NOT EXISTS sim_runs (
    run_id VARCHAR PRIMARY KEY, scenario VARCHAR, seed BIGINT, policy VARCHAR, started TIMESTAMP_NS,
    duration_s DOUBLE, requests BIGINT, goodput DOUBLE, error_rate DOUBLE, p99_s DOUBLE, amplification DOUBLE,
    spans BIGINT, wall_s DOUBLE)"""
FAULTS_DDL = """CREATE TABLE IF NOT EXISTS faults (
    run_id VARCHAR, service VARCHAR, instance VARCHAR, kind VARCHAR, start TIMESTAMP_NS, "end" TIMESTAMP_NS, params JSON)"""


@dataclass
class RunResult:
    """The outcome of one run: a summary, per-service statistics and per-second timelines.

    The summary counts root requests (those of the workloads) arriving after the scenario's
    ``warmup_s``; latency quantiles are over every completed root request, failed ones included.

    Attributes
    ----------
    run_id, scenario, label : str
        The run (``sim.run_id`` resource attribute of its telemetry), scenario name, policy label.
    seed : int
    duration_s : float
        Simulated seconds.
    requests, completed, succeeded : int
        Root requests sent, answered, answered with success (after the warm-up).
    offered_rps, goodput_rps : float
        Requests sent and succeeded per simulated second (after the warm-up).
    error_rate : float
        Failed / completed root requests.
    mean_s, p50_s, p95_s, p99_s : float or None
        End-to-end latency of completed root requests.
    amplification : float
        Attempts / logical calls over every hop (1.0 = no retries or hedges).
    hops : int
        Attempts sent over every hop (each a client span and, when it arrived, a server span).
    spans : int
        Spans written to the Lab (0 without one).
    wall_s : float
        Wall-clock seconds the run took.
    per_service : polars.DataFrame
        One row per service: server side (arrivals, errors, rejected, utilisation, latency) and
        the client side of calls into it (calls, attempts, retries, amplification, failed attempts
        (timeouts included), breaker opens, ejections, and Envoy circuit-breaker overflows:
        ``overflows`` (requests answered with a local 503 ``UO``), ``retry_overflows``
        (retries not sent over ``max_retries`` or the retry budget)).
    """

    run_id: str
    scenario: str
    label: str
    seed: int
    duration_s: float
    requests: int
    completed: int
    succeeded: int
    offered_rps: float
    goodput_rps: float
    error_rate: float
    mean_s: float | None
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    amplification: float
    hops: int
    spans: int
    wall_s: float
    per_service: pl.DataFrame = field(repr=False)
    _timeline: pl.DataFrame = field(repr=False)
    _breakers: pl.DataFrame = field(repr=False)
    _scaling: pl.DataFrame = field(default_factory=lambda: _scaling_frame([]), repr=False)

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a dict (one row of :func:`compare`)."""
        return {
            "policy": self.label,
            "goodput_rps": round(self.goodput_rps, 3),
            "offered_rps": round(self.offered_rps, 3),
            "error_rate": round(self.error_rate, 4),
            "p50_ms": _ms(self.p50_s, 3),
            "p95_ms": _ms(self.p95_s, 3),
            "p99_ms": _ms(self.p99_s, 3),
            "amplification": round(self.amplification, 3),
            "requests": self.requests,
            "hops": self.hops,
            "run_id": self.run_id,
        }

    def timeline(self) -> pl.DataFrame:
        """Per simulated second: offered load, goodput, failures, error rate, attempts (all hops), mean latency.

        Goodput and failures count root requests by the second they *completed*.

        Examples
        --------
        >>> r = run("retry_storm", seed=1)           # doctest: +SKIP
        >>> r.timeline().select("t_s", "offered_rps", "goodput_rps").head(3)  # doctest: +SKIP
        """
        return self._timeline

    def scaling(self) -> pl.DataFrame:
        """The autoscalers' history: one row per change of an autoscaled service.

        Columns ``t_s``, ``service``, ``desired`` (the replica count the HPA set; null when a pod
        became ready), ``ready`` (pods in the load balancers after the change) and ``reason``
        (``initial``, the HPA's ``ScaleUp``/``ScaleDown``/``ScaleUpLimit``..., or ``ready``).
        Empty when no service has an autoscaler.
        """
        return self._scaling

    def breaker_timeline(self) -> pl.DataFrame:
        """Per simulated second and (caller, upstream) pair: how many circuit breakers are closed, open, half-open."""
        return self._breakers


def _ms(seconds: float | None, digits: int | None = None) -> float | None:
    if seconds is None:
        return None
    return seconds * 1e3 if digits is None else round(seconds * 1e3, digits)


def unique_id(lab: Any, base: str, *, table: str, column: str, ddl: str) -> str:
    """``base``, or ``base#2``, ``#3``... when ``table`` in the Lab already holds that ``column`` value."""
    if lab is None:
        return base
    with lab.transaction() as con:
        con.execute(ddl)
        taken = {
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT {column} FROM {table} WHERE {column} = ? OR {column} LIKE ?",
                [base, base + "#%"],
            ).fetchall()
        }
    if base not in taken:
        return base
    n = 2
    while f"{base}#{n}" in taken:
        n += 1
    return f"{base}#{n}"


def _run_id(lab: Any, base: str) -> str:
    """``base``, or ``base#2``, ``#3``... when the Lab already holds a run of that id."""
    return unique_id(lab, base, table="sim_runs", column="run_id", ddl=RUNS_DDL)


def run(
    scenario: Scenario | str | os.PathLike[str],
    *,
    lab: Any = None,
    seed: int = 0,
    duration_s: float | None = None,
    policy_overrides: Mapping[str, Any] | None = None,
    label: str | None = None,
    progress: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> RunResult:
    """Simulate a scenario; with a Lab, stream its spans, metrics, logs and ground truth into it.

    Parameters
    ----------
    scenario : Scenario or str or path
        A :class:`Scenario`, a YAML file, or the name of a shipped scenario (``"shop"``).
    lab : Lab, optional
        Where the telemetry goes (tables ``spans``, ``logs``, ``metric_*``, plus ``faults`` and
        ``sim_runs``). Without one, only the statistics are kept (faster).
    seed : int
        Same scenario + seed = the same output.
    duration_s : float, optional
        Overrides the scenario's ``duration_s``.
    policy_overrides : mapping, optional
        Policy fields to change, by policy name or ``"*"`` (see :meth:`Scenario.with_policies`),
        e.g. ``{"*": {"retry": None}}``.
    label : str, optional
        Names the policy variant (``sim.policy`` resource attribute); ``"default"`` unless given,
        ``"custom"`` when there are overrides.
    progress : bool
        Show a progress bar over simulated time.
    batch_rows : int
        Spans per batch handed to the Lab (memory is bounded by it, not by the run length).

    Returns
    -------
    RunResult

    Examples
    --------
    >>> from otlp_lab import Lab
    >>> from otlp_lab.sim import run
    >>> r = run("shop", lab=Lab(), seed=1, duration_s=20)  # doctest: +SKIP
    >>> round(r.goodput_rps), r.error_rate < 0.05          # doctest: +SKIP
    (200, True)
    """
    sc, sim, run_id, label, start_ns = _setup(
        scenario,
        lab=lab,
        seed=seed,
        duration_s=duration_s,
        policy_overrides=policy_overrides,
        label=label,
        batch_rows=batch_rows,
        output=lab is not None,
    )
    sim.start()
    t_wall = time.perf_counter()
    spans = 0
    bar = _Progress(sc.name, label, sc.duration_s) if progress else None
    try:
        if lab is None:
            for _ in _slices(sim, bar, batch_rows):
                pass
        else:
            # One load (one transaction) per chunk of batches: DuckDB holds on to what a transaction
            # staged until it commits, so a single load of a long run would grow without bound.
            for chunk in _chunks(_slices(sim, bar, batch_rows), max(1, ROWS_PER_LOAD // batch_rows)):
                spans += lab.load_batches(chunk, source=f"sim:{sc.name}").get("spans", 0)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t_wall
    result = _result(sim, sc, run_id, label, seed, spans, wall)
    if lab is not None:
        _write_ground_truth(lab, sim, sc, result, start_ns)
    return result


def _setup(
    scenario: Scenario | str | os.PathLike[str],
    *,
    lab: Any,
    seed: int,
    duration_s: float | None,
    policy_overrides: Mapping[str, Any] | None,
    label: str | None,
    batch_rows: int,
    output: bool,
    caller: str = "run",
) -> tuple[Scenario, Simulation, str, str, int]:
    """The checked scenario and a ready (not started) simulation of it, for :func:`run` and live streaming.

    Returns ``(scenario, simulation, run_id, label, start_ns)``; with ``output`` the simulation
    writes telemetry (an :class:`Emitter` whose time 0 is ``start_ns``).
    """
    sc = load_scenario(scenario)
    if duration_s is not None:
        sc = sc.replace(duration_s=float(duration_s))
    sc = sc.with_policies(policy_overrides)
    label = label or ("custom" if policy_overrides else "default")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ScenarioError(f"{caller}(seed=...) must be a non-negative integer. Got {seed!r} instead.")
    if not isinstance(batch_rows, int) or batch_rows < 1:
        raise ScenarioError(
            f"{caller}(batch_rows=...) must be a positive integer. Got {batch_rows!r} instead."
        )
    run_id = _run_id(lab, f"{sc.name}/{label}/seed={seed}")
    salt = int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8).digest(), "big")
    start_ns = sc.start_ns()
    factory = None
    if output:

        def factory(contexts: list[dict]) -> Emitter:
            return Emitter(contexts, salt=salt, start_ns=start_ns, scope=SCOPE)

    sim = Simulation(
        sc, seed=seed, duration_s=sc.duration_s, emitter_factory=factory, run_id=run_id, label=label
    )
    return sc, sim, run_id, label, start_ns


def _slices(
    sim: Simulation, bar: _Progress | None, batch_rows: int, flush_s: float | None = None
) -> Iterator[dict]:
    """Run the simulation in slices of simulated time, yielding a batch whenever enough rows piled up.

    With ``flush_s`` (live streaming), slices are at most ``flush_s`` simulated seconds and each
    one's rows are yielded at its end, however few; ``sim.env.now`` then tells the time reached.
    """
    end = sim.duration_s
    em = sim.emitter
    max_step = 10.0 if flush_s is None else flush_s
    step = min(1.0 if flush_s is None else flush_s, end)
    t = 0.0
    while t < end:
        t = min(end, t + step)
        before = len(em.spans) if em is not None else sim.hops
        sim.run_until(t)
        produced = (len(em.spans) if em is not None else sim.hops) - before
        # aim at about a quarter batch per slice (bounded memory whatever the load)
        if produced > 0:
            step = min(max(step * (batch_rows / 4) / produced, 1e-3), max_step)
        if em is not None and (len(em.spans) >= batch_rows or flush_s is not None) and (batch := em.flush()):
            yield batch
        if bar is not None:
            bar.update(t, sim.hops)
    # Drain: no new requests after the end; let the ones in flight finish, for at most MAX_DRAIN_S more
    # simulated seconds. With output, also the work still queued or running anywhere (abandoned attempts
    # included), so that every span's parent ends too.
    while (sim.roots_in_flight if em is None else not sim.idle()) and t < end + MAX_DRAIN_S:
        t = min(end + MAX_DRAIN_S, t + 0.1)
        sim.run_until(t)
        if em is not None and (len(em.spans) >= batch_rows or flush_s is not None) and (batch := em.flush()):
            yield batch
    if em is not None:
        if sim.last_metrics_t != sim.env.now:
            sim.snapshot_metrics()  # a last point at the end of the run
        batch = em.flush()
        if batch:
            yield batch


def _chunks(items: Iterator[Any], n: int) -> Iterator[Iterator[Any]]:
    """Consecutive runs of at most ``n`` items (each must be used up before the next is asked for)."""
    for first in items:
        yield itertools.chain([first], itertools.islice(items, n - 1))


class _Progress:
    """A rich progress bar over simulated seconds."""

    def __init__(self, scenario: str, label: str, total_s: float) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._p = Progress(
            TextColumn(f"[bold]simulating[/] {scenario} ({label})"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} sim s"),
            TextColumn("{task.fields[hops]:,} hops"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self._task = self._p.add_task("", total=total_s, hops=0)
        self._p.start()

    def update(self, t: float, hops: int) -> None:
        self._p.update(self._task, completed=t, hops=hops)

    def close(self) -> None:
        self._p.stop()


# ---------------------------------------------------------------- results


def _result(
    sim: Simulation, sc: Scenario, run_id: str, label: str, seed: int, spans: int, wall: float
) -> RunResult:
    window = sc.duration_s - sc.warmup_s
    h = sim.root_hist
    calls = sum(c.calls for c in sim.clients.values())
    attempts = sum(c.attempts for c in sim.clients.values())
    return RunResult(
        run_id=run_id,
        scenario=sc.name,
        label=label,
        seed=seed,
        duration_s=sc.duration_s,
        requests=sim.requests,
        completed=sim.completed,
        succeeded=sim.succeeded,
        offered_rps=sim.requests / window,
        goodput_rps=sim.succeeded / window,
        error_rate=(sim.completed - sim.succeeded) / sim.completed if sim.completed else 0.0,
        mean_s=h.mean,
        p50_s=h.quantile(0.50),
        p95_s=h.quantile(0.95),
        p99_s=h.quantile(0.99),
        amplification=attempts / calls if calls else 1.0,
        hops=sim.hops,
        spans=spans,
        wall_s=wall,
        per_service=_per_service(sim, sc),
        _timeline=_timeline_frame(sim),
        _breakers=_breaker_frame(sim),
        _scaling=_scaling_frame(sim.scale_log),
    )


def _per_service(sim: Simulation, sc: Scenario) -> pl.DataFrame:
    rows = []
    end = sim.env.now
    for svc in sc.services:
        insts = sim.instances[svc.name]
        for i in insts:
            i.area += i.busy * (end - i.last_t)
            i.last_t = end
        clients = [c for c in sim.clients.values() if c.target == svc.name]
        h: LogHist = sim.hists[svc.name]
        calls = sum(c.calls for c in clients)
        attempts = sum(c.attempts for c in clients)
        arrivals = sum(i.arrivals for i in insts)
        errors = sum(i.errors for i in insts)
        rows.append(
            {
                "service": svc.name,
                "instances": svc.instances,
                "arrivals": arrivals,
                "errors": errors,
                "rejected": sum(i.rejected for i in insts),
                "error_rate": errors / arrivals if arrivals else 0.0,
                "utilisation": sum(i.area for i in insts) / (_pod_seconds(sim, svc, end) * svc.concurrency)
                if end
                else 0.0,
                "mean_ms": _ms(h.mean),
                "p50_ms": _ms(h.quantile(0.5)),
                "p95_ms": _ms(h.quantile(0.95)),
                "p99_ms": _ms(h.quantile(0.99)),
                "calls": calls,
                "attempts": attempts,
                "retries": sum(c.retries for c in clients),
                "amplification": attempts / calls if calls else None,
                "failed_attempts": sum(c.failures for c in clients),
                "breaker_opens": sum(
                    1 for _, _, target, st in sim.breaker_log if target == svc.name and st == "OPEN"
                ),
                "ejections": sum(c.ejections for c in clients),
                # Envoy circuit-breaker overflows of the callers' sidecars (local 503 UO; retries not sent)
                "overflows": sum(c.pool.overflowed for c in clients if c.pool is not None),
                "retry_overflows": sum(
                    c.stack.budget.rejected for c in clients if c.stack.budget is not None
                ),
            }
        )
    return pl.DataFrame(
        rows,
        schema_overrides={
            "mean_ms": pl.Float64,
            "p50_ms": pl.Float64,
            "p95_ms": pl.Float64,
            "p99_ms": pl.Float64,
            "amplification": pl.Float64,
        },
    )


def _pod_seconds(sim: Simulation, svc: Any, end: float) -> float:
    """Instance-seconds the service had in the balancers (its instances × the run, unless autoscaled)."""
    if svc.autoscaler is None:
        return svc.instances * end
    changes = [(t, ready) for t, name, _, ready, _ in sim.scale_log if name == svc.name]
    total = 0.0
    for (t0, ready), (t1, _) in zip(changes, [*changes[1:], (end, 0)], strict=True):
        total += ready * (min(t1, end) - min(t0, end))
    return total or svc.instances * end


def _timeline_frame(sim: Simulation) -> pl.DataFrame:
    c = sim.counters
    n = int(math.ceil(sim.duration_s))
    done = [c.ok[i] + c.failed[i] for i in range(n)]
    return pl.DataFrame(
        {
            "t_s": list(range(n)),
            "offered_rps": c.offered[:n],
            "goodput_rps": c.ok[:n],
            "failed_rps": c.failed[:n],
            "error_rate": [c.failed[i] / done[i] if done[i] else None for i in range(n)],
            "attempts_rps": c.attempts[:n],
            "mean_latency_ms": [c.lat_sum[i] / done[i] * 1e3 if done[i] else None for i in range(n)],
        },
        schema_overrides={"error_rate": pl.Float64, "mean_latency_ms": pl.Float64},
    )


def _scaling_frame(log: list[tuple[float, str, int | None, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        log,
        schema={
            "t_s": pl.Float64,
            "service": pl.String,
            "desired": pl.Int64,
            "ready": pl.Int64,
            "reason": pl.String,
        },
        orient="row",
    )


def _breaker_frame(sim: Simulation) -> pl.DataFrame:
    """Replays the breaker transitions: per second, how many breakers of each (caller, target) are in each state."""
    n = int(math.ceil(sim.duration_s))
    totals: dict[tuple[str, str], int] = {}
    for cl in sim.clients.values():
        if cl.breaker is not None:
            key = (cl.caller, cl.target)
            totals[key] = totals.get(key, 0) + 1
    rows: dict[str, list[Any]] = {
        "t_s": [],
        "caller": [],
        "target": [],
        "closed": [],
        "open": [],
        "half_open": [],
    }
    if totals:
        state_counts = {k: {"CLOSED": v, "OPEN": 0, "HALF_OPEN": 0} for k, v in totals.items()}
        per_client = [
            (t.at_s, (cl.caller, cl.target), t.from_state.name, t.to_state.name)
            for cl in sim.clients.values()
            if cl.breaker is not None
            for t in cl.breaker.transitions
        ]
        per_client.sort(key=lambda r: r[0])
        i = 0
        for sec in range(n):
            while i < len(per_client) and per_client[i][0] < sec + 1:
                _, key, frm, to = per_client[i]
                state_counts[key][frm] -= 1
                state_counts[key][to] += 1
                i += 1
            for key, sc in state_counts.items():
                rows["t_s"].append(sec)
                rows["caller"].append(key[0])
                rows["target"].append(key[1])
                rows["closed"].append(sc["CLOSED"])
                rows["open"].append(sc["OPEN"])
                rows["half_open"].append(sc["HALF_OPEN"])
    return pl.DataFrame(
        rows,
        schema={
            "t_s": pl.Int64,
            "caller": pl.String,
            "target": pl.String,
            "closed": pl.Int64,
            "open": pl.Int64,
            "half_open": pl.Int64,
        },
    )


def _write_ground_truth(
    lab: Any, sim: Simulation, sc: Scenario, r: RunResult, start_ns: int, *, speed: float = 1.0
) -> None:
    """The ``faults`` and ``sim_runs`` rows of a run; simulated second ``s`` is at ``start_ns + s / speed``."""

    def ns(seconds: float) -> int:
        return start_ns + round(seconds / speed * 1e9)

    rows = []
    for f in sc.faults:
        if f.at_s >= sc.duration_s:
            continue
        end = ns(min(f.end_s, sc.duration_s))
        params = json.dumps(f.params(), sort_keys=True)
        targets = (
            [(f.service, None)] if f.kind == "partition" else [(i.name, i.id) for i in sim.fault_targets(f)]
        )  # type: ignore[attr-defined]
        for service, instance in targets:
            rows.append((r.run_id, service, instance, f.kind, ns(f.at_s), end, params))
    with lab.transaction() as con:  # both tables or neither, under the Lab's lock
        con.execute(RUNS_DDL)
        con.execute(FAULTS_DDL)
        if rows:
            con.executemany(
                "INSERT INTO faults VALUES (?, ?, ?, ?, make_timestamp_ns(?), make_timestamp_ns(?), ?)", rows
            )
        con.execute(
            "INSERT INTO sim_runs VALUES (?, ?, ?, ?, make_timestamp_ns(?), ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                r.run_id,
                r.scenario,
                r.seed,
                r.label,
                start_ns,
                r.duration_s,
                r.requests,
                r.goodput_rps,
                r.error_rate,
                r.p99_s,
                r.amplification,
                r.spans,
                r.wall_s,
            ],
        )


# ---------------------------------------------------------------- several runs


def run_many(
    scenario: Scenario | str | os.PathLike[str],
    policies: Mapping[str, Mapping[str, Any] | None],
    *,
    lab: Any = None,
    seed: int = 0,
    duration_s: float | None = None,
    progress: bool = False,
    workers: int = 1,
    scheduler: Any = None,
) -> dict[str, RunResult]:
    """:func:`run` once per policy variant (same seed: the same arrivals), keyed by label.

    Parameters
    ----------
    workers : int, default 1
        Without a Lab, run the variants in this many processes (the results are the same).
    scheduler : str or distributed.Client, optional
        Without a Lab, run them on a Dask cluster instead (see :func:`sweep`).
    """
    sc = load_scenario(scenario)
    if not isinstance(policies, Mapping) or not policies:
        raise ScenarioError(
            f"policies must be a non-empty mapping of labels to policy overrides. Got {policies!r} instead."
        )
    if lab is not None and (workers != 1 or scheduler is not None):
        raise ScenarioError(
            "run_many(workers=..., scheduler=...) run without a Lab (only this process writes to it). "
            f"Got lab={lab!r} with workers={workers!r}, scheduler={scheduler!r}: drop one."
        )
    if lab is None and (workers != 1 or scheduler is not None):
        from otlp_lab.sim._sweep import execute

        for ov in policies.values():
            sc.with_policies(ov)  # bad overrides fail here, named, not in a worker
        specs = [(sc, seed, duration_s, ov or None, label) for label, ov in policies.items()]
        results, _ = execute(
            _run_spec,
            specs,
            workers=workers,
            scheduler=scheduler,
            progress=progress,
            name=sc.name,
            caller="run_many",
        )
        return dict(zip(policies, results, strict=True))
    return {
        label: run(
            sc,
            lab=lab,
            seed=seed,
            duration_s=duration_s,
            policy_overrides=ov or None,
            label=label,
            progress=progress,
        )
        for label, ov in policies.items()
    }


def _run_spec(spec: tuple[Scenario, int, float | None, Mapping[str, Any] | None, str]) -> RunResult:
    sc, seed, duration_s, overrides, label = spec
    return run(sc, seed=seed, duration_s=duration_s, policy_overrides=overrides, label=label)


def compare(
    scenario: Scenario | str | os.PathLike[str],
    policies: Mapping[str, Mapping[str, Any] | None],
    lab: Any = None,
    seed: int = 0,
    *,
    duration_s: float | None = None,
    progress: bool = False,
    workers: int = 1,
    scheduler: Any = None,
) -> pl.DataFrame:
    """One row per policy variant: goodput, offered load, error rate, p50/p95/p99, amplification.

    Parameters
    ----------
    scenario : Scenario or str or path
    policies : mapping of label to overrides
        ``{"retries": {}, "no retries": {"*": {"retry": None}}, "budget": {"*": {"budget": {"budget_percent": 20}}}}``;
        ``{}`` or None runs the scenario as written.
    lab : Lab, optional
        Every run lands there, told apart by ``sim.policy`` / ``sim.run_id``.
    seed : int
    workers, scheduler :
        Without a Lab, run the variants in processes or on a Dask cluster (see :func:`run_many`).

    Examples
    --------
    >>> compare("retry_storm", {"as is": {}, "no retries": {"*": {"retry": None}}})  # doctest: +SKIP
    """
    results = run_many(
        scenario,
        policies,
        lab=lab,
        seed=seed,
        duration_s=duration_s,
        progress=progress,
        workers=workers,
        scheduler=scheduler,
    )
    return pl.DataFrame([r.summary() for r in results.values()])


def timelines(results: Mapping[str, RunResult]) -> pl.DataFrame:
    """The :meth:`RunResult.timeline` of several runs stacked, with a ``policy`` column (for one figure)."""
    return pl.concat(
        [r.timeline().with_columns(pl.lit(label).alias("policy")) for label, r in results.items()]
    )


def lab_timeline(lab: Any, run_id: str, *, window_s: float = 1.0) -> pl.DataFrame:
    """A run's timeline read back from the Lab's spans: offered, goodput, failed, error rate per window.

    Parameters
    ----------
    lab : Lab
    run_id : str
        A ``sim_runs.run_id`` (the ``sim.run_id`` resource attribute).
    window_s : float
        Window width in seconds.
    """
    window_s = check_number(window_s, "lab_timeline(window_s=...)", minimum=1e-6, maximum=10 * 365 * 86400)
    us = int(window_s * 1e6)
    return lab.sql(
        f"""
        WITH roots AS (
            SELECT start_time, end_time, status_code FROM spans
            WHERE parent_span_id IS NULL AND resource_attributes['sim.run_id']::VARCHAR = ?),
        t0 AS (SELECT started FROM sim_runs WHERE run_id = ?),
        offered AS (SELECT time_bucket(INTERVAL {us} MICROSECONDS, start_time::TIMESTAMP, (SELECT started FROM t0)::TIMESTAMP) AS w,
                           count(*) AS offered FROM roots GROUP BY ALL),
        done AS (SELECT time_bucket(INTERVAL {us} MICROSECONDS, end_time::TIMESTAMP, (SELECT started FROM t0)::TIMESTAMP) AS w,
                        count(*) FILTER (WHERE status_code <> 'ERROR') AS ok, count(*) FILTER (WHERE status_code = 'ERROR') AS failed
                 FROM roots GROUP BY ALL)
        SELECT epoch(w - (SELECT started FROM t0)::TIMESTAMP) AS t_s, coalesce(offered, 0) / {window_s} AS offered_rps,
               coalesce(ok, 0) / {window_s} AS goodput_rps, coalesce(failed, 0) / {window_s} AS failed_rps,
               failed / nullif(ok + failed, 0) AS error_rate
        FROM offered FULL JOIN done USING (w) ORDER BY w""",
        [run_id, run_id],
    )
