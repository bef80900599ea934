"""The sender: OTLP export requests from files, a Lab or a simulation, to any OTLP endpoint.

Pipeline
--------
source (Lab tables, files loaded into an in-memory Lab, or ready requests)
  -> optional replay (timestamps shifted to now and scaled by ``speed``; pacing on the wall clock)
  -> :func:`otlp_lab.otlp.encode_requests` (batches of at most ``max_items`` items and ``max_bytes``)
  -> ``concurrency`` workers, each request under the :mod:`otlp_lab.resilience` policy stack
     (retry with backoff and jitter, honouring RetryInfo / Retry-After, behind a circuit breaker)
  -> :class:`SendReport`: items sent, rejected by the peer (partial success), failed.

Retries follow the OTLP specification: gRPC CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
UNAVAILABLE, DATA_LOSS, and RESOURCE_EXHAUSTED only when the server sent RetryInfo; HTTP 429,
502, 503 and 504; connection failures. A server's pushback replaces the backoff delay. Other
refusals are final and reported with a hint; they do not count against the breaker (the peer
answered), while unreachable or overloaded peers do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import os
import random
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args
from urllib.parse import unquote

import pyarrow as pa
from google.protobuf.message import Message

from otlp_lab._config import Protocol, check_int, check_number
from otlp_lab.errors import ConfigError, ExportError
from otlp_lab.otlp import SIGNALS, Signal, encode_requests, request_class
from otlp_lab.transport._clients import Answer, make_transport, parse_endpoint
from otlp_lab.transport._queue import DEFAULT_MAX_BYTES as DEFAULT_QUEUE_BYTES
from otlp_lab.transport._queue import PersistentQueue, QueueStats, Record
from otlp_lab.transport._replay import (
    EXPORT_TIMES,
    PACING_WINDOW_S,
    Replay,
    first_time_ns,
    first_time_of,
    retime_table,
    signal_of,
    time_sorted,
    windows,
)
from otlp_lab.transport._tls import ClientTls

if TYPE_CHECKING:
    from otlp_lab.store import Lab

__all__ = [
    "PROTOCOLS",
    "Replay",
    "SendReport",
    "Sender",
    "classify",
    "count_items",
    "parse_headers",
    "signal_of",
]

PROTOCOLS: tuple[Protocol, ...] = get_args(Protocol)
DEFAULT_ENDPOINTS = {
    "grpc": "http://127.0.0.1:4317",
    "http/protobuf": "http://127.0.0.1:4318",
    "http/json": "http://127.0.0.1:4318",
}
RETRYABLE_GRPC = frozenset(
    {
        "CANCELLED",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNAVAILABLE",
        "DATA_LOSS",
        "RESOURCE_EXHAUSTED",
    }
)
RETRYABLE_HTTP = frozenset({429, 502, 503, 504})
_MAX_ERRORS_KEPT = 20
# Refusals that say "this request is wrong", not "the peer is down": final, and ignored by the breaker.
FINAL_REFUSALS = frozenset(
    {
        400,
        401,
        403,
        404,
        405,
        413,
        415,
        "INVALID_ARGUMENT",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "UNIMPLEMENTED",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
    }
)
# A retryable refusal that carries the server's pushback (RetryInfo, Retry-After) reaches the
# policies as this status: flow control from a live peer, retried after the delay it asked for
# and ignored by the breaker (sustained backpressure slows the sender down, it does not trip it).
BACKPRESSURE = "BACKPRESSURE"

# ---------------------------------------------------------------- error classification

_HINTS: dict[str | int, str] = {
    "UNAVAILABLE": "is the receiver up at {endpoint}? Start one with `otlp-lab receive`, or check the address and port",
    "DEADLINE_EXCEEDED": "the peer did not answer in time: raise the timeout or send smaller batches (--max-items)",
    "RESOURCE_EXHAUSTED": "the peer refused the size or is overloaded: send smaller batches (--max-items, --max-bytes) or fewer at once (--concurrency)",
    "INVALID_ARGUMENT": "the peer could not decode the data: check the files load with `otlp-lab load`, and that the protocol matches the port (4317 gRPC, 4318 HTTP)",
    "UNAUTHENTICATED": "the peer wants credentials: pass them with --header 'authorization=Bearer TOKEN' or OTEL_EXPORTER_OTLP_HEADERS",
    "PERMISSION_DENIED": "the credentials were refused: check the token or client certificate",
    "UNIMPLEMENTED": "the peer does not serve this OTLP service: is it an OTLP/gRPC endpoint (usually port 4317)?",
    "INTERNAL": "the peer failed storing the data: look at its logs",
    "CIRCUIT_OPEN": "the circuit breaker opened after repeated failures, so the rest was not sent: check the endpoint, then send again",
    "TLS": "the TLS handshake failed: check --ca (the CA that signed the server certificate), --cert/--key for mTLS, and https:// vs http://",
    "CONNECT": "cannot reach {endpoint}: is the receiver up and the address right?",
    400: "the peer could not decode the data: check the files load with `otlp-lab load`, and --protocol (http/protobuf vs http/json)",
    401: "the peer wants credentials: pass them with --header 'authorization=Bearer TOKEN' or OTEL_EXPORTER_OTLP_HEADERS",
    403: "the credentials were refused: check the token or client certificate",
    404: "no OTLP service at this URL: give the base URL (http://host:4318; /v1/traces is appended) or a full signal URL",
    405: "the URL does not accept POST: give the OTLP/HTTP base URL (http://host:4318)",
    413: "the request is too large for the peer: lower --max-bytes or --max-items",
    415: "the peer does not accept this content type: try --protocol http/protobuf",
    429: "the peer is rate limiting: lower --concurrency",
    500: "the peer failed storing the data: look at its logs",
    502: "a proxy in front of the peer failed: check the peer behind it",
    503: "the peer is overloaded or stopping: it was retried; lower --concurrency or raise the receiver's queue",
    504: "a proxy timed out waiting for the peer: raise timeouts or send smaller batches",
}


def classify(status: str | int, *, retry_info: bool = False) -> bool:
    """Whether the OTLP specification allows retrying a request that got ``status``."""
    if isinstance(status, int):
        return status in RETRYABLE_HTTP
    if status == "RESOURCE_EXHAUSTED":
        return retry_info
    return status in RETRYABLE_GRPC or status in ("CONNECT",)


def _hint(status: str | int | None, endpoint: str) -> str | None:
    h = _HINTS.get(status) if status is not None else None
    if h is None and isinstance(status, int):
        h = _HINTS.get(500 if status >= 500 else 400)
    return h.format(endpoint=endpoint) if h else None


# ---------------------------------------------------------------- endpoints


def parse_headers(value: str | Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """Headers from a mapping, ``["k=v", ...]`` or the ``OTEL_EXPORTER_OTLP_HEADERS`` form ``"k1=v1,k2=v2"``."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k).strip().lower(): str(v).strip() for k, v in value.items()}
    items = value.split(",") if isinstance(value, str) else list(value)
    out: dict[str, str] = {}
    for item in items:
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"headers must look like 'key=value' (comma-separated in the variable). Got {item!r} instead."
            )
        out[unquote(key).strip().lower()] = unquote(val).strip()
    return out


