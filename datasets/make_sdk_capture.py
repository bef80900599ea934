#!/usr/bin/env python3
"""Make a small, real OTLP capture with the official OpenTelemetry Python SDK.

Three instrumented processes-in-one talk real HTTP over loopback:

* ``shop-loadgen`` sends ``REQUESTS`` sequential ``GET /checkout`` requests;
* ``shop-frontend`` (its own ``ThreadingHTTPServer``) handles ``/checkout`` and calls
* ``shop-payment`` (a second server) ``GET /pay``, which sleeps a few ms and fails with
  HTTP 500 for a deterministic ~10% of requests (seeded ``random.Random``).

Each service has its own ``TracerProvider``, ``MeterProvider`` and ``LoggerProvider``
(resource ``service.name`` set), instrumented by hand with the SDK APIs: CLIENT/SERVER
spans with HTTP semantic-convention attributes, W3C trace context propagated through
the HTTP headers, ERROR status and ``exception`` events on failures, span links,
a request counter, a duration histogram with explicit buckets, an up-down counter,
a gauge, and trace-correlated log records.

The SDK's own OTLP encoders (``opentelemetry.exporter.otlp.proto.common``) turn each
export batch into an ``Export*ServiceRequest``, written like the Collector file
exporter does:

* ``<out>/{traces,metrics,logs}.binpb``: protobuf, each request prefixed by its length
  as a 4-byte big-endian unsigned integer;
* ``<out>/traces.jsonl``: one OTLP/JSON request per line (lowerCamelCase keys,
  trace/span ids as lowercase hex, 64-bit integers as strings, enums as integers).

Usage::

    .venv/bin/python datasets/make_sdk_capture.py [--out DIR] [--requests N] [--seed S]

Only the standard library and the OpenTelemetry packages are used; the network is
127.0.0.1 only, on ports picked by the OS.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import random
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.version import __version__ as SDK_VERSION
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

DEFAULT_OUT = Path(__file__).resolve().parent / "sdk-shop"
REQUESTS = 60
SEED = 39  # with 60 requests: payments 9, 17, 24, 29, 41 and 56 fail (exactly 10%)
FLUSH_EVERY = 20  # flush every pipeline after this many requests: one OTLP request per flush
FAILURE_RATE = 0.10
SCOPE = "otlp_lab.shop"  # instrumentation scope name used by every service
SCOPE_VERSION = "0.1.0"
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


# --------------------------------------------------------------------------------------
# Collector-file-exporter-style output
# --------------------------------------------------------------------------------------

_HEX_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: Any) -> Any:
    """Rewrite trace/span ids in a ``MessageToDict`` tree from base64 to lowercase hex."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in _HEX_ID_KEYS and isinstance(v, str) else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def otlp_json(request: Message) -> str:
    """One request as the Collector's OTLP/JSON line (compact, hex ids, integer enums)."""
    doc = MessageToDict(request, use_integers_for_enums=True)  # camelCase keys, int64 as str
    return json.dumps(_hex_ids(doc), separators=(",", ":"))


class OtlpFileWriter:
    """Appends ``Export*ServiceRequest`` messages to one signal's output file(s).

    Thread-safe: exporters of several providers (each with its own worker thread) share
    one writer per signal. Empty requests are not written, as in the Collector.
    """

    def __init__(self, binpb: Path, count: Callable[[Message], int], jsonl: Path | None = None):
        self._count = count
        self._lock = threading.Lock()
        self._bin = binpb.open("wb")
        self._json = jsonl.open("w", encoding="utf-8") if jsonl else None
        self.requests = 0
        self.items = 0
        self.paths = [p for p in (binpb, jsonl) if p]

    def write(self, request: Message) -> None:
        n = self._count(request)
        if not n:
            return
        payload = request.SerializeToString()
        with self._lock:
            self._bin.write(struct.pack(">I", len(payload)) + payload)
            if self._json:
                self._json.write(otlp_json(request) + "\n")
            self.requests += 1
            self.items += n

    def close(self) -> None:
        self._bin.close()
        if self._json:
            self._json.close()


def _count_spans(req: Message) -> int:
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def _count_points(req: Message) -> int:
    """Data points of any metric type (the ``data`` oneof names the populated type)."""
    return sum(
        len(getattr(m, m.WhichOneof("data")).data_points)
        for rm in req.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.WhichOneof("data")
    )


