"""The Lab's tables, and the SQL that turns the codec's staging batches into them.

Attribute lists are ``MAP(VARCHAR, VARIANT)``: ``attributes['http.route']`` returns the
value with its OTLP type (string, bool, int64, double, blob, array, object).
"""

from __future__ import annotations

from otlp_lab.otlp.staging import SPAN_KINDS, STATUS_CODES, TEMPORALITIES

ATTR = "MAP(VARCHAR, VARIANT)"

CONTEXT_DDL = f"""
    service_name VARCHAR,
    resource_attributes {ATTR},
    resource_dropped_attributes_count UINTEGER,
    resource_schema_url VARCHAR,
    scope_name VARCHAR,
    scope_version VARCHAR,
    scope_attributes {ATTR},
    scope_dropped_attributes_count UINTEGER,
    scope_schema_url VARCHAR,
    load_id INTEGER"""

CONTEXT_SELECT = """
    service_name,
    resource_attributes,
    resource_dropped_attributes_count,
    resource_schema_url,
    scope_name,
    scope_version,
    scope_attributes,
    scope_dropped_attributes_count,
    scope_schema_url,
    $load_id"""

# The batch's resource+scope contexts with their maps built once each (joined to rows on ctx).
CONTEXT_CTE = """WITH _ctx AS MATERIALIZED (SELECT
    ctx, service_name, _otlp_map(resource_keys, resource_vals) AS resource_attributes,
    resource_dropped_attributes_count, resource_schema_url, scope_name, scope_version,
    _otlp_map(scope_keys, scope_vals) AS scope_attributes, scope_dropped_attributes_count, scope_schema_url
    FROM _ctx_stage)"""

EXEMPLARS = f"STRUCT(time TIMESTAMP_NS, value DOUBLE, int_value BIGINT, span_id VARCHAR, trace_id VARCHAR, filtered_attributes {ATTR})[]"
_METRIC_COMMON_DDL = f"""
    metric_name VARCHAR,
    description VARCHAR,
    unit VARCHAR,
    metadata {ATTR},
    attributes {ATTR},
    start_time TIMESTAMP_NS,
    time TIMESTAMP_NS,
    flags UINTEGER,"""
_METRIC_COMMON_SELECT = """
    metric_name, description, unit, _otlp_map(meta_keys, meta_vals), _otlp_map(attr_keys, attr_vals),
    start_time, time, flags,"""
_EXEMPLARS_SELECT = """
    list_transform(exemplars, lambda e: {'time': e.time, 'value': e.value, 'int_value': e.int_value,
        'span_id': nullif(lower(hex(e.span_id)), ''), 'trace_id': nullif(lower(hex(e.trace_id)), ''),
        'filtered_attributes': _otlp_map(e.attr_keys, e.attr_vals)}),"""


def _enum_sql(col: str, names: tuple[str, ...]) -> str:
    """SQL naming an OTLP enum integer (the number itself when unknown)."""
    listed = ", ".join(f"'{n}'" for n in names)
    return (
        f"CASE WHEN {col} BETWEEN 0 AND {len(names) - 1} THEN [{listed}][{col} + 1] ELSE {col}::VARCHAR END"
    )


_TEMPORALITY = _enum_sql("aggregation_temporality", TEMPORALITIES)

