"""The receiver: gRPC and HTTP servers in front of one bounded write queue and one writer thread.

Flow of one export request
--------------------------
1. The server (``_grpc.py`` or ``_http.py``) checks auth, media type and path, then hands
   the body to :meth:`IngestCore.export`.
2. The body's bytes are *reserved* in the queue budget (``max_queue_bytes``). No room:
   backpressure at once (gRPC UNAVAILABLE with RetryInfo, HTTP 503 with Retry-After).
3. A decode worker inflates it (refusing over ``max_request_bytes`` of output, so gzip bombs
   stop early), reserves the decompressed size too, and decodes it into staging batches. A
   malformed body is refused here, before the database sees anything.
4. The batches go on the write queue. The single writer thread takes every request waiting
   (up to ``max_batch_requests``), merges their batches and stores them in ONE transaction
   (group commit), then releases the reservations and wakes the waiting handlers.
5. Only then does the handler reply OK (with partial success counts if some items were rejected).

Durability: commit before acknowledge
-------------------------------------
A request is acknowledged only after the DuckDB transaction holding it has committed (DuckDB
writes and syncs its write-ahead log at commit). So after ``kill -9`` every acknowledged
request is in the database file when it is opened again; requests in flight at the kill were
not acknowledged, and their senders retry them (at-least-once: a request committed but killed
before its reply was written is stored and may be sent again). A clean stop (``stop()``,
SIGINT or SIGTERM in the CLI) refuses new requests with UNAVAILABLE/503, lets the ones in
flight finish, commits the queue and closes the database.

With a write-ahead log (``wal_dir``, CLI ``--wal DIR``)
------------------------------------------------------
Steps 4-5 change: the decoded request's raw body is appended to a segment file in
``wal_dir`` and synced (one ``fdatasync`` per group of requests), and the request is
acknowledged then; a loader thread stores the logged requests into DuckDB behind it, up to
``wal_batch_requests`` per transaction, recording the log position loaded up to in the same
transaction. A restart loads the log's tail after that position, exactly once; a torn last
record is detected by its CRC and skipped with a warning. ``max_queue_bytes`` then bounds the
acknowledged but unloaded backlog (backpressure beyond it), and queries see a request once its
load transaction commits (``wal_delay_s`` plus one transaction; :meth:`Receiver.flush` waits
for it). See :mod:`otlp_lab.transport._wal`.

Exactly-once with a queued sender
---------------------------------
A request carrying ``otlp-lab-request-id`` (sent by a :class:`Sender` with ``queue_dir``) is
stored with that id in the same transaction; a repeat (the sender crashed before it recorded
the acknowledgement) is acknowledged again without being stored (``stats.duplicates``).

Live queries
------------
``POST /v1/query`` on the HTTP port answers read-only SQL from loopback clients while the
receiver holds the database (see :mod:`otlp_lab.transport._live`, :class:`LiveLab`).

Memory bound
------------
One budget, ``max_queue_bytes``, covers every request body from before it is read until its
transaction commits, across connections and both protocols: HTTP reserves the
``Content-Length`` (``max_request_bytes`` for a chunked body) before reading the body, gRPC
reserves ``max_request_bytes`` before reading the message (its size is not known earlier) and
trims it to the real size once read, and decoding adds the decompressed growth. A request
that does not fit is refused at once, unread: UNAVAILABLE with RetryInfo / 503 with
Retry-After. So request data held by the receiver stays under ``max_queue_bytes`` (plus the
Arrow batches of decoded requests, of the same order, and ``max_concurrent_requests`` HTTP
heads of at most 64 KiB). Auth is checked on the headers / metadata before any body is read.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from otlp_lab._config import check_int, check_number
from otlp_lab.errors import ConfigError, OtlpLabError, TransportError
from otlp_lab.otlp import Batch, Signal
from otlp_lab.transport._payload import Decoded, Refused, decode_request, inflate
from otlp_lab.transport._replies import Reply, ReplyKind
from otlp_lab.transport._tls import ServerTls
from otlp_lab.transport._wal import WalPosition, WriteAheadLog, encode_record, loaded_position
from otlp_lab.transport._wal import marker as wal_marker

if TYPE_CHECKING:
    from otlp_lab.store import Lab

__all__ = ["Receiver", "ReceiverConfig", "ReceiverStats", "merge_batches"]

MiB = 1 << 20
_ENCODINGS = {"identity": "", "": "", "gzip": "gzip"}
log = logging.getLogger("otlp_lab.transport")
# How long a gRPC stream waits for room in the in-flight budget before UNAVAILABLE (its size is
# unknown until read, so it reserves max_request_bytes; small requests hold that only briefly).
ADMIT_WAIT_S = 0.5
# With a WAL: how often a load the database refuses whole is retried (1 s apart) before its requests are dropped
MAX_LOAD_RETRIES = 10


def parse_address(address: str, what: str) -> tuple[str, int]:
    """``"127.0.0.1:4317"``, ``"[::1]:4317"``, ``"localhost:0"`` or ``":4317"`` -> (host, port)."""
    text = address.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = text, ""
    host = host or "127.0.0.1"
    try:
        port = int(port_text)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{what} must look like '127.0.0.1:4317' (port 0 = any free port). Got {address!r} instead."
        ) from None
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverConfig:
    """Settings of a :class:`Receiver` (frozen; build a new one to change them).

    Parameters
    ----------
    grpc, http : str or None
        Addresses to listen on (``"127.0.0.1:4317"``; port 0 picks a free port); None turns
        that protocol off.
    max_request_bytes : int, default 16 MiB
        Largest request accepted, *after* decompression (RESOURCE_EXHAUSTED / 413 above it).
    max_queue_bytes : int, default 64 MiB
        Bytes of requests in flight (being read, decoded, or waiting for their commit), across
        connections and protocols; beyond it requests get backpressure (UNAVAILABLE with
        RetryInfo / 503 with Retry-After) before their body is read.
    max_batch_requests : int, default 64
        Most requests committed in one transaction (group commit).
    retry_after_s : float, default 1.0
        Pushback sent with backpressure replies.
    decode_workers : int, default 2
        Threads decoding request bodies.
    max_concurrent_requests : int, default 256
        HTTP connections (and gRPC streams per connection) served at once; at the limit a new
        HTTP connection evicts the one idle longest, else the one reading a request longest.
    read_timeout_s : float, default 30
        HTTP: a keep-alive connection idle this long is closed.
    request_timeout_s : float, default 30
        HTTP: a request (head and body) must arrive in full within this of its first byte
        (408 otherwise): a total deadline, so clients trickling bytes cannot hold a connection.
    bearer_token : str, optional
        Require ``Authorization: Bearer <token>`` (UNAUTHENTICATED / 401 otherwise).
    headers : mapping, optional
        Require these header values (names case-insensitive), e.g. ``{"x-api-key": "..."}``.
    tls : ServerTls, optional
        Serve TLS (and mTLS when it names a client CA) on both protocols.
    allow_remote : bool, default False
        Allow binding a non-loopback address (the receiver then accepts traffic from the network).
    grace_s : float, default 10
        How long :meth:`Receiver.stop` lets requests in flight finish.
    wal_dir : str or path, optional
        Acknowledge after an fsync'd append to a write-ahead log in this directory, and load
        into DuckDB behind it in large transactions (see :mod:`otlp_lab.transport._wal`).
        Needs a database file. Acknowledged requests survive ``kill -9`` either way; with the
        log, ``max_queue_bytes`` bounds the acknowledged but not yet loaded backlog.
    wal_delay_s : float, default 0
        With ``wal_dir``: keep requests in the log at least this long before loading them
        (larger transactions at low rates); queries see data within about this delay plus one
        load transaction. Loading starts earlier when the backlog reaches half of ``max_queue_bytes``.
    wal_batch_requests : int, default 1024
        With ``wal_dir``: most requests loaded in one transaction.
    """

    grpc: str | None = "127.0.0.1:0"
    http: str | None = "127.0.0.1:0"
    max_request_bytes: int = 16 * MiB
    max_queue_bytes: int = 64 * MiB
    max_batch_requests: int = 64
    retry_after_s: float = 1.0
    decode_workers: int = 2
    max_concurrent_requests: int = 256
    read_timeout_s: float = 30.0
    request_timeout_s: float = 30.0
    bearer_token: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    tls: ServerTls | None = None
    allow_remote: bool = False
    grace_s: float = 10.0
    wal_dir: str | None = None
    wal_delay_s: float = 0.0
    wal_batch_requests: int = 1024

    def __post_init__(self) -> None:
        if self.grpc is None and self.http is None:
            raise ConfigError("grpc and http are both off; give at least one address to listen on.")
        for name in ("grpc", "http"):
            addr = getattr(self, name)
            if addr is None:
                continue
            host, _ = parse_address(addr, name)
            if not self.allow_remote and not is_loopback(host):
                raise ConfigError(
                    f"{name} address {addr!r} is not a loopback address; the receiver binds loopback only "
                    "unless allow_remote=True (CLI: --allow-remote). Add TLS and a token when you do."
                )
        for name in (
            "max_request_bytes",
            "max_queue_bytes",
            "max_batch_requests",
            "decode_workers",
            "max_concurrent_requests",
            "wal_batch_requests",
        ):
            check_int(getattr(self, name), name, minimum=1)
        if self.max_queue_bytes < self.max_request_bytes:
            raise ConfigError(
                f"max_queue_bytes ({self.max_queue_bytes:,}) must be at least max_request_bytes "
                f"({self.max_request_bytes:,}), or the largest request could never be admitted."
            )
        if self.wal_dir is not None:
            object.__setattr__(self, "wal_dir", os.fspath(self.wal_dir))
        for name in ("retry_after_s", "read_timeout_s", "request_timeout_s", "grace_s", "wal_delay_s"):
            check_number(getattr(self, name), name, minimum=0)
        object.__setattr__(self, "headers", {str(k).lower(): str(v) for k, v in dict(self.headers).items()})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReceiverConfig:
        """From a plain mapping (a parsed YAML file); ``tls`` may be a mapping too."""
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ConfigError(f"receiver settings do not include {bad}; known settings are {sorted(known)}.")
        d = dict(d)
        if isinstance(d.get("tls"), Mapping):
            d["tls"] = ServerTls(**d["tls"])
        return cls(**d)

    def check_auth(self, get: Callable[[str], str | None]) -> Reply | None:
        """None when the request's headers (``get(lower-case name)``) pass; else the refusal."""
        if self.bearer_token is not None:
            # RFC 9110 11.1: the auth scheme is case-insensitive ("bearer", "BEARER")
            scheme, _, token = (get("authorization") or "").strip().partition(" ")
            good = hmac.compare_digest(token.strip().encode(), self.bearer_token.encode())
            if scheme.lower() != "bearer" or not good:
                return Reply(
                    ReplyKind.UNAUTHENTICATED, "missing or wrong bearer token (Authorization: Bearer ...)"
                )
        for name, want in self.headers.items():
            if not hmac.compare_digest((get(name) or "").encode(), want.encode()):
                return Reply(ReplyKind.UNAUTHENTICATED, f"missing or wrong {name!r} header")
        return None


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    """A snapshot of a receiver's counters (``receiver.stats`` takes a new one each time)."""

    requests: int = 0  # export requests answered, whatever the answer
    accepted: int = 0  # requests acknowledged (stored fully or partly)
    spans: int = 0  # items stored
    points: int = 0
    logs: int = 0
    rejected_items: int = 0  # items refused inside partly accepted requests
    invalid: int = 0  # requests refused: malformed
    too_large: int = 0  # bodies over max_request_bytes, URLs over 8 KiB, heads over 64 KiB / 100 fields
    unsupported: int = 0
    unauthenticated: int = 0
    backpressure: int = 0  # UNAVAILABLE / 503 replies (queue full or stopping)
    timed_out: int = 0  # HTTP requests not received within request_timeout_s (408), or evicted mid-request
    failed: int = 0  # the database refused the data
    queue_depth: int = 0  # requests admitted, waiting for their transaction
    queue_bytes: int = 0
    peak_queue_bytes: int = 0
    transactions: int = 0
    duplicates: int = 0  # requests already stored (same otlp-lab-request-id): acknowledged, not stored again
    recovered: int = 0  # requests loaded at start from the write-ahead log (acknowledged before a crash)

    @property
    def items(self) -> int:
        return self.spans + self.points + self.logs

    def __repr__(self) -> str:
        nonzero = ", ".join(
            f"{f.name}={getattr(self, f.name):,}" for f in fields(self) if getattr(self, f.name)
        )
        return f"ReceiverStats({nonzero or 'nothing yet'})"


