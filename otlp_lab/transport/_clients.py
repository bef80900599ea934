"""The sender's two transports: OTLP/gRPC (grpc.aio) and OTLP/HTTP (httpx), behind one interface.

``encode(message) -> body`` (serialized, compressed as configured), ``await export(signal, body,
timeout_s) -> Answer`` (the peer's answer to one attempt, before the retry policies see it) and
``await close()``. Connection failures become answers with a status (``"CONNECT"``, ``"TLS"``,
``"UNAVAILABLE"``, ``"DEADLINE_EXCEEDED"``), never exceptions.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from google.protobuf.message import Message

from otlp_lab.errors import ConfigError
from otlp_lab.otlp import SIGNALS, Signal, to_otlp_json
from otlp_lab.transport._replies import (
    REQUEST_ID_HEADER,
    parse_response,
    partial_success,
    retry_delay,
    status_text,
)
from otlp_lab.transport._tls import ClientTls

__all__ = ["Answer", "GrpcTransport", "HttpTransport", "Target", "make_transport", "parse_endpoint"]

_GZIP_LEVEL = 5


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed endpoint: where to connect and whether with TLS."""

    url: str  # normalised, with scheme
    host: str
    port: int
    secure: bool
    path: str


def parse_endpoint(endpoint: str, protocol: str, tls: ClientTls | None) -> Target:
    text = endpoint.strip()
    if "://" not in text:
        secure = protocol == "grpc" and tls is not None and not tls.insecure
        text = ("https://" if secure else "http://") + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"endpoint must look like 'http://127.0.0.1:4318' or '127.0.0.1:4317'. Got {endpoint!r} instead."
        )
    default_port = 4317 if protocol == "grpc" else 4318
    try:
        port = parts.port or default_port
    except ValueError:
        raise ConfigError(f"endpoint {endpoint!r} has an invalid port.") from None
    host = parts.hostname
    secure = parts.scheme == "https"
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Target(
        f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}", host, port, secure, parts.path.rstrip("/")
    )


@dataclass(slots=True)
class Answer:
    """A peer's answer to one attempt, before the policies see it."""

    ok: bool
    status: str | int
    message: str = ""
    rejected: int = 0
    retry_after_s: float | None = None


class GrpcTransport:
    def __init__(
        self, target: Target, headers: dict[str, str], compression: str, tls: ClientTls | None
    ) -> None:
        from otlp_lab.transport._grpc import GRPC_METHODS, import_grpc

        grpc = self._grpc = import_grpc()
        options = [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", -1),
            ("grpc.enable_retries", 0),  # the policy stack retries, not grpcio
        ]
        comp = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
        netloc = f"[{target.host}]:{target.port}" if ":" in target.host else f"{target.host}:{target.port}"
        if target.secure:
            creds = (tls or ClientTls()).grpc_credentials()
            self._channel = grpc.aio.secure_channel(netloc, creds, options=options, compression=comp)
        else:
            self._channel = grpc.aio.insecure_channel(netloc, options=options, compression=comp)
        self._metadata = tuple(headers.items())
        self._calls = {
            sig: self._channel.unary_unary(f"/{svc}/{m}") for sig, (svc, m) in GRPC_METHODS.items()
        }

    @staticmethod
    def encode(message: Message) -> bytes:
        return message.SerializeToString()

    async def export(
        self, signal: Signal, body: bytes, timeout_s: float, *, request_id: str | None = None
    ) -> Answer:
        grpc = self._grpc
        metadata = self._metadata + (((REQUEST_ID_HEADER, request_id),) if request_id else ())
        try:
            raw = await self._calls[signal](body, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            retry = retry_delay(exc.trailing_metadata())
            details = exc.details() or ""
            if code == "UNAVAILABLE" and (
                "handshake" in details.lower() or "ssl" in details.lower() or "certificate" in details.lower()
            ):
                code = "TLS"
            return Answer(False, code, details, retry_after_s=retry)
        rejected, msg = partial_success(parse_response(signal, raw))
        return Answer(True, "OK", msg, rejected)

    async def close(self) -> None:
        await self._channel.close()


class HttpTransport:
    def __init__(
        self,
        target: Target,
        fmt: str,
        headers: dict[str, str],
        compression: str,
        tls: ClientTls | None,
        concurrency: int,
        signal_urls: Mapping[str, str],
    ) -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError("OTLP/HTTP sending needs httpx: pip install httpx") from None
        self._httpx = httpx
        self.fmt = fmt
        self.gzip = compression == "gzip"
        verify: Any = tls.ssl_context() if tls is not None and target.secure else True
        self._client = httpx.AsyncClient(
            verify=verify,
            headers={
                **headers,
                "content-type": "application/json" if fmt == "json" else "application/x-protobuf",
            }
            | ({"content-encoding": "gzip"} if self.gzip else {}),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            trust_env=False,
        )
        self._urls = {sig: signal_urls.get(sig) or f"{target.url}/v1/{sig}" for sig in SIGNALS}

    def encode(self, message: Message) -> bytes:
        body = orjson.dumps(to_otlp_json(message)) if self.fmt == "json" else message.SerializeToString()
        return gzip.compress(body, _GZIP_LEVEL) if self.gzip else body

    async def export(
        self, signal: Signal, body: bytes, timeout_s: float, *, request_id: str | None = None
    ) -> Answer:
        httpx = self._httpx
        from otlp_lab.resilience import parse_retry_after

        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        try:
            r = await self._client.post(self._urls[signal], content=body, timeout=timeout_s, headers=headers)
        except httpx.TimeoutException as exc:
            return Answer(False, "DEADLINE_EXCEEDED", f"no answer in {timeout_s:g} s ({type(exc).__name__})")
        except httpx.ConnectError as exc:
            text = str(exc)
            tls = "CERTIFICATE" in text.upper() or "SSL" in text.upper() or "TLS" in text.upper()
            return Answer(False, "TLS" if tls else "CONNECT", text or type(exc).__name__)
        except httpx.TransportError as exc:
            return Answer(False, "UNAVAILABLE", f"{type(exc).__name__}: {exc}")
        if r.status_code == 200:
            try:
                rejected, msg = partial_success(
                    parse_response(signal, r.content, r.headers.get("content-type", ""))
                )
            except Exception:
                rejected, msg = 0, ""
            return Answer(True, 200, msg, rejected)
        return Answer(
            False,
            r.status_code,
            status_text(r.content, r.headers.get("content-type", "")) or r.reason_phrase or "",
            retry_after_s=parse_retry_after(r.headers.get("retry-after"), now_unix_s=time.time()),
        )

    async def close(self) -> None:
        await self._client.aclose()


def make_transport(
    protocol: str,
    target: Target,
    *,
    headers: dict[str, str],
    compression: str,
    tls: ClientTls | None,
    concurrency: int,
    signal_urls: Mapping[str, str],
) -> GrpcTransport | HttpTransport:
    """The transport of ``protocol`` (``"grpc"``, ``"http/protobuf"`` or ``"http/json"``)."""
    if protocol == "grpc":
        return GrpcTransport(target, headers, compression, tls)
    fmt = "json" if protocol == "http/json" else "protobuf"
    return HttpTransport(target, fmt, headers, compression, tls, concurrency, signal_urls)
