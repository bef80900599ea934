"""The staging schema: the Arrow tables the codec and the simulator hand the store.

The codec (OTLP protobuf / JSON) and the simulator both produce *batches*: a dict of
table name -> ``pyarrow.Table`` in the schemas below, which :meth:`otlp_lab.Lab.load_batches`
inserts in one transaction. Ids are raw bytes (16 for a trace, 8 for a span; empty when
absent), times ``timestamp[ns]`` (null when unset), enums the OTLP integers (see the
constants), and attribute lists two parallel lists: keys, and :data:`VALUE_TYPE` structs
with one slot per OTLP ``AnyValue`` type (``t`` says which; arrays and kvlists as JSON in
``j``). Resource and scope are stored once per batch in ``_ctx`` (:data:`CONTEXT`), and
each row points at its context with ``ctx``.

This module is the one place these shapes and constants are spelled out; the store's SQL
reads exactly these columns.
"""

from __future__ import annotations

import pyarrow as pa

from otlp_lab.errors import SchemaError

__all__ = [
    "CONTEXT",
    "EXEMPLAR_TYPE",
    "I64",
    "KEYS_TYPE",
    "KIND_CLIENT",
    "KIND_CONSUMER",
    "KIND_INTERNAL",
    "KIND_PRODUCER",
    "KIND_SERVER",
    "KIND_UNSPECIFIED",
    "METRIC_KINDS",
    "SCHEMAS",
    "SEVERITY_NUMBERS",
    "SPAN_KINDS",
    "STATUS_CODES",
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_UNSET",
    "TABLE_OF_KIND",
    "TEMPORALITIES",
    "TS",
    "T_ARRAY",
    "T_BOOL",
    "T_BYTES",
    "T_DOUBLE",
    "T_EMPTY",
    "T_INT",
    "T_KVLIST",
    "T_STR",
    "VALS_TYPE",
    "VALUE_TYPE",
    "check_batch",
]

# ---------------------------------------------------------------- enums (the OTLP integers)

SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
"""``Span.SpanKind`` names by value (the store shows them without the ``SPAN_KIND_`` prefix)."""
KIND_UNSPECIFIED, KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = range(6)
STATUS_CODES = ("UNSET", "OK", "ERROR")
"""``Status.StatusCode`` names by value."""
STATUS_UNSET, STATUS_OK, STATUS_ERROR = range(3)
TEMPORALITIES = ("UNSPECIFIED", "DELTA", "CUMULATIVE")
"""``AggregationTemporality`` names by value."""
SEVERITY_NUMBERS = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
"""The first ``SeverityNumber`` of each severity range."""
METRIC_KINDS = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
TABLE_OF_KIND = {
    "gauge": "metric_gauge",
    "sum": "metric_sum",
    "histogram": "metric_histogram",
    "exponential_histogram": "metric_exp_histogram",
    "summary": "metric_summary",
}

# ---------------------------------------------------------------- attribute values

T_EMPTY, T_STR, T_BOOL, T_INT, T_DOUBLE, T_ARRAY, T_KVLIST, T_BYTES = range(8)
"""The ``t`` tag of a :data:`VALUE_TYPE`: which slot holds the value."""
VALUE_TYPE = pa.struct(
    [
        ("t", pa.int8()),
        ("s", pa.string()),
        ("b", pa.bool_()),
        ("i", pa.int64()),
        ("d", pa.float64()),
        ("x", pa.binary()),
        ("j", pa.string()),  # arrays and kvlists as JSON (bytes inside them as base64 text)
    ]
)
KEYS_TYPE = pa.list_(pa.string())
VALS_TYPE = pa.list_(VALUE_TYPE)

# ---------------------------------------------------------------- tables

I64 = pa.int64()
TS = pa.timestamp("ns")
_ATTRS = [("attr_keys", KEYS_TYPE), ("attr_vals", VALS_TYPE)]
_CTX = ("ctx", pa.int32())

CONTEXT = pa.schema(
    [
        ("ctx", pa.int32()),
        ("service_name", pa.string()),
        ("resource_keys", KEYS_TYPE),
        ("resource_vals", VALS_TYPE),
        ("resource_dropped_attributes_count", I64),
        ("resource_schema_url", pa.string()),
        ("scope_name", pa.string()),
        ("scope_version", pa.string()),
        ("scope_keys", KEYS_TYPE),
        ("scope_vals", VALS_TYPE),
        ("scope_dropped_attributes_count", I64),
        ("scope_schema_url", pa.string()),
    ]
)

EXEMPLAR_TYPE = pa.struct(
    [
        ("time", TS),
        ("value", pa.float64()),
        ("int_value", I64),
        ("span_id", pa.binary()),
        ("trace_id", pa.binary()),
        *_ATTRS,
    ]
)

