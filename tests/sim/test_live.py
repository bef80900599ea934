"""Live mode: a simulation streamed over OTLP to a real receiver on loopback, paced on the wall clock."""

from __future__ import annotations

import dataclasses
import re
import time

import polars as pl
import pytest
from click.testing import CliRunner

from otlp_lab import Lab
from otlp_lab.cli import main
from otlp_lab.errors import ConfigError, ScenarioError
from otlp_lab.sim import (
    Call,
    Constant,
    Endpoint,
    Errors,
    OpenLoop,
    Scenario,
    Service,
    StreamResult,
    run,
    stream,
)
from otlp_lab.transport import Receiver, Sender

from ..conftest import free_port

SPAN_COLUMNS = "trace_id, span_id, parent_span_id, name, kind, status_code, service_name, attributes, resource_attributes"


def tiny(duration_s: float = 8.0, rate: float = 20.0) -> Scenario:
    """front -> back at ``rate`` requests/s, with an error burst: cheap enough to pace at any speed used here."""
    return Scenario(
        "tiny",
        duration_s=duration_s,
        metrics_interval_s=2.0,
        services=[
            Service(
                "front",
                instances=1,
                concurrency=8,
                service_time=Constant(0.002),
                endpoints=(Endpoint("home", calls=(Call("back/get"),)),),
            ),
            Service(
                "back", instances=2, concurrency=4, service_time=Constant(0.005), endpoints=(Endpoint("get"),)
            ),
        ],
        workloads=[OpenLoop("front/home", rate=rate)],
        faults=[Errors(service="back", instance=0, at_s=2.0, duration_s=2.0, error_rate=0.5)],
    )


def _spans(lab: Lab) -> pl.DataFrame:
    return lab.sql(
        f"SELECT {SPAN_COLUMNS}, epoch_ns(start_time) AS start_ns, epoch_ns(end_time) AS end_ns "
        "FROM spans ORDER BY trace_id, span_id"
    )


@pytest.fixture
def receiver():
    with Receiver(Lab(), grpc="127.0.0.1:0", http="127.0.0.1:0") as rx:
        yield rx


def test_stream_arrives_whole_with_current_timestamps(receiver: Receiver) -> None:
    sc = tiny()
    with Lab() as local:
        before = time.time_ns()
        live = stream(sc, receiver.grpc_endpoint, seed=3, speed=20, lab=local)
        after = time.time_ns()
        copy = _spans(local)
        ground = local.sql('SELECT kind, epoch_ns(start) AS start_ns, epoch_ns("end") AS end_ns FROM faults')
    assert isinstance(live, StreamResult)
    stats = receiver.stats
    got = _spans(receiver.lab)
    # everything simulated was sent and stored: spans, metric points, log records
    assert live.emitted["traces"] == live.run.spans == got.height == stats.spans > 300
    assert live.emitted["metrics"] == stats.points > 0
    assert live.emitted["logs"] == stats.logs
    assert (live.sent, live.rejected, live.failed) == (live.items, 0, 0)
    assert live.report.errors == []
    # the same spans as a batch run of the same seed (same ids, names, attributes, statuses) ...
    with Lab() as batch:
        run(sc, lab=batch, seed=3)
        ref = _spans(batch)
        t0 = batch.sql("SELECT epoch_ns(started) AS t FROM sim_runs")["t"][0]
    cols = SPAN_COLUMNS.split(", ")
    assert got.select(cols).equals(ref.select(cols))
    assert set(got["trace_id"]) == set(ref["trace_id"]) and got["trace_id"].n_unique() > 100
    assert got["status_code"].eq("ERROR").sum() > 0
    # ... with their times mapped to now: start' = start + (t - t0) / speed, durations kept
    assert before <= live.start_ns <= after
    want_start = live.start_ns + (ref["start_ns"] - t0) // 20
    assert (got["start_ns"] - want_start).abs().max() <= 1
    assert (got["end_ns"] - got["start_ns"]).equals(ref["end_ns"] - ref["start_ns"])
    assert got["start_ns"].min() >= before and got["end_ns"].max() <= after + 1_000_000_000
    # the local copy holds exactly what the receiver got, and ground truth on the same clock
    assert copy.equals(got)
    assert ground.height == 1 and ground["start_ns"][0] == live.start_ns + 2_000_000_000 // 20


