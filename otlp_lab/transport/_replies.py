"""OTLP replies, both ways: the receiver builds them (:class:`Reply` -> status codes, response and
``google.rpc.Status`` bodies), the sender reads them (partial success, status message, RetryInfo
and Retry-After pushback). One module, so the two sides cannot drift apart."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import Message

from otlp_lab.otlp import Signal, parse_rpc_status, response_class, rpc_status

__all__ = [
    "REPLY_CODES",
    "REQUEST_ID_HEADER",
    "Reply",
    "ReplyKind",
    "encode_body",
    "parse_response",
    "partial_success",
    "response_message",
    "retry_delay",
    "status_message",
    "status_text",
]


# Idempotency key of an export request (gRPC metadata / HTTP header), sent by a sender with a
# persistent queue; otlp_lab's receiver stores a request id once (see Receiver, PersistentQueue).
REQUEST_ID_HEADER = "otlp-lab-request-id"


class ReplyKind(enum.Enum):
    """What the receiver answers to one export request."""

    OK = "ok"
    INVALID = "invalid"  # malformed body
    TOO_LARGE = "too_large"  # decompressed body over the limit
    UNSUPPORTED = "unsupported"  # content type or encoding we do not speak
    UNAUTHENTICATED = "unauthenticated"  # missing or wrong token / header
    OVERLOADED = "overloaded"  # the write queue is full: come back later
    STOPPING = "stopping"  # the receiver is shutting down
    INTERNAL = "internal"  # the database refused the data
    NOT_FOUND = "not_found"  # HTTP only: unknown path
    METHOD = "method"  # HTTP only: not POST
    TIMEOUT = "timeout"  # HTTP only: the request did not arrive within request_timeout_s
    URI_TOO_LONG = "uri_too_long"  # HTTP only
    HEADERS_TOO_LARGE = "headers_too_large"  # HTTP only: head over 64 KiB or over 100 fields
    FORBIDDEN = "forbidden"  # live queries from a non-loopback client


# kind -> (gRPC status name, HTTP status)
REPLY_CODES: dict[ReplyKind, tuple[str, int]] = {
    ReplyKind.OK: ("OK", 200),
    ReplyKind.INVALID: ("INVALID_ARGUMENT", 400),
    ReplyKind.TOO_LARGE: ("RESOURCE_EXHAUSTED", 413),
    ReplyKind.UNSUPPORTED: ("UNIMPLEMENTED", 415),
    ReplyKind.UNAUTHENTICATED: ("UNAUTHENTICATED", 401),
    ReplyKind.OVERLOADED: ("UNAVAILABLE", 503),
    ReplyKind.STOPPING: ("UNAVAILABLE", 503),
    ReplyKind.INTERNAL: ("INTERNAL", 500),
    ReplyKind.NOT_FOUND: ("UNIMPLEMENTED", 404),
    ReplyKind.METHOD: ("UNIMPLEMENTED", 405),
    ReplyKind.TIMEOUT: ("DEADLINE_EXCEEDED", 408),
    ReplyKind.URI_TOO_LONG: ("INVALID_ARGUMENT", 414),
    ReplyKind.HEADERS_TOO_LARGE: ("INVALID_ARGUMENT", 431),
    ReplyKind.FORBIDDEN: ("PERMISSION_DENIED", 403),
}

_GRPC_CODE_NUMBERS = {
    "OK": 0,
    "DEADLINE_EXCEEDED": 4,
    "PERMISSION_DENIED": 7,
    "INVALID_ARGUMENT": 3,
    "RESOURCE_EXHAUSTED": 8,
    "UNIMPLEMENTED": 12,
    "UNAUTHENTICATED": 16,
    "UNAVAILABLE": 14,
    "INTERNAL": 13,
}


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one request: a kind, a message, rejected items, and pushback."""

    kind: ReplyKind
    message: str = ""
    rejected: int = 0
    retry_after_s: float | None = None

    @property
    def grpc_code(self) -> str:
        return REPLY_CODES[self.kind][0]

    @property
    def http_status(self) -> int:
        return REPLY_CODES[self.kind][1]


# ---------------------------------------------------------------- building replies (the receiver)


def response_message(signal: Signal, reply: Reply) -> Message:
    """The Export*ServiceResponse of a successful (possibly partial) export."""
    msg = response_class(signal)()
    if reply.rejected or reply.message:
        counter = {
            "traces": "rejected_spans",
            "metrics": "rejected_data_points",
            "logs": "rejected_log_records",
        }
        setattr(msg.partial_success, counter[signal], reply.rejected)  # type: ignore[attr-defined]
        msg.partial_success.error_message = reply.message  # type: ignore[attr-defined]
    return msg


def status_message(reply: Reply) -> Message:
    """The google.rpc.Status of a refusal, with a RetryInfo detail when there is pushback."""
    return rpc_status(_GRPC_CODE_NUMBERS[reply.grpc_code], reply.message, retry_delay_s=reply.retry_after_s)


def encode_body(msg: Message, fmt: str) -> bytes:
    """A reply message in the request's format (OTLP/JSON or protobuf)."""
    if fmt != "json":
        return msg.SerializeToString()
    return orjson.dumps(json_format.MessageToDict(msg))


# ---------------------------------------------------------------- reading replies (the sender)


def partial_success(msg: Any) -> tuple[int, str]:
    """(rejected items, error message) of an Export*ServiceResponse's ``partial_success``."""
    ps = msg.partial_success
    rejected = (
        getattr(ps, "rejected_spans", 0)
        or getattr(ps, "rejected_data_points", 0)
        or getattr(ps, "rejected_log_records", 0)
    )
    return int(rejected), ps.error_message


def parse_response(signal: Signal, content: bytes, content_type: str = "") -> Message:
    """An Export*ServiceResponse body (protobuf, or OTLP/JSON when ``content_type`` says json)."""
    cls = response_class(signal)
    if not content:
        return cls()
    if "json" in content_type:
        return json_format.Parse(content, cls(), ignore_unknown_fields=True)
    return cls.FromString(content)


def status_text(content: bytes, content_type: str = "") -> str:
    """The message of a ``google.rpc.Status`` refusal body (protobuf or JSON); "" if it is not one."""
    if not content:
        return ""
    try:
        if "json" in content_type:
            return str(orjson.loads(content).get("message", ""))
    except Exception:
        return ""
    status = parse_rpc_status(content)
    return status[0] if status is not None else ""


def retry_delay(metadata: Any) -> float | None:
    """The RetryInfo delay (seconds) in gRPC ``grpc-status-details-bin`` trailing metadata, if any."""
    for key, value in metadata or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = parse_rpc_status(value)
            return status[1] if status is not None else None
    return None
