"""Metrics: ``ExportMetricsServiceRequest`` -> one staging table per point kind.

Metric volumes are far smaller than span volumes, so this path walks the real
protobuf classes; OTLP/JSON is first turned into the protobuf message with
``json_format.ParseDict`` (after the one OTLP/JSON deviation, hex exemplar ids).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from otlp_lab.errors import DecodeError
from otlp_lab.otlp._batches import AttrLists, Builder, check_id_lengths, ints, json_get, times
from otlp_lab.otlp._json import check_message
from otlp_lab.otlp._traces import hex_id
from otlp_lab.otlp.staging import EXEMPLAR_TYPE, I64, METRIC_KINDS, TABLE_OF_KIND

KINDS = METRIC_KINDS


class _Kind:
    """Rows of one point kind."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {}
        self.ctx: list[int] = []
        self.attrs = AttrLists()
        self.meta = AttrLists()
        self.ex_idx: list[int] = []  # this kind's exemplars, as indices into the batch's exemplars
        self.ex_offsets: list[int] = [0]

    def col(self, name: str) -> list[Any]:
        c = self.cols.get(name)
        if c is None:
            c = self.cols[name] = []
        return c


class MetricBuilder(Builder):
    def __init__(self) -> None:
        super().__init__()
        self.kinds = {k: _Kind() for k in KINDS}
        self.ex: dict[str, list[Any]] = {k: [] for k in ("time", "value", "int_value", "span_id", "trace_id")}
        self.ex_attrs = AttrLists()

    def add_metric(self, m: Any) -> None:
        which = m.WhichOneof("data")
        if which is None:
            return  # a metric with no data carries no points
        k = self.kinds[which]
        data = getattr(m, which)
        ctx = len(self.ctx["service_name"]) - 1
        meta = self.attrs.index_pb_objects(m.metadata)
        idx_pb = self.attrs.index_pb_objects
        for pi, p in enumerate(data.data_points):
            if (
                which == "histogram"
                and p.bucket_counts
                and len(p.bucket_counts) != len(p.explicit_bounds) + 1
            ):
                raise DecodeError(
                    f"histogram {m.name!r} data point {pi} has {len(p.bucket_counts)} bucket counts for "
                    f"{len(p.explicit_bounds)} explicit bounds; OTLP needs one more count than bounds"
                )
            k.ctx.append(ctx)
            k.col("metric_name").append(m.name)
            k.col("description").append(m.description)
            k.col("unit").append(m.unit)
            k.meta.idx.extend(meta)
            k.meta.offsets.append(len(k.meta.idx))
            k.attrs.idx.extend(idx_pb(p.attributes))
            k.attrs.offsets.append(len(k.attrs.idx))
            k.col("start_time").append(p.start_time_unix_nano)
            k.col("time").append(p.time_unix_nano)
            k.col("flags").append(p.flags)
            if which in ("gauge", "sum"):
                v = p.WhichOneof("value")
                k.col("value").append(float(p.as_int) if v == "as_int" else (p.as_double if v else None))
                k.col("int_value").append(p.as_int if v == "as_int" else None)
            else:
                k.col("count").append(p.count)
                # Histogram sums are ``optional``; a summary's sum is a plain double (no presence)
                k.col("sum").append(p.sum if which == "summary" or p.HasField("sum") else None)
            if which in ("histogram", "exponential_histogram"):
                k.col("min").append(p.min if p.HasField("min") else None)
                k.col("max").append(p.max if p.HasField("max") else None)
            if which == "histogram":
                k.col("bucket_counts").append(list(p.bucket_counts))
                k.col("explicit_bounds").append(list(p.explicit_bounds))
            elif which == "exponential_histogram":
                k.col("scale").append(p.scale)
                k.col("zero_count").append(p.zero_count)
                k.col("zero_threshold").append(p.zero_threshold)
                k.col("positive_offset").append(p.positive.offset)
                k.col("positive_bucket_counts").append(list(p.positive.bucket_counts))
                k.col("negative_offset").append(p.negative.offset)
                k.col("negative_bucket_counts").append(list(p.negative.bucket_counts))
            elif which == "summary":
                k.col("quantile_values").append(
                    [{"quantile": q.quantile, "value": q.value} for q in p.quantile_values]
                )
            if which in ("sum", "histogram", "exponential_histogram"):
                k.col("aggregation_temporality").append(data.aggregation_temporality)
            if which == "sum":
                k.col("is_monotonic").append(data.is_monotonic)
            if which != "summary":
                for e in p.exemplars:
                    k.ex_idx.append(len(self.ex["time"]))
                    v = e.WhichOneof("value")
                    self.ex["time"].append(e.time_unix_nano)
                    self.ex["value"].append(
                        float(e.as_int) if v == "as_int" else (e.as_double if v else None)
                    )
                    self.ex["int_value"].append(e.as_int if v == "as_int" else None)
                    self.ex["span_id"].append(e.span_id)
                    self.ex["trace_id"].append(e.trace_id)
                    self.ex_attrs.idx.extend(idx_pb(e.filtered_attributes))
                    self.ex_attrs.offsets.append(len(self.ex_attrs.idx))
                k.ex_offsets.append(len(k.ex_idx))
            self.n += 1

    def tables(self) -> dict[str, pa.Table]:
        keys, vals = self.attrs.to_arrow()
        ex_tid = pa.array(self.ex["trace_id"], pa.binary())
        ex_sid = pa.array(self.ex["span_id"], pa.binary())
        check_id_lengths(ex_tid, "exemplar trace_id", (0, 16))
        check_id_lengths(ex_sid, "exemplar span_id", (0, 8))
        ek, ev = self.ex_attrs.arrays(keys, vals)
        exemplars = pa.StructArray.from_arrays(
            [
                times(self.ex["time"], "exemplar time_unix_nano"),
                pa.array(self.ex["value"], pa.float64()),
                pa.array(self.ex["int_value"], I64),
                ex_sid,
                ex_tid,
                ek,
                ev,
            ],
            fields=list(EXEMPLAR_TYPE),
        )
        out = {}
        for kind, k in self.kinds.items():
            if not k.ctx:
                continue
            c = k.cols
            ak, av = k.attrs.arrays(keys, vals)
            mk, mv = k.meta.arrays(keys, vals)
            cols: dict[str, pa.Array] = {
                "metric_name": pa.array(c["metric_name"], pa.string()),
                "description": pa.array(c["description"], pa.string()),
                "unit": pa.array(c["unit"], pa.string()),
                "start_time": times(c["start_time"], "start_time_unix_nano"),
                "time": times(c["time"], "time_unix_nano"),
                "flags": ints(c["flags"], "flags"),
                "attr_keys": ak,
                "attr_vals": av,
                "meta_keys": mk,
                "meta_vals": mv,
            }
            if kind in ("gauge", "sum"):
                cols["value"] = pa.array(c["value"], pa.float64())
                cols["int_value"] = pa.array(c["int_value"], I64)
            else:
                cols["count"] = pa.array(c["count"], pa.uint64())
                cols["sum"] = pa.array(c["sum"], pa.float64())
            if kind in ("histogram", "exponential_histogram"):
                cols["min"] = pa.array(c["min"], pa.float64())
                cols["max"] = pa.array(c["max"], pa.float64())
            if kind == "histogram":
                cols["bucket_counts"] = pa.array(c["bucket_counts"], pa.list_(pa.uint64()))
                cols["explicit_bounds"] = pa.array(c["explicit_bounds"], pa.list_(pa.float64()))
            elif kind == "exponential_histogram":
                cols["scale"] = pa.array(c["scale"], pa.int32())
                cols["zero_count"] = pa.array(c["zero_count"], pa.uint64())
                cols["zero_threshold"] = pa.array(c["zero_threshold"], pa.float64())
                cols["positive_offset"] = pa.array(c["positive_offset"], pa.int32())
                cols["positive_bucket_counts"] = pa.array(c["positive_bucket_counts"], pa.list_(pa.uint64()))
                cols["negative_offset"] = pa.array(c["negative_offset"], pa.int32())
                cols["negative_bucket_counts"] = pa.array(c["negative_bucket_counts"], pa.list_(pa.uint64()))
            elif kind == "summary":
                cols["quantile_values"] = pa.array(
                    c["quantile_values"],
                    pa.list_(pa.struct([("quantile", pa.float64()), ("value", pa.float64())])),
                )
            if kind in ("sum", "histogram", "exponential_histogram"):
                cols["aggregation_temporality"] = pa.array(c["aggregation_temporality"], pa.int32())
            if kind == "sum":
                cols["is_monotonic"] = pa.array(c["is_monotonic"], pa.bool_())
            if kind != "summary":
                cols["exemplars"] = pa.ListArray.from_arrays(
                    pa.array(k.ex_offsets, pa.int32()), exemplars.take(pa.array(k.ex_idx, pa.int32()))
                )
            cols.update(self.context_columns(pa.array(k.ctx, pa.int32())))
            out[TABLE_OF_KIND[kind]] = pa.table(cols)
        if out:
            out["_ctx"] = self.context_table(keys, vals)
        return out


