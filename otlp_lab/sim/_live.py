"""Live mode: a simulation exported to an OTLP endpoint as it runs, paced against the wall clock.

Pipeline, one slice of ``flush_s`` simulated seconds (1 s by default) at a time
-------------------------------------------------------------------------------
``Simulation.run_until(t)`` -> the emitter's staging batch (the form :meth:`Lab.load_batches` takes)
  -> retimed: simulated second ``s`` becomes wall time ``start + s / speed`` (span starts, record
     and point times; span durations are kept), so the telemetry looks current
  -> optionally loaded into a local Lab (the same rows, the same ids and times)
  -> the encoder's export staging form -> :func:`otlp_lab.otlp.encode_requests`
  -> realtime: held until the wall clock reaches ``start + t / speed``
  -> :class:`otlp_lab.transport.Sender` (batching, concurrency, retries, breaker).

The simulation runs in the sender's worker thread, at most one slice ahead of what was handed
over; when the peer is slow, the sender's bounded queue stops the simulation too and the lag
is reported (:attr:`StreamResult.max_lag_s`) rather than buffered.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from otlp_lab.errors import ConfigError, EncodeError
from otlp_lab.otlp import encode_requests
from otlp_lab.sim._run import (
    DEFAULT_BATCH_ROWS,
    RunResult,
    _Progress,
    _result,
    _setup,
    _slices,
    _write_ground_truth,
)
from otlp_lab.sim._scenario import Scenario

if TYPE_CHECKING:
    from otlp_lab.transport import Sender, SendReport

__all__ = ["StreamResult", "stream"]

# staging table -> (signal, metric kind)
_TABLES: dict[str, tuple[str, str | None]] = {
    "spans": ("traces", None),
    "logs": ("logs", None),
    "metric_gauge": ("metrics", "gauge"),
    "metric_sum": ("metrics", "sum"),
    "metric_histogram": ("metrics", "histogram"),
    "metric_exponential_histogram": ("metrics", "exponential_histogram"),
    "metric_summary": ("metrics", "summary"),
}
_CONTEXT_COLUMNS = (
    "service_name",
    "resource_dropped_attributes_count",
    "resource_schema_url",
    "scope_name",
    "scope_version",
    "scope_dropped_attributes_count",
    "scope_schema_url",
)
_CONTEXT_KV = {
    "resource_attributes": ("resource_keys", "resource_vals"),
    "scope_attributes": ("scope_keys", "scope_vals"),
}
_ROW_KV = {"attributes": ("attr_keys", "attr_vals"), "metadata": ("meta_keys", "meta_vals")}


@dataclass
class StreamResult:
    """What a live run simulated and what the peer accepted.

    Attributes
    ----------
    run : RunResult
        The simulation's own statistics (``run.spans`` = spans simulated and handed to the sender).
    report : SendReport
        The sender's account: ``sent``, ``rejected`` (partial success), ``failed``, errors with hints.
    endpoint, protocol : str
        Where it went.
    emitted : dict
        Items simulated per signal: ``{"traces": spans, "metrics": data points, "logs": log records}``.
    start_ns : int
        Unix nanoseconds that simulated time 0 was mapped to (the wall clock when the run began).
    speed : float
        Simulated seconds per wall-clock second (timestamps, and pacing when ``realtime``).
    realtime : bool
    wall_s : float
        Wall-clock seconds from the first slice to the last answer.
    max_lag_s : float
        Realtime: the most a slice was handed over after its due time (the simulation, the
        encoder or the peer could not keep up with ``speed``). 0 when not paced.
    """

    run: RunResult
    report: SendReport
    endpoint: str
    protocol: str
    emitted: dict[str, int]
    start_ns: int
    speed: float
    realtime: bool
    wall_s: float
    max_lag_s: float = 0.0
    slices: int = field(default=0, repr=False)

    @property
    def sent(self) -> int:
        """Items the peer accepted."""
        return self.report.sent

    @property
    def rejected(self) -> int:
        """Items refused inside accepted requests (OTLP partial success)."""
        return self.report.rejected

    @property
    def failed(self) -> int:
        """Items not delivered (refused requests, retries given up, breaker open)."""
        return self.report.failed

    @property
    def items(self) -> int:
        """Items simulated, every signal."""
        return sum(self.emitted.values())

    def raise_for_failures(self) -> StreamResult:
        """Raise the sender's first :class:`~otlp_lab.errors.ExportError` if anything failed; return self otherwise."""
        self.report.raise_for_failures()
        return self

    def summary(self) -> dict[str, Any]:
        """The headline numbers as a dict."""
        return {
            "run_id": self.run.run_id,
            "simulated_s": self.run.duration_s,
            "wall_s": round(self.wall_s, 3),
            "speed": self.speed,
            "spans": self.emitted.get("traces", 0),
            "points": self.emitted.get("metrics", 0),
            "logs": self.emitted.get("logs", 0),
            "sent": self.sent,
            "rejected": self.rejected,
            "failed": self.failed,
            "max_lag_s": round(self.max_lag_s, 3),
        }

    def __repr__(self) -> str:
        pace = f"realtime x{self.speed:g}" if self.realtime else f"unpaced, timestamps x{self.speed:g}"
        return (
            f"StreamResult({self.run.run_id!r} -> {self.endpoint} over {self.protocol}, {pace}: "
            f"{self.run.duration_s:g} simulated s in {self.wall_s:.2f} s; items simulated={self.items:,}, "
            f"sent={self.sent:,}, rejected={self.rejected:,}, failed={self.failed:,}, max lag {self.max_lag_s:.3f} s)"
        )


