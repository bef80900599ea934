"""Sweep benchmark: the same sweep serial, on a process pool and on a local Dask cluster, in one run.

The sweep: the shipped ``retry_storm`` scenario over three base loads × two policy variants ×
``--seeds`` seeds, ``--duration`` simulated seconds each (a retry storm costs more than a quiet
run, so the runs are uneven, as real sweeps are). Reported: wall-clock seconds per executor and
the speed-up over the serial run, and a check that every executor gave the same numbers seed
for seed (the wall-clock column aside).

The ratio is bounded by the cores this machine really gives the run: on a shared machine
another job's load shows up as a lower speed-up, not as a wrong result.

Run: ``python benchmarks/bench_sweep.py [--seeds 4] [--duration 40] [--workers 2]`` (the spike is at 20-24 s:
keep ``--duration`` above 25 for the storms to happen).
"""

from __future__ import annotations

import argparse
import os
import time

GRID = {"workloads[0].rate.base_rps": [80, 120, 150]}
POLICIES = {"as is": {}, "retry budget": {"storm": {"budget": {"budget_percent": 20}}}}


def main() -> None:
    from otlp_lab.sim import sweep

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--duration", type=float, default=40.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    kw = dict(seeds=args.seeds, policies=POLICIES, duration_s=args.duration)
    runs = len(GRID["workloads[0].rate.base_rps"]) * len(POLICIES) * args.seeds
    print(
        f"retry_storm: {runs} runs of {args.duration:g} simulated s; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    results = {}
    t = time.perf_counter()
    results["serial"] = sweep("retry_storm", GRID, workers=1, **kw)
    base = time.perf_counter() - t
    print(f"  serial                 {base:7.1f} s")
    t = time.perf_counter()
    results["processes"] = sweep("retry_storm", GRID, workers=args.workers, **kw)
    wall = time.perf_counter() - t
    print(f"  processes ({args.workers})          {wall:7.1f} s   {base / wall:4.2f}x the serial run")
    try:
        from distributed import LocalCluster
    except ImportError:  # pragma: no cover
        print("  dask: not installed (pip install 'dask[distributed]')")
    else:
        with LocalCluster(
            n_workers=args.workers, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster:
            t = time.perf_counter()
            results["dask"] = sweep("retry_storm", GRID, scheduler=cluster.scheduler_address, **kw)
            wall = time.perf_counter() - t
        print(f"  dask LocalCluster ({args.workers})  {wall:7.1f} s   {base / wall:4.2f}x the serial run")
    ref = results["serial"].runs.drop("wall_s")
    same = all(r.runs.drop("wall_s").equals(ref) for r in results.values())
    print(f"same numbers seed for seed on every executor: {same}")
    print(
        results["serial"].summary.select(
            "workloads[0].rate.base_rps", "policy", "goodput_rps_mean", "goodput_rps_lo", "goodput_rps_hi"
        )
    )


if __name__ == "__main__":
    main()
