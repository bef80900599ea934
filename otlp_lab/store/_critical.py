"""Critical path of one trace (the algorithm Jaeger's trace view uses)."""

from __future__ import annotations

import sys

import polars as pl


def critical_path(spans: pl.DataFrame) -> pl.DataFrame:
    """Segments of the spans that determined a trace's end-to-end time.

    Walking back from the root's end, the path follows the child that finished last
    before the current point, recursively; time when no child was running counts to the
    span itself. Returns one row per segment: span_id, service_name, name, start/end
    (ns since epoch), self_ms, and share of the trace's duration.
    """
    rows = {r["span_id"]: r for r in spans.iter_rows(named=True)}
    children: dict[str, list[dict]] = {}
    roots = []
    for r in rows.values():
        p = r["parent_span_id"]
        if p is not None and p in rows and p != r["span_id"]:
            children.setdefault(p, []).append(r)
        else:
            roots.append(r)
    root = min(roots or list(rows.values()), key=lambda r: r["start_ns"] or 0)
    segments: list[tuple[dict, int, int]] = []

    def walk(span: dict, until: int, depth: int) -> None:
        s_start, cursor = span["start_ns"], min(span["end_ns"], until)
        if depth > 256:
            segments.append((span, s_start, cursor))
            return
        for child in sorted(children.get(span["span_id"], []), key=lambda c: c["end_ns"], reverse=True):
            c_end = min(child["end_ns"], cursor)
            if child["start_ns"] >= cursor or c_end <= max(child["start_ns"], s_start):
                continue
            if c_end < cursor:
                segments.append((span, c_end, cursor))
            walk(child, c_end, depth + 1)
            cursor = max(child["start_ns"], s_start)
        if cursor > s_start:
            segments.append((span, s_start, cursor))

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 2000))
    try:
        walk(root, root["end_ns"], 0)
    finally:
        sys.setrecursionlimit(old)
    total = max(root["end_ns"] - root["start_ns"], 1)
    out = [
        {
            "span_id": s["span_id"],
            "service_name": s["service_name"],
            "name": s["name"],
            "start_ns": a,
            "end_ns": b,
            "self_ms": (b - a) / 1e6,
            "share": (b - a) / total,
        }
        for s, a, b in segments
    ]
    schema = {
        "span_id": pl.String,
        "service_name": pl.String,
        "name": pl.String,
        "start_ns": pl.Int64,
        "end_ns": pl.Int64,
        "self_ms": pl.Float64,
        "share": pl.Float64,
    }
    return pl.DataFrame(out, schema=schema).sort("start_ns")
