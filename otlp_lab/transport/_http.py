"""OTLP/HTTP: ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs`` on an asyncio server speaking HTTP/1.1 via h11.

* ``Content-Type: application/x-protobuf`` or ``application/json`` (else 415); the reply body
  (the Export*ServiceResponse, or a ``google.rpc.Status`` for refusals) is in the same format.
* ``Content-Encoding: gzip`` or none; the size limit applies to the decompressed body, and a
  ``Content-Length`` over it is refused (413) before the body is read.
* Backpressure: 503 with ``Retry-After`` (whole seconds, rounded up). Keep-alive and
  ``Expect: 100-continue`` are supported.
* Slow clients: a request (head and body) must arrive within ``request_timeout_s`` of its first
  byte (408 otherwise), and an idle connection is closed after ``read_timeout_s``. At
  ``max_concurrent_requests`` connections a new one evicts the connection idle longest, else the
  one that has been reading a request longest (never one whose request is being stored), so
  clients trickling bytes cannot lock good clients out.
* Limits: a URL over 8 KiB gets 414, a head over 64 KiB or over 100 header fields 431; refusals
  of a request still being sent use a lingering close, so the client reads the reply.
* ``HEAD`` gets the headers of the refusal (405), without a body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson

from otlp_lab.errors import ConfigError, TransportError
from otlp_lab.otlp import Signal
from otlp_lab.transport._live import QUERY_PATH
from otlp_lab.transport._replies import (
    REQUEST_ID_HEADER,
    Reply,
    ReplyKind,
    encode_body,
    response_message,
    status_message,
)

if TYPE_CHECKING:
    from otlp_lab.transport._receiver import IngestCore

__all__ = ["HTTP_PATHS", "MEDIA_TYPES", "start_http"]

HTTP_PATHS: dict[str, Signal] = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}
MEDIA_TYPES = {
    "application/x-protobuf": "protobuf",
    "application/protobuf": "protobuf",
    "application/json": "json",
}
_CONTENT_TYPE = {"protobuf": "application/x-protobuf", "json": "application/json"}
_READ_CHUNK = 1 << 16
# Limits of a request head (as Apache's LimitRequestLine / LimitRequestFields; a head over
# MAX_HEAD_BYTES is refused while it is read, so a connection holds at most that much head)
MAX_HEAD_BYTES = 64 << 10
MAX_TARGET_BYTES = 8 << 10
MAX_HEADERS = 100
# Lingering close after refusing a request still being sent (bounded)
LINGER_S = 5.0
LINGER_IDLE_S = 1.0
LINGER_BYTES = 64 << 20

log = logging.getLogger("otlp_lab.transport")


def import_h11() -> Any:
    try:
        import h11
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("OTLP/HTTP needs h11: pip install 'otlp-lab[lab]' (or pip install h11)") from None
    return h11


class _Close(Exception):
    """Drop the connection (peer gone, protocol error, timeout)."""


class _Linger(_Close):
    """Drop the connection after reading and discarding what the peer still sends (bounded), so
    that a peer still writing a request we refused reads our reply instead of a reset."""


@dataclass(slots=True)
class _Conn:
    """What one connection is doing, for choosing whom to evict when the server is full."""

    phase: str = "idle"  # idle (between requests), reading (a request's head or body), busy (in the core)
    since: float = 0.0  # loop time the phase began
    evicted: bool = False


class HttpServer:
    """A started OTLP/HTTP server (``port``; ``await stop(grace_s)``)."""

    def __init__(self, core: IngestCore) -> None:
        self.core = core
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Task[None], _Conn] = {}
        self._ssl = False

    async def start(self, host: str, port: int) -> None:
        ssl_ctx: ssl.SSLContext | None = self.core.config.tls.ssl_context() if self.core.config.tls else None
        self._ssl = ssl_ctx is not None
        try:
            self._server = await asyncio.start_server(
                self._serve, host, port, ssl=ssl_ctx, backlog=512, limit=_READ_CHUNK, reuse_address=True
            )
        except OSError as exc:
            raise TransportError(
                f"cannot listen for OTLP/HTTP on {host}:{port} ({exc.strerror})",
                hint="the port may be in use: pick another one, or port 0 for any free port",
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self, grace_s: float) -> None:
        if self._server is None:
            return
        self._server.close()
        # idle keep-alive connections go now; those in a request get up to grace_s to finish
        busy = {t for t, c in self._connections.items() if c.phase != "idle"}
        for task in set(self._connections) - busy:
            task.cancel()
        if busy:
            await asyncio.wait(busy, timeout=grace_s)
        for task in set(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=5)
        await self._server.wait_closed()

    def _make_room(self, me: asyncio.Task[None]) -> bool:
        """At the connection limit: evict the connection idle longest, else the one reading a
        request longest (a slow client), never one whose request is in the core. False: none."""
        limit = self.core.config.max_concurrent_requests
        if len(self._connections) <= limit:
            return True
        candidates = [
            (c.phase != "idle", c.since, t)
            for t, c in self._connections.items()
            if c.phase != "busy" and not c.evicted and t is not me
        ]
        if not candidates:
            return False
        _, _, victim = min(candidates, key=lambda x: (x[0], x[1]))
        self._connections[victim].evicted = True
        victim.cancel()
        return True

    # ------------------------------------------------------------ one connection
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        state = self._connections[task] = _Conn("idle", loop.time())
        linger = False
        try:
            if not self._make_room(task):
                reply = self.core.count(
                    Reply(
                        ReplyKind.OVERLOADED,
                        "too many connections",
                        retry_after_s=self.core.config.retry_after_s,
                    )
                )
                writer.write(_raw_response(reply))
                await writer.drain()
                return
            await self._connection(reader, writer, state)
        except _Linger:
            linger = True
        except asyncio.CancelledError:
            if state.evicted and state.phase != "busy":
                # evicted to make room: say why if no response is under way
                with contextlib.suppress(Exception):
                    reply = Reply(
                        ReplyKind.TIMEOUT, "closed to make room for other clients (connection limit)"
                    )
                    writer.write(_raw_response(self.core.count(reply) if state.phase == "reading" else reply))
        except (_Close, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        except Exception:  # a bug must cost one connection, not the server
            log.exception("OTLP/HTTP connection failed")
        finally:
            self._connections.pop(task, None)
            if linger:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await self._linger(reader, writer)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Lingering close: send FIN, then read and drop the rest of the request (bounded in time and bytes)."""
        await writer.drain()
        if not self._ssl and writer.can_write_eof():
            writer.write_eof()
        loop = asyncio.get_running_loop()
        end, got = loop.time() + LINGER_S, 0
        while got < LINGER_BYTES and (left := end - loop.time()) > 0:
            data = await asyncio.wait_for(reader.read(_READ_CHUNK), min(left, LINGER_IDLE_S))
            if not data:
                return
            got += len(data)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _Conn
    ) -> None:
        h11 = import_h11()
        cfg = self.core.config
        loop = asyncio.get_running_loop()
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        deadline: list[float | None] = [None]  # end of the current request (head and body), once it began
        line_done = [False]  # the request line is complete (else an oversize head is a long URL: 414)

        async def refuse_raw(reply: Reply, linger: bool = True) -> None:
            writer.write(_raw_response(self.core.count(reply)))  # h11 will not answer what it could not parse
            raise _Linger if linger else _Close

        async def next_event() -> Any:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    if exc.error_status_hint == 431 and not line_done[0]:
                        reply = Reply(
                            ReplyKind.URI_TOO_LONG, f"the request line is over {MAX_HEAD_BYTES:,} bytes"
                        )
                    elif exc.error_status_hint == 431:
                        reply = Reply(
                            ReplyKind.HEADERS_TOO_LARGE, f"the request head is over {MAX_HEAD_BYTES:,} bytes"
                        )
                    else:
                        reply = Reply(ReplyKind.INVALID, f"bad HTTP request: {exc}")
                    if conn.our_state is h11.SEND_RESPONSE:
                        await self._send(conn, writer, self.core.count(reply), "json", close=True)
                    elif conn.our_state is h11.IDLE:
                        await refuse_raw(reply)
                    raise _Close from exc
                if event is not h11.NEED_DATA:
                    return event
                timeout = cfg.read_timeout_s
                if deadline[0] is not None:
                    timeout = min(timeout, deadline[0] - loop.time())
                try:
                    if timeout <= 0:
                        raise TimeoutError
                    data = await asyncio.wait_for(reader.read(_READ_CHUNK), timeout)
                except TimeoutError:
                    if deadline[0] is None:
                        raise _Close from None  # idle keep-alive connection: just close
                    reply = Reply(
                        ReplyKind.TIMEOUT,
                        f"the request was not received within request_timeout_s={cfg.request_timeout_s:g} s",
                    )
                    if conn.our_state is h11.SEND_RESPONSE:  # no lingering for a slow client
                        await self._send(
                            conn, writer, self.core.count(reply), "json", close=True, linger=False
                        )
                    await refuse_raw(reply, linger=False)
                if deadline[0] is None and data:
                    deadline[0] = loop.time() + cfg.request_timeout_s  # the request's first byte
                    state.phase, state.since = "reading", loop.time()
                if not line_done[0] and b"\n" in data:
                    line_done[0] = True
                conn.receive_data(data)  # b"" = the peer closed

        while True:
            event = await next_event()
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                raise _Close
            if deadline[0] is None:  # the whole request was already buffered
                deadline[0] = loop.time() + cfg.request_timeout_s
                state.phase, state.since = "reading", loop.time()
            await self._request(conn, event, next_event, writer, state)
            if conn.our_state is h11.MUST_CLOSE or self.core.closing:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
            deadline[0], line_done[0] = None, False
            state.phase, state.since = "idle", loop.time()

    async def _request(
        self, conn: Any, request: Any, next_event: Any, writer: asyncio.StreamWriter, state: _Conn
    ) -> None:
        h11 = import_h11()
        core, cfg = self.core, self.core.config
        head = request.method == b"HEAD"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        path = request.target.decode("latin-1").split("?", 1)[0]
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        fmt = MEDIA_TYPES.get(ctype, "json")
        signal = HTTP_PATHS.get(path)
        length = headers.get("content-length")
        if (
            path == QUERY_PATH
            and len(request.target) <= MAX_TARGET_BYTES
            and len(request.headers) <= MAX_HEADERS
        ):
            await self._query(conn, request, headers, next_event, writer, head)
            return
        refusal: Reply | None = None
        if len(request.target) > MAX_TARGET_BYTES:
            refusal = Reply(
                ReplyKind.URI_TOO_LONG, f"the URL is {len(request.target):,} bytes, over {MAX_TARGET_BYTES:,}"
            )
        elif len(request.headers) > MAX_HEADERS or _head_size(request) > MAX_HEAD_BYTES:
            refusal = Reply(
                ReplyKind.HEADERS_TOO_LARGE,
                f"{len(request.headers):,} header fields, over the limit of {MAX_HEADERS}",
            )
        elif signal is None:
            refusal = Reply(
                ReplyKind.NOT_FOUND, f"no such path {path[:200]!r}; OTLP/HTTP paths are {sorted(HTTP_PATHS)}"
            )
        elif request.method != b"POST":
            refusal = Reply(
                ReplyKind.METHOD, f"method {request.method.decode()[:20]} is not allowed; use POST"
            )
        elif ctype not in MEDIA_TYPES:
            refusal = Reply(
                ReplyKind.UNSUPPORTED,
                f"Content-Type {ctype[:100] or '(none)'!r} is not supported; use application/x-protobuf or application/json",
            )
        elif headers.get("content-encoding", "identity").strip().lower() not in ("identity", "gzip", ""):
            refusal = Reply(
                ReplyKind.UNSUPPORTED,
                f"Content-Encoding {headers['content-encoding'][:100]!r} is not supported; use gzip or none",
            )
        else:
            refusal = cfg.check_auth(headers.get)  # on the headers, before any body is read
        if (
            refusal is None
            and length is not None
            and length.isdigit()
            and int(length) > cfg.max_request_bytes
        ):
            refusal = Reply(
                ReplyKind.TOO_LARGE,
                f"request body is {int(length):,} bytes, over the {cfg.max_request_bytes:,}-byte limit",
            )
        wants_body = length not in (None, "0") or "chunked" in headers.get("transfer-encoding", "")
        reserved = 0
        if refusal is None:
            # the body's bytes come out of the receiver's in-flight budget before it is read
            reserved = int(length) if length is not None and length.isdigit() else cfg.max_request_bytes
            if not core.try_reserve(reserved):
                reserved = 0
                refusal = Reply(
                    ReplyKind.OVERLOADED,
                    "the receiver's in-flight budget is full; retry later",
                    retry_after_s=cfg.retry_after_s,
                )
        if refusal is not None:
            # refuse without reading a body nobody wants; the connection cannot be reused then
            while not wants_body and not isinstance(await next_event(), h11.EndOfMessage):
                pass
            await self._send(
                conn, writer, core.count(refusal), fmt, close=wants_body, extra=_extra(refusal), head=head
            )
            return
        try:
            if conn.they_are_waiting_for_100_continue:
                writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            chunks: list[bytes] = []
            size = 0
            while True:
                event = await next_event()
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > cfg.max_request_bytes:
                        reply = core.count(
                            Reply(
                                ReplyKind.TOO_LARGE,
                                f"request body is over the {cfg.max_request_bytes:,}-byte limit",
                            )
                        )
                        await self._send(conn, writer, reply, fmt, close=True)
                    chunks.append(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # the peer went away mid-body: nothing was decoded, nothing is stored
                    raise _Close
            body = b"".join(chunks)
            del chunks
        except BaseException:
            core.release(reserved)
            raise
        assert signal is not None
        state.phase = "busy"
        reply = await core.export(
            signal,
            body,
            fmt=fmt,
            encoding=headers.get("content-encoding", "").strip().lower(),
            reserved=reserved,
            request_id=headers.get(REQUEST_ID_HEADER),
        )
        await self._send(conn, writer, reply, fmt, signal=signal)

    async def _query(
        self, conn: Any, request: Any, headers: dict[str, str], next_event: Any, writer: Any, head: bool
    ) -> None:
        """``POST /v1/query``: a live read-only query on the receiver's Lab (see ``_live``)."""
        h11 = import_h11()
        from otlp_lab.transport._live import MAX_QUERY_BYTES, QueryRefused, run_query
        from otlp_lab.transport._receiver import is_loopback

        cfg = self.core.config
        length = headers.get("content-length")
        wants_body = length not in (None, "0") or "chunked" in headers.get("transfer-encoding", "")
        peer = writer.get_extra_info("peername")
        refusal: Reply | None = None
        if request.method != b"POST":
            refusal = Reply(
                ReplyKind.METHOD, f"method {request.method.decode()[:20]} is not allowed; use POST"
            )
        elif not (isinstance(peer, tuple) and is_loopback(str(peer[0]))):
            refusal = Reply(ReplyKind.FORBIDDEN, "live queries are served to loopback clients only")
        else:
            refusal = cfg.check_auth(headers.get)
        if refusal is None and (length is None or not length.isdigit() or int(length) > MAX_QUERY_BYTES):
            refusal = Reply(ReplyKind.INVALID, f"give a Content-Length of at most {MAX_QUERY_BYTES:,} bytes")
        if refusal is not None:
            while not wants_body and not isinstance(await next_event(), h11.EndOfMessage):
                pass
            await self._send(
                conn, writer, refusal, "json", close=wants_body, extra=_extra(refusal), head=head
            )
            return
        chunks: list[bytes] = []
        while not isinstance(event := await next_event(), h11.EndOfMessage):
            if not isinstance(event, h11.Data):
                raise _Close
            chunks.append(event.data)
        loop = asyncio.get_running_loop()
        try:
            doc = orjson.loads(b"".join(chunks))
            ctype, body, truncated = await loop.run_in_executor(None, run_query, self.core.lab, doc)
        except (orjson.JSONDecodeError, QueryRefused) as exc:
            await self._send(conn, writer, Reply(ReplyKind.INVALID, str(exc)), "json")
            return
        out = [("content-type", ctype), ("content-length", str(len(body)))]
        if truncated:
            out.append(("x-otlp-lab-truncated", "1"))
        if conn.our_state is not h11.SEND_RESPONSE:
            raise _Close
        writer.write(conn.send(h11.Response(status_code=200, headers=out)))
        writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _send(
        self,
        conn: Any,
        writer: asyncio.StreamWriter,
        reply: Reply,
        fmt: str,
        *,
        signal: Signal | None = None,
        close: bool = False,
        extra: list[tuple[str, str]] | None = None,
        head: bool = False,
        linger: bool = True,
    ) -> None:
        h11 = import_h11()
        if reply.kind is ReplyKind.OK:
            assert signal is not None
            body = encode_body(response_message(signal, reply), fmt)
        else:
            body = encode_body(status_message(reply), fmt)
        headers = [("content-type", _CONTENT_TYPE[fmt]), ("content-length", str(len(body)))]
        if reply.retry_after_s is not None:
            headers.append(("retry-after", str(max(1, math.ceil(reply.retry_after_s)))))
        headers += extra or []
        if close or self.core.closing:
            headers.append(("connection", "close"))
        if conn.our_state is not h11.SEND_RESPONSE:
            raise _Close
        writer.write(conn.send(h11.Response(status_code=reply.http_status, headers=headers)))
        if not head:  # a reply to HEAD has the headers of the reply to GET, and no body
            writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        if close:
            raise _Linger if linger else _Close


def _head_size(request: Any) -> int:
    """Bytes of a request head (h11 checks its buffer only while a head is incomplete)."""
    return len(request.method) + len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)


def _extra(reply: Reply) -> list[tuple[str, str]]:
    if reply.kind is ReplyKind.METHOD:
        return [("allow", "POST")]
    if reply.kind is ReplyKind.UNAUTHENTICATED:
        return [("www-authenticate", "Bearer")]
    return []


def _raw_response(reply: Reply) -> bytes:
    """A refusal written without h11 (connection limit, unparseable request); the connection closes after it."""
    body = encode_body(status_message(reply), "json")
    head = f"HTTP/1.1 {reply.http_status} {HTTPStatus(reply.http_status).phrase}\r\ncontent-type: application/json\r\n"
    if reply.retry_after_s is not None:
        head += f"retry-after: {max(1, math.ceil(reply.retry_after_s))}\r\n"
    return (head + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


async def start_http(core: IngestCore, host: str, port: int) -> HttpServer:
    """Start serving OTLP/HTTP on ``host:port`` (0 = a free port)."""
    import_h11()
    server = HttpServer(core)
    await server.start(host, port)
    return server
