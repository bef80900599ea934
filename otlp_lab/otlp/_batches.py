"""Columnar batch builders shared by the protobuf and JSON decoders.

A builder collects one batch of rows in plain Python lists (the cheapest thing to
append to) and turns them into ``pyarrow`` tables in the codec's *staging* form:
ids as raw bytes, times as ``timestamp[ns]`` (0 = unset = null), enums as integers,
attributes as parallel key/value lists (see :mod:`._anyvalue`). The store turns the
staging form into its SQL tables in one ``INSERT ... SELECT``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from otlp_lab.errors import DecodeError
from otlp_lab.otlp._anyvalue import AttrTable
from otlp_lab.otlp._json import UINT32, json_int, json_item, json_list, json_object
from otlp_lab.otlp.staging import CONTEXT, I64, T_STR, TS

CTX_FIELDS = [(f.name, f.type) for f in CONTEXT if f.name != "ctx"]


def ints(values: list[int], name: str) -> pa.Array:
    try:
        return pa.array(values, I64)
    except (OverflowError, pa.ArrowInvalid):
        bad = next(v for v in values if not -(2**63) <= v < 2**63)
        raise DecodeError(
            f"{name} {bad} does not fit in 64 bits (times must be before the year 2262)"
        ) from None


def times(values: list[int], name: str) -> pa.Array:
    """Unix nanoseconds as ``timestamp[ns]``; 0 (unset) becomes null."""
    arr = ints(values, name)
    if len(arr) and pc.any(pc.equal(arr, 0)).as_py():
        arr = pc.if_else(pc.equal(arr, 0), pa.scalar(None, I64), arr)
    return arr.cast(TS)


def check_id_lengths(arr: pa.Array, name: str, sizes: tuple[int, ...]) -> None:
    """Every id is ``sizes`` bytes long (0 allowed where ``0 in sizes``)."""
    if not len(arr):
        return
    lens = pc.binary_length(arr)
    ok = pc.is_in(lens, pa.array(sizes, lens.type))
    if not pc.all(ok).as_py():
        row = int(np.flatnonzero(~ok.to_numpy(zero_copy_only=False))[0])
        got = arr[row].as_py()
        want = " or ".join(str(s) for s in sizes if s) + " bytes"
        raise DecodeError(
            f"{name} of row {row} is {len(got)} bytes ({got.hex() or 'empty'}); an OTLP {name} is {want}"
        )


class AttrLists:
    """Per-row attribute lists: flat indices into an :class:`AttrTable` plus offsets."""

    __slots__ = ("idx", "offsets")

    def __init__(self) -> None:
        self.idx: list[int] = []
        self.offsets: list[int] = [0]

    def arrays(self, keys: pa.Array, vals: pa.Array) -> tuple[pa.Array, pa.Array]:
        offs = pa.array(self.offsets, pa.int32())
        idx = pa.array(self.idx, pa.int32())
        return (
            pa.ListArray.from_arrays(offs, keys.take(idx)),
            pa.ListArray.from_arrays(offs, vals.take(idx)),
        )


class Builder:
    """Base of the per-signal builders: the attribute table and resource/scope contexts."""

    def __init__(self) -> None:
        self.attrs = AttrTable()
        self.n = 0
        # contexts (one per resource+scope pair in the batch)
        self.ctx: dict[str, list[Any]] = {k: [] for k, _ in CTX_FIELDS if not k.endswith(("_keys", "_vals"))}
        self.ctx_res = AttrLists()
        self.ctx_scope = AttrLists()
        self.row_ctx_runs: list[tuple[int, int]] = []  # (ctx index, first row)
        self._res_cache: dict[bytes, tuple[str | None, list[int], int]] = {}
        self._scope_cache: dict[bytes, tuple[str, str, list[int], int]] = {}

    # -- contexts ---------------------------------------------------------------
    def _service(self, idx: list[int]) -> str | None:
        a = self.attrs
        for i in idx:
            if a.keys[i] == "service.name" and a.t[i] == T_STR:
                return a.vals[i]
        return None

    def open_context(
        self,
        *,
        res_idx: list[int],
        res_dropped: int,
        res_schema: str,
        scope_name: str,
        scope_version: str,
        scope_idx: list[int],
        scope_dropped: int,
        scope_schema: str,
    ) -> None:
        c = self.ctx
        c["service_name"].append(self._service(res_idx))
        c["resource_dropped_attributes_count"].append(res_dropped)
        c["resource_schema_url"].append(res_schema)
        c["scope_name"].append(scope_name)
        c["scope_version"].append(scope_version)
        c["scope_dropped_attributes_count"].append(scope_dropped)
        c["scope_schema_url"].append(scope_schema)
        self.ctx_res.idx.extend(res_idx)
        self.ctx_res.offsets.append(len(self.ctx_res.idx))
        self.ctx_scope.idx.extend(scope_idx)
        self.ctx_scope.offsets.append(len(self.ctx_scope.idx))
        self.row_ctx_runs.append((len(c["service_name"]) - 1, self.n))

    def open_context_pb(self, res_raw: bytes, res_schema: str, scope_raw: bytes, scope_schema: str) -> None:
        r = self._res_cache.get(res_raw)
        if r is None:
            try:
                res = Resource.FromString(res_raw)
            except Exception as exc:
                raise DecodeError(f"resource is not a valid Resource message ({exc})") from None
            r = (
                [self.attrs.pb[kv.SerializeToString()] for kv in res.attributes],
                res.dropped_attributes_count,
            )
            self._res_cache[res_raw] = r
        s = self._scope_cache.get(scope_raw)
        if s is None:
            try:
                sc = InstrumentationScope.FromString(scope_raw)
            except Exception as exc:
                raise DecodeError(f"scope is not a valid InstrumentationScope message ({exc})") from None
            s = (
                sc.name,
                sc.version,
                [self.attrs.pb[kv.SerializeToString()] for kv in sc.attributes],
                sc.dropped_attributes_count,
            )
            self._scope_cache[scope_raw] = s
        self.open_context(
            res_idx=r[0],
            res_dropped=r[1],
            res_schema=res_schema,
            scope_name=s[0],
            scope_version=s[1],
            scope_idx=s[2],
            scope_dropped=s[3],
            scope_schema=scope_schema,
        )

    def open_context_json(self, rs: dict, res_path: str, scope: dict | None, scope_path: str) -> None:
        res = json_object(rs.get("resource"), f"{res_path}.resource")
        a = self.attrs
        scope = scope or {}
        self.open_context(
            res_idx=a.index_json(res.get("attributes"), f"{res_path}.resource.attributes"),
            res_dropped=json_u32(res, "droppedAttributesCount", "dropped_attributes_count", res_path),
            res_schema=json_str(rs, "schemaUrl", "schema_url", res_path),
            scope_name=json_str(scope, "name", "name", scope_path),
            scope_version=json_str(scope, "version", "version", scope_path),
            scope_idx=a.index_json(scope.get("attributes"), f"{scope_path}.attributes"),
            scope_dropped=json_u32(scope, "droppedAttributesCount", "dropped_attributes_count", scope_path),
            scope_schema="",
        )

    def set_scope_schema_json(self, ss: dict, path: str) -> None:
        """OTLP/JSON puts the scope's schemaUrl after its items; patch the open context."""
        url = json_str(ss, "schemaUrl", "schema_url", path)
        if url:
            self.ctx["scope_schema_url"][-1] = url

    # -- output -----------------------------------------------------------------
    def context_columns(self, row_ctx: pa.Array | None = None) -> dict[str, pa.Array]:
        """The per-row ``ctx`` column: each row's index in :meth:`context_table`."""
        if row_ctx is None:
            runs = self.row_ctx_runs
            starts = np.array([r[1] for r in runs] + [self.n], dtype=np.int64)
            row_ctx = pa.array(
                np.repeat(np.array([r[0] for r in runs], dtype=np.int32), np.diff(starts)), pa.int32()
            )
        return {"ctx": row_ctx}

    def context_table(self, keys: pa.Array, vals: pa.Array) -> pa.Table:
        """One row per resource+scope context of the batch (joined to the rows on ``ctx``).

        Resource and scope attributes are the same for every row of a context, so the store
        builds their maps once per context instead of once per row.
        """
        rk, rv = self.ctx_res.arrays(keys, vals)
        sk, sv = self.ctx_scope.arrays(keys, vals)
        c = self.ctx
        return pa.table(
            {
                "ctx": pa.array(range(len(c["service_name"])), pa.int32()),
                "service_name": pa.array(c["service_name"], pa.string()),
                "resource_keys": rk,
                "resource_vals": rv,
                "resource_dropped_attributes_count": pa.array(c["resource_dropped_attributes_count"], I64),
                "resource_schema_url": pa.array(c["resource_schema_url"], pa.string()),
                "scope_name": pa.array(c["scope_name"], pa.string()),
                "scope_version": pa.array(c["scope_version"], pa.string()),
                "scope_keys": sk,
                "scope_vals": sv,
                "scope_dropped_attributes_count": pa.array(c["scope_dropped_attributes_count"], I64),
                "scope_schema_url": pa.array(c["scope_schema_url"], pa.string()),
            }
        )


