"""Replay and live time-shifting: one implementation for the sender and the simulator's live mode.

Both move recorded (or simulated) times so the telemetry looks current: the anchor time of
each row (span start, log record time, metric point time) is mapped by
``t' = now + (t - t0) / speed``; the row's other times keep their offset from the anchor
(span end, event times, observed time), so durations never change; metric start times are
mapped like the anchor. :data:`EXPORT_TIMES` names those columns in the encoder's export
staging form (the sender), :func:`staging_times` in the store's staging batches (the simulator).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import Message

from otlp_lab.errors import ConfigError
from otlp_lab.otlp import Signal
from otlp_lab.otlp.staging import TS as _TS

__all__ = [
    "EXPORT_TIMES",
    "PACING_WINDOW_S",
    "Replay",
    "TimeColumns",
    "anchor_ns",
    "first_time_ns",
    "first_time_of",
    "retime_table",
    "signal_of",
    "staging_times",
    "time_sorted",
    "windows",
]

PACING_WINDOW_S = 0.2  # paced replay: items due within this much wall time may share a request


@dataclass(frozen=True, slots=True, kw_only=True)
class Replay:
    """How to replay recorded telemetry.

    Parameters
    ----------
    shift_to_now : bool, default True
        Rewrite timestamps so the capture starts now: ``t' = now + (t - t0) / speed`` for each
        span start, log record time and metric point time (``t0`` = the capture's first such
        time). Span end and event times keep their offset from the span start, so durations
        are unchanged; exemplar times follow their point.
    speed : float, default 1
        Time scaling of the shifted timestamps and of the pacing.
    paced : bool, default False
        Send each request when the wall clock reaches its first item's (replayed) time,
        ``speed`` times faster than it was recorded; otherwise send as fast as possible.

    Examples
    --------
    >>> Replay(speed=10, paced=True)   # ten times faster than recorded, timestamps from now
    Replay(shift_to_now=True, speed=10, paced=True)
    """

    shift_to_now: bool = True
    speed: float = 1.0
    paced: bool = False

    def __post_init__(self) -> None:
        if (
            not isinstance(self.speed, (int, float))
            or isinstance(self.speed, bool)
            or not self.speed > 0
            or math.isinf(self.speed)
        ):
            raise ConfigError(f"replay speed must be a positive number. Got {self.speed!r} instead.")


@dataclass(frozen=True, slots=True)
class TimeColumns:
    """Which columns of a table hold times, and how each moves when the table is retimed."""

    anchor: str  # mapped: t' = now + (t - t0) / speed
    follow: tuple[str, ...] = ()  # keep their offset from the anchor
    nested: tuple[str, ...] = ()  # list-of-struct columns whose "time" keeps its offset
    mapped: tuple[str, ...] = ()  # mapped like the anchor
    fallback: str | None = None  # the anchor of a row whose anchor is null


# the encoder's export staging form, per signal (the sender)
EXPORT_TIMES: dict[str, TimeColumns] = {
    "traces": TimeColumns("start_time", follow=("end_time",), nested=("events",)),
    "logs": TimeColumns("time", follow=("observed_time",), fallback="observed_time"),
    "metrics": TimeColumns("time", nested=("exemplars",), mapped=("start_time",)),
}
_STAGING_TIMES: dict[str, TimeColumns] = {
    "spans": TimeColumns("start_time", follow=("end_time",)),
    "logs": TimeColumns("time", follow=("observed_time",), fallback="observed_time"),
}
_METRIC_STAGING = TimeColumns("time", nested=("exemplars",), mapped=("start_time",))


def staging_times(table_name: str) -> TimeColumns | None:
    """The time columns of a staging table of the store (spans, logs, metric_*), or None."""
    if table_name.startswith("metric_"):
        return _METRIC_STAGING
    return _STAGING_TIMES.get(table_name)


def _ns(col: Any) -> Any:
    """Timestamps (any unit) or integers as int64 nanoseconds."""
    if pa.types.is_timestamp(col.type):
        return pc.cast(col.cast(_TS), pa.int64())
    return pc.cast(col, pa.int64())


def anchor_ns(cols: TimeColumns, table: pa.Table) -> Any:
    """The anchor time of each row (the fallback where it is null), int64 ns; None without one."""
    if cols.anchor not in table.column_names:
        return None
    col = _ns(table.column(cols.anchor))
    if cols.fallback is not None and cols.fallback in table.column_names:
        col = pc.coalesce(col, _ns(table.column(cols.fallback)))
    return col


def first_time_ns(signal: str, tables: Iterable[pa.Table]) -> int | None:
    """The earliest anchor time of export staging tables (None if there is none)."""
    lows = [
        pc.min(a).as_py()
        for t in tables
        if t.num_rows and (a := anchor_ns(EXPORT_TIMES[signal], t)) is not None
    ]
    lows = [x for x in lows if x]
    return min(lows) if lows else None


def retime_table(table: pa.Table, cols: TimeColumns, t0_ns: int, now_ns: int, speed: float = 1.0) -> pa.Table:
    """``table`` with its times mapped: anchor ``t' = now_ns + (t - t0_ns) / speed``, the others as
    :class:`TimeColumns` says (durations kept)."""
    if cols.anchor not in table.column_names or not table.num_rows:
        return table

    def remap(x: Any) -> Any:
        off = pc.subtract(x, t0_ns)
        if speed != 1.0:
            off = pc.cast(pc.floor(pc.divide(pc.cast(off, pa.float64()), speed)), pa.int64())
        return pc.add(off, now_ns)

    old = _ns(table.column(cols.anchor))
    new = remap(old)
    delta = pc.subtract(new, old)  # per row: how far this row's anchor moved
    if cols.fallback is not None and cols.fallback in table.column_names:
        fb = _ns(table.column(cols.fallback))
        delta = pc.coalesce(delta, pc.subtract(remap(fb), fb))
    out = table

    def put(name: str, values: Any) -> None:
        nonlocal out
        out = out.set_column(out.schema.get_field_index(name), name, pc.cast(values, _TS))

    put(cols.anchor, new)
    for name in cols.follow:
        if name in out.column_names:
            put(name, pc.add(_ns(out.column(name)), delta))
    for name in cols.mapped:
        if name in out.column_names:
            put(name, remap(_ns(out.column(name))))
    for name in cols.nested:
        if name in out.column_names:
            i = out.schema.get_field_index(name)
            out = out.set_column(i, name, _shift_nested(out.column(name), delta))
    return out


def _shift_nested(col: Any, delta: Any) -> Any:
    """Move the ``time`` field of each struct in a list-of-structs column by its row's delta."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_list(arr.type) or not len(arr):
        return arr
    structs = arr.flatten()
    if "time" not in [f.name for f in structs.type]:
        return arr
    d = delta.combine_chunks() if isinstance(delta, pa.ChunkedArray) else delta
    rows = pc.list_parent_indices(arr)
    moved = pc.add(_ns(structs.field("time")), pc.take(d, rows))
    time_type = structs.type.field("time").type
    new_fields = [
        pc.cast(moved, _TS).cast(time_type) if f.name == "time" else structs.field(f.name)
        for f in structs.type
    ]
    new_structs = pa.StructArray.from_arrays(new_fields, fields=list(structs.type), mask=structs.is_null())
    return pa.ListArray.from_arrays(arr.offsets, new_structs, mask=arr.is_null())


