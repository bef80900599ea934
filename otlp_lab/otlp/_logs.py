"""Logs: ``ExportLogsServiceRequest`` (protobuf view or OTLP/JSON dict) -> staging tables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from opentelemetry.proto.logs.v1.logs_pb2 import SeverityNumber

from otlp_lab.errors import DecodeError
from otlp_lab.otlp._batches import (
    AttrLists,
    Builder,
    check_id_lengths,
    ints,
    iter_json_batches,
    iter_pb_batches,
    json_get,
    json_str,
    json_u32,
    times,
)
from otlp_lab.otlp._json import json_time
from otlp_lab.otlp._kvbulk import RawKvLists
from otlp_lab.otlp._traces import enum_value, hex_id

_SEVERITY_BY_NAME = dict(SeverityNumber.items())


class LogBuilder(Builder):
    def __init__(self) -> None:
        super().__init__()
        self.time: list[int] = []
        self.observed: list[int] = []
        self.sev_num: list[int] = []
        self.sev_text: list[str] = []
        self.body: list[int] = []
        self.trace_id: list[bytes] = []
        self.span_id: list[bytes] = []
        self.flags: list[int] = []
        self.dropped: list[int] = []
        self.event_name: list[str] = []
        self.la = AttrLists()
        self.la_raw = RawKvLists()  # the protobuf path's: decoded in bulk by tables()

    def add_pb(self, records: Any) -> None:
        body = self.attrs.pb_any.__getitem__
        raws, offsets = self.la_raw.raws, self.la_raw.offsets
        for r in records:
            self.time.append(r.time_unix_nano)
            self.observed.append(r.observed_time_unix_nano)
            self.sev_num.append(r.severity_number)
            self.sev_text.append(r.severity_text)
            self.body.append(body(r.body))
            self.trace_id.append(r.trace_id)
            self.span_id.append(r.span_id)
            self.flags.append(r.flags)
            self.dropped.append(r.dropped_attributes_count)
            self.event_name.append(r.event_name)
            raws.extend(r.attributes)
            offsets.append(len(raws))
        self.n += len(records)

    def add_json(self, records: list, path: str, offset: int = 0) -> None:
        a = self.attrs
        for k, r in enumerate(records, offset):
            p = f"{path}[{k}]"
            if not isinstance(r, dict):
                raise DecodeError(f"{p} must be a log record object. Got {type(r).__name__} instead.")
            self.time.append(json_time(json_get(r, "timeUnixNano", "time_unix_nano"), f"{p}.timeUnixNano"))
            self.observed.append(
                json_time(
                    json_get(r, "observedTimeUnixNano", "observed_time_unix_nano"),
                    f"{p}.observedTimeUnixNano",
                )
            )
            self.sev_num.append(
                enum_value(
                    json_get(r, "severityNumber", "severity_number"), _SEVERITY_BY_NAME, f"{p}.severityNumber"
                )
            )
            self.sev_text.append(json_str(r, "severityText", "severity_text", p))
            self.body.append(a.index_json_value(r.get("body"), f"{p}.body"))
            self.trace_id.append(hex_id(json_get(r, "traceId", "trace_id"), f"{p}.traceId"))
            self.span_id.append(hex_id(json_get(r, "spanId", "span_id"), f"{p}.spanId"))
            self.flags.append(json_u32(r, "flags", "flags", p))
            self.dropped.append(json_u32(r, "droppedAttributesCount", "dropped_attributes_count", p))
            self.event_name.append(json_str(r, "eventName", "event_name", p))
            self.la.idx.extend(a.index_json(r.get("attributes"), f"{p}.attributes"))
            self.la.offsets.append(len(self.la.idx))
        self.n += len(records)

    def tables(self) -> dict[str, pa.Table]:
        keys, vals = self.attrs.to_arrow()
        tid = pa.array(self.trace_id, pa.binary())
        sid = pa.array(self.span_id, pa.binary())
        check_id_lengths(tid, "trace_id", (0, 16))
        check_id_lengths(sid, "span_id", (0, 8))
        ak, av = self.la_raw.arrays() if len(self.la_raw.offsets) > 1 else self.la.arrays(keys, vals)
        cols = {
            "time": times(self.time, "time_unix_nano"),
            "observed_time": times(self.observed, "observed_time_unix_nano"),
            "severity_number": pa.array(self.sev_num, pa.int32()),
            "severity_text": pa.array(self.sev_text, pa.string()),
            "body": vals.take(pa.array(self.body, pa.int32())),
            "trace_id": tid,
            "span_id": sid,
            "flags": ints(self.flags, "flags"),
            "dropped_attributes_count": ints(self.dropped, "dropped_attributes_count"),
            "event_name": pa.array(self.event_name, pa.string()),
            "attr_keys": ak,
            "attr_vals": av,
        }
        cols.update(self.context_columns())
        return {"logs": pa.table(cols), "_ctx": self.context_table(keys, vals)}


def iter_logs_pb(view: Any, batch_rows: int) -> Iterator[dict[str, pa.Table]]:
    """Staging tables for a parsed ``LogsView``, at most ``batch_rows`` records each."""
    groups = ((rl, sl, sl.log_records) for rl in view.resource_logs for sl in rl.scope_logs)
    return iter_pb_batches(LogBuilder, groups, LogBuilder.add_pb, batch_rows)


def iter_logs_json(doc: dict, batch_rows: int) -> Iterator[dict[str, pa.Table]]:
    """Staging tables for one OTLP/JSON ``ExportLogsServiceRequest`` object."""
    return iter_json_batches(
        LogBuilder, doc, ("resourceLogs", "scopeLogs", "logRecords"), LogBuilder.add_json, batch_rows
    )