def test_realtime_paces_the_simulation(receiver: Receiver) -> None:
    sc = tiny(duration_s=10.0, rate=10.0)
    live = stream(sc, receiver.http_endpoint, protocol="http/protobuf", speed=10)
    # 10 simulated s at 10x: about 1 s. A slice is never released before its time, so the
    # lower bound holds on any machine; slices follow simulated time.
    assert live.wall_s >= 0.95 * sc.duration_s / 10, live
    assert live.slices >= 10
    assert live.failed == 0 and live.sent == live.items == receiver.stats.items
    fast = stream(sc, receiver.http_endpoint, protocol="http/json", speed=10, realtime=False, label="unpaced")
    assert fast.max_lag_s == 0.0
    # the speed is honoured on the time axis too: 10 simulated s of spans stamped within about 1 s
    spread = receiver.lab.sql(
        "SELECT epoch(max(start_time)) - epoch(min(start_time)) AS s FROM spans "
        "WHERE resource_attributes['sim.policy']::VARCHAR <> 'unpaced'"
    )["s"][0]
    assert 0.5 < spread <= sc.duration_s / 10 + 0.2, spread
    assert fast.sent == fast.items == live.items  # same seed, same telemetry; other label, other ids
    assert (
        receiver.lab.sql("SELECT count(DISTINCT trace_id) AS n FROM spans")["n"][0] == 2 * live.run.requests
    )


def test_unreachable_endpoint_is_reported_not_raised() -> None:
    sender = Sender(
        f"127.0.0.1:{free_port()}",
        timeout_s=2.0,
        retry=dataclasses.replace(Sender.default_retry(), max_attempts=1),
    )
    live = stream(tiny(duration_s=3.0), sender=sender, speed=50)
    assert live.sent == 0 and live.failed == live.items > 0
    err = live.report.errors[0]
    assert err.status in ("UNAVAILABLE", "CIRCUIT_OPEN") and err.hint
    with pytest.raises(Exception, match="127.0.0.1"):
        live.raise_for_failures()


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="speed"):
        stream(tiny(), "127.0.0.1:4317", speed=0)
    with pytest.raises(ConfigError, match="flush_s"):
        stream(tiny(), "127.0.0.1:4317", flush_s=-1)
    with pytest.raises(ConfigError, match="either sender"):
        stream(tiny(), "127.0.0.1:4317", sender=Sender("127.0.0.1:4317"))
    with pytest.raises(ConfigError, match="protocol"):
        stream(tiny(), "127.0.0.1:4317", protocol="carrier-pigeon")
    with pytest.raises(ScenarioError, match=r"stream\(seed"):
        stream(tiny(), "127.0.0.1:4317", seed=-1)


def test_cli_simulate_send(receiver: Receiver, tmp_path) -> None:
    port = receiver.http_port
    res = CliRunner().invoke(
        main,
        [
            "simulate",
            "retry_storm",
            "--send",
            f"http://127.0.0.1:{port}",
            "--protocol",
            "http/protobuf",
            "--duration",
            "5s",
            "--speed",
            "50",
        ],
    )
    assert res.exit_code == 0, res.output
    stats = receiver.stats
    assert stats.spans > 1000 and stats.invalid == 0
    text = " ".join(res.output.split())
    sent = int(re.search(r"([\d,]+) sent, 0 rejected, 0 failed", text).group(1).replace(",", ""))
    assert sent == stats.items
    # --db keeps a local copy; --no-realtime sends as fast as it simulates
    db = tmp_path / "copy.duckdb"
    res = CliRunner().invoke(
        main,
        [
            "simulate",
            "retry_storm",
            "--send",
            f"http://127.0.0.1:{port}",
            "--protocol",
            "http/json",
            "--duration",
            "3s",
            "--no-realtime",
            "--seed",
            "1",
            "--db",
            str(db),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    with Lab(db, read_only=True) as lab:
        assert lab.sql("SELECT count(*) AS n FROM spans")["n"][0] == receiver.stats.spans - stats.spans > 0


def test_cli_simulate_send_usage() -> None:
    res = CliRunner().invoke(main, ["simulate", "retry_storm", "--speed", "5", "--no-progress"])
    assert res.exit_code == 2 and "--send" in res.output
    port = free_port()
    res = CliRunner().invoke(
        main, ["simulate", "retry_storm", "--send", f"127.0.0.1:{port}", "--duration", "1s", "--speed", "0"]
    )
    assert res.exit_code == 2 and "speed" in res.output
