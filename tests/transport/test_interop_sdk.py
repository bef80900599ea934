"""Interop with the official OpenTelemetry Python SDK exporters (gRPC and HTTP): every field arrives.

Each exporter is wrapped in a tee that keeps what the SDK handed it; the SDK's own OTLP
encoder turns that into the reference request, loaded into a second Lab from bytes. The
receiver's tables must equal the reference tables column for column (load ids aside).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otlp_lab import Lab

RESOURCE = {
    "service.name": "interop",
    "service.version": "2.1",
    "host.cores": 2,
    "deployment.canary": True,
    "cpu.share": 0.25,
    "zones": ("a", "b"),
}
ATTRS = {
    "str": "v",
    "int": -7,
    "float": 1.5,
    "bool": False,
    "strs": ("x", "y"),
    "ints": (1, 2, 3),
    "floats": (0.5,),
    "bools": (True,),
}
TABLES = {
    "traces": ("spans", "span_events", "span_links"),
    "metrics": ("metric_sum", "metric_gauge", "metric_histogram", "metric_exp_histogram"),
    "logs": ("logs",),
}


def _exporter(signal: str, protocol: str, rx):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        cls = {"traces": OTLPSpanExporter, "metrics": OTLPMetricExporter, "logs": OTLPLogExporter}[signal]
        return cls(endpoint=rx.grpc_endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    cls = {"traces": OTLPSpanExporter, "metrics": OTLPMetricExporter, "logs": OTLPLogExporter}[signal]
    return cls(endpoint=f"{rx.http_endpoint}/v1/{signal}", compression=Compression.Gzip)


class _SpanTee(SpanExporter):
    def __init__(self, inner):
        self.inner, self.requests = inner, []

    def export(self, spans):
        self.requests.append(encode_spans(spans).SerializeToString())
        return self.inner.export(spans)

    def shutdown(self):
        self.inner.shutdown()


class _MetricTee(MetricExporter):
    def __init__(self, inner):
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner, self.requests = inner, []

    def export(self, metrics_data, timeout_millis: float = 10_000, **kw) -> MetricExportResult:
        self.requests.append(encode_metrics(metrics_data).SerializeToString())
        return self.inner.export(metrics_data, timeout_millis=timeout_millis)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kw) -> None:
        self.inner.shutdown()


class _LogTee(LogRecordExporter):
    def __init__(self, inner):
        self.inner, self.requests = inner, []

    def export(self, batch: Sequence):
        self.requests.append(encode_logs(batch).SerializeToString())
        return self.inner.export(batch)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        return True

    def shutdown(self):
        self.inner.shutdown()


def _traces(exporter) -> list[bytes]:
    tee = _SpanTee(exporter)
    provider = TracerProvider(
        resource=Resource.create(RESOURCE, schema_url="https://opentelemetry.io/schemas/1.26.0")
    )
    provider.add_span_processor(SimpleSpanProcessor(tee))
    tracer = provider.get_tracer(
        "interop.tests",
        "0.3",
        schema_url="https://opentelemetry.io/schemas/1.25.0",
        attributes={"scope.attr": "s"},
    )
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes=ATTRS) as root:
        root.add_event("started", {"queue.depth": 3, "ok": True})
        with tracer.start_as_current_span("db", kind=SpanKind.CLIENT) as db:
            db.set_status(Status(StatusCode.ERROR, "timeout after 5 s"))
            db.record_exception(TimeoutError("slow disk"))
        for kind in (SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
            with tracer.start_as_current_span(
                f"k-{kind.name}", kind=kind, links=[Link(root.get_span_context(), {"why": "fan-out"})]
            ):
                pass
        root.set_status(Status(StatusCode.OK))
    provider.shutdown()
    return tee.requests


def _metrics(exporter) -> list[bytes]:
    tee = _MetricTee(exporter)
    reader = PeriodicExportingMetricReader(tee, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create(RESOURCE),
        metric_readers=[reader],
        views=[
            View(
                instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation(max_size=20)
            )
        ],
    )
    meter = provider.get_meter("interop.meter", "1.0")
    counter = meter.create_counter("requests", unit="{request}", description="Requests served")
    updown = meter.create_up_down_counter("inflight")
    hist = meter.create_histogram("latency", unit="s", explicit_bucket_boundaries_advisory=[0.01, 0.1, 1.0])
    exp = meter.create_histogram("latency.exp", unit="s")
    gauge = meter.create_gauge("temperature", unit="Cel")
    meter.create_observable_gauge("queue.length", callbacks=[lambda _: [Observation(4, {"q": "a"})]])
    for i in range(10):
        counter.add(1 + i % 2, {"route": "/a" if i % 3 else "/b", "code": 200})
        updown.add(1 if i % 2 else -1)
        hist.record(0.005 * (i + 1), {"route": "/a"})
        exp.record(0.001 * (i + 1) ** 2)
        gauge.set(20.5 + i, {"room": "lab"})
    reader.force_flush()
    provider.shutdown()
    return tee.requests


def _logs(exporter) -> list[bytes]:
    tee = _LogTee(exporter)
    provider = LoggerProvider(resource=Resource.create(RESOURCE))
    provider.add_log_record_processor(SimpleLogRecordProcessor(tee))
    logger = provider.get_logger("interop.logger", "0.9")
    tracer_provider = TracerProvider()
    with tracer_provider.get_tracer("t").start_as_current_span("with-context"):
        logger.emit(
            timestamp=1_700_000_000_123_456_789,
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body="disk full",
            attributes=ATTRS,
        )
    logger.emit(
        timestamp=1_700_000_001_000_000_000,
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        body={"event": "login", "user": {"id": 7, "roles": ["a", "b"]}},
        attributes={"k": "v"},
        event_name="user.login",
    )
    logger.emit(severity_number=SeverityNumber.DEBUG, body=b"\x00\x01raw")
    provider.shutdown()
    return tee.requests


def _frame(lab: Lab, table: str):
    df = lab.sql(f"select * exclude (load_id) from {table}")
    return df.sort(df.columns)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("signal", ["traces", "metrics", "logs"])
def test_sdk_exporter_to_receiver_every_field_arrives(receiver, signal, protocol):
    sent = {"traces": _traces, "metrics": _metrics, "logs": _logs}[signal](
        _exporter(signal, protocol, receiver)
    )
    assert sent, "the SDK exported nothing"
    with Lab() as ref:
        for body in sent:
            ref.load_bytes(body, signal=signal)
        for table in TABLES[signal]:
            want, got = _frame(ref, table), _frame(receiver.lab, table)
            assert want.height > 0, f"the SDK sent no {table} rows: the comparison would prove nothing"
            assert got.equals(want), f"{table} differs:\nwant {want}\ngot {got}"
    stats = receiver.stats
    assert stats.accepted == len(sent) and stats.invalid == 0 and stats.rejected_items == 0


def test_sdk_fields_spot_check(receiver):
    """A readable spot check of what the generic comparison covers."""
    _traces(_exporter("traces", "grpc", receiver))
    spans = receiver.lab.sql(
        "select name, kind, status_code, status_message, attributes['int']::BIGINT i, attributes['strs']::VARCHAR[] strs, "
        "resource_attributes['host.cores']::BIGINT cores, scope_name, scope_version, scope_schema_url, resource_schema_url "
        "from spans order by name"
    )
    root = spans.filter(spans["name"] == "root").row(0, named=True)
    assert (root["kind"], root["status_code"], root["i"], root["strs"], root["cores"]) == (
        "SERVER",
        "OK",
        -7,
        ["x", "y"],
        2,
    )
    assert (root["scope_name"], root["scope_version"]) == ("interop.tests", "0.3")
    assert root["resource_schema_url"].endswith("1.26.0") and root["scope_schema_url"].endswith("1.25.0")
    db = spans.filter(spans["name"] == "db").row(0, named=True)
    assert (db["kind"], db["status_code"], db["status_message"]) == ("CLIENT", "ERROR", "timeout after 5 s")
    assert set(spans["kind"]) == {"SERVER", "CLIENT", "PRODUCER", "CONSUMER", "INTERNAL"}
    ev = receiver.lab.sql("select name from span_events order by name")["name"].to_list()
    assert ev == ["exception", "started"]
    assert receiver.lab.sql("select count(*) n from span_links")["n"][0] == 3