_METRIC = [
    ("metric_name", pa.string()),
    ("description", pa.string()),
    ("unit", pa.string()),
    ("start_time", TS),
    ("time", TS),
    ("flags", I64),
    *_ATTRS,
    ("meta_keys", KEYS_TYPE),
    ("meta_vals", VALS_TYPE),
]
_NUMBER = [("value", pa.float64()), ("int_value", I64)]
_COUNTS = [("count", pa.uint64()), ("sum", pa.float64())]
_MINMAX = [("min", pa.float64()), ("max", pa.float64())]
_TEMPORALITY = ("aggregation_temporality", pa.int32())
_EXEMPLARS = ("exemplars", pa.list_(EXEMPLAR_TYPE))
_U64S = pa.list_(pa.uint64())

SCHEMAS: dict[str, pa.Schema] = {
    "_ctx": CONTEXT,
    "spans": pa.schema(
        [
            ("trace_id", pa.binary()),
            ("span_id", pa.binary()),
            ("parent_span_id", pa.binary()),
            ("trace_state", pa.string()),
            ("name", pa.string()),
            ("kind", pa.int32()),
            ("start_time", TS),
            ("end_time", TS),
            ("status_code", pa.int32()),
            ("status_message", pa.string()),
            ("flags", I64),
            ("dropped_attributes_count", I64),
            ("dropped_events_count", I64),
            ("dropped_links_count", I64),
            *_ATTRS,
            _CTX,
        ]
    ),
    "span_events": pa.schema(
        [
            ("trace_id", pa.binary()),
            ("span_id", pa.binary()),
            ("seq", pa.int32()),
            ("time", TS),
            ("name", pa.string()),
            ("service_name", pa.string()),
            ("dropped_attributes_count", I64),
            *_ATTRS,
        ]
    ),
    "span_links": pa.schema(
        [
            ("trace_id", pa.binary()),
            ("span_id", pa.binary()),
            ("seq", pa.int32()),
            ("linked_trace_id", pa.binary()),
            ("linked_span_id", pa.binary()),
            ("trace_state", pa.string()),
            ("flags", I64),
            ("dropped_attributes_count", I64),
            *_ATTRS,
        ]
    ),
    "logs": pa.schema(
        [
            ("time", TS),
            ("observed_time", TS),
            ("severity_number", pa.int32()),
            ("severity_text", pa.string()),
            ("body", VALUE_TYPE),
            ("trace_id", pa.binary()),
            ("span_id", pa.binary()),
            ("flags", I64),
            ("dropped_attributes_count", I64),
            ("event_name", pa.string()),
            *_ATTRS,
            _CTX,
        ]
    ),
    "metric_gauge": pa.schema([*_METRIC, *_NUMBER, _EXEMPLARS, _CTX]),
    "metric_sum": pa.schema(
        [*_METRIC, *_NUMBER, _TEMPORALITY, ("is_monotonic", pa.bool_()), _EXEMPLARS, _CTX]
    ),
    "metric_histogram": pa.schema(
        [
            *_METRIC,
            *_COUNTS,
            *_MINMAX,
            ("bucket_counts", _U64S),
            ("explicit_bounds", pa.list_(pa.float64())),
            _TEMPORALITY,
            _EXEMPLARS,
            _CTX,
        ]
    ),
    "metric_exp_histogram": pa.schema(
        [
            *_METRIC,
            *_COUNTS,
            *_MINMAX,
            ("scale", pa.int32()),
            ("zero_count", pa.uint64()),
            ("zero_threshold", pa.float64()),
            ("positive_offset", pa.int32()),
            ("positive_bucket_counts", _U64S),
            ("negative_offset", pa.int32()),
            ("negative_bucket_counts", _U64S),
            _TEMPORALITY,
            _EXEMPLARS,
            _CTX,
        ]
    ),
    "metric_summary": pa.schema(
        [
            *_METRIC,
            *_COUNTS,
            ("quantile_values", pa.list_(pa.struct([("quantile", pa.float64()), ("value", pa.float64())]))),
            _CTX,
        ]
    ),
}
"""Every staging table by name (the same names as the Lab's tables; ``_ctx`` is the contexts)."""


def check_batch(batch: dict[str, pa.Table]) -> None:
    """Raise :class:`~otlp_lab.errors.SchemaError` naming the table and column where ``batch`` departs from :data:`SCHEMAS`.

    Column order does not matter; names and types do.
    """
    for name, table in batch.items():
        want = SCHEMAS.get(name)
        if want is None:
            raise SchemaError(f"staging table {name!r} is not one of {sorted(SCHEMAS)}")
        got = {f.name: f.type for f in table.schema}
        need = {f.name: f.type for f in want}
        if set(got) != set(need):
            raise SchemaError(
                f"staging table {name!r}: missing {sorted(set(need) - set(got))}, extra {sorted(set(got) - set(need))}"
            )
        for col, typ in need.items():
            if got[col] != typ:
                raise SchemaError(
                    f"staging table {name!r}: column {col!r} is {got[col]}, the schema says {typ}"
                )
