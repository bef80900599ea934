"""Interop with a real third-party collector: our sender -> rotel -> our receiver, both protocols each hop.

rotel (the Rust collector shipped by the `rotel` PyPI package) runs as a subprocess with an
OTLP receiver (gRPC and HTTP) on free loopback ports and an OTLP exporter pointed at our
receiver. Whatever our sender hands rotel must reach our receiver: the same span ids, the
same numbers of log records and metric points.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from otlp_lab import Lab
from otlp_lab.transport import Receiver, Sender

from ..conftest import ROOT
from .conftest import free_port, rotel_binary

SDK_SHOP = ROOT / "datasets" / "sdk-shop"
FILES = [SDK_SHOP / f for f in ("traces.binpb", "metrics.binpb", "logs.binpb")]
POINT_TABLES = ("metric_sum", "metric_gauge", "metric_histogram", "metric_exp_histogram", "metric_summary")


class Rotel:
    """A rotel collector subprocess relaying OTLP to ``export_endpoint``."""

    def __init__(self, export_endpoint: str, export_protocol: str, tmp_path) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        self.log = tmp_path / "rotel.log"
        cmd = [
            rotel_binary(),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.http_port}",
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            export_endpoint,
            "--otlp-exporter-protocol",
            export_protocol,
            "--batch-timeout",
            "50ms",
            "--pid-file",
            str(tmp_path / "rotel.pid"),
            "--log-file",
            str(tmp_path / "rotel-daemon.log"),
        ]
        self._out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT)
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        import socket

        deadline = time.monotonic() + 15
        for port in (self.grpc_port, self.http_port):
            while True:
                assert self.proc.poll() is None, f"rotel exited: {self.log.read_text()}"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "rotel did not listen within 15 s"
                    time.sleep(0.05)

    def endpoint(self, protocol: str) -> str:
        return f"127.0.0.1:{self.grpc_port}" if protocol == "grpc" else f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        finally:
            self._out.close()


@pytest.fixture(params=["grpc", "http"], ids=lambda p: f"rotel-exports-{p}")
def relay(request, tmp_path):
    with Receiver() as rx:
        target = f"http://{rx.grpc_endpoint}" if request.param == "grpc" else rx.http_endpoint
        rotel = Rotel(target, request.param, tmp_path)
        try:
            yield rx, rotel
        finally:
            rotel.stop()


def _counts(lab: Lab) -> dict[str, int]:
    c = lab.counts()
    return {"spans": c["spans"], "logs": c["logs"], "points": sum(c[t] for t in POINT_TABLES)}


def _relay(
    rx, rotel, protocol: str, *, json_safe: bool = False, wait_s: float = 15
) -> tuple[dict[str, int], set]:
    """Send the SDK capture through rotel; return what should arrive (counts, span ids)."""
    with Lab() as src:
        src.load(*FILES)
        if json_safe:
            for sql in JSON_UNSAFE:
                src.con.execute(sql)
        want = _counts(src)
        want_ids = set(src.sql("select trace_id, span_id from spans").iter_rows())
        report = Sender(rotel.endpoint(protocol), protocol=protocol, max_items=200).send_lab(src)
    assert (report.sent, report.failed) == (sum(want.values()), 0), report.errors
    deadline = time.monotonic() + wait_s
    while _counts(rx.lab) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    return want, want_ids


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_sender_to_rotel_to_receiver(relay, protocol):
    rx, rotel = relay
    want, want_ids = _relay(rx, rotel, protocol)
    assert _counts(rx.lab) == want and want["points"] > 0
    assert set(rx.lab.sql("select trace_id, span_id from spans").iter_rows()) == want_ids
    assert rx.stats.invalid == 0 and rx.stats.rejected_items == 0


# rotel (0.0.1a15, agent 0.0.1-alpha10) answers 200 to OTLP/JSON metrics but drops histograms,
# and any metric whose points carry exemplars (hex trace/span ids, as OTLP/JSON requires).
JSON_UNSAFE = [
    "DELETE FROM metric_histogram",
    "DELETE FROM metric_exp_histogram",
    "DELETE FROM metric_gauge WHERE metric_name IN (SELECT metric_name FROM metric_gauge WHERE len(exemplars) > 0)",
    "DELETE FROM metric_sum WHERE metric_name IN (SELECT metric_name FROM metric_sum WHERE len(exemplars) > 0)",
]


def test_sender_json_to_rotel_to_receiver(relay):
    rx, rotel = relay
    want, want_ids = _relay(rx, rotel, "http/json", json_safe=True)
    assert _counts(rx.lab) == want and want["points"] > 0
    assert set(rx.lab.sql("select trace_id, span_id from spans").iter_rows()) == want_ids


@pytest.mark.xfail(
    strict=True, reason="rotel drops OTLP/JSON histograms and exemplar-carrying metrics (replies 200)"
)
def test_rotel_relays_every_json_metric(relay):
    rx, rotel = relay
    want, _ = _relay(rx, rotel, "http/json", wait_s=2)
    assert _counts(rx.lab) == want