# ---------------------------------------------------------------- requests


@dataclass(slots=True)
class _Request:
    signal: Signal
    body: bytes
    items: int
    at_s: float | None = None  # pacing: seconds after the start at which to send
    record_id: int | None = None  # in the persistent queue
    request_id: str | None = None  # idempotency key sent to the receiver


def count_items(message: Message) -> int:
    """Spans, metric data points or log records in a request."""
    sig = signal_of(message)
    if sig == "traces":
        return sum(len(ss.spans) for rs in message.resource_spans for ss in rs.scope_spans)  # type: ignore[attr-defined]
    if sig == "logs":
        return sum(len(sl.log_records) for rl in message.resource_logs for sl in rl.scope_logs)  # type: ignore[attr-defined]
    n = 0
    for rm in message.resource_metrics:  # type: ignore[attr-defined]
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                n += len(getattr(m, kind).data_points) if kind else 0
    return n


# ---------------------------------------------------------------- report


@dataclass
class SendReport:
    """What a send achieved.

    Attributes
    ----------
    sent : int
        Items (spans, data points, log records) the peer accepted.
    rejected : int
        Items the peer refused inside accepted requests (OTLP partial success).
    failed : int
        Items not delivered: refused requests, or retries given up.
    requests, failed_requests, retries : int
        Requests sent, requests not delivered, and retry attempts made.
    errors : list of ExportError
        The first errors met (each with ``status``, ``retryable`` and a ``hint``).
    error_counts : dict
        Failed requests per status (``"UNAVAILABLE"``, ``503``, ``"CIRCUIT_OPEN"``, ...).
    messages : list of str
        The first partial-success messages from the peer.
    queued, recovered, dropped : int
        With a persistent queue (``queue_dir``): items left on disk because the peer was
        unreachable (sent by a later run), items found there from earlier runs, and items a
        full queue refused. ``queue`` holds the queue's counters.
    """

    sent: int = 0
    rejected: int = 0
    failed: int = 0
    requests: int = 0
    failed_requests: int = 0
    retries: int = 0
    duration_s: float = 0.0
    errors: list[ExportError] = field(default_factory=list)
    error_counts: dict[str | int, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    queued: int = 0  # items left in the persistent queue (peer unreachable): sent on a later run
    recovered: int = 0  # items found in the persistent queue from earlier runs (sent in this one)
    dropped: int = 0  # items refused by a full persistent queue
    queue: QueueStats | None = None
    latencies_s: list[float] = field(default_factory=list, repr=False)

    @property
    def items_per_s(self) -> float:
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0

    def latency_ms(self, q: float) -> float | None:
        """Quantile ``q`` (0-1) of the export latency (first attempt to final answer), in ms."""
        if not self.latencies_s:
            return None
        if len(self.latencies_s) == 1:
            return self.latencies_s[0] * 1e3
        cuts = statistics.quantiles(self.latencies_s, n=1000, method="inclusive")
        return cuts[min(998, max(0, round(q * 1000) - 1))] * 1e3

    def raise_for_failures(self) -> SendReport:
        """Raise the first :class:`ExportError` if anything failed; return self otherwise."""
        if self.failed or self.failed_requests:
            raise self.errors[0] if self.errors else ExportError(f"{self.failed:,} items failed")
        return self

    def __repr__(self) -> str:
        p50, p99 = self.latency_ms(0.5), self.latency_ms(0.99)
        lat = f", p50={p50:.1f} ms, p99={p99:.1f} ms" if p50 is not None and p99 is not None else ""
        return (
            f"SendReport(sent={self.sent:,}, rejected={self.rejected:,}, failed={self.failed:,}, "
            f"requests={self.requests:,}, retries={self.retries:,}, {self.items_per_s:,.0f} items/s{lat}"
            + (f", queued={self.queued:,}" if self.queued else "")
            + (f", dropped={self.dropped:,}" if self.dropped else "")
            + ")"
        )


# ---------------------------------------------------------------- the sender


class Sender:
    """Send OTLP to a collector or receiver, with batching, concurrency, retries and a breaker.

    Parameters
    ----------
    endpoint : str, optional
        ``"http://host:4318"`` (HTTP: ``/v1/<signal>`` is appended), ``"host:4317"`` or
        ``"https://host:4317"`` (gRPC: https means TLS). Defaults to 127.0.0.1 on the
        protocol's usual port.
    protocol : {"grpc", "http/protobuf", "http/json"}
    headers : mapping or "k=v,k2=v2", optional
        Sent with every request (gRPC metadata or HTTP headers), e.g. ``{"authorization": "Bearer T"}``.
    compression : {"gzip", "none"}
    timeout_s : float
        Per attempt.
    tls : ClientTls, optional
        CA to verify the server, and a client certificate for mTLS.
    concurrency : int
        Requests in flight at once.
    max_items, max_bytes : int
        Batching: items (spans, points, records) and serialized bytes per request.
    retry : RetryPolicy, optional
        Defaults to :meth:`default_retry` (OTLP's retryable statuses, full jitter). Replies with
        server pushback reach it as status ``"BACKPRESSURE"`` (always retryable, after the delay
        the server asked for; the breaker ignores them).
    breaker : CircuitBreakerConfig or None
        Defaults to :meth:`default_breaker`; None sends without a breaker.
    signal_endpoints : mapping, optional
        Per-signal full URLs (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` and friends), HTTP only.
    seed : int, optional
        Seed of the retry jitter.
    queue_dir : str or path, optional
        Store-and-forward: every request is appended (fsynced) to a persistent queue in this
        directory before it is sent, and removed only once the peer acknowledged it. Requests
        the peer could not take (down, overloaded) stay there and go first on the next send
        (:meth:`send_queue` sends only them); each carries a request id, by which otlp_lab's
        receiver stores it exactly once. See :class:`~otlp_lab.transport.PersistentQueue`.
    queue_max_bytes : int, default 256 MiB
        Bytes waiting in the queue beyond which new requests are dropped (counted and logged).

    Examples
    --------
    >>> sender = Sender("http://127.0.0.1:4318", protocol="http/protobuf")   # doctest: +SKIP
    >>> sender.send_lab(lab, "traces")                                        # doctest: +SKIP
    SendReport(sent=31,540, rejected=0, failed=0, requests=62, retries=0, 48,113 items/s, ...)
    """

    _DEFAULT = object()

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        protocol: str = "grpc",
        headers: str | Mapping[str, str] | Sequence[str] | None = None,
        compression: str = "gzip",
        timeout_s: float = 10.0,
        tls: ClientTls | None = None,
        concurrency: int = 4,
        max_items: int = 512,
        max_bytes: int = 4 << 20,
        retry: Any = None,
        breaker: Any = _DEFAULT,
        signal_endpoints: Mapping[str, str] | None = None,
        seed: int | None = None,
        queue_dir: str | os.PathLike[str] | None = None,
        queue_max_bytes: int = DEFAULT_QUEUE_BYTES,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {PROTOCOLS}. Got {protocol!r} instead.")
        if compression not in ("gzip", "none"):
            raise ConfigError(f"compression must be 'gzip' or 'none'. Got {compression!r} instead.")
        for name, v in (("concurrency", concurrency), ("max_items", max_items), ("max_bytes", max_bytes)):
            check_int(v, name, minimum=1)
        check_number(timeout_s, "timeout_s", minimum=0, open_low=True)
        self.protocol = protocol
        self.endpoint = endpoint or DEFAULT_ENDPOINTS[protocol]
        self.tls = tls
        self.target = parse_endpoint(self.endpoint, protocol, tls)
        self.headers = parse_headers(headers)
        self.compression = compression
        self.timeout_s = float(timeout_s)
        self.concurrency = concurrency
        self.max_items = max_items
        self.max_bytes = max_bytes
        if retry is not None and BACKPRESSURE not in retry.retryable_status_codes:
            # OTLP requires honouring pushback: backpressure is always retryable
            retry = dataclasses.replace(
                retry, retryable_status_codes=retry.retryable_status_codes | {BACKPRESSURE}
            )
        self.retry = retry if retry is not None else self.default_retry()
        self.breaker_config = self.default_breaker() if breaker is Sender._DEFAULT else breaker
        self.signal_endpoints = dict(signal_endpoints or {})
        check_int(queue_max_bytes, "queue_max_bytes", minimum=1)
        self.queue_dir = queue_dir
        self.queue_max_bytes = queue_max_bytes
        self._rng = random.Random(seed)
        self._breaker: Any = None  # one breaker per Sender, shared by its requests across sends
        self._policy_stack: Any = None  # one policy stack per Sender, shared by its requests

    # ------------------------------------------------------------ construction
    @staticmethod
    def default_retry() -> Any:
        """OTLP's retryable statuses, 6 attempts, 0.2 s -> 5 s backoff with full jitter."""
        from otlp_lab.resilience import RetryPolicy

        return RetryPolicy(
            max_attempts=6,
            initial_backoff_s=0.2,
            max_backoff_s=5.0,
            backoff_multiplier=2.0,
            jitter="full",
            retryable_status_codes=RETRYABLE_GRPC | RETRYABLE_HTTP | {"CONNECT", BACKPRESSURE},
        )

    @staticmethod
    def default_breaker() -> Any:
        """Open when half of the last 20 attempts (at least 10) failed; probe again after 5 s."""
        from otlp_lab.resilience import CircuitBreakerConfig

        return CircuitBreakerConfig(
            failure_rate_threshold=50.0,
            sliding_window_size=20,
            minimum_number_of_calls=10,
            wait_duration_in_open_state_s=5.0,
            permitted_number_of_calls_in_half_open_state=2,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Sender:
        """A sender configured by the ``OTEL_EXPORTER_OTLP_*`` variables, then ``overrides``.

        Reads ``ENDPOINT``, ``PROTOCOL``, ``HEADERS``, ``COMPRESSION``, ``TIMEOUT`` (ms),
        ``CERTIFICATE``, ``CLIENT_CERTIFICATE``, ``CLIENT_KEY``, ``INSECURE``, and the
        per-signal ``TRACES_ENDPOINT`` / ``METRICS_ENDPOINT`` / ``LOGS_ENDPOINT``.
        """
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        for key in ("protocol", "endpoint", "headers", "compression"):
            if env.get(var := f"OTEL_EXPORTER_OTLP_{key.upper()}"):
                kw[key] = env[var]
        if env.get("OTEL_EXPORTER_OTLP_TIMEOUT"):
            try:
                kw["timeout_s"] = float(env["OTEL_EXPORTER_OTLP_TIMEOUT"]) / 1000.0
            except ValueError:
                raise ConfigError(
                    f"OTEL_EXPORTER_OTLP_TIMEOUT must be milliseconds. Got {env['OTEL_EXPORTER_OTLP_TIMEOUT']!r} instead."
                ) from None
        tls = ClientTls.from_env(dict(env))
        if tls is not None:
            kw["tls"] = tls
        per_signal = {
            s: env[f"OTEL_EXPORTER_OTLP_{s.upper()}_ENDPOINT"]
            for s in SIGNALS
            if env.get(f"OTEL_EXPORTER_OTLP_{s.upper()}_ENDPOINT")
        }
        if per_signal:
            kw["signal_endpoints"] = per_signal
        kw.update(overrides)
        return cls(**kw)

    @property
    def breaker(self) -> Any:
        """The circuit breaker shared by this sender's requests (None without one)."""
        if self._breaker is None and self.breaker_config is not None:
            from otlp_lab.resilience import CircuitBreaker

            self._breaker = CircuitBreaker(self.breaker_config, name=f"sender {self.target.url}")
        return self._breaker

    def __repr__(self) -> str:
        return f"Sender({self.target.url!r}, protocol={self.protocol!r}, concurrency={self.concurrency})"

    # ------------------------------------------------------------ sources
    def send_queue(self) -> SendReport:
        """Send only what the persistent queue holds from earlier runs (needs ``queue_dir``)."""
        if self.queue_dir is None:
            raise ConfigError("send_queue() needs a sender built with queue_dir=...")
        return self.send_requests([])

    def send_requests(self, requests: Iterable[Message]) -> SendReport:
        """Send ready Export*ServiceRequest messages, as they are (no re-batching)."""
        from otlp_lab.transport._loop import run_sync

        return run_sync(self.asend_requests(requests))

    async def asend_requests(self, requests: Iterable[Message] | AsyncIterator[Message]) -> SendReport:
        """:meth:`send_requests` inside a running event loop (e.g. alongside a live simulation)."""
        return await self._run(requests, replay=None)

    def send_lab(
        self,
        lab: Lab,
        signal: Signal | Sequence[Signal] | None = None,
        *,
        where: str | None = None,
        replay: Replay | None = None,
    ) -> SendReport:
        """Send a Lab's spans, metric points and/or log records (all three when ``signal`` is None).

        ``where`` filters rows with SQL on the signal's table (see :func:`otlp_lab.store._export.export_tables`).
        """
        from otlp_lab.store._export import export_tables

        signals = _signals(signal)
        return self._send_streams({s: list(export_tables(lab, s, where)) for s in signals}, replay)

    def send_files(
        self, *paths: str | os.PathLike[str], signal: Signal | None = None, replay: Replay | None = None
    ) -> SendReport:
        """Send OTLP files (any format ``otlp-lab load`` reads), re-batched by ``max_items``/``max_bytes``."""
        from otlp_lab.store import Lab

        with Lab() as lab:
            lab.load(*paths, signal=signal, duplicates=True)
            return self.send_lab(lab, signal, replay=replay)

    def _send_streams(self, tables: dict[Signal, list[pa.Table]], replay: Replay | None) -> SendReport:
        from otlp_lab.transport._loop import run_sync

        return run_sync(self._run(self._requests(tables, replay), replay=replay))

    def _requests(
        self, tables: dict[Signal, list[pa.Table]], replay: Replay | None
    ) -> Iterator[Message | tuple[float, Message]]:
        """Requests (with their pacing offset in seconds when paced) from staging tables."""
        speed = replay.speed if replay else 1.0
        t0 = None
        if replay is not None:
            lows = [x for sig, ts in tables.items() if (x := first_time_ns(sig, ts)) is not None]
            t0 = min(lows) if lows else None
        if replay is not None and replay.shift_to_now and t0 is not None:
            now = time.time_ns()
            tables = {
                sig: [retime_table(t, EXPORT_TIMES[sig], t0, now, speed) for t in ts]
                for sig, ts in tables.items()
            }
            t0 = now
        encode = _Encoder(self.max_items, self.max_bytes)
        if replay is None or not replay.paced or t0 is None:
            yield from itertools.chain.from_iterable(encode(sig, ts) for sig, ts in tables.items())
            return
        # paced: every stream sorted by time and cut into windows of PACING_WINDOW_S of wall
        # time (a request never holds items due far apart), merged by first item time
        scale = 1.0 if replay.shift_to_now else speed  # shifted times are already scaled
        window_ns = int(PACING_WINDOW_S * scale * 1e9)
        streams = []
        for sig, ts in tables.items():
            for group in time_sorted(sig, ts):
                slices = windows(sig, group, t0, window_ns)
                streams.append((first_time_of(r), r) for w in slices for r in encode(sig, [w]))
        for first_ns, req in heapq.merge(*streams, key=lambda x: x[0]):
            yield (max(0.0, (first_ns - t0) / 1e9 / scale), req)

    # ------------------------------------------------------------ the engine
    async def _run(
        self, requests: Iterable[Any] | AsyncIterator[Any], *, replay: Replay | None
    ) -> SendReport:
        pq = self._open_queue()
        transport = self._transport()
        report = SendReport()
        # with a persistent queue, requests wait on disk (the asyncio queue holds only their ids),
        # so a peer that is down does not hold up accepting (and persisting) the rest
        queue: asyncio.Queue[_Request | None] = asyncio.Queue(
            maxsize=0 if pq is not None else 2 * self.concurrency
        )
        loop = asyncio.get_running_loop()
        t_start = time.perf_counter()
        stop = threading.Event()

        async def produce() -> None:
            try:
                if pq is not None:  # first what earlier runs left waiting
                    for rec in await loop.run_in_executor(None, pq.pending):
                        report.recovered += rec.items
                        await queue.put(
                            _Request(rec.signal, b"", rec.items, None, rec.id, pq.request_id(rec.id))
                        )  # type: ignore[arg-type]
                if hasattr(requests, "__aiter__"):
                    async for msg in requests:  # type: ignore[union-attr]
                        prepared = await loop.run_in_executor(None, self._prepare, transport, msg, pq, report)
                        if prepared is not None:
                            await queue.put(prepared)
                else:
                    it = iter(requests)  # type: ignore[arg-type]
                    t_mono = time.monotonic()
                    while True:
                        item = await loop.run_in_executor(
                            None, _next_prepared, it, self, transport, stop, pq, report
                        )
                        if item is None:
                            break
                        if item.at_s is not None:
                            delay = t_mono + item.at_s - time.monotonic()
                            if delay > 0:
                                await asyncio.sleep(delay)
                        await queue.put(item)
            finally:
                for _ in range(self.concurrency):
                    await queue.put(None)

        async def work() -> None:
            while (item := await queue.get()) is not None:
                await self._deliver(transport, item, report, pq)

        try:
            producer = asyncio.ensure_future(produce())
            await asyncio.gather(*(work() for _ in range(self.concurrency)))
            await producer
        finally:
            stop.set()
            await transport.close()
            if pq is not None:
                report.queue = pq.stats
                pq.close()
        report.duration_s = time.perf_counter() - t_start
        return report

    def _open_queue(self) -> PersistentQueue | None:
        if self.queue_dir is None:
            return None
        return PersistentQueue(self.queue_dir, max_bytes=self.queue_max_bytes)

    @staticmethod
    def _load(transport: Any, item: _Request, pq: PersistentQueue) -> bytes:
        """The body of a queued request, read back from disk and encoded for the transport."""
        assert item.record_id is not None
        rec: Record = pq.read(item.record_id)
        return transport.encode(request_class(rec.signal).FromString(rec.body))  # type: ignore[arg-type]

    def _transport(self) -> Any:
        return make_transport(
            self.protocol,
            self.target,
            headers=self.headers,
            compression=self.compression,
            tls=self.tls,
            concurrency=self.concurrency,
            signal_urls=self.signal_endpoints,
        )

    @staticmethod
    def _prepare(
        transport: Any, msg: Any, pq: PersistentQueue | None = None, report: SendReport | None = None
    ) -> _Request | None:
        """The request to send; with a queue, first appended to it (fsynced). None: the queue was full."""
        at_s = None
        if isinstance(msg, tuple):
            at_s, msg = msg
        signal, items = signal_of(msg), count_items(msg)
        if pq is None:
            return _Request(signal, transport.encode(msg), items, at_s)
        rec = pq.append(signal, msg.SerializeToString(), items=items)
        if rec is None:  # full: dropped, logged and counted by the queue
            if report is not None:
                report.dropped += items
            return None
        return _Request(signal, b"", items, at_s, rec.id, pq.request_id(rec.id))  # the body waits on disk

    def _stack(self) -> Any:
        """The policy stack of this sender: its retry policy, jitter source and breaker.

        One stack serves all requests of the sender, across sends (each call gets its own
        state from ``stack.start()``).
        """
        if self._policy_stack is None:
            from otlp_lab.resilience import PolicyStack

            self._policy_stack = PolicyStack(
                self.retry,
                breaker=self.breaker,
                rng=self._rng,
                breaker_ignores=FINAL_REFUSALS | {BACKPRESSURE},
            )
        return self._policy_stack

    async def _deliver(
        self, transport: Any, item: _Request, report: SendReport, pq: PersistentQueue | None = None
    ) -> None:
        from otlp_lab.resilience import Outcome, drive_async

        loop = asyncio.get_running_loop()
        answers: list[Answer] = []
        if pq is not None and item.record_id is not None and not item.body:
            item.body = await loop.run_in_executor(None, self._load, transport, item, pq)

        async def attempt(n: int) -> Outcome:
            ans = await transport.export(item.signal, item.body, self.timeout_s, request_id=item.request_id)
            answers.append(ans)
            if ans.ok:
                return Outcome.success(ans, status=ans.status)
            pushback = ans.retry_after_s
            if pushback is not None and pushback >= 0 and classify(ans.status, retry_info=True):
                return Outcome.failure(BACKPRESSURE, retry_after_s=pushback, value=ans)
            if ans.status == "RESOURCE_EXHAUSTED" and pushback is None:
                pushback = -1.0  # OTLP: retry RESOURCE_EXHAUSTED only when the server sent RetryInfo
            return Outcome.failure(ans.status, retry_after_s=pushback, value=ans)

        t0 = time.perf_counter()
        final = await drive_async(self._stack().start(loop.time()), attempt)
        report.latencies_s.append(time.perf_counter() - t0)
        report.requests += 1
        report.retries += max(0, len(answers) - 1)
        last = answers[-1] if answers else None
        outcome = final.outcome
        if outcome is not None and outcome.ok and last is not None:
            report.sent += item.items - last.rejected
            report.rejected += last.rejected
            if last.message and len(report.messages) < _MAX_ERRORS_KEPT:
                report.messages.append(last.message)
            if pq is not None and item.record_id is not None:
                await loop.run_in_executor(None, pq.ack, item.record_id)  # acknowledged: off the queue
            return
        error = self._error(item, last, outcome, final)
        if pq is not None and item.record_id is not None:
            if error.retryable:  # the peer is down or overloaded: kept on disk for the next run
                report.queued += item.items
            else:  # the peer refused this data for good: resending cannot help
                await loop.run_in_executor(None, pq.ack, item.record_id)
                report.failed += item.items
                report.failed_requests += 1
        else:
            report.failed += item.items
            report.failed_requests += 1
        key = error.status if error.status is not None else "UNKNOWN"
        if key not in report.error_counts or len(report.errors) < _MAX_ERRORS_KEPT:
            report.errors.append(error)  # the first of each status, then up to the cap
        report.error_counts[key] = report.error_counts.get(key, 0) + 1

    def _error(self, item: _Request, last: Answer | None, outcome: Any, final: Any) -> ExportError:
        if outcome is not None and outcome.local:
            status: str | int = outcome.status or "CIRCUIT_OPEN"
            what = f"{outcome.error}" if outcome.error else f"refused locally ({status})"
            return ExportError(
                f"{item.signal} request of {item.items} items not sent: {what}",
                status=status,
                retryable=True,
                hint=_hint("CIRCUIT_OPEN" if status == "CIRCUIT_OPEN" else status, self.target.url),
            )
        status = last.status if last is not None else "UNKNOWN"
        detail = f": {last.message}" if last is not None and last.message else ""
        retryable = classify(status, retry_info=last is not None and last.retry_after_s is not None)
        why = (
            f" after {_attempt_count(final)} attempts ({getattr(final, 'reason', 'final')})"
            if retryable
            else ""
        )
        return ExportError(
            f"{self.target.url} refused a {item.signal} request of {item.items} items with {status}{detail}{why}",
            status=status,
            retryable=retryable,
            hint=_hint(status, self.target.url),
        )


def _attempt_count(final: Any) -> int:
    attempts = getattr(final, "attempts", None)
    return attempts if isinstance(attempts, int) else len(attempts or ())


def _next_prepared(
    it: Iterator[Any],
    sender: Sender,
    transport: Any,
    stop: threading.Event,
    pq: PersistentQueue | None,
    report: SendReport,
) -> _Request | None:
    """The next request of ``it``, encoded for the transport (in a worker thread); None at the end."""
    if stop.is_set():
        return None
    while True:
        try:
            msg = next(it)
        except StopIteration:
            return None
        item = sender._prepare(transport, msg, pq, report)
        if item is not None:
            return item


def _signals(signal: Signal | Sequence[Signal] | None) -> list[Signal]:
    if signal is None:
        return list(SIGNALS)
    out = [signal] if isinstance(signal, str) else list(signal)
    bad = [s for s in out if s not in SIGNALS]
    if bad:
        raise ConfigError(f"signal must be among {SIGNALS}. Got {bad} instead.")
    return out  # type: ignore[return-value]


class _Encoder:
    """Staging tables -> requests of at most ``max_items`` items and ``max_bytes`` bytes."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes

    def __call__(self, signal: Signal, tables: Iterable[pa.Table]) -> Iterator[Message]:
        return encode_requests(signal, tables, max_bytes=self.max_bytes, max_items=self.max_items)
