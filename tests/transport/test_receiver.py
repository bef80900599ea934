"""The receiver's replies, per the OTLP specification, over HTTP and gRPC."""

from __future__ import annotations

import concurrent.futures
import gzip
import threading
import time

import grpc
import orjson
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otlp_lab import Lab
from otlp_lab.errors import ConfigError, TransportError
from otlp_lab.otlp import to_otlp_json
from otlp_lab.transport import Receiver, ReceiverConfig

from ..conftest import make_trace_request
from .conftest import LOGS, METRICS, TRACES, grpc_call, post, trace_body


def _status(resp) -> status_pb2.Status:
    if resp.headers["content-type"] == "application/json":
        d = orjson.loads(resp.content)
        return status_pb2.Status(code=d.get("code", 0), message=d.get("message", ""))
    return status_pb2.Status.FromString(resp.content)


def _retry_info(metadata) -> float | None:
    for k, v in metadata:
        if k == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(v)
            for d in st.details:
                info = error_details_pb2.RetryInfo()
                if d.Unpack(info):
                    return info.retry_delay.ToNanoseconds() / 1e9
    return None


# ------------------------------------------------------------------ success


def test_http_protobuf_json_and_gzip_are_stored(receiver):
    req = make_trace_request(4, seed=7)
    r1 = post(receiver, "/v1/traces", req.SerializeToString())
    r2 = post(
        receiver,
        "/v1/traces",
        orjson.dumps(to_otlp_json(make_trace_request(4, seed=8))),
        ctype="application/json",
    )
    r3 = post(receiver, "/v1/traces", trace_body(4, seed=9, gz=True), content_encoding="gzip")
    assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 200]
    assert r1.headers["content-type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(r1.content) == ExportTraceServiceResponse()
    assert r2.headers["content-type"] == "application/json" and orjson.loads(r2.content) == {}
    assert receiver.lab.sql("select count(*) n from spans")["n"][0] == 12
    s = receiver.stats
    assert (s.requests, s.accepted, s.spans) == (3, 3, 12)


def test_grpc_all_three_services_and_gzip(receiver):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    logs = ExportLogsServiceRequest()
    rec = logs.resource_logs.add().scope_logs.add().log_records.add()
    rec.time_unix_nano, rec.body.string_value, rec.severity_number = 1_700_000_000_000_000_000, "hello", 9
    metrics = ExportMetricsServiceRequest()
    m = metrics.resource_metrics.add().scope_metrics.add().metrics.add(name="requests")
    p = m.sum.data_points.add(as_int=5, time_unix_nano=1_700_000_000_000_000_000)
    p.attributes.add(key="route").value.string_value = "/"
    for method, body in (
        (TRACES, trace_body(3)),
        (METRICS, metrics.SerializeToString()),
        (LOGS, logs.SerializeToString()),
    ):
        out, err = grpc_call(receiver, method, body, compression=grpc.Compression.Gzip)
        assert err is None, err
        assert out == b""
    c = receiver.lab.counts()
    assert (c["spans"], c["metric_sum"], c["logs"]) == (3, 1, 1)
    assert (receiver.stats.spans, receiver.stats.points, receiver.stats.logs) == (3, 1, 1)


# ------------------------------------------------------------------ partial success


def _partly_bad() -> bytes:
    req = make_trace_request(5, seed=3)
    req.resource_spans[0].scope_spans[0].spans[2].span_id = b"\x01"
    return req.SerializeToString()


def test_partial_success_over_http_and_grpc(receiver):
    r = post(receiver, "/v1/traces", _partly_bad())
    assert r.status_code == 200
    ps = ExportTraceServiceResponse.FromString(r.content).partial_success
    assert ps.rejected_spans == 1 and "span_id" in ps.error_message
    out, err = grpc_call(receiver, TRACES, _partly_bad())
    assert err is None
    assert ExportTraceServiceResponse.FromString(out).partial_success.rejected_spans == 1
    rj = post(receiver, "/v1/traces", _partly_bad(), ctype="application/x-protobuf")
    assert rj.status_code == 200
    assert receiver.stats.rejected_items == 3 and receiver.stats.spans == 12


# ------------------------------------------------------------------ refusals


def test_malformed_is_400_and_invalid_argument_with_a_status_body(receiver):
    r = post(receiver, "/v1/traces", b"\xff\xfe not protobuf")
    assert r.status_code == 400
    st = _status(r)
    assert st.code == 3 and "not an OTLP protobuf request" in st.message
    rj = post(receiver, "/v1/traces", b'{"resourceSpans": 7', ctype="application/json")
    assert rj.status_code == 400 and rj.headers["content-type"] == "application/json"
    assert orjson.loads(rj.content)["code"] == 3
    _, err = grpc_call(receiver, TRACES, b"\xff\xfe not protobuf")
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert receiver.stats.invalid == 3 and receiver.lab.sql("select count(*) n from loads")["n"][0] == 0


@pytest.mark.parametrize(
    "path, method, ctype, encoding, status",
    [
        ("/v1/traces", "POST", "text/plain", None, 415),
        ("/v1/traces", "POST", "application/x-protobuf", "br", 415),
        ("/v1/spans", "POST", "application/x-protobuf", None, 404),
        ("/v1/traces", "GET", "application/x-protobuf", None, 405),
    ],
)
def test_http_media_type_path_and_method(receiver, path, method, ctype, encoding, status):
    import httpx

    headers = {"content-type": ctype} | ({"content-encoding": encoding} if encoding else {})
    with httpx.Client() as client:
        r = client.request(
            method,
            f"{receiver.http_endpoint}{path}",
            content=trace_body() if method == "POST" else None,
            headers=headers,
        )
        assert r.status_code == status
        # the connection stays usable (or was closed cleanly): a good request follows
        ok = client.post(
            f"{receiver.http_endpoint}/v1/traces",
            content=trace_body(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert ok.status_code == 200


def test_oversize_is_413_and_resource_exhausted_on_the_decompressed_size():
    with Receiver(max_request_bytes=64 << 10, max_queue_bytes=1 << 20) as rx:
        big = trace_body(2000)  # ~200 KiB
        assert len(big) > 64 << 10
        assert post(rx, "/v1/traces", big).status_code == 413  # by Content-Length, body never read
        bomb = gzip.compress(b"\n\x00" * (4 << 20))  # 8 MiB once inflated
        r = post(rx, "/v1/traces", bomb, content_encoding="gzip")
        assert r.status_code == 413 and "limit" in _status(r).message
        _, err = grpc_call(rx, TRACES, big)
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        _, err = grpc_call(rx, TRACES, b"\n\x00" * (4 << 20), compression=grpc.Compression.Gzip)
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert post(rx, "/v1/traces", trace_body(5)).status_code == 200
        assert rx.stats.too_large == 2 and rx.stats.peak_queue_bytes <= 1 << 20


def test_backpressure_when_the_write_queue_is_full():
    """A full queue answers 503 + Retry-After and UNAVAILABLE + RetryInfo; what was admitted is stored."""
    body = trace_body(50)
    with Receiver(max_request_bytes=len(body), max_queue_bytes=len(body), retry_after_s=2.5) as rx:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            with rx.lab._lock:  # the writer cannot commit: the first request stays queued
                first = pool.submit(post, rx, "/v1/traces", body)
                deadline = time.monotonic() + 10
                while rx.stats.queue_depth == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
                r = post(rx, "/v1/traces", body)
                assert r.status_code == 503 and r.headers["retry-after"] == "3"
                assert _status(r).code == 14
                _, err = grpc_call(rx, TRACES, body)
                assert err.code() is grpc.StatusCode.UNAVAILABLE
                assert _retry_info(err.trailing_metadata()) == 2.5
                assert not first.done()
            assert first.result(10).status_code == 200
        s = rx.stats
        assert s.backpressure == 2 and s.spans == 50 and s.peak_queue_bytes <= len(body)


def test_stop_commits_what_is_queued_and_then_refuses(tmp_path):
    db = tmp_path / "cap.duckdb"
    rx = Receiver(db).start()
    results = []

    def send(i):
        results.append(post(rx, "/v1/traces", trace_body(10, seed=i)).status_code)

    with rx.lab._lock:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while rx.stats.queue_depth < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        stopper = threading.Thread(target=rx.stop)
        stopper.start()
        time.sleep(0.2)
    stopper.join(20)
    for t in threads:
        t.join(10)
    assert results == [200] * 5
    assert not rx.running and rx.stats.spans == 50
    with Lab(db, read_only=True) as lab:
        assert lab.sql("select count(*) n from spans")["n"][0] == 50


def test_config_is_validated():
    with pytest.raises(ConfigError, match="loopback"):
        ReceiverConfig(http="0.0.0.0:4318")
    assert ReceiverConfig(http="0.0.0.0:4318", allow_remote=True).http == "0.0.0.0:4318"
    with pytest.raises(ConfigError, match="max_queue_bytes"):
        ReceiverConfig(max_request_bytes=10, max_queue_bytes=5)
    with pytest.raises(ConfigError, match="both off"):
        ReceiverConfig(grpc=None, http=None)
    with pytest.raises(ConfigError, match="unknown receiver setting"):
        Receiver(max_queue=3)
    with pytest.raises(ConfigError, match="do not include"):
        ReceiverConfig.from_dict({"grpc": "127.0.0.1:0", "queue": 1})


def test_a_port_in_use_is_a_transport_error_with_a_hint(receiver):
    with pytest.raises(TransportError, match="port 0"):
        Receiver(grpc=None, http=f"127.0.0.1:{receiver.http_port}").start()
    with pytest.raises(TransportError, match="port 0"):
        Receiver(grpc=f"127.0.0.1:{receiver.grpc_port}", http=None).start()
