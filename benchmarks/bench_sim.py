"""Simulation benchmark: the fleet simulator against a bare SimPy M/M/1 loop and Ciw, in the same run.

(a) The fleet: the shipped 10-service, 3-level ``shop`` scenario with every call (the load
    generator's included) through its ``standard`` policy stack: retries with full jitter and a
    per-try timeout, a 20 % retry budget, a circuit breaker and power-of-two-choices balancing.
    No faults, so that every run does the same work. Output on: every span (one per attempt,
    client and server), metric point and log is written into an in-memory Lab. Reported as
    simulated root requests and hops (attempts over every call, each a client and a server span)
    per wall-clock second.
(b) A bare SimPy M/M/1 loop (utilisation 0.8): a Poisson source, one ``simpy.Resource``, an
    exponential service time, a counter. Jobs per wall-clock second.
(c) Ciw (``ciw.Simulation``) on the same M/M/1, with its per-job records. Jobs per second.

Prints the ratios hops/s over (b) and over (c) (targets: >= 0.5x and >= 1x), then where (a)
spends its time, then the long run: ``--requests`` root requests (1,000,000 by default) through
the same fleet into a DuckDB file, in a fresh process, with its peak memory, next to the same
run at a tenth of the size; the memory must not grow with the run (spans are streamed to the
Lab in bounded batches).

A simulated run lands in the Lab in one transaction, which DuckDB holds in memory up to its
``memory_limit`` (80 % of RAM by default), so the long run sets ``--memory-limit`` (512MB) on the
Lab's connection; ``--memory-limit none`` keeps DuckDB's default to show the difference.

Run: ``python benchmarks/bench_sim.py [--fleet-seconds 60] [--jobs 200000] [--requests 1000000]``;
``--memory`` runs only the long runs (``--requests`` and a tenth of it) and prints their peak RSS ratio.
Rates and ratios are given per CPU second (steadier on a shared machine) and per wall second.
The long run takes about ``requests / 1,600`` seconds here (some 11 minutes for the default);
``--requests 0`` skips it.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time

import simpy

from otlp_lab import Lab
from otlp_lab.sim import Scenario, run, scenario_path

MM1_ARRIVAL_RATE = 0.8
MM1_SERVICE_RATE = 1.0


# ---------------------------------------------------------------------------------------------- (a) the fleet
def fleet_scenario() -> Scenario:
    """``shop`` with every workload through the ``standard`` stack (retry, budget, breaker, P2C), no faults, no warm-up."""
    sc = Scenario.from_yaml(scenario_path("shop"))
    workloads = tuple(
        dataclasses.replace(w, policy=None) for w in sc.workloads
    )  # None: the default, "standard"
    return sc.replace(name="bench_fleet", workloads=workloads, faults=(), warmup_s=0.0)


def offered_rps(sc: Scenario) -> float:
    return sum(w.offered_rps(0.0) for w in sc.workloads)


def fleet(sc: Scenario, duration_s: float, *, lab: Lab | None = None, seed: int = 1) -> dict[str, float]:
    own = lab is None
    lab = Lab() if own else lab
    try:
        t, c = time.perf_counter(), time.process_time()
        r = run(sc, lab=lab, seed=seed, duration_s=duration_s)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        if own:
            lab.close()
    return {
        "requests": r.requests,
        "hops": r.hops,
        "spans": r.spans,
        "wall_s": wall,
        "cpu_s": cpu,
        "error_rate": r.error_rate,
    }


# ---------------------------------------------------------------------------------------------- (b) bare SimPy
def simpy_mm1(n_jobs: int, *, seed: int = 1) -> tuple[int, float, float]:
    """A bare SimPy M/M/1: jobs served, wall seconds and CPU seconds."""
    rng = random.Random(seed)
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    done = 0

    def job(env: simpy.Environment):
        nonlocal done
        with server.request() as req:
            yield req
            yield env.timeout(rng.expovariate(MM1_SERVICE_RATE))
        done += 1

    def source(env: simpy.Environment):
        for _ in range(n_jobs):
            yield env.timeout(rng.expovariate(MM1_ARRIVAL_RATE))
            env.process(job(env))

    env.process(source(env))
    t, c = time.perf_counter(), time.process_time()
    env.run()
    return done, time.perf_counter() - t, time.process_time() - c


# ---------------------------------------------------------------------------------------------- (c) Ciw
def ciw_mm1(n_jobs: int, *, seed: int = 1) -> tuple[int, float, float]:
    """Ciw's M/M/1 for as long as ``n_jobs`` arrivals take on average: jobs completed, wall and CPU seconds."""
    try:
        import ciw
    except ImportError as exc:  # pragma: no cover - a dev dependency
        raise SystemExit(
            "the benchmark compares with Ciw: pip install 'ciw>=3.2' (or: pip install -e '.[dev]')"
        ) from exc
    ciw.seed(seed)
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=MM1_ARRIVAL_RATE)],
        service_distributions=[ciw.dists.Exponential(rate=MM1_SERVICE_RATE)],
        number_of_servers=[1],
    )
    sim = ciw.Simulation(network)
    t, c = time.perf_counter(), time.process_time()
    sim.simulate_until_max_time(n_jobs / MM1_ARRIVAL_RATE)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return len(sim.get_all_records()), wall, cpu