def _count_logs(req: Message) -> int:
    return sum(len(sl.log_records) for rl in req.resource_logs for sl in rl.scope_logs)


# Custom SDK exporters: the official encoder builds the request, the writer stores it.


class FileSpanExporter(SpanExporter):
    def __init__(self, writer: OtlpFileWriter):
        self._writer = writer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._writer.write(encode_spans(spans))
        return SpanExportResult.SUCCESS


class FileMetricExporter(MetricExporter):
    def __init__(self, writer: OtlpFileWriter):
        super().__init__()  # cumulative temporality for every instrument (the SDK default)
        self._writer = writer

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        self._writer.write(encode_metrics(metrics_data))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass  # the shared writer is closed by main()


class FileLogExporter(LogRecordExporter):
    def __init__(self, writer: OtlpFileWriter):
        self._writer = writer

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self._writer.write(encode_logs(batch))
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        pass  # the shared writer is closed by main()


@dataclass
class Sinks:
    """One writer per signal, shared by every service's exporters."""

    traces: OtlpFileWriter
    metrics: OtlpFileWriter
    logs: OtlpFileWriter

    @classmethod
    def open(cls, out: Path) -> Sinks:
        out.mkdir(parents=True, exist_ok=True)
        return cls(
            traces=OtlpFileWriter(out / "traces.binpb", _count_spans, jsonl=out / "traces.jsonl"),
            metrics=OtlpFileWriter(out / "metrics.binpb", _count_points),
            logs=OtlpFileWriter(out / "logs.binpb", _count_logs),
        )

    def all(self) -> tuple[OtlpFileWriter, ...]:
        return (self.traces, self.metrics, self.logs)


# --------------------------------------------------------------------------------------
# Per-service telemetry
# --------------------------------------------------------------------------------------


@dataclass
class Telemetry:
    """One service's SDK providers, and the instruments the shared HTTP code records to.

    Instruments that never get a measurement (e.g. server metrics in the load generator)
    are not exported by the SDK.
    """

    name: str
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider

    def __post_init__(self) -> None:
        self.tracer = self.tracer_provider.get_tracer(SCOPE, SCOPE_VERSION)
        self.meter = self.meter_provider.get_meter(SCOPE, SCOPE_VERSION)
        self.logger = self.logger_provider.get_logger(SCOPE, SCOPE_VERSION)
        self.server_requests = self.meter.create_counter(
            "http.server.request.count", unit="{request}", description="Number of HTTP server requests."
        )
        self.server_active = self.meter.create_up_down_counter(
            "http.server.active_requests",
            unit="{request}",
            description="Number of active HTTP server requests.",
        )
        self.server_duration, self.client_duration = (
            self.meter.create_histogram(
                f"http.{side}.request.duration",
                unit="s",
                description=f"Duration of HTTP {side} requests.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
            for side in ("server", "client")
        )

    @classmethod
    def create(cls, service_name: str, sinks: Sinks) -> Telemetry:
        resource = Resource.create(
            {
                "service.name": service_name,
                "service.namespace": "shop",
                "service.version": "1.0.0",
                "deployment.environment.name": "lab",
            }
        )
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(FileSpanExporter(sinks.traces)))
        # math.inf: no background collection; exports happen on force_flush()/shutdown().
        reader = PeriodicExportingMetricReader(
            FileMetricExporter(sinks.metrics), export_interval_millis=math.inf
        )
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(FileLogExporter(sinks.logs)))
        return cls(service_name, tracer_provider, meter_provider, logger_provider)

    def log(self, severity: SeverityNumber, body: str, attributes: dict[str, Any], **kw: Any) -> None:
        """Emit a log record through the SDK logs API.

        The trace context is the current one (so records emitted inside a span carry its
        trace and span ids). ``timestamp`` is set, as a logging bridge would: the API
        alone would leave ``time_unix_nano`` at 0 (only the observed time is set).
        """
        self.logger.emit(
            timestamp=time.time_ns(),
            severity_number=severity,
            severity_text=severity.name,  # INFO, WARN, ERROR
            body=body,
            attributes=attributes,
            **kw,
        )

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()
        self.logger_provider.force_flush()

    def shutdown(self) -> None:
        # With an infinite export interval the metric reader does not collect on shutdown:
        # flush first so the last metrics go out too (for spans and logs it is harmless).
        self.flush()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


