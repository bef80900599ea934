"""Lightweight "views" of the OTLP trace and log messages, for fast decoding.

A view is a protobuf message with the same field numbers and wire types as the real
one, but with the nested messages we intern (attributes, status, resource, scope,
events, links, bodies) declared as ``bytes``. upb then parses them as raw byte
strings in C, and :class:`~otlp_lab.otlp._anyvalue.AttrTable` turns each *distinct*
byte string into columns once. This is what makes decoding fast in pure Python.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
_T = {
    "bytes": F.TYPE_BYTES,
    "string": F.TYPE_STRING,
    "int32": F.TYPE_INT32,
    "uint32": F.TYPE_UINT32,
    "fixed32": F.TYPE_FIXED32,
    "fixed64": F.TYPE_FIXED64,
}

# name: [(field name, number, type or message name, repeated?)]
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "TracesView": [("resource_spans", 1, ".otlp_lab.views.ResourceSpansView", True)],
    "ResourceSpansView": [
        ("resource", 1, "bytes", False),
        ("scope_spans", 2, ".otlp_lab.views.ScopeSpansView", True),
        ("schema_url", 3, "string", False),
    ],
    "ScopeSpansView": [
        ("scope", 1, "bytes", False),
        ("spans", 2, ".otlp_lab.views.SpanView", True),
        ("schema_url", 3, "string", False),
    ],
    "SpanView": [
        ("trace_id", 1, "bytes", False),
        ("span_id", 2, "bytes", False),
        ("trace_state", 3, "string", False),
        ("parent_span_id", 4, "bytes", False),
        ("name", 5, "string", False),
        ("kind", 6, "int32", False),
        ("start_time_unix_nano", 7, "fixed64", False),
        ("end_time_unix_nano", 8, "fixed64", False),
        ("attributes", 9, "bytes", True),
        ("dropped_attributes_count", 10, "uint32", False),
        ("events", 11, "bytes", True),
        ("dropped_events_count", 12, "uint32", False),
        ("links", 13, "bytes", True),
        ("dropped_links_count", 14, "uint32", False),
        ("status", 15, "bytes", False),
        ("flags", 16, "fixed32", False),
    ],
    "LogsView": [("resource_logs", 1, ".otlp_lab.views.ResourceLogsView", True)],
    "ResourceLogsView": [
        ("resource", 1, "bytes", False),
        ("scope_logs", 2, ".otlp_lab.views.ScopeLogsView", True),
        ("schema_url", 3, "string", False),
    ],
    "ScopeLogsView": [
        ("scope", 1, "bytes", False),
        ("log_records", 2, ".otlp_lab.views.LogRecordView", True),
        ("schema_url", 3, "string", False),
    ],
    "LogRecordView": [
        ("time_unix_nano", 1, "fixed64", False),
        ("severity_number", 2, "int32", False),
        ("severity_text", 3, "string", False),
        ("body", 5, "bytes", False),
        ("attributes", 6, "bytes", True),
        ("dropped_attributes_count", 7, "uint32", False),
        ("flags", 8, "fixed32", False),
        ("trace_id", 9, "bytes", False),
        ("span_id", 10, "bytes", False),
        ("observed_time_unix_nano", 11, "fixed64", False),
        ("event_name", 12, "string", False),
    ],
}


def _build() -> dict[str, type]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="otlp_lab_views.proto", package="otlp_lab.views", syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        m = fdp.message_type.add(name=name)
        for fname, num, typ, rep in fields:
            f = m.field.add(name=fname, number=num, label=_REP if rep else _OPT)
            if typ.startswith("."):
                f.type = F.TYPE_MESSAGE
                f.type_name = typ
            else:
                f.type = _T[typ]
    pool = descriptor_pool.DescriptorPool()
    fd = pool.Add(fdp)
    return {name: message_factory.GetMessageClass(fd.message_types_by_name[name]) for name in _MESSAGES}


_CLASSES = _build()
TracesView = _CLASSES["TracesView"]
LogsView = _CLASSES["LogsView"]