# ---------------------------------------------------------------- batching a request's items


def iter_pb_batches(
    make: Callable[[], Builder],
    groups: Iterable[tuple[Any, Any, Any]],
    add: Callable[[Any, Any], None],
    batch_rows: int,
) -> Iterator[dict[str, pa.Table]]:
    """Staging tables of a parsed protobuf view, at most about ``batch_rows`` items each.

    ``groups`` yields ``(resource_x, scope_x, items)``; ``add(builder, items)`` adds a slice.
    """
    b = make()
    for res, scope, items in groups:
        n, lo = len(items), 0
        while lo < n:
            if b.n >= batch_rows:
                yield b.tables()
                b = make()
            hi = min(n, lo + batch_rows - b.n)
            b.open_context_pb(res.resource, res.schema_url, scope.scope, scope.schema_url)
            add(b, items if (lo == 0 and hi == n) else items[lo:hi])
            lo = hi
    if b.n:
        yield b.tables()


def iter_json_batches(
    make: Callable[[], Builder],
    doc: dict,
    names: tuple[str, str, str],
    add: Callable[[Any, list, str, int], None],
    batch_rows: int,
) -> Iterator[dict[str, pa.Table]]:
    """Staging tables of one OTLP/JSON request, at most about ``batch_rows`` items each.

    ``names`` are the camelCase keys of the resource list, the scope list and the items,
    e.g. ``("resourceSpans", "scopeSpans", "spans")``; ``add(builder, items, path, offset)``.
    """
    res_key, scope_key, items_key = names
    b = make()
    for ri, res in enumerate(json_list(json_get(doc, res_key, _snake(res_key)), res_key)):
        rp = f"{res_key}[{ri}]"
        json_item(res, rp)
        for si, scope in enumerate(
            json_list(json_get(res, scope_key, _snake(scope_key)), f"{rp}.{scope_key}")
        ):
            sp = f"{rp}.{scope_key}[{si}]"
            json_item(scope, sp)
            items = json_list(json_get(scope, items_key, _snake(items_key)), f"{sp}.{items_key}")
            scope_obj = json_object(scope.get("scope"), f"{sp}.scope")
            for lo in range(0, len(items), batch_rows):
                if b.n >= batch_rows:
                    yield b.tables()
                    b = make()
                b.open_context_json(res, rp, scope_obj, f"{sp}.scope")
                b.set_scope_schema_json(scope, sp)
                add(b, items[lo : lo + batch_rows], f"{sp}.{items_key}", lo)
    if b.n:
        yield b.tables()


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


# ---------------------------------------------------------------- JSON field helpers


def json_get(d: dict, camel: str, snake: str) -> Any:
    v = d.get(camel)
    if v is None and snake != camel:
        v = d.get(snake)
    return v


def json_str(d: dict, camel: str, snake: str, path: str) -> str:
    v = json_get(d, camel, snake)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise DecodeError(f"{path}.{camel} must be a string. Got {v!r} instead.")
    return v


def json_u32(d: dict, camel: str, snake: str, path: str) -> int:
    v = json_get(d, camel, snake)
    if v is None:
        return 0
    return json_int(v, f"{path}.{camel}", UINT32)
