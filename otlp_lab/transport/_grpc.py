"""OTLP/gRPC: TraceService, MetricsService and LogsService ``Export`` on a grpc.aio server.

The handlers take the request as raw bytes (no protobuf parse by grpcio: the codec reads the
wire format itself) and hand them to the receiver's core. gRPC message compression (gzip)
is undone by grpcio, which also enforces ``max_request_bytes`` on the decompressed message
(RESOURCE_EXHAUSTED). Refusals carry a ``google.rpc.Status`` in ``grpc-status-details-bin``;
backpressure adds a ``RetryInfo`` detail, which OTLP exporters honour as the retry delay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from otlp_lab.errors import ConfigError, TransportError
from otlp_lab.otlp import Signal
from otlp_lab.transport._payload import Reply, ReplyKind, encode_body, response_message, status_message

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
    grpc = import_grpc()

    async def export(request: bytes, context: Any) -> bytes:
        metadata = {k.lower(): v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        refusal = core.config.check_auth(metadata.get)
        if refusal is not None:
            reply = core.count(refusal)
        else:
            reply = await core.export(signal, request, fmt="protobuf")
        if reply.kind is ReplyKind.OK:
            return encode_body(response_message(signal, reply), "protobuf")
        await _abort(grpc, context, reply)
        raise AssertionError("unreachable")  # pragma: no cover - abort raises

    return grpc.unary_unary_rpc_method_handler(export)


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
