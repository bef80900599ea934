"""A disk-backed send queue: store-and-forward for the sender (``Sender(queue_dir=...)``, ``--queue DIR``).

Layout of the directory
-----------------------
``queue.id``            a random id naming this queue (request ids are ``<queue id>-<record id>``)
``lock``                held (``flock``) by the one process using the queue; released by the OS on a crash
``seg-<first id>.q``    records appended in order: a 32-byte header (magic, record id, CRC-32 of the
                        body, body length, item count, signal) and the serialized export request
``seg-<first id>.ack``  ids of the segment's records the receiver acknowledged (8 bytes each)

Guarantees
----------
* A record is *accepted* once :meth:`PersistentQueue.append` returns: it was written and fsynced
  (and the directory too, for a new segment). A crash before that loses only that request,
  which its caller had not been told was accepted.
* A record leaves the queue only when :meth:`PersistentQueue.ack` recorded (and fsynced) that
  the receiver acknowledged it; a segment file goes when every record in it is acknowledged.
  After a crash, every record not acknowledged is delivered again: at-least-once on the wire.
  With otlp_lab's receiver each request carries its request id (``otlp-lab-request-id``), and the
  receiver stores the ids it committed in the same transaction as the data and acknowledges a
  repeat without storing it again, so each item is stored exactly once.
* When the records waiting exceed ``max_bytes``, a new request is dropped (drop newest): counted in
  :attr:`QueueStats.dropped_items` and logged, never silently.
* A damaged record (bad magic, CRC mismatch, cut short) is reported (logged and counted in
  :attr:`QueueStats.corrupt`), and the rest of that segment is skipped; the queue goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from otlp_lab.errors import ConfigError, TransportError

__all__ = ["PersistentQueue", "QueueStats", "Record", "inspect_queue"]

log = logging.getLogger("otlp_lab.transport.queue")

_MAGIC = b"OLQ1"
_HEADER = struct.Struct("<4sQIIIB7x")  # magic, id, crc32, length, items, signal
_SIGNALS = ("traces", "metrics", "logs")
_ACK = struct.Struct("<Q")
DEFAULT_MAX_BYTES = 256 << 20
DEFAULT_SEGMENT_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class Record:
    """One queued export request."""

    id: int
    signal: str
    items: int
    body: bytes  # the serialized Export*ServiceRequest (protobuf)


@dataclass(slots=True)
class QueueStats:
    """Counters of a :class:`PersistentQueue` since it was opened (``pending_*``: now)."""

    appended: int = 0
    acked: int = 0
    dropped: int = 0  # requests refused because the queue was full
    dropped_items: int = 0
    corrupt: int = 0  # damaged records or ack files skipped
    recovered: int = 0  # records found waiting when the queue was opened
    pending: int = 0
    pending_bytes: int = 0

    def __repr__(self) -> str:
        nonzero = ", ".join(
            f"{f.name}={getattr(self, f.name):,}" for f in fields(self) if getattr(self, f.name)
        )
        return f"QueueStats({nonzero or 'empty'})"


class PersistentQueue:
    """A directory of append-only segment files holding export requests until acknowledged.

    Parameters
    ----------
    directory : str or path
        Created if missing. One process at a time (a second one gets a TransportError).
    max_bytes : int, default 256 MiB
        Bytes of requests waiting (appended, not acknowledged) beyond which new ones are dropped.
    segment_bytes : int, default 8 MiB
        A new segment file starts past this size (acknowledged segments are deleted whole).
    fsync : bool, default True
        Sync every append and ack to disk (turning it off trades crash safety for speed).

    Examples
    --------
    >>> q = PersistentQueue("spool")                      # doctest: +SKIP
    >>> rec = q.append("traces", request.SerializeToString(), items=512)
    >>> ...                                               # send it; on the receiver's OK:
    >>> q.ack(rec.id)
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
    ) -> None:
        for name, v in (("max_bytes", max_bytes), ("segment_bytes", segment_bytes)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"queue {name} must be a positive integer. Got {v!r} instead.")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.stats = QueueStats()
        self._mutex = threading.Lock()  # appends (the producer thread) and acks (the workers) interleave
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(self.directory / "lock", "a+b")  # noqa: SIM115 - held for the queue's life
        except OSError as exc:
            raise TransportError(
                f"cannot use {str(directory)!r} as a send queue ({exc.strerror})",
                hint="give a writable directory to --queue",
            ) from exc
        try:
            import fcntl

            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        except OSError:
            self._lock.close()
            raise TransportError(
                f"the send queue {str(directory)!r} is in use by another process",
                hint="run one sender per queue directory, or give this one another --queue",
            ) from None
        id_file = self.directory / "queue.id"
        if not id_file.exists():
            tmp = id_file.with_suffix(".tmp")
            tmp.write_text(uuid.uuid4().hex)
            os.replace(tmp, id_file)
            self._sync_dir()
        self.queue_id = id_file.read_text().strip()
        # segment first id -> (record ids, acked ids, path); records waiting by id
        self._segments: dict[int, tuple[list[int], set[int]]] = {}
        self._waiting: dict[int, tuple[int, int, int]] = {}  # record id -> (segment, size, offset)
        self._next_id = 1
        self._pending_bytes = 0
        self._active: int | None = None
        self._active_file: object | None = None
        self._active_size = 0
        self._recover()

    # ------------------------------------------------------------ recovery
    def _seg_path(self, first: int, ext: str) -> Path:
        return self.directory / f"seg-{first:016d}.{ext}"

    def _recover(self) -> None:
        for path in sorted(self.directory.glob("seg-*.q")):
            try:
                first = int(path.stem.split("-", 1)[1])
            except ValueError:
                self._corrupt(f"{path.name}: not a segment name; ignored")
                continue
            ids: list[int] = []
            offset = 0
            for rec in self._read_segment(path):
                ids.append(rec.id)
                size = _HEADER.size + len(rec.body)
                self._waiting[rec.id] = (first, size, offset)
                offset += size
                self._next_id = max(self._next_id, rec.id + 1)
            acked = self._read_acks(first)
            self._segments[first] = (ids, acked)
            for i in acked:
                self._waiting.pop(i, None)
            if not ids or set(ids) <= acked:
                self._drop_segment(first)
        self.stats.recovered = len(self._waiting)
        self._pending_bytes = sum(size for _, size, _ in self._waiting.values())
        self._refresh()

    def _read_segment(self, path: Path) -> Iterator[Record]:
        """The records of a segment file up to its first damaged one (reported)."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._corrupt(f"{path.name}: cannot be read ({exc.strerror}); skipped")
            return
        pos = 0
        while pos < len(data):
            if len(data) - pos < _HEADER.size:
                self._corrupt(
                    f"{path.name}: a record cut short at byte {pos:,} (a crash mid-append); skipped"
                )
                return
            magic, rid, crc, length, items, sig = _HEADER.unpack_from(data, pos)
            body = data[pos + _HEADER.size : pos + _HEADER.size + length]
            if magic != _MAGIC or sig >= len(_SIGNALS):
                self._corrupt(
                    f"{path.name}: no record at byte {pos:,} (damaged); the rest of the segment is skipped"
                )
                return
            if len(body) < length:
                self._corrupt(f"{path.name}: record {rid} cut short (a crash mid-append); skipped")
                return
            if zlib.crc32(body) != crc:
                self._corrupt(
                    f"{path.name}: record {rid} fails its CRC (damaged); the rest of the segment is skipped"
                )
                return
            yield Record(rid, _SIGNALS[sig], items, body)
            pos += _HEADER.size + length

    def _read_acks(self, first: int) -> set[int]:
        path = self._seg_path(first, "ack")
        if not path.exists():
            return set()
        data = path.read_bytes()
        whole = len(data) - len(data) % _ACK.size
        if whole != len(data):
            self._corrupt(f"{path.name}: a partial ack entry at the end (a crash mid-write); ignored")
        return {_ACK.unpack_from(data, i)[0] for i in range(0, whole, _ACK.size)}

    def _corrupt(self, message: str) -> None:
        self.stats.corrupt += 1
        log.warning("send queue %s: %s", self.directory, message)

    # ------------------------------------------------------------ the queue
    def pending(self) -> list[Record]:
        """Records waiting for an acknowledgement, oldest first (read back from disk)."""
        with self._mutex:
            return self._pending()

    def _pending(self) -> list[Record]:
        out: list[Record] = []
        for first in sorted(self._segments):
            ids, acked = self._segments[first]
            want = set(ids) - acked
            if not want:
                continue
            if first == self._active and self._active_file is not None:
                self._active_file.flush()  # type: ignore[attr-defined]
            out += [r for r in self._read_segment(self._seg_path(first, "q")) if r.id in want]
        return out

    def append(self, signal: str, body: bytes, *, items: int) -> Record | None:
        """Write a request to disk (fsynced); None when the queue is full (dropped, counted, logged)."""
        with self._mutex:
            return self._append(signal, body, items)

    def _append(self, signal: str, body: bytes, items: int) -> Record | None:
        size = _HEADER.size + len(body)
        if self.stats.pending_bytes + size > self.max_bytes:
            self.stats.dropped += 1
            self.stats.dropped_items += items
            log.warning(
                "send queue %s is full (%s of %s bytes waiting): dropped a %s request of %d items "
                "(%d items dropped so far)",
                self.directory,
                f"{self.stats.pending_bytes:,}",
                f"{self.max_bytes:,}",
                signal,
                items,
                self.stats.dropped_items,
            )
            return None
        if self._active is None or self._active_size >= self.segment_bytes:
            self._roll()
        rid = self._next_id
        self._next_id += 1
        offset = self._active_size
        f = self._active_file
        assert f is not None and self._active is not None
        f.write(_HEADER.pack(_MAGIC, rid, zlib.crc32(body), len(body), items, _SIGNALS.index(signal)))  # type: ignore[attr-defined]
        f.write(body)  # type: ignore[attr-defined]
        f.flush()  # type: ignore[attr-defined]
        if self.fsync:
            os.fsync(f.fileno())  # type: ignore[attr-defined]
        self._active_size += size
        self._segments[self._active][0].append(rid)
        self._waiting[rid] = (self._active, size, offset)
        self._pending_bytes += size
        self.stats.appended += 1
        self._refresh()
        return Record(rid, signal, items, body)

    def ack(self, record_id: int) -> None:
        """Record that the receiver acknowledged ``record_id`` (fsynced); drop finished segments."""
        with self._mutex:
            self._ack(record_id)

    def _ack(self, record_id: int) -> None:
        entry = self._waiting.pop(record_id, None)
        if entry is None:
            return
        first = entry[0]
        self._pending_bytes -= entry[1]
        with open(self._seg_path(first, "ack"), "ab") as f:
            f.write(_ACK.pack(record_id))
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        ids, acked = self._segments[first]
        acked.add(record_id)
        self.stats.acked += 1
        if first != self._active and set(ids) <= acked:
            self._drop_segment(first)
        self._refresh()

    def read(self, record_id: int) -> Record:
        """A waiting record, read back from disk."""
        with self._mutex:
            first, size, offset = self._waiting[record_id]
            if first == self._active and self._active_file is not None:
                self._active_file.flush()  # type: ignore[attr-defined]
        with open(self._seg_path(first, "q"), "rb") as f:
            f.seek(offset)
            data = f.read(size)
        magic, rid, crc, length, items, sig = _HEADER.unpack_from(data, 0)
        body = data[_HEADER.size :]
        if magic != _MAGIC or rid != record_id or zlib.crc32(body) != crc:
            raise TransportError(f"send queue {self.directory}: record {record_id} is damaged on disk")
        return Record(rid, _SIGNALS[sig], items, body)

    def request_id(self, record_id: int) -> str:
        """The id a receiver can deduplicate this record by."""
        return f"{self.queue_id}-{record_id}"

    def close(self) -> None:
        """Close the files (records waiting stay on disk for the next run)."""
        with self._mutex:
            self._close()

    def _close(self) -> None:
        if self._active_file is not None:
            self._active_file.close()  # type: ignore[attr-defined]
            self._active_file = None
            first = self._active
            self._active = None
            if first is not None:
                ids, acked = self._segments[first]
                if set(ids) <= acked:
                    self._drop_segment(first)
        with contextlib.suppress(OSError):
            self._lock.close()

    def __enter__(self) -> PersistentQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._waiting)

    def __repr__(self) -> str:
        return f"PersistentQueue({str(self.directory)!r}, {self.stats!r})"

    # ------------------------------------------------------------ files
    def _roll(self) -> None:
        if self._active_file is not None:
            self._active_file.close()  # type: ignore[attr-defined]
            old = self._active
            assert old is not None
            ids, acked = self._segments[old]
            if set(ids) <= acked:
                self._drop_segment(old)
        first = self._next_id
        self._active = first
        self._active_file = open(self._seg_path(first, "q"), "ab")  # noqa: SIM115 - the active segment
        self._active_size = 0
        self._segments[first] = ([], set())
        self._sync_dir()

    def _drop_segment(self, first: int) -> None:
        for ext in ("q", "ack"):
            with contextlib.suppress(FileNotFoundError):
                self._seg_path(first, ext).unlink()
        self._segments.pop(first, None)

    def _sync_dir(self) -> None:
        if not self.fsync or os.name != "posix":
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _refresh(self) -> None:
        self.stats.pending = len(self._waiting)
        self.stats.pending_bytes = self._pending_bytes


def inspect_queue(directory: str | os.PathLike[str]) -> tuple[int, int]:
    """(records, items) waiting in a queue directory, read without taking it (another process may
    be using it; a record being appended right now is not counted)."""
    records = items = 0
    for path in sorted(Path(directory).glob("seg-*.q")):
        acks_path = path.with_suffix(".ack")
        try:
            data = path.read_bytes()
            raw = acks_path.read_bytes() if acks_path.exists() else b""
        except OSError:
            continue
        acked = {_ACK.unpack_from(raw, i)[0] for i in range(0, len(raw) - len(raw) % _ACK.size, _ACK.size)}
        pos = 0
        while len(data) - pos >= _HEADER.size:
            magic, rid, _, length, n, _ = _HEADER.unpack_from(data, pos)
            if magic != _MAGIC or len(data) - pos - _HEADER.size < length:
                break
            if rid not in acked:
                records, items = records + 1, items + n
            pos += _HEADER.size + length
    return records, items
