"""One export request body -> staging batches or a refusal (the replies are in ``_replies``).

Protocol-neutral: the gRPC and HTTP servers hand a body here (already off the wire) and
map the :class:`~otlp_lab.transport._replies.Reply` to their own status codes.

Decoding rules (OTLP specification, "OTLP/gRPC" and "OTLP/HTTP"):

* the size limit applies to the *decompressed* body; gzip is inflated with the limit as a
  ceiling, so a gzip bomb costs at most ``max_bytes`` of memory before it is refused;
* a body that is not a valid request of the endpoint's signal is refused whole
  (INVALID_ARGUMENT / 400) without touching the database;
* a valid request some of whose items the codec cannot store (a 3-byte trace id, a time
  past 2262, a malformed attribute) is *partially* accepted: the items are bisected until
  each bad one is isolated, the good ones are stored and the reply's ``partial_success``
  counts the rejected ones, with the first reason as its message.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf.message import Message

from otlp_lab.errors import BodyTooLargeError, DecodeError
from otlp_lab.otlp import (
    Batch,
    DecodeReport,
    Signal,
    decode_bytes,
    iter_stream_batches,
    request_class,
)
from otlp_lab.otlp._inflate import GZIP_MAGIC, ZSTD_MAGIC, decompress_bytes
from otlp_lab.transport._replies import Reply, ReplyKind

__all__ = ["Decoded", "Refused", "decode_request", "inflate", "item_counts"]

# Bisection budget: how many decodes the salvage of one request may cost before the whole
# request is refused instead (a request of 512 spans with one bad span costs ~20).
MAX_SALVAGE_DECODES = 128

ITEM_TABLES: dict[str, str] = {
    "spans": "spans",
    "logs": "logs",
    "metric_gauge": "points",
    "metric_sum": "points",
    "metric_histogram": "points",
    "metric_exp_histogram": "points",
    "metric_summary": "points",
}


class Refused(Exception):
    """A request refused before it reached the write queue (carries the reply)."""

    def __init__(self, kind: ReplyKind, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.reply = Reply(kind, message, retry_after_s=retry_after_s)


@dataclass(slots=True)
class Decoded:
    """A request ready for the write queue."""

    batches: list[Batch] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # spans / points / logs
    rejected: int = 0
    message: str = ""
    nbytes: int = 0  # decompressed size: what it holds in memory until committed

    @property
    def items(self) -> int:
        return sum(self.counts.values())


def item_counts(batches: list[Batch]) -> dict[str, int]:
    """Spans, metric points and log records in staging batches."""
    out = {"spans": 0, "points": 0, "logs": 0}
    for b in batches:
        for table, staged in b.items():
            kind = ITEM_TABLES.get(table)
            if kind:
                out[kind] += staged.num_rows
    return out


# ---------------------------------------------------------------- bodies


def inflate(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """The decompressed body; refuses an unknown encoding, a corrupt stream or more than ``max_bytes``."""
    if encoding in ("", "identity"):
        if len(body) > max_bytes:
            raise Refused(
                ReplyKind.TOO_LARGE, f"request body is {len(body):,} bytes, over the {max_bytes:,}-byte limit"
            )
        return body
    if encoding != "gzip":
        raise Refused(
            ReplyKind.UNSUPPORTED, f"Content-Encoding {encoding!r} is not supported; use gzip or none"
        )
    if not body.startswith(GZIP_MAGIC):
        raise Refused(ReplyKind.INVALID, "Content-Encoding is gzip but the body is not gzip data")
    try:
        return decompress_bytes(body, limit=max_bytes)
    except BodyTooLargeError:
        raise Refused(
            ReplyKind.TOO_LARGE, f"decompressed request body is over the {max_bytes:,}-byte limit"
        ) from None
    except DecodeError as exc:  # truncated, or failing its CRC/length check
        raise Refused(ReplyKind.INVALID, f"gzip body is truncated or corrupt: {exc}") from None


def _check_shape(data: bytes, fmt: str) -> None:
    """Refuse what the codec would otherwise sniff as another format or a nested archive."""
    if data.startswith((GZIP_MAGIC, ZSTD_MAGIC)):
        raise Refused(ReplyKind.INVALID, "the body is compressed twice (or Content-Encoding is missing)")
    starts_json = data[:64].lstrip()[:1] in (b"{", b"[")
    if fmt == "json" and not starts_json:
        raise Refused(ReplyKind.INVALID, "Content-Type is application/json but the body is not a JSON object")
    if fmt == "protobuf" and starts_json:
        raise Refused(ReplyKind.INVALID, "Content-Type is application/x-protobuf but the body is JSON")


def decode_request(signal: Signal, data: bytes, *, fmt: str) -> Decoded:
    """Decode one (inflated, see :func:`inflate`) export request body of ``signal``.

    ``fmt`` is ``"protobuf"`` or ``"json"``.

    Raises
    ------
    Refused
        The body is not a decodable request of ``signal`` (INVALID).
    """
    out = Decoded(nbytes=len(data))
    if not data and fmt == "protobuf":
        return out  # an empty protobuf message is a valid, empty request
    _check_shape(data, fmt)
    try:
        out.batches = _decode_one(signal, data)
    except DecodeError as exc:
        _salvage(signal, data, fmt, exc, out)
    except Exception as exc:  # a codec bug must not take the server down: refuse this request
        raise Refused(ReplyKind.INVALID, f"cannot decode the request ({type(exc).__name__}: {exc})") from None
    out.counts = item_counts(out.batches)
    return out


def _decode_one(signal: Signal, data: bytes) -> list[Batch]:
    """The batches of a body holding exactly one export request (not JSON lines, not frames)."""
    report = DecodeReport("<request body>")
    batches = list(iter_stream_batches(io.BufferedReader(io.BytesIO(data)), report, signal=signal))
    if report.requests > 1:
        raise Refused(
            ReplyKind.INVALID,
            f"the body holds {report.requests} {signal} requests (JSON lines, concatenated documents or "
            "frames); an OTLP export body is exactly one request: send them one per request",
        )
    return batches


# ---------------------------------------------------------------- partial success


@dataclass(frozen=True, slots=True)
class _Tree:
    """How to take a request apart into items and put a subset back together."""

    split: Callable[[Any], list[tuple[int, int, Any]]]  # -> [(resource index, scope index, item)]
    build: Callable[[Any, list[tuple[int, int, Any]]], bytes]  # subset -> body
    weight: Callable[[Any], int]  # items the spec counts (data points for a metric)


_PB_NAMES = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "metrics": ("resource_metrics", "scope_metrics", "metrics"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
}
_JSON_NAMES = {
    "traces": (("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans", "spans")),
    "metrics": (
        ("resourceMetrics", "resource_metrics"),
        ("scopeMetrics", "scope_metrics"),
        ("metrics", "metrics"),
    ),
    "logs": (("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"), ("logRecords", "log_records")),
}
_JSON_METRIC_DATA = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary")


def _pb_tree(signal: Signal) -> _Tree:
    rname, sname, iname = _PB_NAMES[signal]
    cls = request_class(signal)

    def split(req: Message) -> list[tuple[int, int, Any]]:
        return [
            (ri, si, item)
            for ri, rs in enumerate(getattr(req, rname))
            for si, ss in enumerate(getattr(rs, sname))
            for item in getattr(ss, iname)
        ]

    def build(req: Message, items: list[tuple[int, int, Any]]) -> bytes:
        out = cls()
        resources: dict[int, Any] = {}
        scopes: dict[tuple[int, int], Any] = {}
        for ri, si, item in items:
            rs = resources.get(ri)
            if rs is None:
                src = getattr(req, rname)[ri]
                rs = resources[ri] = getattr(out, rname).add(resource=src.resource, schema_url=src.schema_url)
            ss = scopes.get((ri, si))
            if ss is None:
                src = getattr(getattr(req, rname)[ri], sname)[si]
                ss = scopes[(ri, si)] = getattr(rs, sname).add(scope=src.scope, schema_url=src.schema_url)
            getattr(ss, iname).append(item)
        return out.SerializeToString()

    def weight(item: Any) -> int:
        if signal != "metrics":
            return 1
        kind = item.WhichOneof("data")
        return len(getattr(item, kind).data_points) if kind else 0

    return _Tree(split, build, weight)


def _json_get(d: Any, names: tuple[str, str]) -> list[Any]:
    v = d.get(names[0]) if names[0] in d else d.get(names[1])
    if v is None:
        return []
    if not isinstance(v, list):
        raise TypeError(f"{names[0]} must be a list")
    return v


def _json_tree(signal: Signal) -> _Tree:
    rnames, snames, inames = _JSON_NAMES[signal]

    def split(doc: dict) -> list[tuple[int, int, Any]]:
        return [
            (ri, si, item)
            for ri, rs in enumerate(_json_get(doc, rnames))
            for si, ss in enumerate(_json_get(rs, snames))
            for item in _json_get(ss, inames)
        ]

    def build(doc: dict, items: list[tuple[int, int, Any]]) -> bytes:
        res = _json_get(doc, rnames)
        out: dict[int, dict] = {}
        for ri, si, item in items:
            rs = out.get(ri)
            if rs is None:
                src = res[ri]
                rs = out[ri] = {**{k: v for k, v in src.items() if k not in snames}, snames[0]: {}}
            ss = rs[snames[0]].get(si)
            if ss is None:
                src = _json_get(res[ri], snames)[si]
                ss = rs[snames[0]][si] = {**{k: v for k, v in src.items() if k not in inames}, inames[0]: []}
            ss[inames[0]].append(item)
        body = {rnames[0]: [{**rs, snames[0]: list(rs[snames[0]].values())} for rs in out.values()]}
        return orjson.dumps(body)

    def weight(item: Any) -> int:
        if signal != "metrics":
            return 1
        if not isinstance(item, dict):
            return 1
        for kind in _JSON_METRIC_DATA:
            data = item.get(kind)
            if isinstance(data, dict):
                pts = data.get("dataPoints", data.get("data_points"))
                return len(pts) if isinstance(pts, list) else 1
        return 0

    return _Tree(split, build, weight)


def _salvage(signal: Signal, data: bytes, fmt: str, first: DecodeError, out: Decoded) -> None:
    """Store what can be stored of a request the codec refused; count the rest as rejected.

    Raises :class:`Refused` (INVALID) when nothing can be kept, the request cannot even be
    taken apart, or isolating the bad items would cost more than the salvage budget.
    """
    invalid = Refused(
        ReplyKind.INVALID, f"invalid {signal} request: {first.reason if first.where is None else first}"
    )
    try:
        if fmt == "json":
            req: Any = orjson.loads(data)
            if not isinstance(req, dict):
                raise invalid
            tree = _json_tree(signal)
        else:
            req = request_class(signal).FromString(data)
            tree = _pb_tree(signal)
        items = tree.split(req)
    except Refused:
        raise
    except Exception:
        raise invalid from None
    if len(items) < 2:
        raise invalid
    budget = [MAX_SALVAGE_DECODES]
    reasons: list[str] = []
    rejected = 0

    def attempt(part: list[tuple[int, int, Any]]) -> None:
        nonlocal rejected
        if budget[0] <= 0:
            raise invalid
        budget[0] -= 1
        try:
            body = tree.build(req, part)
            batches = list(decode_bytes(body, signal=signal))
        except Exception as exc:
            if len(part) == 1:
                rejected += tree.weight(part[0][2])
                if not reasons:
                    reasons.append(getattr(exc, "reason", str(exc)))
                return
            mid = len(part) // 2
            attempt(part[:mid])
            attempt(part[mid:])
            return
        out.batches.extend(batches)

    mid = len(items) // 2
    attempt(items[:mid])
    attempt(items[mid:])
    if not out.batches:
        raise invalid
    out.rejected = rejected
    noun = {"traces": "spans", "metrics": "data points", "logs": "log records"}[signal]
    out.message = f"{rejected} {noun} rejected: {reasons[0] if reasons else first.reason}"