# --------------------------------------------------------------------------------------
# HTTP client and server, instrumented by hand
# --------------------------------------------------------------------------------------

# No proxies: an http_proxy in the environment must not catch loopback traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class ClientResult:
    status: int
    span_context: SpanContext  # of the CLIENT span, for links


def http_get(tel: Telemetry, host: str, port: int, route: str) -> ClientResult:
    """``GET http://host:port/route`` inside a CLIENT span, with the W3C context injected."""
    url = f"http://{host}:{port}{route}"
    attrs = {
        "http.request.method": "GET",
        "url.full": url,
        "server.address": host,
        "server.port": port,
    }
    started = time.perf_counter()
    with tel.tracer.start_as_current_span(f"GET {route}", kind=SpanKind.CLIENT, attributes=attrs) as span:
        headers: dict[str, str] = {}
        inject(headers)  # traceparent (and baggage, if any) from the current context
        try:
            with _OPENER.open(urllib.request.Request(url, headers=headers), timeout=10) as resp:
                status = resp.status
                resp.read()
        except urllib.error.HTTPError as exc:  # urllib raises on 4xx/5xx
            # An HTTP error status is not an exception of this service: as the HTTP semantic
            # conventions ask, record it as error.type and the span status, no "exception" event.
            status = exc.code
            exc.read()
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
        span.set_attribute("http.response.status_code", status)
        tel.client_duration.record(
            time.perf_counter() - started,
            {
                "http.request.method": "GET",
                "server.address": host,
                "server.port": port,
                "http.response.status_code": status,
            },
        )
        return ClientResult(status, span.get_span_context())


# A route handler gets the service's telemetry and returns (status, body); raising an
# exception makes the server answer 500.
RouteHandler = Callable[[Telemetry], tuple[int, bytes]]


class ServiceServer(ThreadingHTTPServer):
    """One service: a loopback HTTP server with a single GET route."""

    daemon_threads = False  # server_close() then waits for handlers (and their spans) to finish

    def __init__(self, tel: Telemetry, route: str, handler: RouteHandler):
        super().__init__(("127.0.0.1", 0), _InstrumentedHandler)
        self.tel, self.route, self.handler = tel, route, handler
        self.host, self.port = self.server_address[:2]
        self.thread = threading.Thread(target=self.serve_forever, name=f"{tel.name}-http", daemon=True)
        self._idle = threading.Condition()
        self._in_flight = 0

    # A client has its response before the handler thread has ended its span and recorded
    # its metrics; counting requests in flight lets wait_idle() wait for that.
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            self._in_flight += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every accepted request is fully handled (spans ended, metrics recorded)."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def __enter__(self) -> ServiceServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join()