def best(fn, repeat: int):
    """The run of ``repeat`` that took the fewest CPU seconds (steadier than wall time on a shared machine)."""
    return min((fn() for _ in range(repeat)), key=lambda r: r["cpu_s"] if isinstance(r, dict) else r[2])


# ---------------------------------------------------------------------------------------------- the long run
def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) * 1024
    except (OSError, StopIteration):  # not Linux: the peak so far
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def long_run(requests: int, db: str, memory_limit: str | None) -> dict[str, float]:
    """``requests`` root requests through the fleet into a DuckDB file; memory sampled every 0.2 s."""
    sc = fleet_scenario()
    duration_s = requests / offered_rps(sc)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.perf_counter()
        while not stop.wait(0.2):
            samples.append((time.perf_counter() - t0, _rss_bytes()))

    with Lab(db) as lab:
        if memory_limit:
            lab.con.execute(f"SET memory_limit = '{memory_limit}'")
        base = _rss_bytes()
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            r = fleet(sc, duration_s, lab=lab)
        finally:
            stop.set()
            th.join()
    peak = max([base, *(s for _, s in samples)])
    wall = r["wall_s"]
    # RSS at 25 / 50 / 75 / 100 % of the run: flat when memory is bounded
    quarters = [max([base, *(s for t, s in samples if t <= wall * q)]) for q in (0.25, 0.5, 0.75, 1.0)]
    return {
        **r,
        "base_rss": base,
        "peak_rss": peak,
        "quarters_rss": quarters,
        "db_bytes": os.path.getsize(db),
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def long_run_in_child(requests: int, memory_limit: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--_child",
                str(requests),
                "--_db",
                os.path.join(tmp, "fleet.duckdb"),
                "--memory-limit",
                memory_limit or "none",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MB"


# ---------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--fleet-seconds", type=float, default=60.0, help="simulated seconds of the fleet run (a)"
    )
    ap.add_argument("--jobs", type=int, default=200_000, help="M/M/1 jobs for (b) and (c)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each, the fastest counts")
    ap.add_argument(
        "--requests",
        type=int,
        default=1_000_000,
        help="root requests of the long run into a DuckDB file (0: skip); also run at a tenth of it",
    )
    ap.add_argument(
        "--memory-limit",
        default="512MB",
        help="DuckDB memory_limit of the long run's Lab ('none': DuckDB's default, 80%% of RAM)",
    )
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True, help="profile (a) once")
    ap.add_argument(
        "--memory",
        action="store_true",
        help="only the long runs: --requests and a tenth of it, each in a fresh process, and their peak RSS ratio",
    )
    ap.add_argument("--_child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    limit = None if args.memory_limit.lower() in ("", "none", "default") else args.memory_limit
    if args._child is not None:
        print(json.dumps(long_run(args._child, args._db, limit)))
        return

    if not args.memory:
        speed(args)
    if args.requests > 0:
        memory(args.requests, limit)


def speed(args: argparse.Namespace) -> None:
    """(a), (b) and (c) in this process, their ratios, and a profile of (a)."""
    sc = fleet_scenario()
    print(
        f"fleet: {len(sc.services)} services, {offered_rps(sc):g} req/s offered, {args.fleet_seconds:g} simulated s, "
        f"retry + budget + breaker + P2C on every call, output into a Lab; M/M/1: rho = "
        f"{MM1_ARRIVAL_RATE / MM1_SERVICE_RATE:g}, {args.jobs:,} jobs; best of {args.repeat}"
    )
    fleet(sc, 5.0)  # warm up imports and caches
    a = best(lambda: fleet(sc, args.fleet_seconds), args.repeat)
    b_jobs, b_wall, b_cpu = best(lambda: simpy_mm1(args.jobs), args.repeat)
    c_jobs, c_wall, c_cpu = best(lambda: ciw_mm1(args.jobs), args.repeat)
    rows = [
        ("(a) fleet: root requests", a["requests"], a["wall_s"], a["cpu_s"]),
        ("(a) fleet: hops", a["hops"], a["wall_s"], a["cpu_s"]),
        ("(a) fleet: spans written", a["spans"], a["wall_s"], a["cpu_s"]),
        ("(b) bare SimPy M/M/1: jobs", b_jobs, b_wall, b_cpu),
        ("(c) Ciw M/M/1: jobs", c_jobs, c_wall, c_cpu),
    ]
    print(f"\n{'':30s} {'count':>10s} {'wall s':>7s} {'CPU s':>7s} {'per wall s':>11s} {'per CPU s':>10s}")
    for name, n, wall, cpu in rows:
        print(f"{name:30s} {n:10,} {wall:7.2f} {cpu:7.2f} {n / wall:11,.0f} {n / cpu:10,.0f}")
    print(f"\n{'':34s} {'by CPU s':>9s} {'by wall s':>10s}")
    for name, n, (jobs, wall, cpu), target in (
        ("(a) hops / (b) SimPy jobs", a["hops"], (b_jobs, b_wall, b_cpu), "target >= 0.5x"),
        ("(a) hops / (c) Ciw jobs", a["hops"], (c_jobs, c_wall, c_cpu), "target >= 1x"),
        ("(a) root requests / (b) SimPy", a["requests"], (b_jobs, b_wall, b_cpu), ""),
    ):
        by_cpu = (n / a["cpu_s"]) / (jobs / cpu)
        by_wall = (n / a["wall_s"]) / (jobs / wall)
        print(f"{name:34s} {by_cpu:8.2f}x {by_wall:9.2f}x   {target}")
    print(f"(a) {a['hops'] / a['requests']:.1f} hops per request; error rate {a['error_rate']:.4f}")

    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(fleet, sc, min(args.fleet_seconds, 20.0))
        print("\nwhere (a) spends its time (top 12 by own time, under the profiler):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


def memory(requests: int, limit: str | None) -> None:
    """The long run at ``requests`` and a tenth of it, each in a fresh process: peak RSS and its growth."""
    sizes = sorted({max(1, requests // 10), requests})
    print(
        f"long run: root requests through the fleet into a DuckDB file (memory_limit {limit or 'DuckDB default'}), "
        f"each in a fresh process"
    )
    print(
        f"{'requests':>10s} {'hops':>11s} {'spans':>12s} {'seconds':>8s} {'req/s':>7s} {'RSS before':>11s} "
        f"{'peak RSS':>9s} {'RSS at 25/50/75/100 % of the run':>34s} {'file':>9s}"
    )
    rows = []
    for n in sizes:
        r = long_run_in_child(n, limit)
        rows.append(r)
        q = " / ".join(_mb(x) for x in r["quarters_rss"])
        print(
            f"{r['requests']:10,} {r['hops']:11,} {r['spans']:12,} {r['wall_s']:8.1f} {r['requests'] / r['wall_s']:7,.0f} "
            f"{_mb(r['base_rss']):>11s} {_mb(r['peak_rss']):>9s} {q:>34s} {_mb(r['db_bytes']):>9s}"
        )
    if len(rows) == 2:
        small, big = rows
        growth = (big["peak_rss"] - big["base_rss"]) / max(1, small["peak_rss"] - small["base_rss"])
        print(
            f"\n{big['requests'] / small['requests']:.0f}x the requests: peak RSS "
            f"{_mb(small['peak_rss'])} -> {_mb(big['peak_rss'])} ({big['peak_rss'] / small['peak_rss']:.2f}x, "
            f"target <= 1.5x); over a fresh Lab {_mb(small['peak_rss'] - small['base_rss'])} -> "
            f"{_mb(big['peak_rss'] - big['base_rss'])} ({growth:.2f}x)"
        )


if __name__ == "__main__":
    main()
