"""``span_tree`` computed in Polars: the same rows as the ``span_tree`` SQL view, in milliseconds per trace.

The SQL view walks parent links with a recursive CTE, which costs about a second per 100k
spans even for one trace; :meth:`Lab.span_tree` reads the (deduplicated) spans once and does
the walk here, level by level, with joins over whole columns.
"""

from __future__ import annotations

import numpy as np
import polars as pl

COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "service_name",
    "name",
    "kind",
    "start_time",
    "end_time",
    "duration_ns",
    "status_code",
)
MAX_DEPTH = 512

NARROW_SQL = (
    f"SELECT {', '.join(COLUMNS)} FROM spans {{where}} "
    "QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY load_id, start_time) = 1"
)


def span_tree(spans: pl.DataFrame) -> pl.DataFrame:
    """Depth, root service/operation, parent service, ``is_entry`` and self time of deduplicated spans.

    A root is a span with no parent, a parent not in the data, or itself as parent (depth 0);
    a span on a parent cycle that no root reaches keeps a null depth. Self time is the
    duration minus the union of the children's intervals clipped to the span.
    """
    n = spans.height
    idx = spans.with_row_index("_i").select("trace_id", "span_id", "_i")
    par_frame = spans.select("trace_id", "span_id", "parent_span_id").join(
        idx.rename({"span_id": "parent_span_id", "_i": "_p"}),
        on=["trace_id", "parent_span_id"],
        how="left",
        maintain_order="left",
    )
    par = par_frame["_p"].fill_null(-1).to_numpy().astype(np.int64)
    rows = np.arange(n, dtype=np.int64)
    par[par == rows] = -1  # a span that names itself as parent is a root
    orphan = par < 0

    depth = np.full(n, -1, dtype=np.int64)
    root = np.full(n, -1, dtype=np.int64)
    depth[orphan], root[orphan] = 0, rows[orphan]
    pending = np.flatnonzero(~orphan)
    for _ in range(MAX_DEPTH):
        if pending.size == 0:
            break
        ready = depth[par[pending]] >= 0
        if not ready.any():
            break  # the rest sit on cycles no root reaches
        done = pending[ready]
        depth[done] = depth[par[done]] + 1
        root[done] = root[par[done]]
        pending = pending[~ready]

    start = spans["start_time"].dt.epoch("ns").to_numpy()
    end = spans["end_time"].dt.epoch("ns").to_numpy()
    covered = _covered(par, start, end)

    service = spans["service_name"]
    names = spans["name"]
    has_root = root >= 0
    root_idx = pl.Series(np.where(has_root, root, 0))
    parent_idx = pl.Series(np.where(orphan, 0, par))
    parent_service = service.gather(parent_idx)
    return (
        spans.with_columns(
            pl.when(pl.Series(orphan)).then(None).otherwise(parent_service).alias("parent_service"),
            (pl.Series(orphan) | parent_service.ne_missing(service)).alias("is_entry"),
            pl.Series("depth", np.where(depth >= 0, depth, 0), dtype=pl.Int32),
            service.gather(root_idx).alias("root_service"),
            names.gather(root_idx).alias("root_name"),
            (pl.col("duration_ns") - pl.Series(covered)).cast(pl.Int64).alias("self_time_ns"),
        )
        .with_columns(
            *(
                pl.when(pl.Series(has_root)).then(pl.col(c)).otherwise(None).alias(c)
                for c in ("depth", "root_service", "root_name")
            )
        )
        .sort("trace_id", "start_time", maintain_order=True)
    )


def _covered(par: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Per span: length of the union of its children's intervals clipped to it (ns)."""
    n = par.size
    out = np.zeros(n, dtype=np.int64)
    kid = np.flatnonzero(par >= 0)
    p = par[kid]
    s = np.maximum(start[kid], start[p])
    e = np.minimum(end[kid], end[p])
    keep = e > s
    p, s, e = p[keep], s[keep], e[keep]
    if p.size == 0:
        return out
    order = np.lexsort((e, s, p))
    p, s, e = p[order], s[order], e[order]
    first = np.r_[True, p[1:] != p[:-1]]
    # Running max of the ends within each parent: offset each parent's (relative) times so one
    # global running max never crosses a parent boundary; chunked so the offsets fit in int64.
    gstart = np.flatnonzero(first)
    gsize = np.diff(np.r_[gstart, p.size])
    base = np.repeat(s[gstart], gsize)
    rel_s, rel_e = s - base, e - base
    big = int(rel_e.max()) + 1
    per_chunk = max(1, (1 << 62) // big)
    run = np.empty_like(rel_e)
    for g0 in range(0, gstart.size, per_chunk):
        a = gstart[g0]
        b = gstart[g0 + per_chunk] if g0 + per_chunk < gstart.size else p.size
        gi = np.cumsum(first[a:b]) - 1
        off = gi.astype(np.int64) * big
        run[a:b] = np.maximum.accumulate(rel_e[a:b] + off) - off
    prev = np.r_[0, run[:-1]]
    new_island = first | (rel_s > prev)
    island_id = np.cumsum(new_island) - 1
    island_len = np.zeros(island_id[-1] + 1, dtype=np.int64)
    # island length = its running max at the last row - its first start
    last_row = np.r_[np.flatnonzero(new_island)[1:] - 1, p.size - 1]
    island_len = run[last_row] - rel_s[new_island]
    np.add.at(out, p[new_island], island_len)
    return out
