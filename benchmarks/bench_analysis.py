"""Analysis benchmark: span_tree and critical_path on the shared TrainTicket day (183,765 spans).

Everything is timed in one run against a baseline from the same run: reading the same spans
(the columns span_tree needs) from DuckDB into Polars, which every analysis has to do anyway.

* ``span_tree()``            every trace (Polars/numpy walk over the deduplicated spans)
* ``span_tree`` SQL view     the same rows through DuckDB's recursive CTE, for comparison
* ``span_tree(trace_id)``    the largest trace
* ``critical_path(trace_id)``   the largest trace (jaeger-ui's rules)
* ``critical_paths()``       every trace
* ``critical_path_summary()``   share of critical time per service over every trace

Run: ``make bench`` or ``python benchmarks/bench_analysis.py [--data DIR] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from otlp_lab import Lab

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "trainticket-nezha-2023-01-30"


def timed(fn, repeat: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds (CPU of all this process's threads: less noisy on a shared machine)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT, help="the TrainTicket day (faulty/ and normal/)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    args = ap.parse_args()
    if not (args.data / "faulty").is_dir():
        from otlp_lab.datasets import trainticket_path

        print(f"{args.data} is not here: using the bundled (smaller) TrainTicket capture instead")
        args.data = trainticket_path()

    with Lab() as lab:
        t0 = time.perf_counter()
        lab.load(args.data / "faulty", args.data / "normal")
        load_s = time.perf_counter() - t0
        n = lab.counts()["spans"]
        unique = lab.sql("SELECT count(*) n FROM unique_spans")["n"][0]
        big = lab.sql("SELECT trace_id, count(*) n FROM unique_spans GROUP BY 1 ORDER BY n DESC LIMIT 1").row(
            0
        )
        tid, big_n = big
        traces = lab.sql("SELECT count(DISTINCT trace_id) n FROM spans")["n"][0]
        print(
            f"{n:,} spans ({unique:,} unique) in {traces:,} traces, loaded in {load_s:.1f} s; largest trace {big_n} spans"
        )

        cols = "trace_id, span_id, parent_span_id, service_name, name, kind, start_time, end_time, duration_ns, status_code"
        rows = [
            (
                "baseline: read the spans into Polars",
                timed(lambda: lab.sql(f"SELECT {cols} FROM spans"), args.repeat),
            ),
            ("span_tree() all traces", timed(lab.span_tree, args.repeat)),
            ("span_tree SQL view, all traces", timed(lambda: lab.sql("SELECT * FROM span_tree"), 1)),
            ("critical_paths() all traces", timed(lab.critical_paths, args.repeat)),
            ("critical_path_summary() all traces", timed(lab.critical_path_summary, args.repeat)),
            (
                "baseline: read one trace into Polars",
                timed(
                    lambda: lab.sql(f"SELECT {cols} FROM spans WHERE trace_id = ?", [tid]), args.repeat * 3
                ),
            ),
            ("span_tree(trace_id)", timed(lambda: lab.span_tree(tid), args.repeat * 3)),
            ("critical_path(trace_id)", timed(lambda: lab.critical_path(tid), args.repeat * 3)),
        ]
    base_all, base_one = rows[0][1][0], rows[5][1][0]
    print(f"{'':40s} {'wall s':>9s} {'cpu s':>8s} {'x baseline (wall)':>18s}")
    for i, (label, (wall, cpu)) in enumerate(rows):
        base = base_all if i < 5 else base_one
        print(f"{label:40s} {wall:9.3f} {cpu:8.3f} {wall / base:17.1f}x")


if __name__ == "__main__":
    main()
