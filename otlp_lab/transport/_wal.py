"""The receiver's write-ahead log: acknowledge after an fsync'd append, load into DuckDB behind it.

With ``Receiver(..., wal_dir=DIR)`` (CLI ``otlp-lab receive --wal DIR``) a request is
acknowledged once its raw body is appended to a segment file in ``DIR`` and the file is
synced (one ``fdatasync`` for every request that arrived meanwhile: group commit on the log).
A loader thread then stores the decoded requests into DuckDB in large transactions, many
requests each, and records in the *same* transaction how far into the log it has loaded.

Files
-----
``DIR/wal.json``
    The log's id and the database it belongs to (a log is refused beside another database).
``DIR/NNNNNNNNNNNN.wal``
    Segments, numbered in order; a new one each start and every ``SEGMENT_BYTES``. A segment
    is deleted once a committed transaction has loaded past its end.

Record layout (little-endian): ``magic "OLW1" | body length u32 | crc32 u32 | signal u8 |
format u8 | encoding u8 | request-id length u8`` (16 bytes), then the request id (UTF-8) and
the body as received (still compressed). The CRC covers everything after itself, so a torn
or corrupt record is detected: it and the rest of its segment are skipped, with a warning.

Exactly once
------------
Each load transaction inserts the position of its last record, ``otlp-lab-wal:<id>:<segment>:<end>``,
into ``_received_requests`` (the receiver's table of stored request ids) with the rows. At
start the receiver loads every record after the last committed position, so a ``kill -9``
at any moment loses no acknowledged request and stores none twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from otlp_lab.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from otlp_lab.store import Lab

__all__ = ["WalPosition", "WalRecord", "WriteAheadLog", "loaded_position"]

log = logging.getLogger("otlp_lab.transport")

MAGIC = b"OLW1"
HEADER = struct.Struct("<4sIIBBBB")
SEGMENT_BYTES = 64 << 20
SIGNALS = ("traces", "metrics", "logs")
FORMATS = ("protobuf", "json")
ENCODINGS = ("", "gzip")
MARKER_PREFIX = "otlp-lab-wal:"

WalPosition = tuple[int, int]  # (segment number, end offset of a record in it)


@dataclass(slots=True)
class WalRecord:
    """One logged request: where it ends in the log, and what is needed to decode it again."""

    position: WalPosition
    signal: str
    fmt: str
    encoding: str
    request_id: str | None
    body: bytes


def encode_record(signal: str, fmt: str, encoding: str, request_id: str | None, body: bytes) -> bytes:
    rid = (request_id or "").encode()[:255]
    meta = struct.pack(
        "<BBBB", SIGNALS.index(signal), FORMATS.index(fmt), ENCODINGS.index(encoding), len(rid)
    )
    crc = zlib.crc32(body, zlib.crc32(rid, zlib.crc32(meta)))
    return b"".join((MAGIC, struct.pack("<II", len(body), crc), meta, rid, body))


class WriteAheadLog:
    """Segment files in a directory: append + sync, read back in order, drop what is loaded."""

    def __init__(self, directory: str | os.PathLike[str], database: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the WAL directory {self.dir}: {exc.strerror}") from exc
        meta_file = self.dir / "wal.json"
        db = str(Path(database).resolve())
        if meta_file.exists():
            try:
                meta = json.loads(meta_file.read_text())
                self.id = str(meta["id"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"{meta_file} is not a WAL description ({exc}); give an empty or new --wal directory."
                ) from None
            if meta.get("database") != db and self.segments():
                raise ConfigError(
                    f"the WAL directory {self.dir} holds unloaded requests for the database "
                    f"{meta.get('database')!r}, not {db!r}; use that database, or another --wal directory."
                )
        else:
            self.id = uuid.uuid4().hex[:16]
        tmp = meta_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"id": self.id, "database": db}))
        os.replace(tmp, meta_file)
        self._fd: int | None = None
        self._seg = 0
        self._size = 0

    # ------------------------------------------------------------ files
    def segments(self) -> list[int]:
        out = []
        for p in self.dir.glob("*.wal"):
            with contextlib.suppress(ValueError):
                out.append(int(p.stem))
        return sorted(out)

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:012d}.wal"

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def open_segment(self, after: int = 0) -> None:
        """Start appending to a new segment numbered past every existing one and past ``after``."""
        self.close()
        self._seg = max([after, *self.segments()]) + 1
        self._fd = os.open(self._path(self._seg), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._size = 0
        self._sync_dir()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------ writing
    def append(self, records: list[bytes]) -> list[WalPosition]:
        """Append encoded records and sync them to disk; the end position of each."""
        if self._fd is None or self._size >= SEGMENT_BYTES:
            self.open_segment(self._seg)
        assert self._fd is not None
        out = []
        for rec in records:
            view = memoryview(rec)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._size += len(rec)
            out.append((self._seg, self._size))
        os.fdatasync(self._fd)
        return out

    @property
    def segment(self) -> int:
        """The number of the segment being appended to."""
        return self._seg

    def drop_before(self, seg: int) -> None:
        """Delete the segments numbered below ``seg`` (everything in them is loaded)."""
        for s in self.segments():
            if s < seg and s != self._seg:
                with contextlib.suppress(FileNotFoundError):
                    self._path(s).unlink()

    # ------------------------------------------------------------ reading
    def read_after(self, position: WalPosition | None) -> Iterator[WalRecord]:
        """Every intact record after ``position``, in log order; torn or corrupt tails are skipped."""
        for seg in self.segments():
            if position is not None and seg < position[0]:
                continue
            data = self._path(seg).read_bytes()
            off = 0
            while off < len(data):
                rec = _parse(data, off)
                if rec is None:
                    log.warning(
                        "WAL %s: torn or corrupt record at byte %d (checksum or length does not match); "
                        "skipped it and the %d bytes after it",
                        self._path(seg),
                        off,
                        len(data) - off,
                    )
                    break
                end, signal, fmt, encoding, rid, body = rec
                if position is None or (seg, end) > position:
                    yield WalRecord((seg, end), signal, fmt, encoding, rid, body)
                off = end


def _parse(data: bytes, off: int) -> tuple[int, str, str, str, str | None, bytes] | None:
    if off + HEADER.size > len(data):
        return None
    magic, n, crc, sig, fmt, enc, nrid = HEADER.unpack_from(data, off)
    start = off + HEADER.size
    end = start + nrid + n
    if (
        magic != MAGIC
        or end > len(data)
        or sig >= len(SIGNALS)
        or fmt >= len(FORMATS)
        or enc >= len(ENCODINGS)
    ):
        return None
    if zlib.crc32(data[off + 12 : end]) != crc:
        return None
    rid = data[start : start + nrid].decode(errors="replace") or None
    return end, SIGNALS[sig], FORMATS[fmt], ENCODINGS[enc], rid, data[start + nrid : end]


def marker(wal_id: str, position: WalPosition) -> str:
    """The id recorded with a load transaction: the log position loaded up to."""
    return f"{MARKER_PREFIX}{wal_id}:{position[0]:012d}:{position[1]:012d}"


def loaded_position(lab: Lab, wal_id: str) -> WalPosition | None:
    """How far the log ``wal_id`` is loaded into ``lab`` (None: nothing yet)."""
    with lab._lock:
        con = lab.con
        try:
            if not con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = '_received_requests'"
            ).fetchall()[0][0]:
                return None
            row = con.execute(
                "SELECT max(request_id) FROM _received_requests WHERE starts_with(request_id, ?)",
                [f"{MARKER_PREFIX}{wal_id}:"],
            ).fetchall()
        except Exception as exc:
            raise StoreError(f"cannot read the WAL position from the database: {exc}") from exc
    if not row or row[0][0] is None:
        return None
    _, _, seg, end = row[0][0].rsplit(":", 3)
    return int(seg), int(end)
