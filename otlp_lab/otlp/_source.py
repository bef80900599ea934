"""Reading OTLP from files and bytes: compression, format and signal detection, framing.

Formats, detected from the content (never only from the file name):

* OTLP/JSON request bodies, one document per file (pretty-printed or not);
* the Collector file exporter's JSON output: JSON lines, one request per line;
* OTLP protobuf request bodies (``Export{Trace,Metrics,Logs}ServiceRequest``);
* the Collector file exporter's protobuf output: each request prefixed by its length
  as a 4-byte big-endian integer;
* Jaeger JSON (query API / UI download) and Zipkin v2 JSON (a span list), translated to
  OTLP/JSON as the OpenTelemetry Collector's translators do (``_jaeger.py``, ``_zipkin.py``);
* any of those compressed with gzip or zstd.

JSON lines and framed protobuf stream one request at a time, so memory stays bounded
however large the file.
"""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, get_args

import orjson

from otlp_lab._config import Signal
from otlp_lab.errors import BodyTooLargeError, DecodeError, UnsupportedFormatError
from otlp_lab.otlp._inflate import GZIP_MAGIC as GZIP_MAGIC  # re-exported: the receiver sniffs bodies
from otlp_lab.otlp._inflate import ZSTD_MAGIC as ZSTD_MAGIC
from otlp_lab.otlp._inflate import decompress_bytes as decompress_bytes
from otlp_lab.otlp._inflate import open_decompressed as open_decompressed
from otlp_lab.otlp._jaeger import is_jaeger, jaeger_to_otlp
from otlp_lab.otlp._zipkin import is_zipkin, zipkin_to_otlp

SIGNALS: tuple[Signal, ...] = get_args(Signal)
_JSON_TOP = {
    "resourceSpans": "traces",
    "resource_spans": "traces",
    "resourceMetrics": "metrics",
    "resource_metrics": "metrics",
    "resourceLogs": "logs",
    "resource_logs": "logs",
}


@dataclass(frozen=True, slots=True)
class Unit:
    """One OTLP request found in a source."""

    signal: Signal | None  # None: an empty request
    kind: Literal["pb", "json"]
    payload: Any  # bytes (pb) or dict (json)
    where: str | None  # "line 3", "message 2 at byte 512", or None for a whole file
    error: DecodeError | None = None  # set when this request could not be read (skippable)


def _bad(error: DecodeError) -> Unit:
    return Unit(None, "json", None, error.where, error)


# ---------------------------------------------------------------- paths


OTLP_SUFFIXES = {
    ".json",
    ".jsonl",
    ".ndjson",
    ".pb",
    ".binpb",
    ".protobuf",
    ".bin",
    ".otlp",
    ".gz",
    ".zst",
    ".zstd",
}


def expand_paths(paths: tuple[str | os.PathLike[str], ...] | list[Any]) -> list[tuple[Path, bool]]:
    """Files named by ``paths`` as ``(path, named)``.

    Files are taken as given (``named=True``); directories are read recursively and globs
    expanded, keeping files with an OTLP-like suffix (``named=False``: a caller may skip
    those that turn out not to be OTLP, such as a README or a ``faults.json``).
    """
    out: list[tuple[Path, bool]] = []
    for p in paths:
        s = os.fspath(p)
        if any(c in s for c in "*?["):
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise DecodeError("no file matches this pattern", source=s)
            out.extend((Path(m), False) for m in matches if Path(m).is_file())
            continue
        path = Path(s)
        if path.is_dir():
            found = sorted(
                f
                for f in path.rglob("*")
                if f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and f.suffix.lower() in OTLP_SUFFIXES
            )
            out.extend((f, False) for f in found)
        elif path.is_file():
            out.append((path, True))
        else:
            raise DecodeError(
                "no such file or directory; check the path (globs such as 'dir/*.json.gz' work too)", source=s
            )
    return out


# ---------------------------------------------------------------- units


