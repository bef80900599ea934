"""Attribute values: OTLP ``AnyValue`` <-> a typed columnar form.

Every attribute list (span, resource, scope, event, link, log, data point) is stored
as two parallel lists per row: keys, and values as a struct with one slot per type::

    t  int8    0 empty, 1 string, 2 bool, 3 int, 4 double, 5 array, 6 kvlist, 7 bytes
    s  string  b bool   i int64   d double   x binary
    j  string  arrays and kvlists as JSON (bytes inside them as base64 text)

Telemetry repeats the same key/value pairs endlessly, so an :class:`AttrTable`
interns each distinct pair once per batch and rows refer to it by index. On the
protobuf path the cache key is the pair's raw wire bytes, so a repeated pair costs
one dict lookup and no decoding at all.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otlp_lab.errors import DecodeError
from otlp_lab.otlp._json import (
    INT64,
    MAX_VALUE_DEPTH,
    json_bytes,
    json_double,
    json_int,
    json_list,
    json_object,
)
from otlp_lab.otlp.staging import (
    T_ARRAY,
    T_BOOL,
    T_BYTES,
    T_DOUBLE,
    T_EMPTY,
    T_INT,
    T_KVLIST,
    T_STR,
    VALUE_TYPE,
)

_HASHABLE = (str, int, float, bool)

# ---------------------------------------------------------------- protobuf objects -> plain


def pb_to_plain(v: AnyValue) -> Any:
    """An ``AnyValue`` message as a plain JSON-able Python value (bytes as base64 text)."""
    w = v.WhichOneof("value")
    if w is None:
        return None
    if w == "array_value":
        return [pb_to_plain(e) for e in v.array_value.values]
    if w == "kvlist_value":
        return {kv.key: pb_to_plain(kv.value) for kv in v.kvlist_value.values}
    if w == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return getattr(v, w)


def _dumps_nested(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


# ---------------------------------------------------------------- JSON (OTLP/JSON) -> typed

_JSON_KEYS = {
    "stringValue": T_STR,
    "string_value": T_STR,
    "boolValue": T_BOOL,
    "bool_value": T_BOOL,
    "intValue": T_INT,
    "int_value": T_INT,
    "doubleValue": T_DOUBLE,
    "double_value": T_DOUBLE,
    "arrayValue": T_ARRAY,
    "array_value": T_ARRAY,
    "kvlistValue": T_KVLIST,
    "kvlist_value": T_KVLIST,
    "bytesValue": T_BYTES,
    "bytes_value": T_BYTES,
}


def json_to_typed(v: Any, what: str, depth: int = 0) -> tuple[int, Any]:
    """An OTLP/JSON ``AnyValue`` object as ``(type tag, python value)``.

    Arrays and kvlists come back as plain nested Python values, at most
    :data:`MAX_VALUE_DEPTH` levels deep.
    """
    if v is None:
        return T_EMPTY, None
    if not isinstance(v, dict):
        raise DecodeError(
            f'{what} must be an AnyValue object such as {{"stringValue": "x"}}. Got {v!r:.60} instead.'
        )
    for k, raw in v.items():
        t = _JSON_KEYS.get(k)
        if t is None or raw is None:
            continue  # unknown fields are ignored, per the OTLP/JSON rules; null is absent
        if t == T_STR:
            if not isinstance(raw, str):
                raise DecodeError(f"{what}: stringValue must be a string. Got {raw!r:.60} instead.")
            return t, raw
        if t == T_BOOL:
            if not isinstance(raw, bool):
                raise DecodeError(f"{what}: boolValue must be true or false. Got {raw!r:.60} instead.")
            return t, raw
        if t == T_INT:
            return t, json_int(raw, f"{what}: intValue", INT64)
        if t == T_DOUBLE:
            return t, json_double(raw, f"{what}: doubleValue")
        if t == T_BYTES:
            return t, json_bytes(raw, f"{what}: bytesValue")
        if depth >= MAX_VALUE_DEPTH:
            raise DecodeError(f"{what} nests arrays/kvlists more than {MAX_VALUE_DEPTH} levels deep.")
        if t == T_ARRAY:
            vals = json_list(
                json_object(raw, f"{what}.arrayValue").get("values"), f"{what}.arrayValue.values"
            )
            return t, [_json_plain(e, f"{what}[{n}]", depth + 1) for n, e in enumerate(vals)]
        # kvlist
        vals = json_list(json_object(raw, f"{what}.kvlistValue").get("values"), f"{what}.kvlistValue.values")
        out = {}
        for n, kv in enumerate(vals):
            if not isinstance(kv, dict) or not isinstance(kv.get("key", ""), str):
                raise DecodeError(
                    f"{what}.values[{n}] must be an object with a string 'key'. Got {kv!r:.60} instead."
                )
            key = kv.get("key", "")
            out[key] = _json_plain(kv.get("value"), f"{what}.{key}", depth + 1)
        return t, out
    return T_EMPTY, None


def _json_plain(v: Any, what: str, depth: int) -> Any:
    t, val = json_to_typed(v, what, depth)
    if t == T_BYTES:
        return base64.b64encode(val).decode("ascii")
    return val


# ---------------------------------------------------------------- the interning table


class _PbKvCache(dict):
    """Raw ``KeyValue`` wire bytes -> index in the table; decodes on a miss."""

    __slots__ = ("table",)

    def __missing__(self, raw: bytes) -> int:
        idx = self.table.add(*decode_pb_kv(raw))
        self[raw] = idx
        return idx


def decode_pb_kv(raw: bytes) -> tuple[str, int, Any]:
    """``(key, type tag, value)`` of one ``KeyValue`` wire string (nested values as plain Python)."""
    fast = _scalar_kv(raw)
    if fast is not None:
        return fast
    try:
        kv = KeyValue.FromString(raw)
    except Exception as exc:  # protobuf raises its own DecodeError or RuntimeWarning types
        raise DecodeError(f"attribute is not a valid KeyValue message ({exc})") from None
    return (kv.key, *pb_typed(kv.value))


def pb_typed(v: AnyValue) -> tuple[int, Any]:
    """An ``AnyValue`` message as ``(type tag, value)`` (arrays and kvlists as plain Python)."""
    w = v.WhichOneof("value")
    if w is None:
        return T_EMPTY, None
    if w == "string_value":
        return T_STR, v.string_value
    if w == "bool_value":
        return T_BOOL, v.bool_value
    if w == "int_value":
        return T_INT, v.int_value
    if w == "double_value":
        return T_DOUBLE, v.double_value
    if w == "bytes_value":
        return T_BYTES, v.bytes_value
    if w == "array_value":
        return T_ARRAY, [pb_to_plain(e) for e in v.array_value.values]
    return T_KVLIST, {kv.key: pb_to_plain(kv.value) for kv in v.kvlist_value.values}


_unpack_double = struct.Struct("<d").unpack_from


def _scalar_kv(raw: bytes) -> tuple[str, int, Any] | None:
    """``(key, type, value)`` of a short KeyValue holding a string, int, double or bool.

    The common shapes, read straight off the wire (much cheaper than building a message);
    ``None`` for anything else (or anything odd), which takes the full protobuf path.
    """
    n = len(raw)
    if n < 4 or raw[0] != 0x0A or raw[1] > 0x7F:
        return None
    p = 2 + raw[1]  # end of key
    if p + 2 > n or raw[p] != 0x12 or raw[p + 1] > 0x7F or p + 2 + raw[p + 1] != n:
        return None
    try:
        key = raw[2:p].decode()
    except UnicodeDecodeError:
        return None
    p += 2  # start of the AnyValue
    if p == n:
        return key, T_EMPTY, None
    tag = raw[p]
    if tag == 0x0A:  # string_value
        if raw[p + 1] > 0x7F or p + 2 + raw[p + 1] != n:
            return None
        try:
            return key, T_STR, raw[p + 2 : n].decode()
        except UnicodeDecodeError:
            return None
    if tag == 0x18:  # int_value (varint, two's complement)
        v, shift, q = 0, 0, p + 1
        while q < n:
            b = raw[q]
            v |= (b & 0x7F) << shift
            q += 1
            if not b & 0x80:
                break
            shift += 7
        else:
            return None
        if q != n or shift > 63:
            return None
        return key, T_INT, v - (1 << 64) if v >= 1 << 63 else v
    if tag == 0x21 and p + 9 == n:  # double_value
        return key, T_DOUBLE, _unpack_double(raw, p + 1)[0]
    if tag == 0x10 and p + 2 == n and raw[p + 1] < 2:  # bool_value
        return key, T_BOOL, bool(raw[p + 1])
    return None


class _PbAnyCache(dict):
    """Raw ``AnyValue`` wire bytes -> index (used for log bodies)."""

    __slots__ = ("table",)

    def __missing__(self, raw: bytes) -> int:
        try:
            v = AnyValue.FromString(raw)
        except Exception as exc:
            raise DecodeError(f"value is not a valid AnyValue message ({exc})") from None
        idx = self.table.add_pb_value("", v)
        if len(raw) < 256:
            self[raw] = idx
        return idx


class AttrTable:
    """Distinct (key, typed value) pairs of one batch, in columns.

    Rows hold indices into it; :meth:`to_arrow` gives the key and value arrays that
    ``pyarrow.compute.take`` expands to per-row lists.
    """

    __slots__ = ("keys", "t", "vals", "pb", "pb_any", "js")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.t: list[int] = []
        self.vals: list[Any] = []  # the value (nested values as JSON text); split by type in to_arrow
        self.pb = _PbKvCache()
        self.pb.table = self
        self.pb_any = _PbAnyCache()
        self.pb_any.table = self
        self.js: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: str, t: int, value: Any) -> int:
        """Append one pair and return its index (no interning)."""
        self.keys.append(key)
        self.t.append(t)
        self.vals.append(_dumps_nested(value) if t == T_ARRAY or t == T_KVLIST else value)
        return len(self.keys) - 1

    def add_pb_value(self, key: str, v: AnyValue) -> int:
        return self.add(key, *pb_typed(v))

    def index_pb_objects(self, kvs: Any) -> list[int]:
        """Indices for a repeated ``KeyValue`` field of a parsed message."""
        pb = self.pb
        return [pb[kv.SerializeToString()] for kv in kvs]

    def index_json(self, kvs: Any, what: str) -> list[int]:
        """Indices for an OTLP/JSON attribute list (``[{"key": ..., "value": {...}}, ...]``)."""
        if kvs is None or kvs == []:
            return []
        if not isinstance(kvs, list):
            raise DecodeError(
                f"{what} must be a list of key/value objects. Got {type(kvs).__name__} instead."
            )
        js = self.js
        out = []
        for n, kv in enumerate(kvs):
            try:
                key = kv.get("key", "")  # OTLP/JSON leaves out default values: no key is the empty key
                val = kv.get("value")
            except AttributeError:
                raise DecodeError(
                    f"{what}[{n}] must be an object with 'key' and 'value'. Got {kv!r} instead."
                ) from None
            ck = None
            if type(key) is str and type(val) is dict and len(val) == 1:
                ((tn, raw),) = val.items()
                if type(raw) in _HASHABLE:
                    ck = (key, tn, raw)
                    idx = js.get(ck)
                    if idx is not None:
                        out.append(idx)
                        continue
            if not isinstance(key, str):
                raise DecodeError(f"{what}[{n}].key must be a string. Got {key!r} instead.")
            t, pv = json_to_typed(val, f"{what}[{n}] ({key!r})")
            idx = self.add(key, t, pv)
            if ck is not None:
                js[ck] = idx
            out.append(idx)
        return out

    def index_json_value(self, v: Any, what: str) -> int:
        t, pv = json_to_typed(v, what)
        return self.add("", t, pv)

    def to_arrow(self) -> tuple[pa.Array, pa.StructArray]:
        """The keys and the typed value structs; each typed slot is one vectorised pass over the values."""
        keys = pa.array(self.keys, pa.string())
        t = np.array(self.t, dtype=np.int8)
        vals = np.empty(len(self.vals), dtype=object)
        vals[:] = self.vals
        slots = [
            pa.array(
                vals, type=typ, mask=(t != tag) if tag != T_ARRAY else ((t != T_ARRAY) & (t != T_KVLIST))
            )
            for tag, typ in (
                (T_STR, pa.string()),
                (T_BOOL, pa.bool_()),
                (T_INT, pa.int64()),
                (T_DOUBLE, pa.float64()),
                (T_BYTES, pa.binary()),
                (T_ARRAY, pa.string()),
            )
        ]
        struct = pa.StructArray.from_arrays([pa.array(t, pa.int8()), *slots], fields=list(VALUE_TYPE))
        return keys, struct


# ---------------------------------------------------------------- typed -> protobuf / JSON (encoder side)


def plain_to_pb(value: Any, out: AnyValue) -> None:
    """Fill ``out`` from a plain nested value (the inverse of :func:`pb_to_plain`)."""
    if value is None:
        return
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, list):
        arr = out.array_value
        arr.SetInParent()
        for e in value:
            plain_to_pb(e, arr.values.add())
    elif isinstance(value, dict):
        kvl = out.kvlist_value
        kvl.SetInParent()
        for k, e in value.items():
            kv = kvl.values.add()
            kv.key = k
            plain_to_pb(e, kv.value)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as an AnyValue")


def typed_to_pb(t: int, s: Any, b: Any, i: Any, d: Any, x: Any, j: Any, out: AnyValue) -> None:
    if t == T_STR:
        out.string_value = s
    elif t == T_BOOL:
        out.bool_value = b
    elif t == T_INT:
        out.int_value = i
    elif t == T_DOUBLE:
        out.double_value = d
    elif t == T_BYTES:
        out.bytes_value = x
    elif t in (T_ARRAY, T_KVLIST):
        plain_to_pb(orjson.loads(j), out)
        if t == T_ARRAY:
            out.array_value.SetInParent()
        else:
            out.kvlist_value.SetInParent()
