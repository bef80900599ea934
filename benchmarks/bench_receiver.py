#!/usr/bin/env python3
"""Receiver and sender throughput, with the rotel collector (native, Rust) as the reference.

What it measures, all on loopback with free ports:

1. ``otlp-lab receive`` (a separate process, storing into a DuckDB file) under SENDERS
   concurrent sender processes, each sending pre-encoded ExportTraceServiceRequests of
   512 spans one after another, over gRPC and then over OTLP/HTTP (protobuf): spans/s,
   p50/p99 export latency (request sent -> acknowledged = committed), the receiver's peak
   RSS and write-queue bytes, and loss (acknowledged spans vs spans in the file).
   With ``--mode wal`` (or ``both``, the default) also ``otlp-lab receive --wal DIR``: requests
   acknowledged after an fsync'd append to a write-ahead log and loaded into DuckDB behind
   it; "drain" is the time the receiver needed after the last acknowledgement to load the
   rest at SIGTERM (how far behind the queryable data was). "CPU s" is the receiver's CPU time
   while the senders sent + during the drain (loading the rest, the final checkpoint), start-up
   excluded; "stored/s" counts the drain in.
2. The same load against rotel with its blackhole exporter (it receives, decodes and drops):
   the ceiling a native collector reaches on this machine. Ratios ours/rotel are printed.
3. The otlp_lab Sender (encoding from a Lab, batching 512, gzip, retries) into rotel.

Usage::

    .venv/bin/python benchmarks/bench_receiver.py [--requests 240] [--senders 4] [--mode both|commit|wal]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SPANS_PER_REQUEST = 512
RETRIES, RETRY_PAUSE_S = 50, 0.1  # on UNAVAILABLE / 503; latency counts from the first attempt
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {port} after {timeout_s} s") from None
            time.sleep(0.05)


def make_request(seed: int) -> bytes:
    """One ExportTraceServiceRequest of 512 spans (8 traces of 64), HTTP-server-like attributes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in (
        ("service.name", f"svc-{seed % 7}"),
        ("service.version", "1.4.2"),
        ("host.name", f"node-{seed % 3}"),
    ):
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = k, v
    ss = rs.scope_spans.add()
    ss.scope.name, ss.scope.version = "bench", "1.0"
    t0 = 1_700_000_000_000_000_000 + seed * 1_000_000_000
    for t in range(SPANS_PER_REQUEST // 64):
        trace_id, parent = rng.randbytes(16), b""
        for i in range(64):
            sp = ss.spans.add()
            sp.trace_id, sp.span_id, sp.parent_span_id = trace_id, rng.randbytes(8), parent
            parent = sp.span_id if i % 8 == 0 else parent
            sp.name = f"GET /api/v1/items/{i % 10}"
            sp.kind = 2 if i == 0 else 3
            sp.start_time_unix_nano = t0 + t * 10_000_000 + i * 1000
            sp.end_time_unix_nano = sp.start_time_unix_nano + rng.randint(100_000, 50_000_000)
            for k, v in (
                ("http.request.method", "GET"),
                ("http.route", f"/api/v1/items/{i % 10}"),
                ("server.address", "10.0.0.1"),
            ):
                a = sp.attributes.add()
                a.key, a.value.string_value = k, v
            a = sp.attributes.add()
            a.key, a.value.int_value = "http.response.status_code", 200 if rng.random() > 0.02 else 503
            sp.status.code = 2 if a.value.int_value >= 500 else 0
    return req.SerializeToString()


def sender_process(protocol: str, port: int, seeds: list[int], go, out, ready) -> None:
    """Send pre-encoded requests one after another; report (acked spans, latencies)."""
    bodies = [make_request(s) for s in seeds]
    lat: list[float] = []
    acked = 0
    if protocol == "grpc":
        import grpc

        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1)])
        grpc.channel_ready_future(channel).result(timeout=60)
        call = channel.unary_unary(TRACES)

        def send(body: bytes) -> bool | None:
            try:
                call(body, timeout=30)
                return True
            except grpc.RpcError as exc:
                return None if exc.code() is grpc.StatusCode.UNAVAILABLE else False
    else:
        import httpx

        client = httpx.Client(timeout=30)

        def send(body: bytes) -> bool:
            r = client.post(
                f"http://127.0.0.1:{port}/v1/traces",
                content=body,
                headers={"content-type": "application/x-protobuf"},
            )
            return None if r.status_code == 503 else r.status_code == 200

    ready.put(os.getpid())
    go.wait()
    for body in bodies:
        t = time.perf_counter()
        for _ in range(RETRIES):
            ok = send(body)
            if ok is not None:
                break
            time.sleep(RETRY_PAUSE_S)  # backpressure: retry as an OTLP exporter would (sooner)
        lat.append(time.perf_counter() - t)
        if ok:
            acked += SPANS_PER_REQUEST
    out.put((acked, lat))


