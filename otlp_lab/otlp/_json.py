"""OTLP/JSON values read strictly, per the proto3 JSON mapping and the OTLP deviations.

Every reader takes the value and its field path and either returns the Python value or
raises :class:`DecodeError` naming the path and the value. Nothing is coerced silently:
``true`` is not a number, ``1.5`` is not an enum, ``"١٢"`` (non-ASCII digits) is not an
integer, ``"abc"`` is not base64, a negative time is not a time.

OTLP deviations from proto3 JSON: trace and span ids are hex (not base64); enums may be
integers or names. :func:`check_message` walks a whole request against the protobuf
descriptor (used for metrics, which are then parsed by ``json_format``).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from otlp_lab.errors import DecodeError

INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT64 = (0, 2**64 - 1)
MAX_VALUE_DEPTH = 32
"""How deeply AnyValue arrays and kvlists may nest (protobuf itself stops near 50)."""

_INT_TEXT = re.compile(r"-?[0-9]+")
_FLOAT_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_B64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_EXACT = 2**53


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def json_int(raw: Any, what: str, bounds: tuple[int, int] = INT64) -> int:
    """An OTLP/JSON integer: a JSON number or a decimal string (ASCII digits), within ``bounds``."""
    if isinstance(raw, bool):
        raise DecodeError(f"{what} must be an integer. Got {raw!r} instead.")
    if isinstance(raw, int):
        v = raw
    elif isinstance(raw, str) and _INT_TEXT.fullmatch(raw):
        v = int(raw)
    elif isinstance(raw, float) and raw.is_integer() and abs(raw) <= _EXACT:
        v = int(raw)
    elif isinstance(raw, float) and raw.is_integer():
        raise DecodeError(
            f"{what} {raw!r} is too large to be exact as a JSON number; write 64-bit integers as strings "
            '(e.g. "1700000000000000000"), as OTLP/JSON exporters do.'
        )
    else:
        raise DecodeError(f"{what} must be an integer. Got {_show(raw)} instead.")
    lo, hi = bounds
    if not lo <= v <= hi:
        kind = {INT32: "int32", UINT32: "uint32", INT64: "int64", UINT64: "uint64"}.get(bounds, "")
        raise DecodeError(f"{what} must be between {lo} and {hi} ({kind}). Got {v} instead.")
    return v


def json_time(raw: Any, what: str) -> int:
    """Unix nanoseconds (``fixed64``): 0 (unset) if absent, never negative."""
    if raw is None:
        return 0
    return json_int(raw, what, UINT64)


def json_double(raw: Any, what: str) -> float:
    """A JSON number, a numeric string, or ``"NaN"`` / ``"Infinity"`` / ``"-Infinity"``."""
    if isinstance(raw, bool):
        raise DecodeError(f"{what} must be a number. Got {raw!r} instead.")
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        if raw in _SPECIAL:
            return _SPECIAL[raw]
        if _FLOAT_TEXT.fullmatch(raw):
            v = float(raw)
            if not math.isinf(v):
                return v
    raise DecodeError(f"{what} must be a number. Got {_show(raw)} instead.")


def json_bool(raw: Any, what: str) -> bool:
    if not isinstance(raw, bool):
        raise DecodeError(f"{what} must be true or false. Got {_show(raw)} instead.")
    return raw


def json_bytes(raw: Any, what: str) -> bytes:
    """Standard or URL-safe base64, padded to a multiple of 4 characters."""
    if not isinstance(raw, str):
        raise DecodeError(f"{what} must be base64 text. Got {_show(raw)} instead.")
    if len(raw) % 4 or not _B64.fullmatch(raw):
        raise DecodeError(
            f"{what} must be base64 text (padded with '=' to a multiple of 4 characters). Got {_show(raw)} instead."
        )
    try:
        out = base64.b64decode(raw.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what} must be base64 text. Got {_show(raw)} instead.") from None
    if base64.b64encode(out).decode().rstrip("=") != raw.replace("-", "+").replace("_", "/").rstrip("="):
        raise DecodeError(
            f"{what} is not canonical base64 (stray bits in its last character). Got {_show(raw)}."
        )
    return out


def json_hex_id(raw: Any, what: str) -> bytes:
    """A trace or span id: hex text (any case), empty or absent for none."""
    if raw is None or raw == "":
        return b""
    if not isinstance(raw, str) or not _HEX.fullmatch(raw):
        raise DecodeError(
            f"{what} must be hex (OTLP/JSON ids are hex, not base64). Got {_show(raw)} instead."
        )
    return bytes.fromhex(raw)


def json_enum(raw: Any, names: dict[str, int], what: str) -> int:
    """An enum given by name (``"SPAN_KIND_SERVER"``) or by its integer (within int32)."""
    if raw is None:
        return 0
    if isinstance(raw, str):
        v = names.get(raw)
        if v is not None:
            return v
        if not _INT_TEXT.fullmatch(raw):
            choices = sorted(k for k in names if "_" in k)
            raise DecodeError(f"{what} must be one of {choices} or an integer. Got {_show(raw)} instead.")
    elif isinstance(raw, bool) or not isinstance(raw, int):
        choices = sorted(k for k in names if "_" in k)
        raise DecodeError(f"{what} must be one of {choices} or an integer. Got {_show(raw)} instead.")
    return json_int(raw, what, INT32)


def json_list(raw: Any, what: str) -> list:
    """A repeated field: a JSON array (absent or null is empty)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise DecodeError(f"{what} must be a list. Got {type(raw).__name__} {_show(raw)} instead.")
    return raw