_REFUSAL_FIELD = {
    ReplyKind.INVALID: "invalid",
    ReplyKind.TOO_LARGE: "too_large",
    ReplyKind.UNSUPPORTED: "unsupported",
    ReplyKind.UNAUTHENTICATED: "unauthenticated",
    ReplyKind.OVERLOADED: "backpressure",
    ReplyKind.STOPPING: "backpressure",
    ReplyKind.INTERNAL: "failed",
    ReplyKind.TIMEOUT: "timed_out",
    ReplyKind.FORBIDDEN: "unauthenticated",
    ReplyKind.URI_TOO_LONG: "too_large",
    ReplyKind.HEADERS_TOO_LARGE: "too_large",
}


def _drop_tracebacks(exc: BaseException | None) -> None:
    """Clear the tracebacks of an exception and its chain (their frames reference request bodies)."""
    seen = 0
    while exc is not None and seen < 16:
        exc.__traceback__ = None
        exc, seen = exc.__cause__ or exc.__context__, seen + 1


def merge_batches(batches: Iterable[Batch]) -> list[Batch]:
    """Staging batches of several requests as one batch per table (fewer, larger inserts).

    Each batch's rows point into its own ``_ctx`` table by the ``ctx`` index; the indices
    of each batch are shifted past the contexts of the batches before it.
    """
    batches = list(batches)
    parts: dict[str, list[pa.Table]] = collections.defaultdict(list)
    offset = 0
    for batch in batches:
        ctx = batch.get("_ctx")
        for name, table in batch.items():
            if offset and "ctx" in table.column_names:
                i = table.schema.get_field_index("ctx")
                table = table.set_column(
                    i, "ctx", pc.add(table.column(i), pa.scalar(offset, table.schema.field(i).type))
                )
            parts[name].append(table)
        offset += ctx.num_rows if ctx is not None else 0
    try:
        return [
            {
                name: pa.concat_tables(tables) if len(tables) > 1 else tables[0]
                for name, tables in parts.items()
            }
        ]
    except pa.ArrowInvalid:  # schemas differ (cannot happen with one codec): insert them one by one
        return batches