MACROS = [
    """CREATE OR REPLACE TEMP MACRO _otlp_value(v) AS CASE v.t
        WHEN 1 THEN v.s::VARIANT WHEN 2 THEN v.b::VARIANT WHEN 3 THEN v.i::VARIANT
        WHEN 4 THEN v.d::VARIANT WHEN 5 THEN v.j::JSON::VARIANT WHEN 6 THEN v.j::JSON::VARIANT
        WHEN 7 THEN v.x::VARIANT ELSE NULL::VARIANT END""",
    "CREATE OR REPLACE TEMP MACRO _otlp_map(ks, vs) AS map(ks, list_transform(vs, lambda v: _otlp_value(v)))",
    # VARIANT -> the codec's typed struct (the encoder's way back). No subquery: the macro runs inside
    # list_transform lambdas. variant_typeof names booleans BOOL_TRUE/BOOL_FALSE, and JSON-parsed
    # integers (nested values, frames read from JSON text) come back as UINT64.
    """CREATE OR REPLACE TEMP MACRO _otlp_tag(v) AS CASE WHEN v IS NULL THEN 0 ELSE CASE variant_typeof(v)
        WHEN 'VARCHAR' THEN 1 WHEN 'BOOL_TRUE' THEN 2 WHEN 'BOOL_FALSE' THEN 2 WHEN 'BOOLEAN' THEN 2
        WHEN 'INT64' THEN 3 WHEN 'INT32' THEN 3 WHEN 'INT16' THEN 3 WHEN 'INT8' THEN 3
        WHEN 'UINT8' THEN 3 WHEN 'UINT16' THEN 3 WHEN 'UINT32' THEN 3 WHEN 'UINT64' THEN 3
        WHEN 'DOUBLE' THEN 4 WHEN 'FLOAT' THEN 4 WHEN 'BLOB' THEN 7
        ELSE CASE WHEN variant_typeof(v) LIKE 'ARRAY%' THEN 5 WHEN variant_typeof(v) LIKE 'OBJECT%' THEN 6 ELSE 1 END
        END END""",
    """CREATE OR REPLACE TEMP MACRO _otlp_typed_as(v, t) AS {
        't': t::TINYINT,
        's': CASE WHEN t = 1 THEN v::VARCHAR END,
        'b': CASE WHEN t = 2 THEN v::BOOLEAN END,
        'i': CASE WHEN t = 3 THEN v::BIGINT END,
        'd': CASE WHEN t = 4 THEN v::DOUBLE END,
        'x': CASE WHEN t = 7 THEN v::BLOB END,
        'j': CASE WHEN t IN (5, 6) THEN v::JSON::VARCHAR END}""",
    "CREATE OR REPLACE TEMP MACRO _otlp_typed(v) AS _otlp_typed_as(v, _otlp_tag(v))",
    # A map's values as typed structs, variant_typeof evaluated once per value (a macro's
    # argument is expanded at each use, so _otlp_typed(x) would evaluate it up to 20 times).
    """CREATE OR REPLACE TEMP MACRO _otlp_tag_of(ty) AS CASE
        WHEN ty = 'VARCHAR' THEN 1 WHEN ty IN ('BOOL_TRUE', 'BOOL_FALSE', 'BOOLEAN') THEN 2
        WHEN ty IN ('INT64', 'INT32', 'INT16', 'INT8', 'UINT8', 'UINT16', 'UINT32', 'UINT64') THEN 3
        WHEN ty IN ('DOUBLE', 'FLOAT') THEN 4 WHEN ty = 'BLOB' THEN 7 WHEN ty LIKE 'ARRAY%' THEN 5
        WHEN ty LIKE 'OBJECT%' THEN 6 ELSE 1 END""",
    """CREATE OR REPLACE TEMP MACRO _otlp_vals(m) AS list_transform(
        list_transform(map_values(m), lambda v: {'v': v, 't': CASE WHEN v IS NULL THEN 0 ELSE _otlp_tag_of(variant_typeof(v)) END}),
        lambda x: _otlp_typed_as(x.v, x.t))""",
    "CREATE OR REPLACE TEMP MACRO _otlp_kv(m) AS {'k': map_keys(m), 'v': _otlp_vals(m)}",
]

TABLES: dict[str, str] = {
    "loads": """
        load_id INTEGER PRIMARY KEY,
        source VARCHAR,
        sha256 VARCHAR,
        nbytes BIGINT,
        loaded_at TIMESTAMP,
        requests INTEGER,
        rows BIGINT,
        skipped INTEGER""",
    "spans": f"""
        trace_id VARCHAR,
        span_id VARCHAR,
        parent_span_id VARCHAR,
        trace_state VARCHAR,
        name VARCHAR,
        kind VARCHAR,
        start_time TIMESTAMP_NS,
        end_time TIMESTAMP_NS,
        duration_ns BIGINT,
        status_code VARCHAR,
        status_message VARCHAR,
        attributes {ATTR},
        flags UINTEGER,
        dropped_attributes_count UINTEGER,
        dropped_events_count UINTEGER,
        dropped_links_count UINTEGER,{CONTEXT_DDL}""",
    "span_events": f"""
        trace_id VARCHAR,
        span_id VARCHAR,
        seq INTEGER,
        time TIMESTAMP_NS,
        name VARCHAR,
        service_name VARCHAR,
        attributes {ATTR},
        dropped_attributes_count UINTEGER,
        load_id INTEGER""",
    "span_links": f"""
        trace_id VARCHAR,
        span_id VARCHAR,
        seq INTEGER,
        linked_trace_id VARCHAR,
        linked_span_id VARCHAR,
        trace_state VARCHAR,
        flags UINTEGER,
        attributes {ATTR},
        dropped_attributes_count UINTEGER,
        load_id INTEGER""",
    "logs": f"""
        time TIMESTAMP_NS,
        observed_time TIMESTAMP_NS,
        severity_number INTEGER,
        severity_text VARCHAR,
        body VARIANT,
        trace_id VARCHAR,
        span_id VARCHAR,
        flags UINTEGER,
        dropped_attributes_count UINTEGER,
        event_name VARCHAR,
        attributes {ATTR},{CONTEXT_DDL}""",
    "metric_gauge": f"""{_METRIC_COMMON_DDL}
        value DOUBLE,
        int_value BIGINT,
        exemplars {EXEMPLARS},{CONTEXT_DDL}""",
    "metric_sum": f"""{_METRIC_COMMON_DDL}
        value DOUBLE,
        int_value BIGINT,
        aggregation_temporality VARCHAR,
        is_monotonic BOOLEAN,
        exemplars {EXEMPLARS},{CONTEXT_DDL}""",
    "metric_histogram": f"""{_METRIC_COMMON_DDL}
        count UBIGINT,
        sum DOUBLE,
        min DOUBLE,
        max DOUBLE,
        bucket_counts UBIGINT[],
        explicit_bounds DOUBLE[],
        aggregation_temporality VARCHAR,
        exemplars {EXEMPLARS},{CONTEXT_DDL}""",
    "metric_exp_histogram": f"""{_METRIC_COMMON_DDL}
        count UBIGINT,
        sum DOUBLE,
        min DOUBLE,
        max DOUBLE,
        scale INTEGER,
        zero_count UBIGINT,
        zero_threshold DOUBLE,
        positive_offset INTEGER,
        positive_bucket_counts UBIGINT[],
        negative_offset INTEGER,
        negative_bucket_counts UBIGINT[],
        aggregation_temporality VARCHAR,
        exemplars {EXEMPLARS},{CONTEXT_DDL}""",
    "metric_summary": f"""{_METRIC_COMMON_DDL}
        count UBIGINT,
        sum DOUBLE,
        quantile_values STRUCT(quantile DOUBLE, value DOUBLE)[],{CONTEXT_DDL}""",
}

