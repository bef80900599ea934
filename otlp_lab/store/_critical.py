"""Critical path of a trace, computed the way Jaeger's trace view computes it.

The rules follow jaeger-ui (``packages/jaeger-ui/src/components/TracePage/CriticalPath``):

1. Identical duplicate spans (the same ``span_id`` loaded twice) are kept once.
2. The path is computed per root span (a span with no parent, or whose parent is not in the
   trace), each over its own subtree; the sections of all roots are returned together.
3. A CONSUMER child of a PRODUCER span does not block its parent: it is pruned with its subtree.
4. Children are clamped to their (already clamped) parent; a child wholly outside its parent,
   or starting exactly at its end, is dropped with its subtree.
5. From a span's end the path follows the last-finishing child (the first one in start order
   on a tie); the span owns the time from that child's end to the span's end.
6. When a child has no child left, the path goes back to the parent at the child's start: the
   next child followed must end *strictly* before that start; the span owns the time between.
7. Zero-length sections are left out.

Times are nanoseconds since the epoch (Jaeger works in microseconds; the rules are the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

SEGMENT_SCHEMA: dict[str, Any] = {
    "trace_id": pl.String,
    "root_span_id": pl.String,
    "span_id": pl.String,
    "service_name": pl.String,
    "name": pl.String,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "self_ms": pl.Float64,
    "share": pl.Float64,
}

_NEEDED = ("span_id", "parent_span_id", "start_ns", "end_ns")


def _sections(
    ids: Sequence[str],
    parents: Sequence[str | None],
    starts: Sequence[int],
    ends: Sequence[int],
    kinds: Sequence[str | None],
) -> list[tuple[int, int, int, int]]:
    """Critical-path sections ``(root_row, span_row, start, end)`` of the spans of one trace."""
    index: dict[str, int] = {}
    for i, sid in enumerate(ids):  # rule 1: the first copy of a span id wins
        index.setdefault(sid, i)
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for sid, i in index.items():
        p = parents[i]
        j = index.get(p) if p is not None and p != sid else None
        if j is None:
            roots.append(i)
        else:
            children.setdefault(j, []).append(i)
    for kids in children.values():
        kids.sort(key=lambda k: (starts[k], ids[k]))
    roots.sort(key=lambda k: (starts[k], ids[k]))

    out: list[tuple[int, int, int, int]] = []
    for r in roots:
        # Depth-first pre-order from the root (parents before children), pruning PRODUCER->CONSUMER
        # children (rule 3) and clamping or dropping children against their clamped parent (rule 4).
        lo: dict[int, int] = {r: starts[r]}
        hi: dict[int, int] = {r: ends[r]}
        parent_of: dict[int, int] = {}
        kids_of: dict[int, list[int]] = {}
        stack = [r]
        while stack:
            i = stack.pop()
            ps, pe = lo[i], hi[i]
            producer = kinds[i] == "PRODUCER"
            kept: list[int] = []
            for j in children.get(i, ()):
                if j in lo:  # a cycle, or a span reached twice
                    continue
                if producer and kinds[j] == "CONSUMER":
                    continue
                cs, ce = starts[j], ends[j]
                if cs >= ps:
                    if cs >= pe:
                        continue
                    if ce > pe:
                        ce = pe
                else:
                    if ce <= ps:
                        continue
                    cs = ps
                    if ce > pe:
                        ce = pe
                lo[j], hi[j] = cs, ce
                parent_of[j] = i
                kept.append(j)
            if kept:
                kids_of[i] = kept
                stack.extend(reversed(kept))

        # Rules 5-7, walked iteratively (deep traces would overflow Python's recursion).
        cur: int | None = r
        returning: int | None = None
        while cur is not None:
            lfc = -1
            best = -1
            for c in kids_of.get(cur, ()):
                ce = hi[c]
                if ce > best and (returning is None or ce < returning):
                    best, lfc = ce, c
            sec_end = hi[cur] if returning is None else returning
            if lfc >= 0:
                if best != sec_end:
                    out.append((r, cur, best, sec_end))
                cur, returning = lfc, None
            else:
                if lo[cur] != sec_end:
                    out.append((r, cur, lo[cur], sec_end))
                returning = lo[cur]
                cur = parent_of.get(cur)
    return out


def critical_path(spans: pl.DataFrame) -> pl.DataFrame:
    """Critical-path segments of every trace in ``spans``, by Jaeger's rules (see the module doc).

    Parameters
    ----------
    spans : polars.DataFrame
        Columns ``span_id``, ``parent_span_id``, ``start_ns``, ``end_ns`` (ns since the epoch),
        and optionally ``trace_id`` (several traces at once), ``kind`` (for the
        PRODUCER->CONSUMER rule), ``service_name`` and ``name``.

    Returns
    -------
    polars.DataFrame
        One row per segment: ``trace_id``, ``root_span_id``, ``span_id``, ``service_name``,
        ``name``, ``start_ns``, ``end_ns``, ``self_ms`` and ``share`` (of its root span's
        duration). Per root, segments never overlap and add up to at most the root's duration.
    """
    missing = [c for c in _NEEDED if c not in spans.columns]
    if missing:
        from otlp_lab.errors import SchemaError

        raise SchemaError(f"critical_path(spans) needs the columns {list(_NEEDED)}. Missing: {missing}.")
    frame = spans
    for col in ("trace_id", "kind", "service_name", "name"):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(col))
    frame = frame.filter(pl.col("start_ns").is_not_null() & pl.col("end_ns").is_not_null())
    frame = frame.with_row_index("_row").sort("trace_id", "_row", maintain_order=True)
    trace = frame["trace_id"].to_list()
    ids = frame["span_id"].to_list()
    parents = frame["parent_span_id"].to_list()
    starts = frame["start_ns"].to_list()
    ends = frame["end_ns"].to_list()
    kinds = frame["kind"].to_list()
    root_rows: list[int] = []
    span_rows: list[int] = []
    sec_start: list[int] = []
    sec_end: list[int] = []
    lo = 0
    n = len(ids)
    while lo < n:
        hi = lo + 1
        while hi < n and trace[hi] == trace[lo]:
            hi += 1
        for r, i, a, b in _sections(ids[lo:hi], parents[lo:hi], starts[lo:hi], ends[lo:hi], kinds[lo:hi]):
            root_rows.append(lo + r)
            span_rows.append(lo + i)
            sec_start.append(a)
            sec_end.append(b)
        lo = hi
    span_idx = pl.Series(span_rows, dtype=pl.UInt32)
    root_idx = pl.Series(root_rows, dtype=pl.UInt32)
    a_ = pl.Series(sec_start, dtype=pl.Int64)
    b_ = pl.Series(sec_end, dtype=pl.Int64)
    root_len = (frame["end_ns"].gather(root_idx) - frame["start_ns"].gather(root_idx)).clip(lower_bound=1)
    out = pl.DataFrame(
        {
            "trace_id": frame["trace_id"].gather(span_idx),
            "root_span_id": frame["span_id"].gather(root_idx),
            "span_id": frame["span_id"].gather(span_idx),
            "service_name": frame["service_name"].gather(span_idx),
            "name": frame["name"].gather(span_idx),
            "start_ns": a_,
            "end_ns": b_,
            "self_ms": (b_ - a_) / 1e6,
            "share": (b_ - a_) / root_len,
        },
        schema=SEGMENT_SCHEMA,
    )
    return out.sort("trace_id", "root_span_id", "start_ns", nulls_last=True)


def summarize(segments: pl.DataFrame, by: Sequence[str]) -> pl.DataFrame:
    """Share of critical time per ``by`` columns over many traces' segments."""
    total = segments["self_ms"].sum() or 1.0
    return (
        segments.group_by(list(by))
        .agg(
            pl.col("self_ms").sum().alias("critical_ms"),
            pl.col("trace_id").n_unique().alias("traces"),
            pl.col("self_ms").sum().truediv(pl.col("trace_id").n_unique()).alias("mean_ms_per_trace"),
        )
        .with_columns((pl.col("critical_ms") / total).alias("share"))
        .sort("critical_ms", descending=True)
    )
