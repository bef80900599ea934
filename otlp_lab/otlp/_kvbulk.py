"""Decoding many attribute ``KeyValue`` messages at once, with NumPy instead of a Python loop.

High-cardinality attributes (user ids, URL paths, request ids) make most ``KeyValue`` wire
strings of a batch distinct, so interning them does not help: each has to be decoded. The
common shapes (a key under 128 bytes and a short string, an int, a double or a bool) are
read here for all of a batch's new pairs in a few vectorised passes; anything else (nested
values, bytes, long strings, malformed or non-UTF-8 input) is left to the per-pair decoder,
which also produces the precise error messages.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from otlp_lab.otlp._anyvalue import (
    T_BOOL,
    T_DOUBLE,
    T_EMPTY,
    T_INT,
    T_STR,
    VALUE_TYPE,
    AttrTable,
    decode_pb_kv,
)

_PAD = 16


def _gather(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> pa.Array | None:
    """UTF-8 strings ``data[starts[i]:ends[i]]`` as one Arrow array; ``None`` if any is not valid UTF-8."""
    lens = (ends - starts).astype(np.int64)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    if total >= 2**31:
        return None
    idx = np.repeat(starts.astype(np.int64) - offsets[:-1], lens) + np.arange(total, dtype=np.int64)
    body = data[idx]
    arr = pa.StringArray.from_buffers(
        len(lens), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(body.tobytes())
    )
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return arr


def decode_scalar_kvs(arr: pa.BinaryArray) -> tuple[np.ndarray, pa.Array, np.ndarray, pa.StructArray] | None:
    """Decode ``arr`` (KeyValue wire strings) where they have a common scalar shape.

    Returns ``(ok, keys, types, values)``: ``ok`` flags the pairs decoded here; ``keys`` and
    the typed value slots (``s``, ``b``, ``i``, ``d``) are aligned with ``arr`` and
    meaningless where ``ok`` is false. ``None`` when nothing could be decoded in bulk.
    """
    n = len(arr)
    if not n or arr.null_count:
        return None
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4).astype(
        np.int64
    )
    buf = arr.buffers()[2]
    data = np.zeros((offs[-1] if buf is None else buf.size) + _PAD, dtype=np.uint8)
    if buf is not None:
        data[: buf.size] = np.frombuffer(buf, dtype=np.uint8)
    start, end = offs[:-1], offs[1:]
    size = end - start
    klen = data[start + 1].astype(np.int64)
    ok = (size >= 4) & (data[start] == 0x0A) & (klen < 0x80)
    p = np.minimum(start + 2 + klen, end)  # end of the key
    vlen = data[p + 1].astype(np.int64)
    ok &= (p + 2 <= end) & (data[p] == 0x12) & (vlen < 0x80) & (p + 2 + vlen == end)
    q = p + 2  # start of the AnyValue
    tag = np.where(q < end, data[q], 0)
    empty = ok & (q == end)
    slen = data[q + 1].astype(np.int64)
    is_str = ok & (tag == 0x0A) & (slen < 0x80) & (q + 2 + slen == end)
    is_dbl = ok & (tag == 0x21) & (q + 9 == end)
    is_bool = ok & (tag == 0x10) & (q + 2 == end) & (data[q + 1] < 2)
    # int64 varint: 1..10 bytes after the tag, continuation bits on all but the last
    vl = end - q - 1
    is_int = ok & (tag == 0x18) & (vl >= 1) & (vl <= 10)
    ival = np.zeros(n, dtype=np.uint64)
    more = is_int.copy()
    for j in range(10):
        b = data[np.minimum(q + 1 + j, end)].astype(np.uint64)
        take = more & (j < vl)
        ival |= np.where(take, (b & np.uint64(0x7F)) << np.uint64(7 * j), np.uint64(0))
        last = take & (j == vl - 1)
        # a byte before the last must continue, the last must not
        is_int &= ~(take & ~last & ((b & np.uint64(0x80)) == 0))
        is_int &= ~(last & ((b & np.uint64(0x80)) != 0))
        if j == 9:
            is_int &= ~(last & (b > 1))
        more = take
    ok = empty | is_str | is_dbl | is_bool | is_int
    if not ok.any():
        return None
    keys = _gather(data, np.where(ok, start + 2, 0), np.where(ok, p, 0))
    svals = _gather(data, np.where(is_str, q + 2, 0), np.where(is_str, end, 0))
    if keys is None or svals is None:
        return None
    t = np.full(n, T_EMPTY, dtype=np.int8)
    t[is_str], t[is_int], t[is_dbl], t[is_bool] = T_STR, T_INT, T_DOUBLE, T_BOOL
    dbl = np.zeros(n, dtype=np.float64)
    if is_dbl.any():
        raw8 = data[(np.where(is_dbl, q + 1, 0)[:, None] + np.arange(8)).ravel()]
        dbl = np.where(is_dbl, raw8.view("<f8"), 0.0)
    vals = pa.StructArray.from_arrays(
        [
            pa.array(t, pa.int8()),
            pc_mask(svals, ~is_str),
            pa.array(data[np.minimum(q + 1, end)] == 1, pa.bool_(), mask=~is_bool),
            pa.array(ival.view(np.int64), pa.int64(), mask=~is_int),
            pa.array(dbl, pa.float64(), mask=~is_dbl),
            pa.nulls(n, pa.binary()),
            pa.nulls(n, pa.string()),
        ],
        names=["t", "s", "b", "i", "d", "x", "j"],
    )
    return ok, keys, t, vals


def pc_mask(arr: pa.Array, mask: np.ndarray) -> pa.Array:
    """``arr`` with nulls where ``mask``."""
    import pyarrow.compute as pc

    return pc.if_else(pa.array(mask), pa.scalar(None, arr.type), arr)


class RawKvLists:
    """Per-row attribute lists kept as raw ``KeyValue`` wire strings until the batch is built.

    :meth:`arrays` interns them with Arrow's hashing (``dictionary_encode``), decodes each
    distinct pair once (in bulk where it can), and expands them to per-row key and value lists.
    """

    __slots__ = ("raws", "offsets")

    def __init__(self) -> None:
        self.raws: list[bytes] = []
        self.offsets: list[int] = [0]

    def arrays(self) -> tuple[pa.ListArray, pa.ListArray]:
        offs = pa.array(self.offsets, pa.int32())
        enc = pa.array(self.raws, pa.binary()).dictionary_encode()
        keys, vals = decode_kvs(enc.dictionary)
        return (
            pa.ListArray.from_arrays(offs, keys.take(enc.indices)),
            pa.ListArray.from_arrays(offs, vals.take(enc.indices)),
        )


def decode_kvs(arr: pa.BinaryArray) -> tuple[pa.Array, pa.StructArray]:
    """Keys and typed values (:data:`VALUE_TYPE`) of ``KeyValue`` wire strings."""
    bulk = decode_scalar_kvs(arr)
    ok = bulk[0] if bulk is not None else np.zeros(len(arr), dtype=bool)
    rest = np.flatnonzero(~ok)
    if bulk is not None and not len(rest):
        return bulk[1], bulk[3]
    table = AttrTable()
    for n in rest:
        table.add(*decode_pb_kv(arr[int(n)].as_py()))
    rkeys, rvals = table.to_arrow()
    if bulk is None:
        return rkeys, rvals
    # bulk rows first, then the others, put back in order
    done = np.flatnonzero(ok)
    perm = np.empty(len(arr), dtype=np.int64)
    perm[done] = np.arange(len(done))
    perm[rest] = len(done) + np.arange(len(rest))
    perm = pa.array(perm)
    where = pa.array(done)
    return (
        pa.concat_arrays([bulk[1].take(where), rkeys]).take(perm),
        pa.concat_arrays([bulk[3].take(where).cast(VALUE_TYPE), rvals]).take(perm),
    )