@dataclass(slots=True)
class _Pending:
    decoded: Decoded
    reserved: int
    future: concurrent.futures.Future[None] | None
    request_id: str | None = None
    record: bytes | None = None  # with a WAL: the encoded log record, until appended
    position: WalPosition | None = None  # with a WAL: where the record ends in the log
    since: float = 0.0  # with a WAL: monotonic time it was appended


class IngestCore:
    """The protocol-neutral heart of the receiver: budget, decoding, write queue, writer thread."""

    def __init__(self, lab: Lab, config: ReceiverConfig) -> None:
        self.lab = lab
        self.config = config
        self._cond = threading.Condition()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._reserved = 0
        self._waiting = 0  # requests queued or in the transaction being committed
        self._counts: dict[str, int] = {f.name: 0 for f in fields(ReceiverStats)}
        self._closing = False
        self._writer_stop = False
        self._append_stop = False
        self._flushing = 0
        self._load_failures = 0  # consecutive load transactions the database refused (WAL)
        self._wal: WriteAheadLog | None = None
        self._appends: collections.deque[_Pending] = collections.deque()
        self._pending_ids: set[str] = set()  # request ids in the log, not loaded yet
        self._appender: threading.Thread | None = None
        if config.wal_dir is not None:
            if lab.path is None:
                raise ConfigError(
                    "wal_dir needs a database file (Receiver('capture.duckdb', wal_dir=...)); "
                    "an in-memory Lab would lose the loaded data anyway."
                )
            self._wal = WriteAheadLog(config.wal_dir, lab.path)
            self._recover()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            config.decode_workers, thread_name_prefix="otlp-lab-decode"
        )
        loop = self._write_loop if self._wal is None else self._load_loop
        self._writer = threading.Thread(target=loop, name="otlp-lab-writer", daemon=True)
        self._writer.start()
        if self._wal is not None:
            self._appender = threading.Thread(target=self._append_loop, name="otlp-lab-wal", daemon=True)
            self._appender.start()

    # ------------------------------------------------------------ counters and budget
    def stats(self) -> ReceiverStats:
        with self._cond:
            c = dict(self._counts, queue_depth=self._waiting, queue_bytes=self._reserved)
        return ReceiverStats(**c)

    def count(self, reply: Reply) -> Reply:
        """Record a reply (every request is counted once, by the reply it got)."""
        with self._cond:
            self._counts["requests"] += 1
            if reply.kind is ReplyKind.OK:
                self._counts["accepted"] += 1
                self._counts["rejected_items"] += reply.rejected
            elif reply.kind in _REFUSAL_FIELD:
                self._counts[_REFUSAL_FIELD[reply.kind]] += 1
        return reply

    def _reserve(self, n: int) -> bool:
        with self._cond:
            if self._reserved + n > self.config.max_queue_bytes:
                return False
            self._reserved += n
            self._counts["peak_queue_bytes"] = max(self._counts["peak_queue_bytes"], self._reserved)
            return True

    def _release(self, n: int) -> None:
        with self._cond:
            self._reserved -= n

    def try_reserve(self, n: int) -> bool:
        """Reserve ``n`` bytes of the in-flight budget now (before reading a body of that size)."""
        return self._reserve(n)

    def release(self, n: int) -> None:
        """Give back a reservation that will not reach :meth:`export` (a body not read, a refusal)."""
        self._release(n)

    async def admit(self, n: int, wait_s: float = ADMIT_WAIT_S) -> bool:
        """Reserve ``n`` bytes, waiting up to ``wait_s`` for the budget to free (False: still full)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not self._reserve(n):
            if self._closing or loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def _overloaded(self, why: str) -> Refused:
        return Refused(ReplyKind.OVERLOADED, why, retry_after_s=self.config.retry_after_s)

    # ------------------------------------------------------------ requests
    async def export(
        self,
        signal: Signal,
        body: bytes,
        *,
        fmt: str,
        encoding: str = "",
        reserved: int = 0,
        request_id: str | None = None,
    ) -> Reply:
        """Decode, queue and commit one request; the reply to send (already counted).

        ``reserved``: bytes the server reserved (:meth:`admit`, :meth:`try_reserve`) before
        reading the body; the reservation is trimmed to the body's size and owned from here on.
        ``request_id`` (header ``otlp-lab-request-id``): a request already committed under the
        same id is acknowledged again without being stored twice (exactly-once with a sender queue).
        """
        return self.count(await self._export(signal, body, fmt, encoding, reserved, request_id))

    async def _export(
        self, signal: Signal, body: bytes, fmt: str, encoding: str, held: int, request_id: str | None = None
    ) -> Reply:
        if held > len(body):
            self._release(held - len(body))
        elif len(body) > held and not self._reserve(len(body) - held):
            self._release(held)
            return self._overloaded("the write queue is full; retry later").reply
        if self._closing:
            self._release(len(body))
            return Reply(
                ReplyKind.STOPPING, "the receiver is shutting down", retry_after_s=self.config.retry_after_s
            )
        reserved = [len(body)]
        loop = asyncio.get_running_loop()
        try:
            decoded = await loop.run_in_executor(
                self._pool, self._decode, signal, body, fmt, encoding, reserved
            )
        except Refused as exc:
            self._release(reserved[0])
            _drop_tracebacks(exc)  # they hold the body in their frames, in cycles only the GC breaks
            return exc.reply
        except BaseException:
            self._release(reserved[0])
            raise
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        pending = _Pending(decoded, reserved[0], future, request_id)
        if self._wal is not None:
            pending.record = encode_record(signal, fmt, _ENCODINGS.get(encoding, encoding), request_id, body)
        with self._cond:
            if self._writer_stop or self._append_stop:  # stopped while decoding
                self._reserved -= reserved[0]
                return Reply(
                    ReplyKind.STOPPING,
                    "the receiver is shutting down",
                    retry_after_s=self.config.retry_after_s,
                )
            (self._queue if self._wal is None else self._appends).append(pending)
            self._waiting += 1
            self._cond.notify_all()
        try:
            # shield: a client that goes away must not cancel the commit (the writer owns it now)
            await asyncio.shield(asyncio.wrap_future(future))
        except OtlpLabError as exc:
            return Reply(ReplyKind.INTERNAL, f"the database refused the data: {exc}")
        return Reply(ReplyKind.OK, decoded.message, rejected=decoded.rejected)

    def _decode(self, signal: Signal, body: bytes, fmt: str, encoding: str, reserved: list[int]) -> Decoded:
        """In a decode worker: inflate (reserving the growth), then decode."""
        data = inflate(body, encoding, self.config.max_request_bytes)
        growth = len(data) - len(body)
        if growth > 0:
            if not self._reserve(growth):
                raise self._overloaded("the write queue is full; retry later")
            reserved[0] += growth
        return decode_request(signal, data, fmt=fmt)

    # ------------------------------------------------------------ the writer
    def _write_loop(self) -> None:
        limit = self.config.max_batch_requests
        while True:
            with self._cond:
                while not self._queue and not self._writer_stop:
                    self._cond.wait()
                if not self._queue:
                    return
                group = [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        if self._wal is None:
            fresh, repeats = self._split_repeats(group)
        else:  # repeats were acknowledged (and not logged) by the appender
            fresh, repeats = group, []
        errors = self._store(fresh)
        if self._wal is not None and group and all(e is not None for e in errors):
            self._load_failures += 1
            if self._load_failures <= MAX_LOAD_RETRIES:
                self._load_failed(group, errors[-1])
                return
        self._load_failures = 0
        with self._cond:
            self._waiting -= len(group)
            for p in group:
                self._reserved -= p.reserved
            for p, err in zip(fresh, errors, strict=True):
                if err is None:
                    for k, v in p.decoded.counts.items():
                        self._counts[k] += v
                if p.request_id and self._wal is not None:
                    self._pending_ids.discard(p.request_id)
            self._counts["duplicates"] += len(repeats)
            self._counts["transactions"] += 1
            self._cond.notify_all()
        if self._wal is not None:  # acknowledged already, at the append
            for err in errors:
                if err is not None:
                    with self._cond:
                        self._counts["failed"] += 1
                    log.error("a logged request could not be loaded and is dropped: %s", err)
            last = group[-1].position
            if last is not None:
                self._wal.drop_before(last[0])
            return
        for p, err in zip(fresh, errors, strict=True):
            assert p.future is not None
            if err is None:
                p.future.set_result(None)
            else:
                p.future.set_exception(err)
        for p in repeats:
            assert p.future is not None
            p.future.set_result(None)  # stored before: acknowledge again, store nothing

    def _split_repeats(self, group: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
        """Requests to store, and repeats of requests already committed (same request id)."""
        ids = [p.request_id for p in group if p.request_id]
        if not ids:
            return group, []
        try:
            seen = self.lab.stored_request_ids(ids)
        except Exception:  # cannot tell: store them (at-least-once rather than lose data)
            seen = set()
        with self._cond:
            seen |= self._pending_ids.intersection(ids)  # logged, not loaded yet
        fresh, repeats = [], []
        for p in group:
            if p.request_id and p.request_id in seen:
                repeats.append(p)
            else:
                if p.request_id:
                    seen.add(p.request_id)
                fresh.append(p)
        return fresh, repeats

    def _store(self, group: list[_Pending]) -> list[Exception | None]:
        """Store a group in one transaction; if it fails, each request alone (to isolate the culprit)."""
        batches = [b for p in group for b in p.decoded.batches]
        if not batches and (self._wal is None or not group):
            return [None] * len(group)
        ids = [p.request_id for p in group if p.request_id]
        last = group[-1].position
        if self._wal is not None and last is not None:
            ids.append(wal_marker(self._wal.id, last))  # how far the log is loaded: same transaction
        try:
            self.lab.load_batches(
                merge_batches(batches),
                source=f"otlp receiver ({len(group)} requests)",
                request_ids=ids,
            )
            return [None] * len(group)
        except Exception as exc:
            if len(group) == 1:
                return [exc if isinstance(exc, OtlpLabError) else TransportError(f"storing failed: {exc!r}")]
        return [e for p in group for e in self._store([p])]

    # ------------------------------------------------------------ shutdown
    @property
    def closing(self) -> bool:
        """Whether new requests are refused (the receiver is stopping)."""
        return self._closing

    def refuse_new(self) -> None:
        """From now on, new requests get UNAVAILABLE / 503 (requests in flight go on)."""
        self._closing = True

    def close(self, timeout_s: float | None = None) -> None:
        """Commit everything queued, stop the writer and the decode workers."""
        self._closing = True
        self._pool.shutdown(wait=True, cancel_futures=False)
        if self._appender is not None:
            with self._cond:
                self._append_stop = True
                self._cond.notify_all()
            self._appender.join(timeout_s)
        with self._cond:
            self._writer_stop = True
            self._cond.notify_all()
        self._writer.join(timeout_s)
        if self._wal is not None:
            self._wal.close()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every request queued so far is in the database (with a WAL: loaded, not
        just logged); False if ``timeout_s`` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._waiting:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._flushing -= 1

    # ------------------------------------------------------------ the write-ahead log
    def _append_loop(self) -> None:
        """Append what the decode workers queued to the log, sync once, acknowledge, hand to the loader."""
        wal = self._wal
        assert wal is not None
        while True:
            with self._cond:
                while not self._appends and not self._append_stop:
                    self._cond.wait()
                if not self._appends:
                    return
                group = list(self._appends)
                self._appends.clear()
            fresh, repeats = self._split_repeats(group)
            try:
                positions = wal.append([p.record for p in fresh if p.record is not None])
            except OSError as exc:
                err = TransportError(f"cannot write the write-ahead log in {wal.dir}: {exc}")
                with self._cond:
                    self._waiting -= len(group)
                    for p in group:
                        self._reserved -= p.reserved
                    self._cond.notify_all()
                for p in group:
                    assert p.future is not None
                    p.future.set_exception(err)
                continue
            now = time.monotonic()
            with self._cond:
                for p, pos in zip(fresh, positions, strict=True):
                    p.position, p.record, p.since = pos, None, now
                    self._queue.append(p)
                    if p.request_id:
                        self._pending_ids.add(p.request_id)
                for p in repeats:
                    self._waiting -= 1
                    self._reserved -= p.reserved
                self._counts["duplicates"] += len(repeats)
                self._cond.notify_all()
            for p in group:
                assert p.future is not None
                p.future.set_result(None)  # logged and synced (or a repeat): acknowledge

    def _load_loop(self) -> None:
        """Load logged requests in large transactions, after ``wal_delay_s`` (sooner under pressure)."""
        cfg = self.config
        while True:
            with self._cond:
                while True:
                    if self._queue:
                        if self._writer_stop or self._flushing or cfg.wal_delay_s <= 0:
                            break
                        age = time.monotonic() - self._queue[0].since
                        if age >= cfg.wal_delay_s or 2 * self._reserved >= cfg.max_queue_bytes:
                            break
                        self._cond.wait(min(cfg.wal_delay_s - age, 0.1))
                    elif self._writer_stop:
                        return
                    else:
                        self._cond.wait()
                n = min(cfg.wal_batch_requests, len(self._queue))
                group = [self._queue.popleft() for _ in range(n)]
            self._commit(group)

    def _load_failed(self, group: list[_Pending], err: Exception | None) -> None:
        """The database refused every logged request of a group (full disk, a lock): keep them in
        the log and the queue and retry after a pause (up to ``MAX_LOAD_RETRIES`` times, then
        they are dropped with an error); the backlog meanwhile causes backpressure. At stop
        they stay in the log, and the next start loads them."""
        with self._cond:
            stopping = self._writer_stop
            if not stopping:
                self._queue.extendleft(reversed(group))
            else:
                rest = group + list(self._queue)
                self._queue.clear()
                self._waiting -= len(rest)
                for p in rest:
                    self._reserved -= p.reserved
                self._cond.notify_all()
        if stopping:
            log.error(
                "%d acknowledged requests could not be loaded (%s); they stay in the WAL in %s and the "
                "next start loads them",
                len(rest),
                err,
                self._wal.dir if self._wal else "?",
            )
            return
        log.error("loading from the WAL failed (%s); retrying in 1 s", err)
        time.sleep(1.0)

    def _recover(self) -> None:
        """At start: load every logged request after the position the database recorded, once."""
        wal = self._wal
        assert wal is not None
        done = loaded_position(self.lab, wal.id)
        group: list[_Pending] = []
        size = last_seg = 0
        n = failed = 0

        def load() -> None:
            nonlocal group, size, n, failed
            errors = self._store(group)
            for p, err in zip(group, errors, strict=True):
                if err is None:
                    n += 1
                    for k, v in p.decoded.counts.items():
                        self._counts[k] += v
                else:
                    failed += 1
                    log.error("a logged request could not be loaded (kept in the log): %s", err)
            self._counts["transactions"] += 1
            group, size = [], 0

        for rec in wal.read_after(done):
            last_seg = max(last_seg, rec.position[0])
            try:
                data = inflate(rec.body, rec.encoding, max(self.config.max_request_bytes, 1 << 30))
                decoded = decode_request(rec.signal, data, fmt=rec.fmt)  # type: ignore[arg-type]
            except Refused as exc:
                log.error("WAL record ending at %s cannot be decoded and is skipped: %s", rec.position, exc)
                continue
            group.append(_Pending(decoded, 0, None, rec.request_id, position=rec.position))
            size += len(data)
            if len(group) >= self.config.wal_batch_requests or size >= self.config.max_queue_bytes:
                load()
        if group:
            load()
        self._counts["recovered"] = n
        if n:
            log.warning("loaded %d requests acknowledged before the last stop from the WAL in %s", n, wal.dir)
        done = loaded_position(self.lab, wal.id)
        wal.open_segment(max(last_seg, done[0] if done else 0))  # numbered past the recorded position
        if not failed:
            wal.drop_before(wal.segment)  # everything before the new segment is loaded (or torn)


class Receiver:
    """An OTLP receiver (gRPC and HTTP) storing what it gets in a Lab, in the background.

    Parameters
    ----------
    lab : Lab, str or path, optional
        Where to store: a Lab (left open at stop), or a DuckDB file path (opened and closed
        by the receiver). In memory when omitted (``receiver.lab`` to query it).
    grpc, http : str or None
        Listen addresses; ``"127.0.0.1:0"`` (the default) picks free ports, None turns off.
    config : ReceiverConfig, optional
        All settings at once; or pass them as keywords (see :class:`ReceiverConfig`).

    Examples
    --------
    >>> from otlp_lab import Lab
    >>> from otlp_lab.transport import Receiver
    >>> with Receiver(Lab(), grpc="127.0.0.1:0", http="127.0.0.1:0") as rx:   # doctest: +SKIP
    ...     print(rx.http_endpoint)        # point an OpenTelemetry exporter here
    ...     ...                            # traffic arrives, rx.stats counts it live
    ...     rx.lab.sql("select count(*) from spans")
    http://127.0.0.1:38061
    """

    def __init__(
        self,
        lab: Lab | str | os.PathLike[str] | None = None,
        *,
        grpc: str | None = "127.0.0.1:0",
        http: str | None = "127.0.0.1:0",
        config: ReceiverConfig | None = None,
        **settings: Any,
    ) -> None:
        if config is not None and settings:
            raise ConfigError(
                f"give either config= or settings as keywords, not both. Got config and {sorted(settings)}."
            )
        if config is None:
            try:
                config = ReceiverConfig(grpc=grpc, http=http, **settings)
            except TypeError as exc:
                raise ConfigError(
                    f"unknown receiver setting ({exc}); see ReceiverConfig for the settings."
                ) from None
        self.config = config
        self._lab_arg = lab
        self._lab: Lab | None = None
        self._owns_lab = False
        self._core: IngestCore | None = None
        self._servers: list[Any] = []
        self._loop: Any = None
        self._final: ReceiverStats | None = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._announced: Any = None  # the live-query file beside the database

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Receiver:
        """Open the database, start the writer and the servers; return self once listening."""
        if self._core is not None:
            return self
        from otlp_lab.store import Lab
        from otlp_lab.transport._loop import LoopThread

        lab = self._lab_arg
        if isinstance(lab, Lab):
            self._lab, self._owns_lab = lab, False
        else:
            self._lab, self._owns_lab = Lab(lab), True
        try:
            self._core = IngestCore(self._lab, self.config)
        except BaseException:
            if self._owns_lab:
                self._lab.close()
            self._lab = None
            raise
        self._loop = LoopThread("otlp-lab-receiver")
        try:
            self._loop.run(self._start_servers(), timeout_s=30)
        except BaseException:
            self._shutdown()
            raise
        self._final = None
        if self._lab.path is not None and self.http_endpoint is not None:
            from otlp_lab.transport._live import announce

            self._announced = announce(self._lab.path, self.http_endpoint)  # live queries: see _live
        return self

    async def _start_servers(self) -> None:
        cfg, core = self.config, self._core
        assert core is not None
        if cfg.grpc is not None:
            from otlp_lab.transport._grpc import start_grpc

            host, port = parse_address(cfg.grpc, "grpc")
            server = await start_grpc(core, host, port)
            self._servers.append(server)
            self.grpc_port = server.port
        if cfg.http is not None:
            from otlp_lab.transport._http import start_http

            host, port = parse_address(cfg.http, "http")
            server = await start_http(core, host, port)
            self._servers.append(server)
            self.http_port = server.port

    async def _stop_servers(self, grace_s: float) -> None:
        await asyncio.gather(*(s.stop(grace_s) for s in self._servers), return_exceptions=True)

    def stop(self, grace_s: float | None = None) -> ReceiverStats:
        """Refuse new requests, finish those in flight, commit the queue, close; return the final stats."""
        if self._core is None:
            return self._final or ReceiverStats()
        grace = self.config.grace_s if grace_s is None else grace_s
        self._core.refuse_new()
        try:
            self._loop.run(self._stop_servers(grace), timeout_s=grace + 10)
        finally:
            self._shutdown()
        assert self._final is not None
        return self._final

    def _shutdown(self) -> None:
        if self._announced is not None:
            self._announced.unlink(missing_ok=True)
            self._announced = None
        core, self._core = self._core, None
        if core is not None:
            core.close()
            self._final = core.stats()
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        self._servers = []
        if self._owns_lab and self._lab is not None:
            self._lab.close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def flush(self, timeout_s: float | None = 30.0) -> bool:
        """Wait until every request acknowledged so far is in the database and queryable (with
        ``wal_dir``: loaded from the log, not just logged). False if ``timeout_s`` passed first."""
        if self._core is None:
            return True
        return self._core.flush(timeout_s)

    # ------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self._core is not None

    @property
    def lab(self) -> Lab:
        """The Lab the receiver stores into (query it while the receiver runs)."""
        if self._lab is None:
            raise TransportError(
                "the receiver has not started", hint="call receiver.start() or use it in a with block"
            )
        return self._lab

    @property
    def stats(self) -> ReceiverStats:
        """Live counters: requests, items stored, refusals, backpressure replies, queue depth."""
        if self._core is not None:
            return self._core.stats()
        return self._final or ReceiverStats()

    @property
    def grpc_endpoint(self) -> str | None:
        """``host:port`` for OTLP/gRPC exporters."""
        if self.grpc_port is None or self.config.grpc is None:
            return None
        return f"{_url_host(parse_address(self.config.grpc, 'grpc')[0])}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str | None:
        """Base URL for OTLP/HTTP exporters (they append ``/v1/traces`` etc.)."""
        if self.http_port is None or self.config.http is None:
            return None
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{_url_host(parse_address(self.config.http, 'http')[0])}:{self.http_port}"

    def __repr__(self) -> str:
        where = ", ".join(
            e
            for e in (
                self.grpc_endpoint and f"grpc={self.grpc_endpoint}",
                self.http_endpoint and f"http={self.http_endpoint}",
            )
            if e
        )
        state = "running" if self.running else "stopped"
        s = self.stats
        return f"Receiver({where or 'not started'}, {state}, requests={s.requests:,}, items={s.items:,})"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
