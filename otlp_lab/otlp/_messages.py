"""The OTLP service messages the transport needs, so that only the codec imports generated ``_pb2`` classes.

* :func:`request_class` / :func:`response_class`: the ``Export*ServiceRequest`` / ``Response`` of a signal;
* :func:`rpc_status` / :func:`parse_rpc_status`: a ``google.rpc.Status`` (with a ``RetryInfo`` detail
  for pushback), as sent in ``grpc-status-details-bin`` and in OTLP/HTTP refusal bodies.
"""

from __future__ import annotations

from google.protobuf.message import Message

from otlp_lab.otlp._source import Signal

__all__ = ["parse_rpc_status", "request_class", "response_class", "rpc_status"]


def request_class(signal: Signal) -> type[Message]:
    """``ExportTraceServiceRequest``, ``ExportMetricsServiceRequest`` or ``ExportLogsServiceRequest``."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return {
        "traces": ExportTraceServiceRequest,
        "metrics": ExportMetricsServiceRequest,
        "logs": ExportLogsServiceRequest,
    }[signal]


def response_class(signal: Signal) -> type[Message]:
    """``ExportTraceServiceResponse``, ``ExportMetricsServiceResponse`` or ``ExportLogsServiceResponse``."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    return {
        "traces": ExportTraceServiceResponse,
        "metrics": ExportMetricsServiceResponse,
        "logs": ExportLogsServiceResponse,
    }[signal]


def rpc_status(code: int, message: str, *, retry_delay_s: float | None = None) -> Message:
    """A ``google.rpc.Status``; with ``retry_delay_s``, a ``RetryInfo`` detail asking for that delay."""
    from google.rpc import error_details_pb2, status_pb2

    st = status_pb2.Status(code=code, message=message)
    if retry_delay_s is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromNanoseconds(int(retry_delay_s * 1e9))
        st.details.add().Pack(info)
    return st


def parse_rpc_status(data: bytes) -> tuple[str, float | None] | None:
    """(message, RetryInfo delay in seconds or None) of a serialized ``google.rpc.Status``; None if it is not one."""
    from google.rpc import error_details_pb2, status_pb2

    try:
        st = status_pb2.Status.FromString(data)
    except Exception:
        return None
    delay = None
    for detail in st.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay = info.retry_delay.ToNanoseconds() / 1e9
    return st.message, delay
