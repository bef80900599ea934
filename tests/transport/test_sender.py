"""The sender against our receiver: protocols, partial success, retries with pushback, breaker, replay."""

from __future__ import annotations

import time

import pytest

from otlp_lab import Lab
from otlp_lab.errors import ConfigError
from otlp_lab.resilience import RetryPolicy
from otlp_lab.transport import Receiver, Replay, Sender
from otlp_lab.transport._sender import RETRYABLE_GRPC, RETRYABLE_HTTP, classify, parse_headers

from ..conftest import ROOT, make_trace_request
from .conftest import free_port, hold_writer

SDK_SHOP = ROOT / "datasets" / "sdk-shop"
FAST_RETRY = RetryPolicy(
    max_attempts=3,
    initial_backoff_s=0.01,
    max_backoff_s=0.05,
    jitter="full",
    retryable_status_codes=RETRYABLE_GRPC | RETRYABLE_HTTP | {"CONNECT"},
)


def _endpoint(rx: Receiver, protocol: str) -> str:
    return rx.grpc_endpoint if protocol == "grpc" else rx.http_endpoint


def _ids(lab: Lab) -> set[tuple[str, str]]:
    return set(lab.sql("select trace_id, span_id from spans").iter_rows())


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
def test_send_files_of_every_signal_round_trip(receiver, protocol):
    files = [SDK_SHOP / f for f in ("traces.binpb", "metrics.binpb", "logs.binpb")]
    report = Sender(_endpoint(receiver, protocol), protocol=protocol, max_items=100, seed=1).send_files(
        *files
    )
    with Lab() as src:
        src.load(*files)
        want = src.counts()
        assert report.sent == want["spans"] + want["logs"] + sum(
            v for k, v in want.items() if k.startswith("metric_")
        )
        assert (report.rejected, report.failed, report.retries) == (0, 0, 0)
        got = receiver.lab.counts()
        for table in (
            "spans",
            "span_events",
            "span_links",
            "logs",
            "metric_sum",
            "metric_histogram",
            "metric_gauge",
        ):
            assert got[table] == want[table], table
        assert _ids(receiver.lab) == _ids(src)
    assert report.requests == receiver.stats.accepted and report.requests >= 3