class _InstrumentedHandler(BaseHTTPRequestHandler):
    """SERVER span, metrics and error handling around the service's route handler."""

    server: ServiceServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence the stderr access log
        pass

    def do_GET(self) -> None:
        srv = self.server
        tel = srv.tel
        path = self.path.split("?", 1)[0]
        route = srv.route if path == srv.route else None
        attrs = {
            "http.request.method": "GET",
            "url.path": path,
            "url.scheme": "http",
            "server.address": srv.host,
            "server.port": srv.port,
            "client.address": self.client_address[0],
        }
        if route:
            attrs["http.route"] = route
        metric_attrs = {"http.request.method": "GET", "http.route": route or ""}
        started = time.perf_counter()
        tel.server_active.add(1, metric_attrs)
        with tel.tracer.start_as_current_span(
            f"GET {route}" if route else "GET",
            context=extract(self.headers),  # continue the caller's trace
            kind=SpanKind.SERVER,
            attributes=attrs,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                status, body = srv.handler(tel) if route else (404, b"not found\n")
            except Exception as exc:  # the service failed: answer 500, record why
                status, body = 500, f"{type(exc).__name__}: {exc}\n".encode()
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                tel.log(
                    SeverityNumber.ERROR,
                    f"{route} failed: {exc}",
                    {"http.route": route or ""},
                    exception=exc,
                    event_name="shop.request.failed",
                )
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        tel.server_active.add(-1, metric_attrs)
        done = {**metric_attrs, "http.response.status_code": status}
        tel.server_requests.add(1, done)
        tel.server_duration.record(time.perf_counter() - started, done)


# --------------------------------------------------------------------------------------
# The shop
# --------------------------------------------------------------------------------------


class PaymentDeclined(RuntimeError):
    """The payment provider said no (simulated)."""


def payment_handler(tel: Telemetry, rng: random.Random) -> RouteHandler:
    """``/pay``: a few ms of work; fails for ~``FAILURE_RATE`` of the calls, deterministically."""
    lock = threading.Lock()
    last_amount = tel.meter.create_gauge(
        "shop.payment.amount", unit="USD", description="Amount of the last payment."
    )

    def pay(tel: Telemetry) -> tuple[int, bytes]:
        with lock:  # requests arrive one at a time, but keep the draw order well defined anyway
            delay_ms, amount, declined = (
                rng.uniform(2, 8),
                round(rng.uniform(5, 250), 2),
                rng.random() < FAILURE_RATE,
            )
        time.sleep(delay_ms / 1000)
        last_amount.set(amount, {"shop.payment.outcome": "declined" if declined else "accepted"})
        if declined:
            raise PaymentDeclined(f"card declined for {amount:.2f} USD")
        return 200, f"paid {amount:.2f}\n".encode()

    return pay


def frontend_handler(payment: ServiceServer) -> RouteHandler:
    """``/checkout``: call the payment service; answer 502 if it failed."""

    def checkout(tel: Telemetry) -> tuple[int, bytes]:
        result = http_get(tel, payment.host, payment.port, payment.route)
        if result.status != 200:
            tel.log(
                SeverityNumber.WARN,
                f"payment failed with HTTP {result.status}; answering 502",
                {"http.response.status_code": result.status},
            )
            return 502, b"payment failed\n"
        return 200, b"order placed\n"

    return checkout


def run(out: Path, requests: int, seed: int) -> Sinks:
    """Start the two servers, send the requests, flush every ``FLUSH_EVERY``, shut down."""
    sinks = Sinks.open(out)
    loadgen, frontend, payment = (
        Telemetry.create(n, sinks) for n in ("shop-loadgen", "shop-frontend", "shop-payment")
    )
    services = (loadgen, frontend, payment)
    try:
        with (
            ServiceServer(payment, "/pay", payment_handler(payment, random.Random(seed))) as pay_srv,
            ServiceServer(frontend, "/checkout", frontend_handler(pay_srv)) as shop_srv,
        ):
            # Outside any span: a log record without trace context.
            loadgen.log(
                SeverityNumber.INFO, f"sending {requests} checkout requests", {"shop.loadgen.seed": seed}
            )
            failed: list[tuple[int, ClientResult]] = []
            for i in range(1, requests + 1):
                result = http_get(loadgen, shop_srv.host, shop_srv.port, "/checkout")  # a new trace each time
                if result.status != 200:
                    failed.append((i, result))
                if i % FLUSH_EVERY == 0 and i < requests:  # the last batch goes out on shutdown
                    for srv in (shop_srv, pay_srv):
                        srv.wait_idle()  # so each flush holds exactly the telemetry of its requests
                    for tel in services:
                        tel.flush()
            # A report span linking the traces of the failed checkouts.
            links = [
                Link(r.span_context, {"shop.request.number": i, "http.response.status_code": r.status})
                for i, r in failed
            ]
            with loadgen.tracer.start_as_current_span("loadgen report", links=links) as span:
                span.set_attributes({"shop.requests.total": requests, "shop.requests.failed": len(failed)})
                loadgen.log(
                    SeverityNumber.INFO,
                    f"{len(failed)} of {requests} checkouts failed",
                    {"shop.requests.failed": len(failed)},
                )
    finally:
        for tel in services:  # flushes the last batch of every signal
            tel.shutdown()
        for writer in sinks.all():
            writer.close()
    return sinks


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    ap.add_argument(
        "--requests", type=int, default=REQUESTS, help=f"checkout requests to send (default {REQUESTS})"
    )
    ap.add_argument("--seed", type=int, default=SEED, help=f"seed of the payment failures (default {SEED})")
    args = ap.parse_args(argv)
    sinks = run(args.out, args.requests, args.seed)
    print(f"opentelemetry-sdk {SDK_VERSION}")
    for label, writer in zip(("spans", "metric points", "log records"), sinks.all(), strict=True):
        files = ", ".join(f"{p} ({p.stat().st_size:,} B)" for p in writer.paths)
        print(f"{writer.items:4d} {label} in {writer.requests} requests -> {files}")


if __name__ == "__main__":
    main()
