"""OTLP/HTTP: ``POST /v1/traces``, ``/v1/metrics``, ``/v1/logs`` on an asyncio server speaking HTTP/1.1 via h11.

* ``Content-Type: application/x-protobuf`` or ``application/json`` (else 415); the reply body
  (the Export*ServiceResponse, or a ``google.rpc.Status`` for refusals) is in the same format.
* ``Content-Encoding: gzip`` or none; the size limit applies to the decompressed body, and a
  ``Content-Length`` over it is refused (413) before the body is read.
* Backpressure: 503 with ``Retry-After`` (whole seconds, rounded up). Keep-alive and
  ``Expect: 100-continue`` are supported; an idle or stalled connection is closed after
  ``read_timeout_s``; at most ``max_concurrent_requests`` connections are served at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from otlp_lab.errors import ConfigError, TransportError
from otlp_lab.otlp import Signal
from otlp_lab.transport._payload import Reply, ReplyKind, encode_body, response_message, status_message

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

log = logging.getLogger("otlp_lab.transport")


def import_h11() -> Any:
    try:
        import h11
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError("OTLP/HTTP needs h11: pip install 'otlp-lab[lab]' (or pip install h11)") from None
    return h11


class _Close(Exception):
    """Drop the connection (peer gone, protocol error, timeout)."""


class HttpServer:
    """A started OTLP/HTTP server (``port``; ``await stop(grace_s)``)."""

    def __init__(self, core: IngestCore) -> None:
        self.core = core
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # connections in the middle of a request

    async def start(self, host: str, port: int) -> None:
        ssl_ctx: ssl.SSLContext | None = self.core.config.tls.ssl_context() if self.core.config.tls else None
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
        for task in self._connections - self._busy:
            task.cancel()
        if self._busy:
            await asyncio.wait(set(self._busy), timeout=grace_s)
        for task in set(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=5)
        await self._server.wait_closed()

    # ------------------------------------------------------------ one connection
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if len(self._connections) > self.core.config.max_concurrent_requests:
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
            await self._connection(reader, writer, task)
        except (
            _Close,
            ConnectionError,
            asyncio.IncompleteReadError,
            ssl.SSLError,
            TimeoutError,
            asyncio.CancelledError,
        ):
            pass
        except Exception:  # a bug must cost one connection, not the server
            log.exception("OTLP/HTTP connection failed")
        finally:
            self._connections.discard(task)
            self._busy.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, task: asyncio.Task[None]
    ) -> None:
        h11 = import_h11()
        cfg = self.core.config
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 << 10)

        async def next_event() -> Any:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    reply = Reply(ReplyKind.INVALID, f"bad HTTP request: {exc}")
                    if conn.our_state is h11.SEND_RESPONSE:
                        await self._send(conn, writer, reply, "json", close=True)
                    elif conn.our_state is h11.IDLE:
                        writer.write(_raw_response(reply))  # h11 will not answer a request it could not parse
                        await writer.drain()
                    raise _Close from exc
                if event is not h11.NEED_DATA:
                    return event
                data = await asyncio.wait_for(reader.read(_READ_CHUNK), cfg.read_timeout_s)
                conn.receive_data(data)  # b"" = the peer closed

        while True:
            event = await next_event()
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                raise _Close
            self._busy.add(task)
            try:
                await self._request(conn, event, next_event, writer)
            finally:
                self._busy.discard(task)
            if conn.our_state is h11.MUST_CLOSE or self.core.closing:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _request(self, conn: Any, request: Any, next_event: Any, writer: asyncio.StreamWriter) -> None:
        h11 = import_h11()
        core, cfg = self.core, self.core.config
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        path = request.target.decode("latin-1").split("?", 1)[0]
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        fmt = MEDIA_TYPES.get(ctype, "json")
        signal = HTTP_PATHS.get(path)
        refusal: Reply | None = None
        if signal is None:
            refusal = Reply(
                ReplyKind.NOT_FOUND, f"no such path {path!r}; OTLP/HTTP paths are {sorted(HTTP_PATHS)}"
            )
        elif request.method != b"POST":
            refusal = Reply(ReplyKind.METHOD, f"method {request.method.decode()} is not allowed; use POST")
        elif ctype not in MEDIA_TYPES:
            refusal = Reply(
                ReplyKind.UNSUPPORTED,
                f"Content-Type {ctype or '(none)'!r} is not supported; use application/x-protobuf or application/json",
            )
        elif headers.get("content-encoding", "identity").strip().lower() not in ("identity", "gzip", ""):
            refusal = Reply(
                ReplyKind.UNSUPPORTED,
                f"Content-Encoding {headers['content-encoding']!r} is not supported; use gzip or none",
            )
        else:
            refusal = cfg.check_auth(headers.get)
        length = headers.get("content-length")
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
        if refusal is not None:
            # refuse without reading a body nobody wants; the connection cannot be reused then
            wants_body = length not in (None, "0") or "chunked" in headers.get("transfer-encoding", "")
            while not wants_body and not isinstance(await next_event(), h11.EndOfMessage):
                pass
            await self._send(conn, writer, core.count(refusal), fmt, close=wants_body, extra=_extra(refusal))
            return
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
                    raise _Close
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # the peer went away mid-body: nothing was decoded, nothing is stored
                raise _Close
        body = b"".join(chunks)
        del chunks
        assert signal is not None
        reply = await core.export(
            signal, body, fmt=fmt, encoding=headers.get("content-encoding", "").strip().lower()
        )
        await self._send(conn, writer, reply, fmt, signal=signal)

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
        writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        if close:
            raise _Close


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