def json_signal(doc: Any, where: str | None) -> Signal | None:
    if not isinstance(doc, dict):
        raise UnsupportedFormatError(
            f"OTLP/JSON must be an object with resourceSpans, resourceMetrics or resourceLogs. Got a JSON {type(doc).__name__} instead.",
            where=where,
        )
    found = {_JSON_TOP[k] for k in doc if k in _JSON_TOP}
    if len(found) == 1:
        return found.pop()
    if len(found) > 1:
        raise UnsupportedFormatError(
            f"one request mixes signals {sorted(found)}; OTLP requests carry one signal", where=where
        )
    if not doc:
        return None
    keys = ", ".join(repr(k) for k in list(doc)[:5])
    raise UnsupportedFormatError(
        f"JSON is not an OTLP request: its keys are {keys}; expected resourceSpans, resourceMetrics or resourceLogs",
        where=where,
    )


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    shift = result = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise IndexError("varint runs past the end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def wire_fields(
    buf: bytes | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, int, int, Any]]:
    """(field number, wire type, offset, value) of one message level; LEN values as (start, end)."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        at = pos
        key, pos = _read_varint(buf, pos)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise ValueError(f"field number 0 at byte {at}")
        if wt == 0:
            val, pos = _read_varint(buf, pos)
        elif wt == 1:
            val, pos = pos, pos + 8
        elif wt == 5:
            val, pos = pos, pos + 4
        elif wt == 2:
            ln, pos = _read_varint(buf, pos)
            val, pos = (pos, pos + ln), pos + ln
        else:
            raise ValueError(f"unsupported wire type {wt} at byte {at}")
        if pos > end:
            raise IndexError(f"field {field} at byte {at} runs {pos - end} bytes past the end (truncated?)")
        yield field, wt, at, val


def locate_wire_error(buf: bytes) -> str:
    """Where a protobuf message stops making sense: ``'byte N: ...'`` (for error messages)."""
    try:
        for _field, wt, _at, val in wire_fields(buf):
            if wt == 2:
                for _ in wire_fields(buf, *val):
                    pass
    except (IndexError, ValueError) as exc:
        return str(exc)
    return "the structure is well-formed at the top level; a nested field is invalid"


# (field, wire type) pairs each item message may hold: Span, Metric, LogRecord.
_ITEM_FIELDS: dict[Signal, frozenset[tuple[int, int]]] = {
    "traces": frozenset(
        {
            (1, 2),
            (2, 2),
            (3, 2),
            (4, 2),
            (5, 2),
            (6, 0),
            (7, 1),
            (8, 1),
            (9, 2),
            (10, 0),
            (11, 2),
            (12, 0),
            (13, 2),
            (14, 0),
            (15, 2),
            (16, 5),
        }
    ),
    "metrics": frozenset({(1, 2), (2, 2), (3, 2), (5, 2), (7, 2), (9, 2), (10, 2), (11, 2), (12, 2)}),
    "logs": frozenset(
        {(1, 1), (2, 0), (3, 2), (5, 2), (6, 2), (7, 0), (8, 5), (9, 2), (10, 2), (11, 1), (12, 2)}
    ),
}


_SNIFF_ITEMS = 64  # items looked at before settling for the likeliest signal


def _guess(seen: set[tuple[int, int]]) -> Signal | None:
    """The likeliest signal of an item that more than one item message could hold."""
    # Span: start/end are fixed64 fields 7/8. LogRecord: fixed64 times (1, 11),
    # varint severity (2), fixed32 flags (8), attributes (6); a body (5) without
    # a name (1, LEN). Metric: name (1) and data in 5/7/9/10/11.
    if seen & {(7, 1), (8, 1)}:
        return "traces"
    if seen & {(1, 1), (11, 1), (2, 0), (8, 5), (6, 2)} or ((5, 2) in seen and (1, 2) not in seen):
        return "logs"
    if seen & {(5, 2), (7, 2), (9, 2), (10, 2), (11, 2)}:
        return "metrics"
    if seen & {(1, 2), (2, 2)}:
        return "traces"
    return None


def pb_signal(buf: bytes, hint: Signal | None = None) -> Signal | None:
    """Which Export*ServiceRequest a protobuf body is, from the shape of its items.

    The first item whose fields (and, for spans, id lengths) fit only one item message
    decides; ``hint`` wins while it fits. When the first items could each be more than one message, the first one's likeliest.
    """
    guess: Signal | None = None
    budget = _SNIFF_ITEMS
    try:
        for field, wt, at, val in wire_fields(buf):
            if field != 1 or wt != 2:
                raise UnsupportedFormatError(
                    f"binary content is not an OTLP protobuf request: byte {at} holds field {field} (wire type {wt}); "
                    "requests start with field 1 (resource_spans/metrics/logs)"
                )
            for f2, wt2, _, v2 in wire_fields(buf, *val):
                if f2 != 2 or wt2 != 2:
                    continue
                for f3, wt3, _, v3 in wire_fields(buf, *v2):
                    if f3 != 2 or wt3 != 2:
                        continue
                    fields = [(f, w, v) for f, w, _, v in wire_fields(buf, *v3)]
                    seen = {(f, w) for f, w, _ in fields}
                    fits = [s for s, allowed in _ITEM_FIELDS.items() if seen <= allowed]
                    if hint in fits:
                        return hint
                    if "traces" in fits and len(fits) > 1:  # a span starts with 16- and 8-byte ids
                        lens = {f: v[1] - v[0] for f, w, v in fields if w == 2 and f in (1, 2)}
                        spanlike = (lens.get(1), lens.get(2)) == (16, 8)
                        fits = ["traces"] if spanlike else [s for s in fits if s != "traces"]
                    if len(fits) == 1:
                        return fits[0]
                    guess = guess or _guess(seen)
                    budget -= 1
                    if not budget:
                        return guess
    except (IndexError, ValueError) as exc:
        raise UnsupportedFormatError(f"binary content is not an OTLP protobuf request ({exc})") from None
    return guess


def _pb_shaped(buf: bytes) -> bool:
    """Whether ``buf`` is a sequence of field-1 length-delimited fields, as every OTLP request is."""
    try:
        return all(field == 1 and wt == 2 for field, wt, _, _ in wire_fields(buf))
    except (IndexError, ValueError):
        return False


def _looks_framed(head: bytes) -> bool:
    if len(head) < 5:
        return False
    n = int.from_bytes(head[:4], "big")
    return head[0] != 0x0A and head[4] == 0x0A and n > 0


DEFAULT_MAX_REQUEST_BYTES = 256 << 20
"""The largest single request (one JSON document or line, one protobuf message) read by default."""


def _too_large(what: str, limit: int) -> BodyTooLargeError:
    return BodyTooLargeError(
        f"{what} is over the {limit:,}-byte limit for one request (after decompression); "
        "if it is genuine, raise the limit with max_request_bytes=..."
    )


def _read_limited(stream: IO[bytes], limit: int, what: str, n: int | None = None) -> bytes:
    """``n`` bytes (all of them when None) of ``stream``, refusing more than ``limit``.

    Read in pieces, so a length that lies costs only the bytes really there.
    """
    if n is not None and n > limit:
        raise _too_large(f"{what} ({n:,} bytes)", limit)
    want = limit + 1 if n is None else n
    parts, got = [], 0
    while got < want:
        part = stream.read(min(want - got, 16 << 20))
        if not part:
            break
        parts.append(part)
        got += len(part)
    if n is None and got > limit:
        raise _too_large(what, limit)
    return b"".join(parts)


def _readline_limited(stream: IO[bytes], limit: int, what: str) -> bytes:
    """One line (with its newline), read in 1 MiB pieces so a refused line costs at most ``limit``."""
    parts, got = [], 0
    while got <= limit:
        part = stream.readline(min(1 << 20, limit + 1 - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
        if part.endswith(b"\n"):
            return parts[0] if len(parts) == 1 else b"".join(parts)
    if got > limit:
        raise _too_large(what, limit)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def iter_units(
    stream: IO[bytes],
    *,
    name: str = "<bytes>",
    hint: Signal | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> Iterator[Unit]:
    """Every OTLP request in a decompressed, peekable binary stream (see :func:`open_decompressed`).

    No request larger than ``max_request_bytes`` is read into memory.
    """
    limit = max_request_bytes
    head = stream.peek(64)[:64]  # type: ignore[attr-defined]
    if not head:
        raise DecodeError("file is empty; expected OTLP/JSON or OTLP protobuf", source=name)
    looks_json = head.lstrip()[:1] in (b"{", b"[")
    if looks_json and head[:1] == b"\n":
        # "\n" is also protobuf's field-1 tag, and the length after it may read "{" or "[": it is
        # protobuf when the top level is field-1 messages that end exactly where the data ends.
        data = _read_limited(stream, limit, "the document")
        looks_json = not _pb_shaped(data)
        stream = io.BufferedReader(io.BytesIO(data))
    if looks_json:
        yield from _json_units(stream, name, limit)
    elif _looks_framed(head):
        yield from _framed_units(stream, name, hint, limit)
    elif head[:1] != b"\n":  # every OTLP protobuf request starts with field 1 (length-delimited)
        raise UnsupportedFormatError(
            f"binary content is not an OTLP protobuf request: it starts with bytes {head[:8].hex(' ')}, "
            "and a request starts with 0a (field 1, resource_spans/metrics/logs); nor is it OTLP/JSON",
            source=name,
        )
    else:
        data = _read_limited(stream, limit, "the protobuf message")
        sig = pb_signal(data, hint) or hint
        yield Unit(sig, "pb", data, None)


_TOO_DEEP = "JSON is nested too deeply (more than 1,024 levels; an OTLP request needs a few dozen)"


def _too_deep(exc: orjson.JSONDecodeError) -> bool:
    return "depth limit" in exc.msg or "recursion" in exc.msg.lower()


def _doc_unit(doc: Any, where: str | None) -> Unit:
    """One JSON document as a request: OTLP/JSON as is; Jaeger and Zipkin JSON translated to it."""
    translate = jaeger_to_otlp if is_jaeger(doc) else zipkin_to_otlp if is_zipkin(doc) else None
    if translate is None:
        return Unit(json_signal(doc, where), "json", doc, where)
    try:
        return Unit("traces", "json", translate(doc), where)
    except DecodeError as exc:
        raise exc.located(where=where) from None


def _json_units(stream: IO[bytes], name: str, limit: int) -> Iterator[Unit]:
    first = _readline_limited(stream, limit, "line 1")
    try:
        doc = orjson.loads(first)
        one_line_doc = True
    except orjson.JSONDecodeError:
        one_line_doc = False
    if not one_line_doc:
        # A pretty-printed single document.
        data = first + _read_limited(stream, limit - len(first), "the JSON document")
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if _too_deep(exc):
                raise DecodeError(_TOO_DEEP, source=name) from None
            line = data.count(b"\n", 0, exc.pos) + 1
            raise DecodeError(
                f"invalid JSON ({exc.msg}); the file may be truncated",
                source=name,
                where=f"line {line}, byte {exc.pos}",
            ) from None
        yield _doc_unit(doc, None)
        return
    try:
        yield _doc_unit(doc, "line 1")
    except DecodeError as exc:
        yield _bad(exc.located(source=name))
    lineno = 1
    while raw := _readline_limited(stream, limit, f"line {lineno + 1}"):
        lineno += 1
        if not raw.strip():
            continue
        where = f"line {lineno}"
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            tail = "" if raw.endswith(b"\n") else "; the last line has no newline: the file looks truncated"
            msg = _TOO_DEEP if _too_deep(exc) else f"invalid JSON ({exc.msg}){tail}"
            yield _bad(DecodeError(msg, source=name, where=where))
            continue
        try:
            unit = _doc_unit(doc, where)
        except DecodeError as exc:
            yield _bad(exc.located(source=name))
            continue
        yield unit


def _framed_units(stream: IO[bytes], name: str, hint: Signal | None, limit: int) -> Iterator[Unit]:
    offset, n = 0, 0
    while True:
        head = stream.read(4)
        if not head:
            return
        n += 1
        where = f"message {n} at byte {offset}"
        if len(head) < 4:
            yield _bad(
                DecodeError("length prefix cut short: the file looks truncated", source=name, where=where)
            )
            return
        size = int.from_bytes(head, "big")
        try:
            body = _read_limited(stream, limit, f"message {n}", size)
        except BodyTooLargeError as exc:
            raise exc.located(source=name, where=where) from None
        if len(body) < size:
            yield _bad(
                DecodeError(
                    f"message claims {size} bytes but only {len(body)} remain: the file looks truncated",
                    source=name,
                    where=where,
                )
            )
            return
        offset += 4 + size
        try:
            sig = pb_signal(body, hint) or hint
        except DecodeError as exc:
            yield _bad(exc.located(source=name, where=where))
            continue
        yield Unit(sig, "pb", body, where)
