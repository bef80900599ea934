"""Sweeps: one scenario over a grid of parameters × policy variants × seeds, in parallel.

Every run is determined by (scenario, parameter values, policy overrides, seed) alone: each
:class:`~otlp_lab.sim._engine.Simulation` owns its random streams, so a run gives the same
numbers in this process, in a process pool or on a Dask worker. :func:`sweep` hands the runs
to one of those executors and gathers one row per run, then a summary per grid point and
policy with the mean and a 95 % confidence interval over the seeds (Student's t).

Grid keys are paths into the scenario, with ``.`` between fields, ``[n]`` for the n-th item of
a list, and services, endpoints and policies by name::

    services.api.instances            workloads[0].rate.base_rps        duration_s
    policies.storm.retry.max_attempts  policies.storm.budget.budget_percent  faults[0].duration_s
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from otlp_lab.errors import ConfigError, ScenarioError
from otlp_lab.sim._scenario import Scenario, load_scenario, seconds

__all__ = ["SweepResult", "sweep", "set_path", "parse_grid", "SWEEP_METRICS"]

# the per-run numbers a sweep keeps (RunResult fields, latencies in ms) and summarises over seeds
SWEEP_METRICS = (
    "offered_rps",
    "goodput_rps",
    "error_rate",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "amplification",
)

SWEEP_RUNS_DDL = """CREATE TABLE IF NOT EXISTS sweep_runs (
    sweep_id VARCHAR, scenario VARCHAR, policy VARCHAR, params JSON, seed BIGINT, duration_s DOUBLE,
    requests BIGINT, offered_rps DOUBLE, goodput_rps DOUBLE, error_rate DOUBLE, p50_ms DOUBLE, p95_ms DOUBLE,
    p99_ms DOUBLE, amplification DOUBLE, hops BIGINT, extra JSON, wall_s DOUBLE)"""
SWEEP_SUMMARY_DDL = """CREATE TABLE IF NOT EXISTS sweep_summary (
    sweep_id VARCHAR, scenario VARCHAR, policy VARCHAR, params JSON, metric VARCHAR, n BIGINT,
    mean DOUBLE, std DOUBLE, ci_low DOUBLE, ci_high DOUBLE)"""

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


# ---------------------------------------------------------------- grid paths


def _steps(path: str) -> list[str | int]:
    if not isinstance(path, str) or not path or path.startswith(".") or path.endswith("."):
        raise ScenarioError(
            f"sweep grid key must be a path such as 'services.api.instances'. Got {path!r} instead."
        )
    out: list[str | int] = []
    pos = 0
    for m in _STEP.finditer(path):
        gap = path[pos : m.start()]
        if gap not in ("", "."):
            raise ScenarioError(
                f"sweep grid key {path!r} is not a path such as 'workloads[0].rate.base_rps' (stuck at {gap!r})."
            )
        out.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if path[pos:]:
        raise ScenarioError(f"sweep grid key {path!r} is not a path such as 'workloads[0].rate.base_rps'.")
    return out


def _fields(obj: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(obj) if f.name != "_"]


def _set(obj: Any, steps: list[str | int], value: Any, path: str, done: list[str | int]) -> Any:
    """A copy of ``obj`` with the value at ``steps`` replaced (dataclasses, tuples of named items, dicts)."""
    here = ".".join(str(s) for s in done) or "the scenario"
    if not steps:
        return value
    step, rest = steps[0], steps[1:]
    if isinstance(obj, tuple):
        if isinstance(step, int):
            idx = step
        else:
            names = [getattr(x, "name", None) for x in obj]
            if step not in names:
                raise ScenarioError(
                    f"sweep grid key {path!r}: {here} has no item named {step!r} (it has {[n for n in names if n]})."
                )
            idx = names.index(step)
        if not 0 <= idx < len(obj):
            raise ScenarioError(f"sweep grid key {path!r}: {here} has {len(obj)} items, no [{idx}].")
        items = list(obj)
        items[idx] = _set(items[idx], rest, value, path, [*done, step])
        return tuple(items)
    if isinstance(obj, Mapping) or (obj is None and done and not isinstance(step, int)):
        d = dict(obj or {})
        if isinstance(step, int):
            raise ScenarioError(f"sweep grid key {path!r}: {here} is a mapping, not a list.")
        d[step] = _set(d.get(step), rest, value, path, [*done, step])
        return d
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if isinstance(step, int) or step not in _fields(obj):
            raise ScenarioError(
                f"sweep grid key {path!r}: {here} ({type(obj).__name__}) has no field {step!r}. "
                f"Expected one of {_fields(obj)}."
            )
        new = _set(getattr(obj, step), rest, value, path, [*done, step])
        if isinstance(step, str) and step.endswith("_s") and isinstance(new, str):
            new = seconds(new, path)
        try:
            return dataclasses.replace(obj, **{step: new})
        except (ConfigError, TypeError, ValueError) as exc:
            if isinstance(exc, ScenarioError):
                raise
            raise ScenarioError(
                f"sweep grid key {path!r} = {value!r} is not valid: {exc}", key=path
            ) from None
    raise ScenarioError(f"sweep grid key {path!r}: {here} is {obj!r}, which has no {step!r}.")


def set_path(scenario: Scenario, path: str, value: Any) -> Scenario:
    """A checked copy of ``scenario`` with the setting at ``path`` replaced.

    Examples
    --------
    >>> from otlp_lab.sim import set_path
    >>> from otlp_lab.sim._scenario import load_scenario
    >>> set_path(load_scenario("retry_storm"), "services.api.instances", 2).service("api").instances
    2
    """
    steps = _steps(path)
    try:
        return _set(scenario, steps, value, path, [])
    except ScenarioError as exc:
        if exc.key is None:
            raise ScenarioError(str(exc), key=path) from None
        raise


def parse_grid(specs: Iterable[str]) -> dict[str, list[Any]]:
    """``["key=v1,v2", ...]`` (the CLI's ``--grid``) -> ``{"key": [v1, v2]}``; values are read as YAML scalars.

    Raises
    ------
    ScenarioError
        A spec without ``=`` or without values.
    """
    import yaml

    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, eq, values = spec.partition("=")
        key = key.strip()
        if not eq or not key or not values.strip():
            raise ScenarioError(
                f"--grid must be KEY=V1,V2,... such as 'workloads[0].rate.base_rps=100,150'. Got {spec!r} instead."
            )
        out = []
        for v in values.split(","):
            try:
                out.append(yaml.safe_load(v.strip()))
            except yaml.YAMLError:
                out.append(v.strip())
        grid[key] = out
    return grid


# ---------------------------------------------------------------- one run (what an executor runs)


@dataclass(frozen=True, slots=True)
class _Task:
    scenario: Scenario
    params: tuple[tuple[str, Any], ...]
    policy: str
    overrides: Mapping[str, Any] | None
    seed: int
    duration_s: float | None
    measure: Callable[[Any], Mapping[str, Any]] | None


def _run_task(task: _Task) -> dict[str, Any]:
    """Run one simulation (no Lab) and return its row: params, policy, seed, the metrics, ``extra``."""
    import time

    from otlp_lab.sim._run import run

    t0 = time.perf_counter()
    r = run(
        task.scenario,
        seed=task.seed,
        duration_s=task.duration_s,
        policy_overrides=task.overrides or None,
        label=task.policy,
    )
    s = r.summary()
    row: dict[str, Any] = {
        "policy": task.policy,
        "seed": task.seed,
        "duration_s": r.duration_s,
        "requests": r.requests,
        **{m: s[m] if m in s else getattr(r, m) for m in SWEEP_METRICS},
        "hops": r.hops,
        "extra": dict(task.measure(r)) if task.measure is not None else {},
        "wall_s": time.perf_counter() - t0,
    }
    for m in ("offered_rps", "goodput_rps", "error_rate", "amplification"):
        row[m] = getattr(r, m)  # unrounded
    for m, v in (("p50_ms", r.p50_s), ("p95_ms", r.p95_s), ("p99_ms", r.p99_s)):
        row[m] = None if v is None else v * 1e3
    return row


def _pickle(obj: Any) -> bytes:
    """``obj`` as bytes; with cloudpickle (Dask brings it) a function defined in a notebook travels too."""
    try:
        import cloudpickle

        return cloudpickle.dumps(obj)
    except ImportError:  # pragma: no cover
        import pickle

        return pickle.dumps(obj)


def _call_pickled(blob: bytes) -> Any:
    import pickle

    fn, x = pickle.loads(blob)
    return fn(x)


# ---------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    """What :func:`sweep` returns.

    Attributes
    ----------
    sweep_id : str
        Names the sweep in the Lab's ``sweep_runs`` and ``sweep_summary`` tables.
    runs : polars.DataFrame
        One row per run: a column per grid key, ``policy``, ``seed``, the metrics (``offered_rps``,
        ``goodput_rps``, ``error_rate``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``amplification``),
        ``requests``, ``hops``, one column per key of what ``measure`` returned, and ``wall_s``.
    summary : polars.DataFrame
        One row per grid point and policy: ``n`` seeds, and per metric ``<metric>_mean``,
        ``<metric>_lo`` and ``<metric>_hi`` (95 % confidence interval of the mean over seeds,
        Student's t; equal to the mean with one seed).
    executor : str
        ``"serial"``, ``"processes(N)"`` or ``"dask(ADDRESS)"``.
    """

    sweep_id: str
    scenario: str
    grid: dict[str, list[Any]]
    runs: pl.DataFrame
    summary: pl.DataFrame
    executor: str
    metrics: tuple[str, ...] = field(default=SWEEP_METRICS)

    def __repr__(self) -> str:
        return f"SweepResult({self.sweep_id!r}: {self.runs.height} runs, {self.summary.height} points, {self.executor})"


def sweep(
    scenario: Scenario | str | os.PathLike[str],
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    seeds: int | Sequence[int] = 5,
    policies: Mapping[str, Mapping[str, Any] | None] | None = None,
    duration_s: float | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    lab: Any = None,
    measure: Callable[[Any], Mapping[str, Any]] | None = None,
    progress: bool = False,
) -> SweepResult:
    """Run a scenario over every combination of grid values × policy variants × seeds, in parallel.

    Parameters
    ----------
    scenario : Scenario or str or path
        A :class:`Scenario`, a YAML file, or a shipped scenario's name.
    grid : mapping of path to values, optional
        ``{"workloads[0].rate.base_rps": [100, 140], "services.api.instances": [1, 2]}``: every
        combination is run (see the module docstring for paths). Durations may be strings
        (``"250ms"``) for keys ending in ``_s``.
    seeds : int or sequence of int, default 5
        ``n`` means seeds ``0 .. n-1``.
    policies : mapping of label to overrides, optional
        Policy variants as for :func:`compare`; the scenario as written (``"default"``) when omitted.
    duration_s : float, optional
        Overrides the scenario's duration.
    workers : int, optional
        Processes to run in (default: one per CPU); ``1`` runs in this process, one after the other.
        In a script, call it under ``if __name__ == "__main__":``, as for any process pool (the
        workers start from a fork server that re-imports the main module); notebooks need nothing.
    scheduler : str or distributed.Client, optional
        A Dask scheduler address (``"tcp://10.0.0.5:8786"``) or a ``distributed.Client``: the runs go
        to that cluster instead (its workers need otlp_lab installed). Needs ``pip install
        'dask[distributed]'``.
    lab : Lab, optional
        Writes one row per run into ``sweep_runs`` and the summary (long form: one row per grid point,
        policy and metric) into ``sweep_summary``.
    measure : callable, optional
        ``measure(run_result) -> dict`` of extra numbers per run (columns of ``runs``, summarised too).
        It runs where the simulation ran: a module-level function (picklable), not a lambda, for
        processes and Dask.
    progress : bool
        A progress bar over the runs.

    Returns
    -------
    SweepResult

    Raises
    ------
    ScenarioError
        A bad grid key or value (named), bad seeds or workers.

    Examples
    --------
    >>> from otlp_lab.sim import sweep
    >>> s = sweep("retry_storm", {"workloads[0].rate.base_rps": [100, 140]}, seeds=3,
    ...           policies={"as is": {}, "budget": {"storm": {"budget": {"budget_percent": 20}}}})  # doctest: +SKIP
    >>> s.summary.select("workloads[0].rate.base_rps", "policy", "goodput_rps_mean", "goodput_rps_lo")  # doctest: +SKIP
    """
    sc = load_scenario(scenario)
    seed_list = _seed_list(seeds)
    grid = {str(k): list(v) for k, v in (grid or {}).items()}
    for k, v in grid.items():
        if not v:
            raise ScenarioError(f"sweep grid key {k!r} has no values.", key=k)
        _steps(k)
    variants = dict(policies) if policies else {"default": None}
    points: list[tuple[tuple[str, Any], ...]] = [
        tuple(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())
    ]
    scenarios: list[Scenario] = []
    for params in points:
        s = sc
        for k, v in params:
            s = set_path(s, k, v)
        scenarios.append(s)
    for label, ov in variants.items():
        sc.with_policies(ov)  # check the overrides once, here, not in every worker
        if not isinstance(label, str) or not label:
            raise ScenarioError(f"sweep policies must be keyed by non-empty labels. Got {label!r} instead.")
    tasks = [
        _Task(s, params, label, ov or None, seed, duration_s, measure)
        for (params, s) in zip(points, scenarios, strict=True)
        for label, ov in variants.items()
        for seed in seed_list
    ]
    rows, executor = execute(
        _run_task, tasks, workers=workers, scheduler=scheduler, progress=progress, name=sc.name
    )
    runs = _runs_frame(grid, tasks, rows)
    metrics = (*SWEEP_METRICS, *(c for c in runs.columns[len(grid) :] if _is_extra(runs, c)))
    summary = _summary(runs, list(grid), metrics)
    sweep_id = _sweep_id(lab, sc.name)
    if lab is not None:
        _write(lab, sweep_id, sc.name, grid, tasks, rows, summary, metrics)
    return SweepResult(sweep_id, sc.name, grid, runs, summary, executor, tuple(metrics))


def _is_extra(runs: pl.DataFrame, col: str) -> bool:
    base = {"policy", "seed", "duration_s", "requests", "hops", "wall_s", *SWEEP_METRICS}
    return col not in base and (runs[col].dtype.is_numeric() or runs[col].dtype == pl.Boolean)


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ScenarioError(
                f"sweep(seeds=...) must be a positive count or a list of seeds. Got {seeds!r} instead."
            )
        return list(range(seeds))
    out = list(seeds) if isinstance(seeds, Iterable) and not isinstance(seeds, (str, bytes)) else None
    if not out or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in out):
        raise ScenarioError(
            f"sweep(seeds=...) must be a positive count or a list of non-negative integers. Got {seeds!r} instead."
        )
    return out


def execute(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    workers: int | None,
    scheduler: Any = None,
    progress: bool = False,
    name: str = "",
    caller: str = "sweep",
) -> tuple[list[Any], str]:
    """``[fn(x) for x in items]`` in this process, a process pool or on a Dask cluster; results in order.

    ``fn`` must be a module-level function; items travel pickled (cloudpickle when present).
    Returns the results and a description of the executor.
    """
    bar = _Bar(name, len(items)) if progress else None
    out: list[Any] = [None] * len(items)
    try:
        if scheduler is not None:
            executor = _dask(fn, items, scheduler, out, bar, caller)
        else:
            if workers is None:
                workers = os.cpu_count() or 1
            if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
                raise ScenarioError(
                    f"{caller}(workers=...) must be a positive integer. Got {workers!r} instead."
                )
            workers = max(1, min(workers, len(items)))
            if workers == 1:
                executor = "serial"
                for n, x in enumerate(items):
                    out[n] = fn(x)
                    if bar is not None:
                        bar.advance()
            else:
                executor = f"processes({workers})"
                methods = multiprocessing.get_all_start_methods()
                ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
                if ctx.get_start_method() == "forkserver":
                    # the server imports the simulator once; every worker forks from it, ready to run
                    ctx.set_forkserver_preload(["otlp_lab.sim._sweep", "otlp_lab.sim._run"])
                with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                    futures = {pool.submit(_call_pickled, _pickle((fn, x))): n for n, x in enumerate(items)}
                    for fut in as_completed(futures):
                        out[futures[fut]] = fut.result()
                        if bar is not None:
                            bar.advance()
    finally:
        if bar is not None:
            bar.close()
    return out, executor


def _dask(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    scheduler: Any,
    out: list[Any],
    bar: _Bar | None,
    caller: str,
) -> str:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as exc:
        raise ImportError(
            f"{caller}(scheduler=...) needs Dask distributed: pip install 'otlp-lab[lab]' (or pip install 'dask[distributed]')"
        ) from exc
    own = not isinstance(scheduler, Client)
    if own and not isinstance(scheduler, str):
        raise ScenarioError(
            f"{caller}(scheduler=...) must be a Dask scheduler address such as 'tcp://10.0.0.5:8786' or a "
            f"distributed.Client. Got {scheduler!r} instead."
        )
    try:
        client = Client(scheduler, timeout="10s") if own else scheduler
    except OSError as exc:
        raise ScenarioError(
            f"cannot reach the Dask scheduler at {scheduler!r}: {exc}. Start one (dask scheduler) or check the address."
        ) from None
    try:
        futures = client.map(fn, list(items), pure=False)
        index = {f.key: n for n, f in enumerate(futures)}
        for fut in dask_completed(futures):
            out[index[fut.key]] = fut.result()
            if bar is not None:
                bar.advance()
        return f"dask({client.scheduler.address})"
    finally:
        if own:
            client.close()


class _Bar:
    def __init__(self, name: str, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(
            TextColumn(f"[bold]sweeping[/] {name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("runs"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self._task = self._p.add_task("", total=total)
        self._p.start()

    def advance(self) -> None:
        self._p.advance(self._task)

    def close(self) -> None:
        self._p.stop()


# ---------------------------------------------------------------- frames


def _runs_frame(
    grid: Mapping[str, list[Any]], tasks: list[_Task], rows: list[dict[str, Any]]
) -> pl.DataFrame:
    extra_cols = sorted({k for r in rows for k in r["extra"]})
    data: dict[str, list[Any]] = {k: [] for k in grid}
    for t in tasks:
        for k, v in t.params:
            data[k].append(v)
    cols: dict[str, Any] = {k: _column(v) for k, v in data.items()}
    for c in ("policy", "seed", "duration_s", "requests", *SWEEP_METRICS, "hops"):
        cols[c] = [r[c] for r in rows]
    for c in extra_cols:
        cols[c] = [r["extra"].get(c) for r in rows]
    cols["wall_s"] = [r["wall_s"] for r in rows]
    float_cols = {c: pl.Float64 for c in (*SWEEP_METRICS, "wall_s")}
    return pl.DataFrame(cols, schema_overrides=float_cols, strict=False)


def _column(values: list[Any]) -> Any:
    """Grid values as a typed column when they share a type, else as text."""
    try:
        return pl.Series(values, strict=True)
    except (TypeError, pl.exceptions.PolarsError):
        return pl.Series([json.dumps(v, default=str) if not isinstance(v, str) else v for v in values])


def _t95(n: int) -> float:
    """The 97.5 % quantile of Student's t with ``n - 1`` degrees of freedom."""
    try:
        from scipy.stats import t as student_t

        return float(student_t.ppf(0.975, n - 1))
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn in the [lab] extra
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
        return table.get(n - 1, 2.0 + 2.4 / max(n - 1, 1))


def _summary(runs: pl.DataFrame, keys: list[str], metrics: Sequence[str]) -> pl.DataFrame:
    by = [*keys, "policy"]
    aggs: list[pl.Expr] = [pl.len().alias("n")]
    for m in metrics:
        x = pl.col(m).cast(pl.Float64)
        aggs += [x.mean().alias(f"{m}_mean"), x.std().alias(f"_{m}_sd"), x.count().alias(f"_{m}_n")]
    g = runs.group_by(by, maintain_order=True).agg(aggs)
    out = [pl.col(c) for c in [*by, "n"]]
    for m in metrics:
        n = g[f"_{m}_n"]
        half = pl.Series(
            [
                (_t95(k) * sd / math.sqrt(k)) if k and k > 1 and sd is not None else 0.0
                for k, sd in zip(n, g[f"_{m}_sd"], strict=True)
            ],
            dtype=pl.Float64,
        )
        g = g.with_columns(
            (pl.col(f"{m}_mean") - half).alias(f"{m}_lo"),
            (pl.col(f"{m}_mean") + half).alias(f"{m}_hi"),
            pl.col(f"_{m}_sd").alias(f"{m}_sd"),
        )
        out += [pl.col(f"{m}_mean"), pl.col(f"{m}_lo"), pl.col(f"{m}_hi"), pl.col(f"{m}_sd")]
    return g.select(out)


# ---------------------------------------------------------------- the Lab


def _sweep_id(lab: Any, name: str) -> str:
    from otlp_lab.sim._run import unique_id

    return unique_id(lab, f"{name}/sweep", table="sweep_runs", column="sweep_id", ddl=SWEEP_RUNS_DDL)


def _write(
    lab: Any,
    sweep_id: str,
    name: str,
    grid: Mapping[str, list[Any]],
    tasks: list[_Task],
    rows: list[dict[str, Any]],
    summary: pl.DataFrame,
    metrics: Sequence[str],
) -> None:
    run_rows = [
        (
            sweep_id,
            name,
            r["policy"],
            json.dumps(dict(t.params), default=str),
            r["seed"],
            r["duration_s"],
            r["requests"],
            *(r[m] for m in SWEEP_METRICS),
            r["hops"],
            json.dumps(r["extra"], default=str),
            r["wall_s"],
        )
        for t, r in zip(tasks, rows, strict=True)
    ]
    keys = list(grid)
    sum_rows = []
    for rec in summary.iter_rows(named=True):
        params = json.dumps({k: rec[k] for k in keys}, default=str)
        for m in metrics:
            sum_rows.append(
                (
                    sweep_id,
                    name,
                    rec["policy"],
                    params,
                    m,
                    rec["n"],
                    rec[f"{m}_mean"],
                    rec[f"{m}_sd"],
                    rec[f"{m}_lo"],
                    rec[f"{m}_hi"],
                )
            )
    with lab.transaction() as con:
        con.execute(SWEEP_RUNS_DDL)
        con.execute(SWEEP_SUMMARY_DDL)
        con.executemany(f"INSERT INTO sweep_runs VALUES ({', '.join('?' * 17)})", run_rows)
        if sum_rows:
            con.executemany(f"INSERT INTO sweep_summary VALUES ({', '.join('?' * 10)})", sum_rows)
