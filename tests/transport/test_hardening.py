"""Receiver hardening (issue 7): memory bound across requests, auth before the body, HTTP limits and deadlines."""

from __future__ import annotations

import gzip
import logging
import socket
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import httpx
import orjson
import pytest

from otlp_lab.otlp import to_otlp_json
from otlp_lab.transport import Receiver

from ..conftest import make_trace_request
from .conftest import TRACES, grpc_call, post, trace_body

MiB = 1 << 20

_CHILD = """
import sys
from otlp_lab.transport import Receiver
rx = Receiver(grpc="127.0.0.1:0", http=None, max_request_bytes=4 << 20, max_queue_bytes=8 << 20, retry_after_s=0.1)
rx.start()
print(rx.grpc_port, flush=True)
sys.stdin.readline()
print(rx.stop().peak_queue_bytes, flush=True)
"""


def _peak_rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from /proc (Linux)")
def test_many_large_grpc_bodies_stay_within_the_in_flight_budget():
    """64 x 4 MiB concurrent gRPC bodies against an 8 MiB budget: the receiver reads only what it
    admitted (the rest get UNAVAILABLE with RetryInfo, unread), so its peak memory grows by far
    less than the 256 MiB sent (before: every body was read at once, growth ~350 MiB)."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(child.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_retries", 0)]) as ch:
            call = ch.unary_unary(TRACES)
            with pytest.raises(grpc.RpcError):
                call(b"\xff" * 100, timeout=30)  # warm up (garbage: INVALID_ARGUMENT)
            base = _peak_rss_mib(child.pid)
            body = b"\xff" * (4 * MiB - 1024)  # not a valid request: decoding refuses it fast
            codes: list[str] = []

            def one() -> None:
                try:
                    call(body, timeout=60)
                    codes.append("OK")
                except grpc.RpcError as exc:
                    codes.append(exc.code().name)
                    if exc.code() is grpc.StatusCode.UNAVAILABLE:
                        assert any(k == "grpc-status-details-bin" for k, _ in exc.trailing_metadata())

            threads = [threading.Thread(target=one) for _ in range(64)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            growth = _peak_rss_mib(child.pid) - base
        child.stdin.write("\n")
        child.stdin.flush()
        peak_queue = int(child.stdout.readline())
    finally:
        child.kill()
        child.wait(10)
        child.stdin.close()
        child.stdout.close()
    assert len(codes) == 64 and set(codes) <= {"INVALID_ARGUMENT", "UNAVAILABLE"}
    assert peak_queue <= 8 * MiB  # the budget held
    # stated bound: about 8 x max_queue_bytes (gRPC's and the decoder's copies) + 64 MiB of slack
    assert growth < 8 * 8 + 64, f"receiver peak memory grew by {growth} MiB"


def test_grpc_checks_the_token_before_reading_the_message():
    # before: grpcio read the whole message first, so an oversize body got RESOURCE_EXHAUSTED
    with Receiver(bearer_token="s3cret", max_request_bytes=1 * MiB) as rx:
        _, err = grpc_call(rx, TRACES, b"\xff" * (2 * MiB))
        assert err is not None and err.code() is grpc.StatusCode.UNAUTHENTICATED
        _, err = grpc_call(rx, TRACES, trace_body(2), metadata=(("authorization", "Bearer s3cret"),))
        assert err is None
        assert rx.stats.unauthenticated == 1 and rx.stats.spans == 2


def test_the_bearer_scheme_is_case_insensitive():
    with Receiver(bearer_token="s3cret") as rx:
        assert post(rx, "/v1/traces", trace_body(1, seed=1), authorization="bearer s3cret").status_code == 200
        assert (
            post(rx, "/v1/traces", trace_body(1, seed=2), authorization="BEARER  s3cret").status_code == 200
        )
        _, err = grpc_call(rx, TRACES, trace_body(1, seed=3), metadata=(("authorization", "bEaReR s3cret"),))
        assert err is None
        assert post(rx, "/v1/traces", trace_body(1, seed=4), authorization="Basic s3cret").status_code == 401
        assert post(rx, "/v1/traces", trace_body(1, seed=5), authorization="bearer wrong").status_code == 401
        assert rx.stats.spans == 3


_SLOW_HEAD = (
    b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100\r\n"
)


def test_slow_clients_do_not_lock_good_clients_out():
    """More slow clients than connection slots, each trickling a byte: a good request still gets 200."""
    with Receiver(max_concurrent_requests=6) as rx:
        stop = threading.Event()
        replies: list[bytes] = []
        socks = [socket.create_connection(("127.0.0.1", rx.http_port)) for _ in range(10)]

        def trickle(s: socket.socket) -> None:
            s.settimeout(0.2)
            for i in range(300):  # bounded: at most 300 bytes, a byte per 0.05 s
                if stop.is_set():
                    return
                try:
                    s.sendall(_SLOW_HEAD[i : i + 1] if i < len(_SLOW_HEAD) else b"x")
                    got = s.recv(100)
                except TimeoutError:
                    continue
                except OSError:
                    return
                replies.append(got)
                return

        threads = [threading.Thread(target=trickle, args=(s,), daemon=True) for s in socks]
        for t in threads:
            t.start()
        try:
            for seed in range(3):
                r = post(rx, "/v1/traces", trace_body(2, seed=seed))
                assert r.status_code == 200, r.text
        finally:
            stop.set()
            for t in threads:
                t.join(30)
            for s in socks:
                s.close()
        assert rx.stats.spans == 6
        # the slow ones evicted to make room were told why
        assert replies and all(r.startswith(b"HTTP/1.1 408") or r == b"" for r in replies)


def test_the_request_deadline_is_total_not_per_read():
    with Receiver(request_timeout_s=1.0, read_timeout_s=30) as rx:
        with socket.create_connection(("127.0.0.1", rx.http_port)) as s:
            s.settimeout(0.1)
            got, sent = b"", 0
            for i in range(150):  # a byte per 0.1 s: every read is quick, the request never ends
                try:
                    s.sendall(_SLOW_HEAD[i : i + 1] if i < len(_SLOW_HEAD) else b"\r")
                    sent += 1
                    got = s.recv(100)
                except TimeoutError:
                    continue
                except OSError:
                    break
                break
            assert got.startswith(b"HTTP/1.1 408"), (sent, got)
            assert sent < 150
        assert rx.stats.timed_out == 1


def test_header_and_url_limits():
    with Receiver() as rx:
        url = f"{rx.http_endpoint}/v1/traces"
        h = {"content-type": "application/x-protobuf"}
        big = {f"x-pad-{i}": "v" * 2000 for i in range(50)}  # 100 KB of headers
        r = httpx.post(url, content=trace_body(1), headers=h | big, timeout=30)
        assert r.status_code == 431
        many = {f"x-h{i}": "1" for i in range(2000)}
        r = httpx.post(url, content=trace_body(1), headers=h | many, timeout=30)
        assert r.status_code == 431
        # a 10 MB URL (httpx refuses to send one): a 414 reply, not a reset
        with socket.create_connection(("127.0.0.1", rx.http_port)) as s:
            s.settimeout(60)
            s.sendall(b"POST /v1/traces?q=" + b"a" * (10 * MiB) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 414"), reply[:100]
        r = httpx.post(url + "?q=" + "a" * 9000, content=trace_body(1), headers=h, timeout=30)
        assert r.status_code == 414
        assert post(rx, "/v1/traces", trace_body(2)).status_code == 200
        assert rx.stats.too_large == 4 and rx.stats.spans == 2


def test_head_is_answered_without_a_traceback(receiver, caplog):
    with caplog.at_level(logging.ERROR, logger="otlp_lab"):
        r = httpx.head(f"{receiver.http_endpoint}/v1/traces", timeout=10)
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        assert (
            post(receiver, "/v1/traces", trace_body(1)).status_code == 200
        )  # the connection pool still works
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_two_json_documents_in_one_body_are_refused(receiver):
    doc1 = orjson.dumps(to_otlp_json(make_trace_request(2, seed=1)))
    doc2 = orjson.dumps(to_otlp_json(make_trace_request(2, seed=2)))
    r = post(receiver, "/v1/traces", doc1 + doc2, ctype="application/json")
    assert r.status_code == 400, r.text
    r = post(receiver, "/v1/traces", doc1 + b"\n" + doc2, ctype="application/json")  # JSON lines
    assert r.status_code == 400, r.text
    assert "one request" in r.json()["message"]
    assert receiver.stats.spans == 0 and receiver.stats.invalid == 2
    assert post(receiver, "/v1/traces", doc1, ctype="application/json").status_code == 200


def test_a_two_member_gzip_body_stores_both_members(receiver):
    body = gzip.compress(trace_body(2, seed=1)) + gzip.compress(trace_body(3, seed=2))
    r = post(receiver, "/v1/traces", body, content_encoding="gzip")
    assert r.status_code == 200
    assert receiver.stats.spans == 5