# ---------------------------------------------------------------- pacing


_SIGNAL_OF = {
    "ExportTraceServiceRequest": "traces",
    "ExportMetricsServiceRequest": "metrics",
    "ExportLogsServiceRequest": "logs",
}


def signal_of(message: Message) -> Signal:
    """The signal of an Export*ServiceRequest message."""
    sig = _SIGNAL_OF.get(type(message).__name__)
    if sig is None:
        raise ConfigError(
            f"expected an Export{{Trace,Metrics,Logs}}ServiceRequest. Got a {type(message).__name__} instead."
        )
    return sig  # type: ignore[return-value]


def first_time_of(message: Message) -> int:
    """The earliest span start / record time / point time in a request (0 if none)."""
    sig = signal_of(message)
    times: Iterable[int]
    if sig == "traces":
        times = (
            s.start_time_unix_nano for rs in message.resource_spans for ss in rs.scope_spans for s in ss.spans
        )  # type: ignore[attr-defined]
    elif sig == "logs":
        times = (
            r.time_unix_nano or r.observed_time_unix_nano
            for rl in message.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        )  # type: ignore[attr-defined]
    else:
        times = (
            p.time_unix_nano
            for rm in message.resource_metrics  # type: ignore[attr-defined]
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.WhichOneof("data")
            for p in getattr(m, m.WhichOneof("data")).data_points
        )
    return min((t for t in times if t), default=0)


def windows(signal: Signal, table: pa.Table, t0: int, window_ns: int) -> Iterator[pa.Table]:
    """Slices of a time-sorted table, one per window of ``window_ns`` of replayed time."""
    anchor = anchor_ns(EXPORT_TIMES[signal], table)
    if anchor is None or not table.num_rows:
        yield table
        return
    import numpy as np

    idx = pc.fill_null(pc.divide(pc.subtract(anchor, t0), window_ns), 0).to_numpy()
    cuts = [0, *(np.flatnonzero(np.diff(idx)) + 1).tolist(), len(idx)]
    for start, end in itertools.pairwise(cuts):
        yield table.slice(start, end - start)


def time_sorted(signal: Signal, tables: list[pa.Table]) -> list[pa.Table]:
    """One table per stream (per metric kind for metrics), sorted by the replay anchor time."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return []
    groups: dict[Any, list[pa.Table]] = {}
    for t in tables:
        key = (
            t.column("metric_kind")[0].as_py()
            if signal == "metrics" and "metric_kind" in t.column_names
            else None
        )
        groups.setdefault(key, []).append(t)
    out = []
    for ts in groups.values():
        t = pa.concat_tables(ts, promote_options="permissive")
        anchor = anchor_ns(EXPORT_TIMES[signal], t)
        if anchor is not None:
            t = t.take(pc.sort_indices(anchor))
        out.append(t)
    return out
