"""Shared fixtures: a Lab, the bundled datasets, small OTLP requests."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from otlp_lab import Lab

ROOT = Path(__file__).resolve().parents[1]
TRAINTICKET = ROOT / "datasets" / "trainticket"
CONFORMANCE = ROOT.parent / "shared" / "conformance" / "otlp-json"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (nothing listens on it): the one helper every network test uses."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab():
    with Lab() as lab:
        yield lab


@pytest.fixture(scope="session")
def trainticket_lab():
    lab = Lab()
    lab.load(TRAINTICKET)
    yield lab
    lab.close()


@pytest.fixture
def conformance_dir() -> Path:
    if not CONFORMANCE.is_dir():
        pytest.skip("../shared/conformance/otlp-json is not beside this checkout")
    return CONFORMANCE


def make_trace_request(n_spans: int = 3, *, service: str = "checkout", seed: int = 1):
    """A small valid ExportTraceServiceRequest (protobuf message)."""
    import random

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    ss = rs.scope_spans.add()
    ss.scope.name = "tests"
    trace_id = rng.randbytes(16)
    parent = b""
    for i in range(n_spans):
        sp = ss.spans.add()
        sp.trace_id, sp.span_id = trace_id, rng.randbytes(8)
        sp.parent_span_id = parent
        parent = sp.span_id
        sp.name = f"op{i}"
        sp.kind = 2 if i == 0 else 3
        sp.start_time_unix_nano = 1_700_000_000_000_000_000 + i * 1000
        sp.end_time_unix_nano = sp.start_time_unix_nano + 10_000_000 - i * 2000
        a = sp.attributes.add()
        a.key, a.value.int_value = "http.response.status_code", 200 + i
        sp.status.code = 2 if i == n_spans - 1 else 0
    return req
