"""How close is a fleet twin fitted from real TrainTicket traces? (Not a speed benchmark: an accuracy report.)

1. Fault-free traffic: the shared capture's normal minute plus the 50 s before each of its 17 faults
   (~15 minutes). The twin is fitted on half of the traces (by trace id) and simulated with the
   arrivals of the other half; per-operation latency, calls per request and end-to-end latency are
   compared (README targets: p50 within 10 %, p95 within 20 % for operations with >= 100 spans,
   calls per edge within 5 %).
2. The same for the SDK capture (datasets/sdk-shop).
3. Each labelled fault replayed on a twin fitted from all the fault-free traffic: which services
   slow down by >= 25 % in the capture and on the twin.

    python benchmarks/eval_twin.py [--shared ../shared/datasets/trainticket-nezha-2023-01-30] [--db /tmp/tt.duckdb]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import polars as pl

from otlp_lab import Lab
from otlp_lab.errors import OtlpLabError
from otlp_lab.sim import fit, rehearse, validate

ROOT = Path(__file__).resolve().parents[1]


def normal_windows(faults: list[dict]) -> list[tuple[dt.datetime, dt.datetime]]:
    """The capture's fault-free minute and the 50 s before each injected fault."""
    out = [(dt.datetime(2023, 1, 30, 11, 38, 50), dt.datetime(2023, 1, 30, 11, 40, 0))]
    for f in faults:
        t = dt.datetime.fromtimestamp(int(f["inject_timestamp"]), dt.UTC).replace(tzinfo=None)
        out.append((t - dt.timedelta(seconds=50), t - dt.timedelta(seconds=2)))
    return out


def show_validation(title: str, v) -> None:
    print(f"\n## {title}\n")
    s = v.summary
    print("  ".join(f"{k}: {x:.3g}" if isinstance(x, float) else f"{k}: {x}" for k, x in s.items()))
    with pl.Config(tbl_rows=20, tbl_cols=12, tbl_width_chars=180, fmt_str_lengths=48, float_precision=2):
        print(
            v.endpoints.filter(pl.col("n_captured") >= v.min_spans).select(
                "service",
                "endpoint",
                "n_captured",
                "p50_ms",
                "p50_sim_ms",
                "p50_err",
                "p95_ms",
                "p95_sim_ms",
                "p95_err",
            )
        )
        print(v.end_to_end)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--shared", default=str(ROOT.parent / "shared" / "datasets" / "trainticket-nezha-2023-01-30")
    )
    ap.add_argument(
        "--db", default=None, help="Keep the loaded capture in this DuckDB file (reused when present)."
    )
    args = ap.parse_args()
    shared = Path(args.shared)
    faults = json.loads((shared / "faults.json").read_text())
    lab = Lab(args.db) if args.db else Lab()
    if lab.counts()["spans"] == 0:
        t0 = time.perf_counter()
        lab.load(shared / "normal", shared / "faulty")
        print(f"loaded {lab.counts()['spans']:,} spans in {time.perf_counter() - t0:.0f} s")
    windows = normal_windows(faults)

    t0 = time.perf_counter()
    half = fit(lab, window=windows, part=(0, 2))
    v = validate(half, lab, window=windows, part=(1, 2), min_spans=100)
    show_validation(
        f"TrainTicket, fault-free traffic, held-out half of the traces ({time.perf_counter() - t0:.0f} s)", v
    )

    with Lab() as sdk:
        sdk.load(ROOT / "datasets" / "sdk-shop")
        vs = validate(fit(sdk, part=(0, 2)), sdk, part=(1, 2), min_spans=25)
        show_validation(
            "SDK shop capture, held-out half (operations with >= 25 spans: it holds 120 requests)", vs
        )

    twin = fit(lab, window=windows)
    rows = []
    for f in faults:
        try:
            r = rehearse(
                twin, lab, service=f["inject_service"], kind=f["inject_type"], at=int(f["inject_timestamp"])
            )
        except OtlpLabError as exc:
            print(f"skipped {f['inject_time']} {f['inject_service']}: {exc}")
            continue
        rows.append(
            {
                "time": f["inject_time"][11:],
                "service": f["inject_service"],
                "kind": f["inject_type"],
                **r.summary,
            }
        )
    print("\n## Captured faults replayed on the twin (impacted: median latency x1.25 or more)\n")
    frame = pl.DataFrame(rows)
    with pl.Config(tbl_rows=20, tbl_cols=12, tbl_width_chars=200, float_precision=2):
        print(frame)
    print(
        f"mean agreement {frame['agreement'].mean():.2f}; services impacted in the capture also impacted on the twin: "
        f"{frame['impacted in both'].sum()} of {frame['impacted (captured)'].sum()}; "
        f"impacted on the twin only: {(frame['impacted (twin)'] - frame['impacted in both']).sum()}"
    )


if __name__ == "__main__":
    main()