def run_load(protocol: str, port: int, n_requests: int, n_senders: int, seed0: int) -> dict:
    ctx = mp.get_context("spawn")
    go, out, ready = ctx.Event(), ctx.Queue(), ctx.Queue()
    per = [list(range(seed0 + k, seed0 + n_requests, n_senders)) for k in range(n_senders)]
    procs = [
        ctx.Process(target=sender_process, args=(protocol, port, seeds, go, out, ready)) for seeds in per
    ]
    for p in procs:
        p.start()
    for _ in procs:  # every sender has imported, pre-encoded its requests and connected
        ready.get(timeout=300)
    time.sleep(0.5)
    t0 = time.perf_counter()
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join(30)
    lat = [x for _, ls in results for x in ls]
    acked = sum(a for a, _ in results)
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {
        "acked": acked,
        "seconds": elapsed,
        "spans_per_s": acked / elapsed,
        "p50_ms": q[49] * 1e3,
        "p99_ms": q[98] * 1e3,
    }


class PeakRss:
    """Sample a process's RSS every 50 ms in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except Exception:
                return
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def cpu_seconds(pid: int) -> float:
    import psutil

    try:
        t = psutil.Process(pid).cpu_times()
    except Exception:
        return float("nan")
    return t.user + t.system + t.children_user + t.children_system


def bench_ours(
    protocol: str, n_requests: int, n_senders: int, tmp: Path, wal: bool = False, queue_mib: float = 64
) -> dict:
    from otlp_lab import Lab

    name = f"bench-{protocol}-{'wal' if wal else 'commit'}"
    port, db = free_port(), tmp / f"{name}.duckdb"
    args = (
        ["--grpc", f"127.0.0.1:{port}", "--http", "off"]
        if protocol == "grpc"
        else ["--grpc", "off", "--http", f"127.0.0.1:{port}"]
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "otlp_lab.cli", "receive", "--db", str(db), "--stats-every", "0", *args]
        + ["--queue-mib", str(queue_mib)]
        + (["--wal", str(tmp / f"{name}-wal")] if wal else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_listening(port, proc)
    rss = PeakRss(proc.pid)
    cpu0 = cpu_seconds(proc.pid)  # imports and start-up: not counted
    res = run_load(protocol, port, n_requests, n_senders, seed0=0)
    t_stop = time.perf_counter()
    res["cpu_load_s"] = cpu_seconds(proc.pid) - cpu0  # while the senders sent
    proc.send_signal(signal.SIGTERM)
    cpu = cpu_seconds(proc.pid)
    while proc.poll() is None:  # the CPU time of the drain too (loading the rest, closing)
        c = cpu_seconds(proc.pid)
        cpu = c if c == c else cpu  # NaN once the process is gone
        time.sleep(0.02)
    res["cpu_s"] = cpu - cpu0
    log, _ = proc.communicate(timeout=300)
    res["drain_s"] = time.perf_counter() - t_stop
    res["stored_per_s"] = res["acked"] / (res["seconds"] + res["drain_s"])
    res["peak_rss_mib"] = rss.stop() / 2**20
    peak_q = [line for line in log.splitlines() if "peak_queue_bytes" in line]
    res["peak_queue_mib"] = (
        int(peak_q[0].split("│")[2].strip().replace(",", "")) / 2**20 if peak_q else float("nan")
    )
    with Lab(db, read_only=True) as lab:
        res["stored"] = lab.counts()["spans"]
    res["lost"] = res["acked"] - res["stored"]
    return res


def rotel_binary() -> str:
    import rotel

    return str(Path(rotel.__file__).parent / "rotel-agent")


def start_rotel(tmp: Path, exporter: list[str]) -> tuple[subprocess.Popen, int, int]:
    g, h = free_port(), free_port()
    proc = subprocess.Popen(
        [
            rotel_binary(),
            "start",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{g}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{h}",
            "--pid-file",
            str(tmp / f"rotel-{g}.pid"),
            "--log-file",
            str(tmp / f"rotel-{g}.log"),
            *exporter,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(g, proc)
    wait_listening(h, proc)
    return proc, g, h


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def bench_rotel(protocol: str, n_requests: int, n_senders: int, tmp: Path) -> dict:
    proc, g, h = start_rotel(tmp, ["--exporter", "blackhole"])
    try:
        rss = PeakRss(proc.pid)
        res = run_load(protocol, g if protocol == "grpc" else h, n_requests, n_senders, seed0=0)
        res["cpu_s"] = cpu_seconds(proc.pid)
        res["drain_s"] = 0.0
        res["peak_rss_mib"] = rss.stop() / 2**20
    finally:
        stop(proc)
    return res


def bench_sender(n_requests: int, tmp: Path) -> dict:
    """Our Sender: from a Lab (export + encode + gzip + send) and from ready requests, into rotel."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from otlp_lab import Lab
    from otlp_lab.transport import Sender

    proc, g, _ = start_rotel(tmp, ["--exporter", "blackhole"])
    try:
        bodies = [make_request(10_000 + i) for i in range(n_requests)]
        with Lab() as lab:
            for b in bodies:
                lab.load_bytes(b, signal="traces")
            from_lab = Sender(f"127.0.0.1:{g}", concurrency=4).send_lab(lab, "traces")
        msgs = [ExportTraceServiceRequest.FromString(b) for b in bodies]
        ready = Sender(f"127.0.0.1:{g}", concurrency=4, compression="none").send_requests(msgs)
    finally:
        stop(proc)
    return {"from_lab": from_lab, "ready": ready}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=240, help="requests of 512 spans per run")
    ap.add_argument("--senders", type=int, default=4, help="concurrent sender processes")
    ap.add_argument(
        "--mode",
        choices=["both", "commit", "wal"],
        default="both",
        help="commit: acknowledge after the DuckDB commit (the default receiver); wal: --wal DIR",
    )
    ap.add_argument(
        "--queue-mib", type=float, default=64, help="the receiver's --queue-mib (its default: 64)"
    )
    args = ap.parse_args()
    modes = {"both": [False, True], "commit": [False], "wal": [True]}[args.mode]
    print(
        f"{os.cpu_count()} cores; {args.senders} sender processes x {args.requests} requests of {SPANS_PER_REQUEST} spans "
        f"({args.requests * SPANS_PER_REQUEST:,} spans) per run, no compression\n"
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = []
        for protocol in ("grpc", "http"):
            ref = bench_rotel(protocol, args.requests, args.senders, tmp)
            for wal in modes:
                ours = bench_ours(
                    protocol, args.requests, args.senders, tmp, wal=wal, queue_mib=args.queue_mib
                )
                rows.append((protocol, "wal" if wal else "commit", ours, ref))
        sender = bench_sender(args.requests, tmp)
    print(
        f"{'receiver':<26}{'acked/s':>11}{'stored/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU s':>11}{'drain s':>8}"
        f"{'peak RSS':>10}{'queue':>8}{'acked':>10}{'lost':>6}"
    )
    shown = set()
    for protocol, mode, ours, ref in rows:
        print(
            f"{'otlp-lab ' + protocol + ' ' + mode:<26}{ours['spans_per_s']:>11,.0f}"
            f"{ours['stored_per_s']:>10,.0f}{ours['p50_ms']:>9.1f}"
            f"{ours['p99_ms']:>9.1f}{ours['cpu_load_s']:>5.1f} +{ours['cpu_s'] - ours['cpu_load_s']:>4.1f}"
            f"{ours['drain_s']:>8.1f}"
            f"{ours['peak_rss_mib']:>8.0f}Mi{ours['peak_queue_mib']:>6.1f}Mi{ours['acked']:>10,}{ours['lost']:>6}"
        )
        if protocol not in shown:
            shown.add(protocol)
            print(
                f"{'rotel ' + protocol + ' (blackhole)':<26}{ref['spans_per_s']:>11,.0f}{'':>10}{ref['p50_ms']:>9.1f}"
                f"{ref['p99_ms']:>9.1f}{ref['cpu_s']:>11.1f}{'':>8}{ref['peak_rss_mib']:>8.0f}Mi{'':>8}{ref['acked']:>10,}"
            )
    print()
    for protocol, mode, ours, ref in rows:
        target = "meets" if ours["stored_per_s"] >= 100_000 and ours["lost"] == 0 else "misses"
        print(
            f"{protocol} {mode}: otlp-lab / rotel = {ours['spans_per_s'] / ref['spans_per_s']:.2f} acked, "
            f"{ours['stored_per_s'] / ref['spans_per_s']:.2f} stored; "
            f"CPU s per 100k spans {ours['cpu_s'] / ours['acked'] * 1e5:.2f} vs rotel {ref['cpu_s'] / ref['acked'] * 1e5:.2f}  "
            f"({target} the 100,000 spans/s zero-loss target)"
        )
    fl, rd = sender["from_lab"], sender["ready"]
    print(
        f"\nsender -> rotel (gRPC, 4 in flight): from a Lab {fl.items_per_s:,.0f} spans/s (export + encode + gzip), "
        f"ready requests {rd.items_per_s:,.0f} spans/s; failed {fl.failed + rd.failed}"
    )
    best_rotel = max(ref["spans_per_s"] for _, _, _, ref in rows)
    print(f"sender (ready requests) / rotel receiver = {rd.items_per_s / best_rotel:.2f}")


if __name__ == "__main__":
    main()