SIGNAL_TABLES = [t for t in TABLES if t != "loads"]
METRIC_TABLES = {
    "gauge": "metric_gauge",
    "sum": "metric_sum",
    "histogram": "metric_histogram",
    "exponential_histogram": "metric_exp_histogram",
    "exp_histogram": "metric_exp_histogram",
    "summary": "metric_summary",
}

_KIND = _enum_sql("kind", SPAN_KINDS)
_STATUS = _enum_sql("status_code", STATUS_CODES)

INSERTS: dict[str, str] = {
    "spans": f"""INSERT INTO spans {CONTEXT_CTE} SELECT
        lower(hex(trace_id)), lower(hex(span_id)), nullif(lower(hex(parent_span_id)), ''), trace_state, name,
        {_KIND}, start_time, end_time, epoch_ns(end_time) - epoch_ns(start_time), {_STATUS}, status_message,
        _otlp_map(attr_keys, attr_vals), flags, dropped_attributes_count, dropped_events_count, dropped_links_count,
        {CONTEXT_SELECT}
        FROM _stage JOIN _ctx USING (ctx)""",
    "span_events": """INSERT INTO span_events SELECT
        lower(hex(trace_id)), lower(hex(span_id)), seq, time, name, service_name, _otlp_map(attr_keys, attr_vals),
        dropped_attributes_count, $load_id FROM _stage""",
    "span_links": """INSERT INTO span_links SELECT
        lower(hex(trace_id)), lower(hex(span_id)), seq, lower(hex(linked_trace_id)), lower(hex(linked_span_id)),
        trace_state, flags, _otlp_map(attr_keys, attr_vals), dropped_attributes_count, $load_id FROM _stage""",
    "logs": f"""INSERT INTO logs {CONTEXT_CTE} SELECT
        time, observed_time, severity_number, severity_text, _otlp_value(body),
        nullif(lower(hex(trace_id)), ''), nullif(lower(hex(span_id)), ''), flags, dropped_attributes_count, event_name,
        _otlp_map(attr_keys, attr_vals), {CONTEXT_SELECT}
        FROM _stage JOIN _ctx USING (ctx)""",
    "metric_gauge": f"""INSERT INTO metric_gauge {CONTEXT_CTE} SELECT {_METRIC_COMMON_SELECT}
        value, int_value, {_EXEMPLARS_SELECT} {CONTEXT_SELECT} FROM _stage JOIN _ctx USING (ctx)""",
    "metric_sum": f"""INSERT INTO metric_sum {CONTEXT_CTE} SELECT {_METRIC_COMMON_SELECT}
        value, int_value, {_TEMPORALITY}, is_monotonic, {_EXEMPLARS_SELECT} {CONTEXT_SELECT} FROM _stage JOIN _ctx USING (ctx)""",
    "metric_histogram": f"""INSERT INTO metric_histogram {CONTEXT_CTE} SELECT {_METRIC_COMMON_SELECT}
        count, sum, min, max, bucket_counts, explicit_bounds, {_TEMPORALITY}, {_EXEMPLARS_SELECT} {CONTEXT_SELECT} FROM _stage JOIN _ctx USING (ctx)""",
    "metric_exp_histogram": f"""INSERT INTO metric_exp_histogram {CONTEXT_CTE} SELECT {_METRIC_COMMON_SELECT}
        count, sum, min, max, scale, zero_count, zero_threshold, positive_offset, positive_bucket_counts,
        negative_offset, negative_bucket_counts, {_TEMPORALITY}, {_EXEMPLARS_SELECT} {CONTEXT_SELECT} FROM _stage JOIN _ctx USING (ctx)""",
    "metric_summary": f"""INSERT INTO metric_summary {CONTEXT_CTE} SELECT {_METRIC_COMMON_SELECT}
        count, sum, quantile_values, {CONTEXT_SELECT} FROM _stage JOIN _ctx USING (ctx)""",
}
