"""Sealing benchmark: ``Lab.seal()`` and ``Lab.verify()`` on a Lab of about 100,000 spans, next to loading it.

The Lab is filled by the fleet simulator (the shipped ``shop`` scenario, every attempt a span,
plus its metrics and logs), so the spans have realistic attribute maps. Reported in the same run:

(a) loading the simulated telemetry into the Lab (``run(..., lab=lab)`` minus the same run without a Lab);
(b) ``lab.seal()``: every row of every load hashed in DuckDB (sha256 of a canonical text form per
    row, sorted per load and table, sha256 of the list), then the chain;
(c) ``lab.verify()``: the same digests recomputed and compared;

and the ratios (b)/(a) and (c)/(a): the price of tamper evidence relative to ingest.

Run: ``python benchmarks/bench_seal.py [--spans 100000]``.
"""

from __future__ import annotations

import argparse
import time

from otlp_lab import Lab
from otlp_lab.sim import run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    # the shop makes about 2,000 spans per simulated second at its default load
    probe = Lab()
    r = run("shop", lab=probe, seed=args.seed, duration_s=20)
    per_s = r.spans / 20
    duration = max(20.0, args.spans / per_s)
    t0 = time.perf_counter()
    run("shop", seed=args.seed, duration_s=duration)
    sim_only = time.perf_counter() - t0
    lab = Lab()
    t0 = time.perf_counter()
    r = run("shop", lab=lab, seed=args.seed, duration_s=duration)
    with_lab = time.perf_counter() - t0
    load_s = max(with_lab - sim_only, 1e-9)
    rows = sum(lab.counts().values())
    t0 = time.perf_counter()
    s = lab.seal()
    seal_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    v = lab.verify(s.root)
    verify_s = time.perf_counter() - t0
    assert v.ok
    print(f"{r.spans:,} spans, {rows:,} rows in {s.loads} loads")
    print(f"(a) load into the Lab  {load_s:6.2f} s")
    print(
        f"(b) seal               {seal_s:6.2f} s   {seal_s / load_s:.2f}x the load   {r.spans / seal_s:,.0f} spans/s"
    )
    print(f"(c) verify             {verify_s:6.2f} s   {verify_s / load_s:.2f}x the load")


if __name__ == "__main__":
    main()