def json_item(raw: Any, what: str) -> dict:
    """A list element that is a message: a JSON object (null is refused, as in proto3 JSON)."""
    if not isinstance(raw, dict):
        raise DecodeError(f"{what} must be an object. Got {type(raw).__name__} {_show(raw)} instead.")
    return raw


def json_object(raw: Any, what: str) -> dict:
    """A message field: a JSON object (absent or null is empty)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DecodeError(f"{what} must be an object. Got {type(raw).__name__} {_show(raw)} instead.")
    return raw


# ---------------------------------------------------------------- whole messages against a descriptor

_F = FieldDescriptor
_INT_BOUNDS = {
    _F.TYPE_INT32: INT32,
    _F.TYPE_SINT32: INT32,
    _F.TYPE_SFIXED32: INT32,
    _F.TYPE_UINT32: UINT32,
    _F.TYPE_FIXED32: UINT32,
    _F.TYPE_INT64: INT64,
    _F.TYPE_SINT64: INT64,
    _F.TYPE_SFIXED64: INT64,
    _F.TYPE_UINT64: UINT64,
    _F.TYPE_FIXED64: UINT64,
}
_HEX_FIELDS = {"trace_id", "span_id", "parent_span_id"}
_fields_cache: dict[str, dict[str, FieldDescriptor]] = {}
_enum_cache: dict[str, dict[str, int]] = {}


def _fields(desc: Descriptor) -> dict[str, FieldDescriptor]:
    got = _fields_cache.get(desc.full_name)
    if got is None:
        got = {}
        for f in desc.fields:
            got[f.name] = f
            got[f.json_name] = f
        _fields_cache[desc.full_name] = got
    return got


def _enum_names(e: EnumDescriptor) -> dict[str, int]:
    got = _enum_cache.get(e.full_name)
    if got is None:
        got = _enum_cache[e.full_name] = {v.name: v.number for v in e.values}
    return got


def check_message(doc: Any, desc: Descriptor, path: str = "", depth: int = 0) -> None:
    """Check an OTLP/JSON object against a protobuf message descriptor, refusing any wrong type.

    Unknown fields are ignored (the OTLP/JSON rules); ids are hex; ``null`` means absent.
    """
    if depth > 2 * MAX_VALUE_DEPTH + 16:
        raise DecodeError(
            f"{path or 'the request'} is nested too deeply (more than {MAX_VALUE_DEPTH} value levels)."
        )
    msg = json_object(doc, path or "the request")
    fields = _fields(desc)
    for key, raw in msg.items():
        f = fields.get(key)
        if f is None or raw is None:
            continue
        p = f"{path}.{f.json_name}" if path else f.json_name
        if f.is_repeated:
            for i, item in enumerate(json_list(raw, p)):
                if item is None:
                    raise DecodeError(f"{p}[{i}] is null; a list element must have a value.")
                _check_value(item, f, f"{p}[{i}]", depth)
        else:
            _check_value(raw, f, p, depth)


def _check_value(raw: Any, f: FieldDescriptor, p: str, depth: int) -> None:
    t = f.type
    if t == _F.TYPE_MESSAGE:
        check_message(raw, f.message_type, p, depth + 1)
    elif t in _INT_BOUNDS:
        json_int(raw, p, _INT_BOUNDS[t])
    elif t in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        json_double(raw, p)
    elif t == _F.TYPE_BOOL:
        json_bool(raw, p)
    elif t == _F.TYPE_STRING:
        if not isinstance(raw, str):
            raise DecodeError(f"{p} must be a string. Got {_show(raw)} instead.")
    elif t == _F.TYPE_BYTES:
        if f.name in _HEX_FIELDS:
            json_hex_id(raw, p)
        else:
            json_bytes(raw, p)
    elif t == _F.TYPE_ENUM:
        json_enum(raw, _enum_names(f.enum_type), p)