def test_batching_by_count_and_by_bytes(receiver):
    with Lab() as src:
        src.load(SDK_SHOP / "traces.binpb")
        n = src.counts()["spans"]
        by_count = Sender(receiver.grpc_endpoint, max_items=7).send_lab(src, "traces")
        assert by_count.requests == -(-n // 7)
        by_bytes = Sender(receiver.grpc_endpoint, max_bytes=4096).send_lab(src, "traces")
        assert by_bytes.requests > by_count.requests // 7 and by_bytes.sent == n


def test_partial_success_is_reported(receiver):
    req = make_trace_request(6)
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x00"
    report = Sender(receiver.http_endpoint, protocol="http/protobuf").send_requests(
        [req, make_trace_request(2, seed=5)]
    )
    assert (report.sent, report.rejected, report.failed) == (7, 1, 0)
    assert "trace_id" in report.messages[0]


def test_a_malformed_request_fails_at_once_with_a_hint(receiver):
    req = make_trace_request(2)
    for sp in req.resource_spans[0].scope_spans[0].spans:
        sp.span_id = b"\x01"
    for protocol in ("grpc", "http/protobuf"):
        report = Sender(_endpoint(receiver, protocol), protocol=protocol).send_requests([req])
        assert (report.failed, report.retries) == (2, 0)
        err = report.errors[0]
        assert err.status in ("INVALID_ARGUMENT", 400) and not err.retryable and "otlp-lab load" in err.hint


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_backpressure_is_retried_after_the_servers_pushback(protocol):
    body_size = make_trace_request(200).ByteSize()
    with Receiver(
        max_request_bytes=body_size + 1024, max_queue_bytes=body_size + 1024, retry_after_s=0.2
    ) as rx:
        sender = Sender(
            _endpoint(rx, protocol),
            protocol=protocol,
            concurrency=4,
            compression="none",
            retry=RetryPolicy(
                max_attempts=30,
                initial_backoff_s=60.0,  # far above the pushback, so a wall-clock bound can be generous
                max_backoff_s=60.0,
                jitter="none",
                retryable_status_codes=RETRYABLE_GRPC | RETRYABLE_HTTP,
            ),
        )
        holder = hold_writer(rx, 0.5)  # the queue fills, the rest is pushed back
        t0 = time.monotonic()
        report = sender.send_requests([make_trace_request(200, seed=i) for i in range(6)])
        elapsed = time.monotonic() - t0
        holder.join()
        assert (report.sent, report.failed) == (1200, 0), report.errors
        assert report.retries > 0 and rx.stats.backpressure == report.retries
        # the 0.2 s pushback replaced the 60 s backoff (a generous bound: a loaded machine takes seconds)
        assert elapsed < 30
        assert rx.lab.sql("select count(*) n from spans")["n"][0] == 1200


def test_unreachable_endpoint_opens_the_breaker():
    port = free_port()
    sender = Sender(f"127.0.0.1:{port}", retry=FAST_RETRY, timeout_s=2, concurrency=2)
    t0 = time.monotonic()
    report = sender.send_requests([make_trace_request(1, seed=i) for i in range(40)])
    assert time.monotonic() - t0 < 15
    assert report.failed == 40 and report.sent == 0
    assert "CIRCUIT_OPEN" in report.error_counts and report.error_counts["CIRCUIT_OPEN"] >= 20
    unavailable = next(e for e in report.errors if e.status == "UNAVAILABLE")
    assert unavailable.retryable and "otlp-lab receive" in unavailable.hint
    assert sender.breaker.state.name == "OPEN"
    with pytest.raises(Exception, match="refused|not sent"):
        report.raise_for_failures()


def test_http_connection_refused_is_classified():
    port = free_port()
    report = Sender(
        f"http://127.0.0.1:{port}", protocol="http/protobuf", retry=FAST_RETRY, breaker=None
    ).send_requests([make_trace_request(1)])
    assert report.failed == 1 and report.retries == 2
    assert report.errors[0].status == "CONNECT" and report.errors[0].retryable


def test_retry_classification_follows_the_spec():
    for status in (
        "CANCELLED",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNAVAILABLE",
        "DATA_LOSS",
        429,
        502,
        503,
        504,
    ):
        assert classify(status)
    assert classify("RESOURCE_EXHAUSTED", retry_info=True) and not classify("RESOURCE_EXHAUSTED")
    for status in (
        "INVALID_ARGUMENT",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "INTERNAL",
        400,
        401,
        413,
        500,
    ):
        assert not classify(status)


def test_replay_shifts_to_now_and_scales(receiver):
    with Lab() as src:
        src.load(SDK_SHOP / "traces.binpb")
        before = src.sql("select span_id, epoch_ns(start_time) s, duration_ns d from spans order by span_id")
        t_first = before["s"].min()
        now = time.time_ns()
        Sender(receiver.grpc_endpoint).send_lab(src, "traces", replay=Replay(speed=10))
    after = receiver.lab.sql(
        "select span_id, epoch_ns(start_time) s, duration_ns d from spans order by span_id"
    )
    assert after["span_id"].to_list() == before["span_id"].to_list()
    assert after["d"].to_list() == before["d"].to_list()  # durations kept
    assert abs(after["s"].min() - now) < 5e9
    rel_before = (before["s"] - t_first).to_list()
    rel_after = (after["s"] - after["s"].min()).to_list()
    assert all(abs(a - b / 10) <= 1 for a, b in zip(rel_after, rel_before, strict=True))


def test_paced_replay_follows_the_wall_clock(receiver):
    reqs = []
    for i in range(3):
        r = make_trace_request(2, seed=i)
        for sp in r.resource_spans[0].scope_spans[0].spans:
            sp.start_time_unix_nano += i * 30_000_000_000  # one request per 30 s of capture
            sp.end_time_unix_nano += i * 30_000_000_000
        reqs.append(r)
    with Lab() as src:
        for r in reqs:
            src.load_bytes(r.SerializeToString())
        t0 = time.monotonic()
        report = Sender(receiver.grpc_endpoint, concurrency=1).send_lab(
            src, "traces", replay=Replay(shift_to_now=False, speed=50, paced=True)
        )
        elapsed = time.monotonic() - t0
    assert report.sent == 6 and report.requests == 3
    # 60 s of capture at 50x: 1.2 s. Pacing never sends early (the lower bound holds under any
    # load); the upper bound is generous yet catches a replay at 1x (60 s)
    assert 1.1 < elapsed < 30
    stored = receiver.lab.sql("select min(epoch_ns(start_time)) s from spans")["s"][0]
    assert stored == min(
        sp.start_time_unix_nano
        for r in reqs
        for rs in r.resource_spans
        for ss in rs.scope_spans
        for sp in ss.spans
    )


def test_from_env_and_headers():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9999",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t,x-a=1",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9999/custom/traces",
    }
    s = Sender.from_env(env, concurrency=2)
    assert (s.protocol, s.timeout_s, s.concurrency) == ("http/json", 2.5, 2)
    assert s.headers == {"authorization": "Bearer t", "x-a": "1"}
    assert s.signal_endpoints == {"traces": "http://127.0.0.1:9999/custom/traces"}
    assert parse_headers(["a=b"]) == {"a": "b"}
    with pytest.raises(ConfigError, match="protocol"):
        Sender(protocol="udp")
    with pytest.raises(ConfigError, match="key=value"):
        parse_headers("novalue")
    with pytest.raises(ConfigError, match="speed"):
        Replay(speed=0)