def iter_metrics_pb(req: ExportMetricsServiceRequest, batch_rows: int) -> Iterator[dict[str, pa.Table]]:
    b = MetricBuilder()
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            open_for = None  # the builder whose context is this ScopeMetrics
            for m in sm.metrics:
                if b.n >= batch_rows:
                    yield b.tables()
                    b = MetricBuilder()
                if open_for is not b:
                    b.open_context_pb(
                        rm.resource.SerializeToString(),
                        rm.schema_url,
                        sm.scope.SerializeToString(),
                        sm.schema_url,
                    )
                    open_for = b
                b.add_metric(m)
    if b.n:
        yield b.tables()


def json_to_metrics_request(doc: dict) -> ExportMetricsServiceRequest:
    """An OTLP/JSON metrics request as the protobuf message.

    Exemplar ids are hex in OTLP/JSON; ``ParseDict`` would read them as base64, so they
    are rewritten first (with a clear error for bad hex). The whole request is first checked
    against the message descriptor, so a wrong type anywhere is refused with its field path
    (``json_format`` alone would coerce ``true`` to 1.0 or ignore an unknown enum name).
    """
    check_message(doc, ExportMetricsServiceRequest.DESCRIPTOR)
    for ri, rm in enumerate(json_get(doc, "resourceMetrics", "resource_metrics") or []):
        for si, sm in (
            enumerate(json_get(rm, "scopeMetrics", "scope_metrics") or []) if isinstance(rm, dict) else ()
        ):
            for mi, m in enumerate(sm.get("metrics") or []) if isinstance(sm, dict) else ():
                if not isinstance(m, dict):
                    continue
                for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram"):
                    data = m.get(kind)
                    if not isinstance(data, dict):
                        continue
                    for pi, p in enumerate(json_get(data, "dataPoints", "data_points") or []):
                        for ei, e in enumerate((p.get("exemplars") or []) if isinstance(p, dict) else []):
                            where = f"resourceMetrics[{ri}].scopeMetrics[{si}].metrics[{mi}].{kind}.dataPoints[{pi}].exemplars[{ei}]"
                            for camel, snake in (("traceId", "trace_id"), ("spanId", "span_id")):
                                if isinstance(e, dict) and json_get(e, camel, snake):
                                    raw = hex_id(json_get(e, camel, snake), f"{where}.{camel}")
                                    e.pop(snake, None)
                                    e[camel] = base64.b64encode(raw).decode()
    try:
        return json_format.ParseDict(doc, ExportMetricsServiceRequest(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise DecodeError(f"not a valid OTLP/JSON metrics request: {exc}") from None


# ---------------------------------------------------------------- OTLP/JSON gauges and sums, directly


class _Fallback(Exception):
    """The request needs the full path (another point kind, exemplars, an odd value)."""


_RM_KEYS = frozenset({"resource", "scopeMetrics", "schemaUrl"})
_SM_KEYS = frozenset({"scope", "metrics", "schemaUrl"})
_METRIC_KEYS = frozenset({"name", "description", "unit", "gauge", "sum", "metadata"})
_DATA_KEYS = frozenset({"dataPoints", "aggregationTemporality", "isMonotonic"})
_POINT_KEYS = frozenset({"attributes", "startTimeUnixNano", "timeUnixNano", "asDouble", "asInt", "flags"})
_TEMPORALITY = {
    "AGGREGATION_TEMPORALITY_UNSPECIFIED": 0,
    "AGGREGATION_TEMPORALITY_DELTA": 1,
    "AGGREGATION_TEMPORALITY_CUMULATIVE": 2,
}
_U64, _I64_LO, _I64_HI = 2**64, -(2**63), 2**63


def _time(raw: Any) -> int:
    if raw is None:
        return 0
    t = type(raw)
    if t is str and raw.isascii() and raw.isdigit():
        v = int(raw)
    elif t is int:
        v = raw
    else:
        raise _Fallback
    if not 0 <= v < _U64:
        raise _Fallback
    return v


def _text(d: dict, key: str) -> str:
    v = d.get(key)
    if v is None:
        return ""
    if type(v) is not str:
        raise _Fallback
    return v


def _add_metric_json(b: MetricBuilder, m: Any, path: str) -> None:
    if type(m) is not dict or not m.keys() <= _METRIC_KEYS:
        raise _Fallback
    which = "gauge" if "gauge" in m else "sum" if "sum" in m else None
    if which is None:
        return  # a metric with no data carries no points
    if "gauge" in m and "sum" in m:
        raise _Fallback
    data = m[which]
    if type(data) is not dict or not data.keys() <= _DATA_KEYS:
        raise _Fallback
    points = data.get("dataPoints") or []
    if type(points) is not list:
        raise _Fallback
    name, desc, unit = _text(m, "name"), _text(m, "description"), _text(m, "unit")
    a = b.attrs
    meta = a.index_json(m.get("metadata"), f"{path}.metadata")
    if which == "sum":
        temp = data.get("aggregationTemporality", 0)
        temp = _TEMPORALITY.get(temp, temp) if type(temp) is str else temp
        mono = data.get("isMonotonic", False)
        if type(temp) is not int or not -(2**31) <= temp < 2**31 or type(mono) is not bool:
            raise _Fallback
    k = b.kinds[which]
    ctx = len(b.ctx["service_name"]) - 1
    c_name, c_desc, c_unit = k.col("metric_name").append, k.col("description").append, k.col("unit").append
    c_start, c_time, c_flags = k.col("start_time").append, k.col("time").append, k.col("flags").append
    c_val, c_int = k.col("value").append, k.col("int_value").append
    m_idx, m_off = k.meta.idx, k.meta.offsets
    a_idx, a_off = k.attrs.idx, k.attrs.offsets
    index = a.index_json
    for pi, p in enumerate(points):
        if type(p) is not dict or not p.keys() <= _POINT_KEYS:
            raise _Fallback
        k.ctx.append(ctx)
        c_name(name)
        c_desc(desc)
        c_unit(unit)
        m_idx.extend(meta)
        m_off.append(len(m_idx))
        attrs = p.get("attributes")
        if attrs:
            a_idx.extend(index(attrs, f"{path}.{which}.dataPoints[{pi}].attributes"))
        a_off.append(len(a_idx))
        c_start(_time(p.get("startTimeUnixNano")))
        c_time(_time(p.get("timeUnixNano")))
        flags = p.get("flags", 0)
        if type(flags) is not int or not 0 <= flags < 2**32:
            raise _Fallback
        c_flags(flags)
        d, i = p.get("asDouble"), p.get("asInt")
        if d is not None:
            if i is not None or (type(d) is not float and type(d) is not int):
                raise _Fallback
            c_val(float(d))
            c_int(None)
        elif i is not None:
            if type(i) is str and i.lstrip("-").isascii() and i.lstrip("-").isdigit():
                i = int(i)
            elif type(i) is not int:
                raise _Fallback
            if not _I64_LO <= i < _I64_HI:
                raise _Fallback
            c_val(float(i))
            c_int(i)
        else:
            c_val(None)
            c_int(None)
        k.ex_offsets.append(len(k.ex_idx))
    if which == "sum":
        n = len(points)
        k.col("aggregation_temporality").extend([temp] * n)
        k.col("is_monotonic").extend([mono] * n)
    b.n += len(points)


def json_metrics_batches(doc: dict, batch_rows: int) -> list[dict[str, pa.Table]] | None:
    """Staging tables of an OTLP/JSON metrics request read straight from the JSON, when it
    holds only gauges and sums in the canonical camelCase form without exemplars (what the
    Collector's file exporter writes for most metrics); ``None`` when it needs the full path
    (which also gives the precise error for anything invalid)."""
    try:
        out = []
        b = MetricBuilder()
        rms = doc.get("resourceMetrics")
        if type(rms) is not list or len(doc) != 1:
            raise _Fallback
        for ri, rm in enumerate(rms):
            if (
                type(rm) is not dict
                or not rm.keys() <= _RM_KEYS
                or type(rm.get("scopeMetrics", [])) is not list
            ):
                raise _Fallback
            for si, sm in enumerate(rm.get("scopeMetrics") or []):
                if (
                    type(sm) is not dict
                    or not sm.keys() <= _SM_KEYS
                    or type(sm.get("metrics", [])) is not list
                ):
                    raise _Fallback
                path = f"resourceMetrics[{ri}].scopeMetrics[{si}]"
                open_for = None
                for mi, m in enumerate(sm.get("metrics") or []):
                    if b.n >= batch_rows:
                        out.append(b.tables())
                        b = MetricBuilder()
                    if open_for is not b:
                        b.open_context_json(rm, f"resourceMetrics[{ri}]", sm.get("scope"), f"{path}.scope")
                        b.set_scope_schema_json(sm, path)
                        open_for = b
                    _add_metric_json(b, m, f"{path}.metrics[{mi}]")
        if b.n:
            out.append(b.tables())
        return out
    except (_Fallback, DecodeError, AttributeError, TypeError):
        return None
