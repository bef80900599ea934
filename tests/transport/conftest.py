"""Fixtures for the transport tests: a running receiver, throwaway certificates, request helpers."""

from __future__ import annotations

import gzip
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from otlp_lab.transport import Receiver, generate_certificates

from ..conftest import free_port, make_trace_request  # noqa: F401  (free_port re-exported)

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def rotel_binary() -> str:
    """The rotel collector binary shipped in the `rotel` PyPI package."""
    import rotel

    path = Path(rotel.__file__).parent / "rotel-agent"
    if not path.exists():
        found = shutil.which("rotel-agent")
        assert found, "the rotel package ships no rotel-agent binary; pip install rotel"
        return found
    return str(path)


def trace_body(n_spans: int = 3, *, seed: int = 1, gz: bool = False) -> bytes:
    body = make_trace_request(n_spans, seed=seed).SerializeToString()
    return gzip.compress(body) if gz else body


@pytest.fixture
def receiver():
    with Receiver() as rx:
        yield rx


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return generate_certificates(tmp_path_factory.mktemp("certs"))


def post(rx: Receiver, path: str, body: bytes, *, ctype: str = "application/x-protobuf", **headers: str):
    import httpx

    h = {"content-type": ctype} | {k.replace("_", "-"): v for k, v in headers.items()}
    return httpx.post(f"{rx.http_endpoint}{path}", content=body, headers=h, timeout=10)


def grpc_call(rx: Receiver, method: str, body: bytes, *, metadata=(), compression=None, timeout=10):
    """One raw unary call; returns (response bytes or None, grpc.RpcError or None)."""
    import grpc

    with grpc.insecure_channel(rx.grpc_endpoint, options=[("grpc.enable_retries", 0)]) as ch:
        call = ch.unary_unary(method)
        try:
            return call(body, metadata=metadata, compression=compression, timeout=timeout), None
        except grpc.RpcError as exc:
            return None, exc


def hold_writer(rx: Receiver, seconds: float) -> threading.Thread:
    """Block the receiver's writer (by holding the Lab's lock) for ``seconds``, from a helper thread."""
    held = threading.Event()

    def hold() -> None:
        with rx.lab._lock:
            held.set()
            time.sleep(seconds)

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    held.wait(5)
    return t


def start_receiver_process(db, port: int, *args: str) -> subprocess.Popen:
    """``otlp-lab receive --db DB --grpc 127.0.0.1:PORT --http off`` (plus ``args``) in its own process,
    returned once it listens (a process we can ``kill -9``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "otlp_lab.cli", "receive", "--db", str(db), "--grpc", f"127.0.0.1:{port}"]
        + ["--http", "off", "--stats-every", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "the receiver exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, "the receiver did not listen within 30 s"
            time.sleep(0.05)
