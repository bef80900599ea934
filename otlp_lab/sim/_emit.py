"""Simulator output: flat rows in, the codec's Arrow *staging* tables out.

The engine appends one tuple per span (and a few per state change or metric point) to
the sinks here; every ``batch_rows`` spans the sinks become one batch dict
(``spans``, ``logs``, ``metric_sum``, ``metric_gauge``, ``metric_histogram``, ``_ctx``) in
exactly the form :meth:`otlp_lab.Lab.load_batches` takes from the OTLP codec, and are
cleared. Memory is bounded by the batch size, not the run length.

Ids are counters in the hot path. At flush they become OTLP ids with numpy: a span id is
``mix64(salt + n)`` (a bijection on 64 bits, so unique within a run and random-looking);
a trace id is the run's 8-byte salt followed by ``mix64(salt ^ trace number)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from otlp_lab.otlp.staging import (
    I64,
    KIND_CLIENT,
    KIND_INTERNAL,
    KIND_SERVER,
    SEVERITY_NUMBERS,
    STATUS_ERROR,
    STATUS_UNSET,
    T_BOOL,
    T_DOUBLE,
    T_INT,
    T_STR,
    TS,
    VALUE_TYPE,
)

__all__ = [
    "AttrPool",
    "Emitter",
    "KIND_INTERNAL",
    "KIND_SERVER",
    "KIND_CLIENT",
    "STATUS_UNSET",
    "STATUS_ERROR",
]

SEVERITY = {k: SEVERITY_NUMBERS[k] for k in ("DEBUG", "INFO", "WARN", "ERROR")}
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijection of uint64 (vectorised; wraps silently)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _binary(data: bytes, offsets: np.ndarray, n: int) -> pa.Array:
    return pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets.astype(np.int32).tobytes()), pa.py_buffer(data)]
    )


def _fixed_ids(words: np.ndarray, width: int) -> pa.Array:
    """Big-endian bytes of ``words`` (shape (n,) or (n, 2)) as a ``binary`` array of ``width``-byte ids."""
    n = words.shape[0]
    return _binary(words.astype(">u8").tobytes(), np.arange(0, n * width + 1, width), n)


class AttrPool:
    """Distinct attribute (key, value) pairs of a run, interned: rows hold their indices.

    Only small value sets are interned (names, statuses, counts); the pool's size is bounded
    by the scenario, not the run length.
    """

    __slots__ = ("index", "keys", "t", "s", "b", "i", "d", "_arrow", "_arrow_n")

    def __init__(self) -> None:
        self.index: dict[tuple[str, type, Any], int] = {}
        self.keys: list[str] = []
        self.t: list[int] = []
        self.s: list[str | None] = []
        self.b: list[bool | None] = []
        self.i: list[int | None] = []
        self.d: list[float | None] = []
        self._arrow: tuple[pa.Array, pa.Array] | None = None
        self._arrow_n = -1

    def __call__(self, key: str, value: Any) -> int:
        """The index of ``key=value`` (added on first use)."""
        ck = (key, type(value), value)
        idx = self.index.get(ck)
        if idx is None:
            idx = self.index[ck] = len(self.keys)
            t = (
                T_BOOL
                if isinstance(value, bool)
                else T_INT
                if isinstance(value, int)
                else T_DOUBLE
                if isinstance(value, float)
                else T_STR
            )
            self.keys.append(key)
            self.t.append(t)
            self.s.append(str(value) if t == T_STR else None)
            self.b.append(value if t == T_BOOL else None)
            self.i.append(value if t == T_INT else None)
            self.d.append(value if t == T_DOUBLE else None)
        return idx

    def many(self, attrs: dict[str, Any]) -> tuple[int, ...]:
        return tuple(self(k, v) for k, v in attrs.items() if v is not None)

    def arrow(self) -> tuple[pa.Array, pa.Array]:
        if self._arrow is None or self._arrow_n != len(self.keys):
            n = len(self.keys)
            vals = pa.StructArray.from_arrays(
                [
                    pa.array(self.t, pa.int8()),
                    pa.array(self.s, pa.string()),
                    pa.array(self.b, pa.bool_()),
                    pa.array(self.i, I64),
                    pa.array(self.d, pa.float64()),
                    pa.nulls(n, pa.binary()),
                    pa.nulls(n, pa.string()),
                ],
                fields=list(VALUE_TYPE),
            )
            self._arrow = (pa.array(self.keys, pa.string()), vals)
            self._arrow_n = n
        return self._arrow

    def lists(self, rows: Iterable[tuple[int, ...]]) -> tuple[pa.Array, pa.Array]:
        """Per-row key and value lists for rows of attribute indices."""
        rows = list(rows)
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(np.fromiter(map(len, rows), dtype=np.int32, count=len(rows)), out=offsets[1:])
        idx = pa.array(np.fromiter(chain.from_iterable(rows), dtype=np.int32, count=int(offsets[-1])))
        keys, vals = self.arrow()
        offs = pa.array(offsets)
        return pa.ListArray.from_arrays(offs, keys.take(idx)), pa.ListArray.from_arrays(offs, vals.take(idx))


class Emitter:
    """The sinks of one run: rows of spans, logs and metric points, flushed as staging batches.

    Parameters
    ----------
    contexts : list of dict
        Resource attributes per context; row ``ctx`` values index this list.
    salt : int
        64-bit per-run salt for the ids.
    start_ns : int
        Wall-clock Unix nanoseconds of simulated time 0.
    scope : (name, version)
        The instrumentation scope of every row.
    """

    def __init__(
        self, contexts: list[dict[str, Any]], *, salt: int, start_ns: int, scope: tuple[str, str]
    ) -> None:
        self.pool = AttrPool()
        self.salt = np.uint64(salt & 0xFFFF_FFFF_FFFF_FFFF)
        self._salt_bytes = int(self.salt).to_bytes(8, "big")
        self.start_ns = start_ns
        self.spans: list[tuple] = []  # (trace, span, parent, name, kind, t0, t1, status, message, ctx, attrs)
        self.logs: list[tuple] = []  # (t, severity, body, event_name, ctx, attrs)
        self.sums: list[tuple] = []  # (name, unit, description, t, value, ctx, attrs, monotonic)
        self.gauges: list[tuple] = []  # (name, unit, description, t, value, ctx, attrs)
        self.hists: list[
            tuple
        ] = []  # (name, unit, description, t, count, sum, min, max, buckets, bounds, ctx, attrs)
        self._ctx_table = self._contexts(contexts, scope)

    # ---------------------------------------------------------------- the context table
    def _contexts(self, contexts: list[dict[str, Any]], scope: tuple[str, str]) -> pa.Table:
        pool = AttrPool()
        rows = [pool.many(c) for c in contexts]
        rk, rv = pool.lists(rows)
        n = len(contexts)
        empty_k = pa.array([[]] * n, pa.list_(pa.string()))
        empty_v = pa.array([[]] * n, pa.list_(VALUE_TYPE))
        return pa.table(
            {
                "ctx": pa.array(range(n), pa.int32()),
                "service_name": pa.array([c.get("service.name") for c in contexts], pa.string()),
                "resource_keys": rk,
                "resource_vals": rv,
                "resource_dropped_attributes_count": pa.array([0] * n, I64),
                "resource_schema_url": pa.array([""] * n, pa.string()),
                "scope_name": pa.array([scope[0]] * n, pa.string()),
                "scope_version": pa.array([scope[1]] * n, pa.string()),
                "scope_keys": empty_k,
                "scope_vals": empty_v,
                "scope_dropped_attributes_count": pa.array([0] * n, I64),
                "scope_schema_url": pa.array([""] * n, pa.string()),
            }
        )

    # ---------------------------------------------------------------- helpers
    def _times(self, seconds: Iterable[float]) -> pa.Array:
        arr = np.fromiter(seconds, dtype=np.float64)
        return pa.array(np.rint(arr * 1e9).astype(np.int64) + self.start_ns).cast(TS)

    def span_ids(self, numbers: np.ndarray) -> np.ndarray:
        return mix64(numbers.astype(np.uint64) + self.salt)

    def trace_ids(self, numbers: np.ndarray) -> pa.Array:
        words = np.empty((numbers.shape[0], 2), dtype=np.uint64)
        words[:, 0] = self.salt
        words[:, 1] = mix64(numbers.astype(np.uint64) ^ self.salt)
        return _fixed_ids(words, 16)

    def _parents(self, parents: np.ndarray) -> pa.Array:
        has = parents != 0
        ids = self.span_ids(parents[has])
        offsets = np.zeros(parents.shape[0] + 1, dtype=np.int64)
        np.cumsum(has * 8, out=offsets[1:])
        return _binary(ids.astype(">u8").tobytes(), offsets, parents.shape[0])

    # ---------------------------------------------------------------- tables
    def _span_table(self) -> pa.Table:
        rows = self.spans
        n = len(rows)
        trace, span, parent, name, kind, t0, t1, status, msg, ctx, attrs = zip(*rows, strict=True)
        ak, av = self.pool.lists(attrs)
        zeros = pa.array(np.zeros(n, dtype=np.int64))
        return pa.table(
            {
                "trace_id": self.trace_ids(np.array(trace, dtype=np.uint64)),
                "span_id": _fixed_ids(self.span_ids(np.array(span, dtype=np.uint64)), 8),
                "parent_span_id": self._parents(np.array(parent, dtype=np.uint64)),
                "trace_state": pa.array([""] * n, pa.string()),
                "name": pa.array(name, pa.string()),
                "kind": pa.array(kind, pa.int32()),
                "start_time": self._times(t0),
                "end_time": self._times(t1),
                "status_code": pa.array(status, pa.int32()),
                "status_message": pa.array(msg, pa.string()),
                "flags": pa.array(np.ones(n, dtype=np.int64)),  # W3C trace flags: sampled
                "dropped_attributes_count": zeros,
                "dropped_events_count": zeros,
                "dropped_links_count": zeros,
                "attr_keys": ak,
                "attr_vals": av,
                "ctx": pa.array(ctx, pa.int32()),
            }
        )

    def _log_table(self) -> pa.Table:
        t, sev, body, event, ctx, attrs = zip(*self.logs, strict=True)
        n = len(t)
        ak, av = self.pool.lists(attrs)
        times = self._times(t)
        bodies = pa.StructArray.from_arrays(
            [
                pa.array([T_STR] * n, pa.int8()),
                pa.array(body, pa.string()),
                pa.nulls(n, pa.bool_()),
                pa.nulls(n, I64),
                pa.nulls(n, pa.float64()),
                pa.nulls(n, pa.binary()),
                pa.nulls(n, pa.string()),
            ],
            fields=list(VALUE_TYPE),
        )
        empty = pa.array([b""] * n, pa.binary())
        return pa.table(
            {
                "time": times,
                "observed_time": times,
                "severity_number": pa.array([SEVERITY[s] for s in sev], pa.int32()),
                "severity_text": pa.array(sev, pa.string()),
                "body": bodies,
                "trace_id": empty,
                "span_id": empty,
                "flags": pa.array(np.zeros(n, dtype=np.int64)),
                "dropped_attributes_count": pa.array(np.zeros(n, dtype=np.int64)),
                "event_name": pa.array(event, pa.string()),
                "attr_keys": ak,
                "attr_vals": av,
                "ctx": pa.array(ctx, pa.int32()),
            }
        )

    def _metric_common(
        self, names: tuple, units: tuple, descs: tuple, t: tuple, ctx: tuple, attrs: tuple
    ) -> dict[str, pa.Array]:
        n = len(names)
        ak, av = self.pool.lists(attrs)
        return {
            "metric_name": pa.array(names, pa.string()),
            "description": pa.array(descs, pa.string()),
            "unit": pa.array(units, pa.string()),
            "start_time": pa.array(np.full(n, self.start_ns, dtype=np.int64)).cast(TS),
            "time": self._times(t),
            "flags": pa.array(np.zeros(n, dtype=np.int64)),
            "attr_keys": ak,
            "attr_vals": av,
            "meta_keys": pa.array([[]] * n, pa.list_(pa.string())),
            "meta_vals": pa.array([[]] * n, pa.list_(VALUE_TYPE)),
        }

    def _exemplars(self, n: int) -> pa.Array:
        from otlp_lab.otlp.staging import EXEMPLAR_TYPE

        return pa.array([[]] * n, pa.list_(EXEMPLAR_TYPE))

    def _sum_table(self) -> pa.Table:
        name, unit, desc, t, value, ctx, attrs, mono = zip(*self.sums, strict=True)
        cols = self._metric_common(name, unit, desc, t, ctx, attrs)
        n = len(name)
        cols |= {
            "value": pa.array([float(v) for v in value], pa.float64()),
            "int_value": pa.array(value, I64),
            "aggregation_temporality": pa.array([2] * n, pa.int32()),  # CUMULATIVE
            "is_monotonic": pa.array(mono, pa.bool_()),
            "exemplars": self._exemplars(n),
            "ctx": pa.array(ctx, pa.int32()),
        }
        return pa.table(cols)

    def _gauge_table(self) -> pa.Table:
        name, unit, desc, t, value, ctx, attrs = zip(*self.gauges, strict=True)
        cols = self._metric_common(name, unit, desc, t, ctx, attrs)
        cols |= {
            "value": pa.array([float(v) for v in value], pa.float64()),
            "int_value": pa.array([v if isinstance(v, int) else None for v in value], I64),
            "exemplars": self._exemplars(len(name)),
            "ctx": pa.array(ctx, pa.int32()),
        }
        return pa.table(cols)

    def _hist_table(self) -> pa.Table:
        name, unit, desc, t, count, total, lo, hi, buckets, bounds, ctx, attrs = zip(*self.hists, strict=True)
        cols = self._metric_common(name, unit, desc, t, ctx, attrs)
        n = len(name)
        cols |= {
            "count": pa.array(count, pa.uint64()),
            "sum": pa.array(total, pa.float64()),
            "min": pa.array(lo, pa.float64()),
            "max": pa.array(hi, pa.float64()),
            "bucket_counts": pa.array(buckets, pa.list_(pa.uint64())),
            "explicit_bounds": pa.array(bounds, pa.list_(pa.float64())),
            "aggregation_temporality": pa.array([2] * n, pa.int32()),
            "exemplars": self._exemplars(n),
            "ctx": pa.array(ctx, pa.int32()),
        }
        return pa.table(cols)

    def flush(self) -> dict[str, pa.Table]:
        """The rows so far as one staging batch (empty dict when there are none); clears the sinks."""
        out: dict[str, pa.Table] = {}
        for key, rows, build in (
            ("spans", self.spans, self._span_table),
            ("logs", self.logs, self._log_table),
            ("metric_sum", self.sums, self._sum_table),
            ("metric_gauge", self.gauges, self._gauge_table),
            ("metric_histogram", self.hists, self._hist_table),
        ):
            if rows:
                out[key] = build()
                rows.clear()
        if out:
            out["_ctx"] = self._ctx_table
        return out
