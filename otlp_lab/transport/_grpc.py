"""OTLP/gRPC: TraceService, MetricsService and LogsService ``Export`` on a grpc.aio server.

The handlers take the request as raw bytes (no protobuf parse by grpcio: the codec reads the
wire format itself) and hand them to the receiver's core. They are stream-unary on the server
side (a unary client cannot tell): auth is checked on the metadata and room for
``max_request_bytes`` is reserved in the in-flight budget *before* the message is read, so a
refused request costs no memory. gRPC message compression (gzip)
is undone by grpcio, which also enforces ``max_request_bytes`` on the decompressed message
(RESOURCE_EXHAUSTED). Refusals carry a ``google.rpc.Status`` in ``grpc-status-details-bin``;
backpressure adds a ``RetryInfo`` detail, which OTLP exporters honour as the retry delay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otlp_lab.errors import ConfigError, TransportError
from otlp_lab.otlp import Signal
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

__all__ = ["GRPC_METHODS", "start_grpc"]

GRPC_METHODS: dict[Signal, tuple[str, str]] = {
    "traces": ("opentelemetry.proto.collector.trace.v1.TraceService", "Export"),
    "metrics": ("opentelemetry.proto.collector.metrics.v1.MetricsService", "Export"),
    "logs": ("opentelemetry.proto.collector.logs.v1.LogsService", "Export"),
}


def import_grpc() -> Any:
    try:
        import grpc
        import grpc.aio
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "OTLP/gRPC needs grpcio: pip install 'otlp-lab[lab]' (or pip install grpcio)"
        ) from None
    return grpc


class GrpcServer:
    """A started grpc.aio server (``port``; ``await stop(grace_s)``)."""

    def __init__(self, server: Any, port: int) -> None:
        self.server = server
        self.port = port

    async def stop(self, grace_s: float) -> None:
        await self.server.stop(grace_s)


def _handler(core: IngestCore, signal: Signal) -> Any:
    """A stream-unary handler (wire-compatible with unary clients): the message is read only
    after the metadata passed auth and the in-flight budget admitted ``max_request_bytes``."""
    grpc = import_grpc()
    cfg = core.config

    async def refuse(context: Any, reply: Reply) -> None:
        await _abort(grpc, context, core.count(reply))

    async def export(requests: Any, context: Any) -> bytes:
        metadata = {k.lower(): v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        refusal = cfg.check_auth(metadata.get)
        if refusal is None and core.closing:
            refusal = Reply(
                ReplyKind.STOPPING, "the receiver is shutting down", retry_after_s=cfg.retry_after_s
            )
        if refusal is None and not await core.admit(cfg.max_request_bytes):
            refusal = Reply(
                ReplyKind.OVERLOADED,
                "the receiver's in-flight budget is full; retry later",
                retry_after_s=cfg.retry_after_s,
            )
        if refusal is not None:
            await refuse(context, refusal)
        reserved = cfg.max_request_bytes
        try:
            body = await context.read()
            if body is grpc.aio.EOF:
                body = b""
            elif await context.read() is not grpc.aio.EOF:
                core.release(reserved)
                reserved = 0
                await refuse(
                    context, Reply(ReplyKind.INVALID, "Export takes one request message, got several")
                )
        except BaseException:
            core.release(reserved)
            raise
        reply = await core.export(
            signal, body, fmt="protobuf", reserved=reserved, request_id=metadata.get(REQUEST_ID_HEADER)
        )
        del body  # abort raises from this frame: let the body go now, not when the GC finds the cycle
        if reply.kind is ReplyKind.OK:
            return encode_body(response_message(signal, reply), "protobuf")
        await _abort(grpc, context, reply)
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    return grpc.stream_unary_rpc_method_handler(export)


async def _abort(grpc: Any, context: Any, reply: Reply) -> None:
    details = status_message(reply).SerializeToString()
    await context.abort(
        getattr(grpc.StatusCode, reply.grpc_code),
        reply.message,
        trailing_metadata=(("grpc-status-details-bin", details),),
    )


async def start_grpc(core: IngestCore, host: str, port: int) -> GrpcServer:
    """Start serving the three OTLP services on ``host:port`` (0 = a free port)."""
    grpc = import_grpc()
    cfg = core.config
    limit = cfg.max_request_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 4 << 20),
            ("grpc.max_concurrent_streams", cfg.max_concurrent_requests),
            ("grpc.so_reuseport", 0),
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", 1 << 16),
        ],
    )
    for signal, (service, method) in GRPC_METHODS.items():
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {method: _handler(core, signal)}),)
        )
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if cfg.tls is not None:
            bound = server.add_secure_port(target, cfg.tls.grpc_credentials())
        else:
            bound = server.add_insecure_port(target)
    except RuntimeError as exc:
        bound, error = 0, exc
    else:
        error = None
    if not bound:
        raise TransportError(
            f"cannot listen for OTLP/gRPC on {target}" + (f" ({error})" if error else ""),
            hint="the port may be in use: pick another one, or port 0 for any free port",
        )
    await server.start()
    return GrpcServer(server, bound)
