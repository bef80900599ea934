"""Decoding entry points: files and bytes -> staging batches."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError as PbDecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from otlp_lab.errors import ConfigError, DecodeError, UnsupportedFormatError
from otlp_lab.otlp._logs import iter_logs_json, iter_logs_pb
from otlp_lab.otlp._metrics import iter_metrics_pb, json_metrics_batches, json_to_metrics_request
from otlp_lab.otlp._source import (
    DEFAULT_MAX_REQUEST_BYTES,
    SIGNALS,
    Signal,
    Unit,
    iter_units,
    locate_wire_error,
    open_decompressed,
)
from otlp_lab.otlp._traces import iter_traces_json, iter_traces_pb
from otlp_lab.otlp._wireviews import LogsView, TracesView

DEFAULT_BATCH_ROWS = 65_536

Batch = dict[str, pa.Table]


@dataclass
class Skipped:
    """A request that was skipped (``on_error="skip"``), and why."""

    source: str
    where: str | None
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.source}: {self.where}: {self.reason}" if self.where else f"{self.source}: {self.reason}"
        )


@dataclass
class DecodeReport:
    """What one decode saw: requests read, requests skipped, bytes and content hash."""

    source: str
    requests: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    nbytes: int = 0
    sha256: str | None = None
    signals: set[str] = field(default_factory=set)
    missing_ids: int = 0  # records accepted without a trace or span id (lenient_ids=True)


def _parse(cls: type, data: bytes, name: str) -> Any:
    try:
        return cls.FromString(data)
    except PbDecodeError:
        raise DecodeError(f"invalid protobuf {name} request ({locate_wire_error(data)})") from None


# Ids a record cannot do without (logs and exemplars may have none): table -> (column, bytes, name).
_REQUIRED_IDS = {
    "spans": (("trace_id", 16, "trace_id"), ("span_id", 8, "span_id")),
    "span_links": (("linked_trace_id", 16, "link trace_id"), ("linked_span_id", 8, "link span_id")),
}


def check_required_ids(batch: Batch, *, lenient: bool = False) -> int:
    """Records of ``batch`` with an empty trace or span id: refused, or counted when ``lenient``.

    OTLP requires them, but the spec's own file-exporter examples leave them empty.
    """
    missing = 0
    for table, cols in _REQUIRED_IDS.items():
        t = batch.get(table)
        if t is None or not t.num_rows:
            continue
        mask = None
        for col, size, name in cols:
            empty = pc.equal(pc.binary_length(t.column(col)), 0)
            if not lenient and pc.any(empty).as_py():
                row = pc.index(empty, True).as_py()
                raise DecodeError(
                    f"{name} of row {row} is 0 bytes (empty); an OTLP {name} is {size} bytes. Records without "
                    "ids (as in the OTLP spec's file-exporter examples) load with lenient_ids=True "
                    "(CLI: --lenient-ids), which counts them"
                )
            mask = empty if mask is None else pc.or_(mask, empty)
        if table == "spans" and mask is not None:
            missing += pc.sum(mask).as_py() or 0
    return missing


def _unit_batches(unit: Unit, batch_rows: int) -> Iterator[Batch]:
    sig, payload = unit.signal, unit.payload
    if sig is None:
        return
    if unit.kind == "pb":
        if sig == "traces":
            yield from iter_traces_pb(_parse(TracesView, payload, "traces"), batch_rows)
        elif sig == "logs":
            yield from iter_logs_pb(_parse(LogsView, payload, "logs"), batch_rows)
        else:
            yield from iter_metrics_pb(_parse(ExportMetricsServiceRequest, payload, "metrics"), batch_rows)
    else:
        if sig == "traces":
            yield from iter_traces_json(payload, batch_rows)
        elif sig == "logs":
            yield from iter_logs_json(payload, batch_rows)
        else:
            fast = json_metrics_batches(payload, batch_rows)
            if fast is not None:
                yield from fast
            else:
                yield from iter_metrics_pb(json_to_metrics_request(payload), batch_rows)


def check_load_options(*, signal: Any = None, on_error: Any = "raise", max_request_bytes: Any = 1) -> None:
    """Refuse bad ``signal``, ``on_error`` and ``max_request_bytes`` values up front."""
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip'. Got {on_error!r} instead.")
    if signal is not None and signal not in SIGNALS:
        raise ConfigError(f"signal must be one of {SIGNALS} or None. Got {signal!r} instead.")
    if isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int) or max_request_bytes < 1:
        raise ConfigError(f"max_request_bytes must be a positive integer. Got {max_request_bytes!r} instead.")


def iter_stream_batches(
    stream: IO[bytes],
    report: DecodeReport,
    *,
    signal: Signal | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    on_error: str = "raise",
    on_unit: Callable[[Unit], None] | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    lenient_ids: bool = False,
) -> Iterator[Batch]:
    """Staging batches of every request in a (possibly compressed) binary stream.

    The options are checked at once (not when the first batch is asked for); no request
    larger than ``max_request_bytes`` after decompression is read into memory. Spans with
    an empty trace or span id are refused unless ``lenient_ids`` (then counted in
    ``report.missing_ids``).
    """
    check_load_options(signal=signal, on_error=on_error, max_request_bytes=max_request_bytes)
    return _stream_batches(
        stream, report, signal, batch_rows, on_error, on_unit, max_request_bytes, lenient_ids
    )


def _stream_batches(
    stream: IO[bytes],
    report: DecodeReport,
    signal: Signal | None,
    batch_rows: int,
    on_error: str,
    on_unit: Callable[[Unit], None] | None,
    max_request_bytes: int,
    lenient_ids: bool,
) -> Iterator[Batch]:
    name = report.source
    try:
        units = iter_units(
            open_decompressed(stream), name=name, hint=signal, max_request_bytes=max_request_bytes
        )
        for unit in units:
            error = unit.error
            if error is None:
                if signal is not None and unit.signal is not None and unit.signal != signal:
                    error = UnsupportedFormatError(
                        f"this is a {unit.signal} request, but {signal} was asked for",
                        source=name,
                        where=unit.where,
                    )
                else:
                    try:
                        for batch in _unit_batches(unit, batch_rows):
                            report.missing_ids += check_required_ids(batch, lenient=lenient_ids)
                            yield batch
                    except DecodeError as exc:
                        error = exc.located(source=name, where=unit.where)
            if error is not None:
                if on_error == "raise" or unit.where is None:
                    raise error
                report.skipped.append(Skipped(name, error.where, error.reason))
                continue
            report.requests += 1
            if unit.signal:
                report.signals.add(unit.signal)
            if on_unit is not None:
                on_unit(unit)
    except DecodeError as exc:
        raise exc.located(source=name) from None
    except (EOFError, OSError) as exc:  # gzip/zstd streams cut short, bad compressed data
        raise DecodeError(
            f"cannot read the compressed stream ({exc}); the file looks truncated or corrupt", source=name
        ) from None


def iter_file_batches(
    path: str | os.PathLike[str],
    report: DecodeReport | None = None,
    *,
    on_progress: Callable[[int], None] | None = None,
    **kw: Any,
) -> Iterator[Batch]:
    """Staging batches of every request in one file (see :func:`iter_stream_batches`).

    ``on_progress(bytes_read)`` is called after each batch with the file position.
    """
    path = Path(path)
    report = report or DecodeReport(str(path))
    with open(path, "rb") as raw:
        for batch in iter_stream_batches(raw, report, **kw):
            yield batch
            if on_progress is not None:
                on_progress(raw.tell())


def file_sha256(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a file, read in 1 MiB chunks."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def decode_bytes(
    data: bytes, *, signal: Signal | None = None, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[Batch]:
    """Staging batches of an in-memory OTLP body (any supported format and compression)."""
    yield from iter_stream_batches(
        io.BufferedReader(io.BytesIO(data)), DecodeReport("<bytes>"), signal=signal, batch_rows=batch_rows
    )