def stream(
    scenario: Scenario | str | os.PathLike[str],
    endpoint: str | None = None,
    *,
    protocol: str = "grpc",
    seed: int = 0,
    duration_s: float | None = None,
    realtime: bool = True,
    speed: float = 1.0,
    lab: Any = None,
    policy_overrides: Mapping[str, Any] | None = None,
    label: str | None = None,
    headers: str | Mapping[str, str] | Sequence[str] | None = None,
    sender: Sender | None = None,
    flush_s: float = 1.0,
    on_slice: Callable[[float], Any] | None = None,
    progress: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> StreamResult:
    """Simulate a scenario and export its spans, metrics and logs over OTLP as it runs.

    Every ``flush_s`` simulated seconds, what the simulation produced is encoded and handed to
    a :class:`~otlp_lab.transport.Sender`. Timestamps are mapped so the telemetry looks current:
    simulated second ``s`` is wall time ``start + s / speed`` (span starts, log record and metric
    point times; span durations are unchanged), ``start`` being when the call began, the same
    mapping as :class:`~otlp_lab.transport.Replay`. With ``realtime`` each slice waits until the
    wall clock reaches that time, so the peer sees traffic arrive as it would from the fleet.

    Parameters
    ----------
    scenario : Scenario or str or path
        A :class:`Scenario`, a YAML file, or the name of a shipped scenario (``"shop"``).
    endpoint : str, optional
        ``"127.0.0.1:4317"`` (gRPC) or ``"http://127.0.0.1:4318"`` (OTLP/HTTP); the protocol's
        usual local port when omitted.
    protocol : {"grpc", "http/protobuf", "http/json"}
    seed : int
        Same scenario + seed + label = the same spans and trace ids (a second stream into the
        same store repeats the ids; change ``seed`` or ``label`` to tell runs apart).
    duration_s : float, optional
        Overrides the scenario's ``duration_s``.
    realtime : bool, default True
        Pace the simulation against the wall clock; False sends as fast as it simulates
        (timestamps are still mapped with ``speed``).
    speed : float, default 1
        Simulated seconds per wall-clock second: 10 runs a 60 s scenario in about 6 s.
    lab : Lab, optional
        Also keep a local copy: the same rows (ids and mapped timestamps) plus the ``faults`` and
        ``sim_runs`` ground truth. Not the Lab the receiving end writes into, or spans double.
    policy_overrides, label
        As in :func:`run`.
    headers : mapping or "k=v,k2=v2", optional
        Sent with every request (e.g. ``{"authorization": "Bearer T"}``).
    sender : Sender, optional
        A configured sender (TLS, retries, concurrency, batching) instead of ``endpoint``,
        ``protocol`` and ``headers``.
    flush_s : float, default 1
        Simulated seconds per slice: how often telemetry is exported.
    on_slice : callable, optional
        Called with the simulated seconds reached once each slice's requests are queued for
        sending (in the sender's worker thread), e.g. to watch a receiver's counts fill in.
    progress : bool
        Show a progress bar over simulated time.
    batch_rows : int
        Spans that also end a slice early (bounds memory under heavy load).

    Returns
    -------
    StreamResult
        ``sent``, ``rejected`` and ``failed`` items, the sender's report (errors with hints),
        items simulated per signal, and the run's statistics. Failures are reported, not raised
        (:meth:`StreamResult.raise_for_failures`).

    Raises
    ------
    ConfigError
        A bad ``speed``, ``flush_s``, endpoint or protocol.
    ScenarioError
        The scenario, seed or overrides are invalid.

    Examples
    --------
    >>> from otlp_lab.sim import stream
    >>> from otlp_lab.transport import Receiver
    >>> with Receiver() as rx:                                                  # doctest: +SKIP
    ...     live = stream("shop", rx.grpc_endpoint, duration_s=10, speed=5)   # about 2 s
    ...     print(live.sent == live.items, rx.stats.spans)
    True 12345
    """
    from otlp_lab.transport import Sender

    if not isinstance(speed, (int, float)) or isinstance(speed, bool) or not speed > 0 or math.isinf(speed):
        raise ConfigError(f"stream(speed=...) must be a positive number. Got {speed!r} instead.")
    if (
        not isinstance(flush_s, (int, float))
        or isinstance(flush_s, bool)
        or not flush_s > 0
        or math.isinf(flush_s)
    ):
        raise ConfigError(
            f"stream(flush_s=...) must be a positive number of simulated seconds. Got {flush_s!r} instead."
        )
    if sender is None:
        sender = Sender(endpoint, protocol=protocol, headers=headers)
    elif endpoint is not None or headers is not None:
        raise ConfigError("give either sender= or endpoint/headers, not both.")
    sc, sim, run_id, label, _ = _setup(
        scenario,
        lab=lab,
        seed=seed,
        duration_s=duration_s,
        policy_overrides=policy_overrides,
        label=label,
        batch_rows=batch_rows,
        output=True,
        caller="stream",
    )
    sim.start()
    pump = _Pump(
        sim,
        speed=float(speed),
        realtime=realtime,
        flush_s=float(flush_s),
        batch_rows=batch_rows,
        lab=lab,
        source=f"sim:{sc.name}",
        max_items=sender.max_items,
        max_bytes=sender.max_bytes,
        on_slice=on_slice,
    )
    bar = _Progress(sc.name, f"{label}, live" if realtime else label, sc.duration_s) if progress else None
    t_wall = time.perf_counter()
    try:
        report = sender.send_requests(pump.requests(bar))
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t_wall
    result = _result(sim, sc, run_id, label, seed, pump.emitted["traces"], wall)
    if lab is not None:
        _write_ground_truth(lab, sim, sc, result, pump.start_ns, speed=float(speed))
    return StreamResult(
        run=result,
        report=report,
        endpoint=sender.target.url,
        protocol=sender.protocol,
        emitted=dict(pump.emitted),
        start_ns=pump.start_ns,
        speed=float(speed),
        realtime=realtime,
        wall_s=wall,
        max_lag_s=pump.max_lag_s,
        slices=pump.slices,
    )


class _Pump:
    """Runs the simulation slice by slice and turns each slice into paced OTLP requests."""

    def __init__(
        self,
        sim: Any,
        *,
        speed: float,
        realtime: bool,
        flush_s: float,
        batch_rows: int,
        lab: Any,
        source: str,
        max_items: int,
        max_bytes: int,
        on_slice: Callable[[float], Any] | None,
    ) -> None:
        self.sim = sim
        self.speed = speed
        self.realtime = realtime
        self.flush_s = flush_s
        self.batch_rows = batch_rows
        self.lab = lab
        self.source = source
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.on_slice = on_slice
        self.t0_ns = sim.emitter.start_ns  # the emitter's time of simulated second 0
        self.start_ns = time.time_ns()
        self.emitted = {"traces": 0, "metrics": 0, "logs": 0}
        self.max_lag_s = 0.0
        self.slices = 0

    def requests(self, bar: Any) -> Iterator[Any]:
        """The requests of every slice, each slice released at its wall-clock time when realtime."""
        self.start_ns = time.time_ns()
        mono0 = time.monotonic()
        for batch in _slices(self.sim, bar, self.batch_rows, self.flush_s):
            t = self.sim.env.now
            batch = retime(batch, self.t0_ns, self.start_ns, self.speed)
            if self.lab is not None:
                self.lab.load_batches([batch], source=self.source)
            tables = export_form(batch)
            for signal, ts in tables.items():
                self.emitted[signal] += sum(x.num_rows for x in ts)
            ready = list(
                itertools.chain.from_iterable(
                    encode_requests(sig, ts, max_items=self.max_items, max_bytes=self.max_bytes)  # type: ignore[arg-type]
                    for sig, ts in tables.items()
                )
            )
            self.slices += 1
            if self.realtime:
                late = time.monotonic() - (mono0 + t / self.speed)
                if late < 0:
                    time.sleep(-late)
                else:
                    self.max_lag_s = max(self.max_lag_s, late)
            yield from ready
            if self.on_slice is not None:
                self.on_slice(t)


# ---------------------------------------------------------------- staging batches


def retime(
    batch: Mapping[str, pa.Table], t0_ns: int, start_ns: int, speed: float = 1.0
) -> dict[str, pa.Table]:
    """A staging batch with its times mapped: ``t' = start_ns + (t - t0_ns) / speed``.

    Span starts, log record times and metric point times (and metric start times) are mapped;
    span ends and observed times keep their offset from the mapped time, so durations do not
    change. Other tables (``_ctx``) are passed through. The same mapping as the sender's replay
    (:func:`otlp_lab.transport._replay.retime_table`).
    """
    from otlp_lab.transport._replay import retime_table, staging_times

    out: dict[str, pa.Table] = {}
    for name, table in batch.items():
        cols = staging_times(name)
        out[name] = table if cols is None else retime_table(table, cols, t0_ns, start_ns, speed)
    return out


def export_form(batch: Mapping[str, pa.Table]) -> dict[str, list[pa.Table]]:
    """A simulator staging batch in the encoder's export staging form, per signal.

    Each row gets its resource and scope columns from the batch's ``_ctx`` table (by ``ctx``),
    and key/value list pairs become the ``{k, v}`` attribute structs the encoder reads;
    metric tables get their ``metric_kind``.

    Raises
    ------
    EncodeError
        A table the simulator does not write (span events, links...).
    """
    ctx = batch.get("_ctx")
    out: dict[str, list[pa.Table]] = {}
    for name, table in batch.items():
        if name == "_ctx" or not table.num_rows:
            continue
        if name not in _TABLES:
            raise EncodeError(
                f"staging table {name!r} cannot be exported live; the simulator writes {sorted(_TABLES)}."
            )
        signal, kind = _TABLES[name]
        cols: dict[str, Any] = {}
        if ctx is not None and "ctx" in table.column_names:
            idx = pc.index_in(table.column("ctx"), value_set=ctx.column("ctx").combine_chunks())
            cols |= {c: ctx.column(c).take(idx) for c in _CONTEXT_COLUMNS if c in ctx.column_names}
            cols |= {
                c: _kv(ctx.column(k).take(idx), ctx.column(v).take(idx))
                for c, (k, v) in _CONTEXT_KV.items()
                if k in ctx.column_names
            }
        parts = {p for pair in _ROW_KV.values() for p in pair}
        cols |= {c: table.column(c) for c in table.column_names if c != "ctx" and c not in parts}
        cols |= {
            c: _kv(table.column(k), table.column(v))
            for c, (k, v) in _ROW_KV.items()
            if k in table.column_names
        }
        if "exemplars" in cols:
            cols["exemplars"] = _exemplars(cols["exemplars"])
        if kind is not None:
            cols["metric_kind"] = pa.array([kind] * table.num_rows, pa.string())
        out.setdefault(signal, []).append(pa.table(cols))
    return out


def _flat(col: Any) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _kv(keys: Any, vals: Any) -> pa.StructArray:
    """Parallel key and value lists -> the ``{k, v}`` attribute struct of the export staging form."""
    return pa.StructArray.from_arrays([_flat(keys), _flat(vals)], names=["k", "v"])


def _exemplars(col: Any) -> pa.Array:
    """Exemplar lists with ``attr_keys``/``attr_vals`` -> with an ``attributes`` struct."""
    arr = _flat(col)
    if not pa.types.is_list(arr.type) or "attr_keys" not in [f.name for f in arr.type.value_type]:
        return arr
    values = arr.values
    fields = [values.field(f.name) for f in values.type if f.name not in ("attr_keys", "attr_vals")]
    names = [f.name for f in values.type if f.name not in ("attr_keys", "attr_vals")]
    structs = pa.StructArray.from_arrays(
        [*fields, _kv(values.field("attr_keys"), values.field("attr_vals"))], names=[*names, "attributes"]
    )
    return pa.ListArray.from_arrays(arr.offsets, structs, mask=arr.is_null())
