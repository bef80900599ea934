"""Load benchmark: OTLP protobuf -> DuckDB, against three baselines in the same run.

A generated ExportTraceServiceRequest of 200,000 spans (10 services, 8 attributes per
span: 6 of low cardinality such as method, route and status code, 2 of high cardinality
such as a user id and a URL path) is loaded four ways:

(a) ``ParseFromString`` alone (the floor: no Python touches a span);
(b) a naive loop over the parsed message building one dict per span, then into DuckDB
    through ``pyarrow.Table.from_pylist``;
(c) DuckDB ``read_json`` + ``unnest`` over the same request as OTLP/JSON;
(d) ``Lab.load`` (typed tables, hex ids, MAP(VARCHAR, VARIANT) attributes).

The same four ways again for the request as OTLP/JSON lines (the Collector file
exporter's format: one request of at most 2,000 spans per line): (a) ``orjson.loads`` of
every line alone, (b) a naive dict loop, (c) ``read_json`` + ``unnest`` of the lines, (d)
``Lab.load``. Then, when the shared TrainTicket capture is beside the repository
(``../shared/datasets/trainticket-nezha-2023-01-30``), eight minutes of its spans, and its
logs and metrics, against ``read_json`` + ``unnest`` of the same files.

Prints items/s, the ratios, peak memory of (d) relative to the request's size (in a fresh
subprocess, protobuf and JSON lines) and a profile of (d).

Run: ``make bench`` or ``python benchmarks/bench_load.py [--spans N]``.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import pstats
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlp_lab import Lab

ROUTES = [
    f"/api/v1/{r}"
    for r in ("cart", "checkout", "pay", "user", "search", "item", "ship", "auth", "ads", "rec")
]


def make_request(n_spans: int, *, services: int = 10, seed: int = 42) -> ExportTraceServiceRequest:
    rng = random.Random(seed)
    req = ExportTraceServiceRequest()
    per = n_spans // services
    t0 = 1_764_000_000_000_000_000
    for s in range(services):
        rs = req.resource_spans.add()
        for k, v in (
            ("service.name", f"service-{s}"),
            ("service.version", "1.4.2"),
            ("host.name", f"node-{s % 3}"),
        ):
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = k, v
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = "io.opentelemetry.http", "2.1.0"
        trace_id = rng.randbytes(16)
        parent = b""
        for i in range(per):
            if i % 8 == 0:
                trace_id, parent = rng.randbytes(16), b""
            sp = ss.spans.add()
            sp.trace_id, sp.span_id, sp.parent_span_id = trace_id, rng.randbytes(8), parent
            parent = sp.span_id
            route = ROUTES[i % len(ROUTES)]
            sp.name = f"GET {route}"
            sp.kind = 2 if i % 2 == 0 else 3
            sp.start_time_unix_nano = t0 + i * 1_000_000
            sp.end_time_unix_nano = sp.start_time_unix_nano + rng.randint(100_000, 50_000_000)
            code = 500 if rng.random() < 0.02 else 200
            attrs = (
                ("http.request.method", "GET"),
                ("http.route", route),
                ("http.response.status_code", code),
                ("server.address", f"service-{(s + 1) % services}"),
                ("network.protocol.version", "1.1"),
                ("sampled", True),
                ("enduser.id", rng.randint(1, 10**9)),
                ("url.path", f"{route}/{rng.randint(1, 10**9)}"),
            )
            for key, val in attrs:
                a = sp.attributes.add()
                a.key = key
                if isinstance(val, bool):
                    a.value.bool_value = val
                elif isinstance(val, int):
                    a.value.int_value = val
                else:
                    a.value.string_value = val
            if code == 500:
                sp.status.code = 2
    return req


def to_otlp_json(req: ExportTraceServiceRequest) -> bytes:
    d = json_format.MessageToDict(req)
    for rs in d["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in sp:
                        sp[k] = base64.b64decode(sp[k]).hex()
    return json.dumps(d).encode()


def to_otlp_json_lines(req: ExportTraceServiceRequest, per_line: int = 2000) -> bytes:
    """The request as JSON lines: one request per line, at most ``per_line`` spans each."""
    doc = orjson.loads(to_otlp_json(req))
    lines = []
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            spans = ss["spans"]
            for lo in range(0, len(spans), per_line):
                part = {**ss, "spans": spans[lo : lo + per_line]}
                lines.append(orjson.dumps({"resourceSpans": [{**rs, "scopeSpans": [part]}]}))
    return b"\n".join(lines) + b"\n"


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def parse_only(data: bytes) -> None:
    ExportTraceServiceRequest.FromString(data)


def naive(data: bytes) -> None:
    req = ExportTraceServiceRequest.FromString(data)
    rows = []
    for rs in req.resource_spans:
        res = {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for sp in ss.spans:
                rows.append(
                    {
                        "trace_id": sp.trace_id.hex(),
                        "span_id": sp.span_id.hex(),
                        "parent_span_id": sp.parent_span_id.hex() or None,
                        "name": sp.name,
                        "kind": sp.kind,
                        "service_name": res.get("service.name"),
                        "start_time_unix_nano": sp.start_time_unix_nano,
                        "end_time_unix_nano": sp.end_time_unix_nano,
                        "status_code": sp.status.code,
                        "attributes": {
                            kv.key: str(getattr(kv.value, kv.value.WhichOneof("value")))
                            for kv in sp.attributes
                        },
                    }
                )
    con = duckdb.connect()
    tbl = pa.Table.from_pylist(rows)  # noqa: F841  (read by DuckDB below)
    con.execute("CREATE TABLE spans AS SELECT * FROM tbl")


def naive_json_lines(path: Path) -> None:
    rows = []
    with open(path, "rb") as f:
        for line in f:
            for rs in orjson.loads(line)["resourceSpans"]:
                res = {a["key"]: next(iter(a["value"].values())) for a in rs["resource"]["attributes"]}
                for ss in rs["scopeSpans"]:
                    for sp in ss["spans"]:
                        rows.append(
                            {
                                "trace_id": sp["traceId"],
                                "span_id": sp["spanId"],
                                "parent_span_id": sp.get("parentSpanId") or None,
                                "name": sp["name"],
                                "kind": str(sp.get("kind", 0)),
                                "service_name": res.get("service.name"),
                                "start_time_unix_nano": int(sp["startTimeUnixNano"]),
                                "end_time_unix_nano": int(sp["endTimeUnixNano"]),
                                "status_code": str((sp.get("status") or {}).get("code", 0)),
                                "attributes": {
                                    a["key"]: str(next(iter(a["value"].values())))
                                    for a in sp.get("attributes", ())
                                },
                            }
                        )
    con = duckdb.connect()
    tbl = pa.Table.from_pylist(rows)  # noqa: F841  (read by DuckDB below)
    con.execute("CREATE TABLE spans AS SELECT * FROM tbl")


def read_json(path: Path) -> None:
    con = duckdb.connect()
    con.execute(
        f"""CREATE TABLE spans AS
        WITH r AS (SELECT unnest(resourceSpans) AS rs FROM read_json('{path}', maximum_object_size=2000000000)),
             s AS (SELECT rs.resource AS resource, unnest(rs.scopeSpans) AS ss FROM r),
             p AS (SELECT resource, ss.scope AS scope, unnest(ss.spans) AS sp FROM s)
        SELECT sp.traceId AS trace_id, sp.spanId AS span_id, sp.parentSpanId AS parent_span_id, sp.name, sp.kind,
               list_filter(resource.attributes, lambda a: a.key = 'service.name')[1].value.stringValue AS service_name,
               make_timestamp_ns(sp.startTimeUnixNano::BIGINT) AS start_time,
               make_timestamp_ns(sp.endTimeUnixNano::BIGINT) AS end_time, sp.status.code AS status_code,
               sp.attributes AS attributes
        FROM p"""
    )


def read_json_logs(paths: list[Path]) -> None:
    con = duckdb.connect()
    files = [str(p) for p in paths]
    con.execute(
        """CREATE TABLE logs AS
        WITH r AS (SELECT unnest(resourceLogs) AS rl FROM read_json(?, maximum_object_size=2000000000)),
             s AS (SELECT rl.resource AS resource, unnest(rl.scopeLogs) AS sl FROM r),
             p AS (SELECT resource, sl.scope AS scope, unnest(sl.logRecords) AS lr FROM s)
        SELECT make_timestamp_ns(lr.timeUnixNano::BIGINT) AS time, lr.severityNumber AS severity_number,
               lr.severityText AS severity_text, lr.body.stringValue AS body, lr.traceId AS trace_id,
               lr.spanId AS span_id,
               list_filter(resource.attributes, lambda a: a.key = 'service.name')[1].value.stringValue AS service_name,
               lr.attributes AS attributes
        FROM p""",
        [files],
    )


def read_json_gauges(paths: list[Path]) -> None:
    con = duckdb.connect()
    files = [str(p) for p in paths]
    con.execute(
        """CREATE TABLE gauge AS
        WITH r AS (SELECT unnest(resourceMetrics) AS rm FROM read_json(?, maximum_object_size=2000000000)),
             s AS (SELECT rm.resource AS resource, unnest(rm.scopeMetrics) AS sm FROM r),
             m AS (SELECT resource, unnest(sm.metrics) AS m FROM s),
             p AS (SELECT resource, m.name AS name, m.unit AS unit, unnest(m.gauge.dataPoints) AS dp FROM m)
        SELECT name, unit, make_timestamp_ns(dp.timeUnixNano::BIGINT) AS time, dp.asDouble AS value,
               dp.asInt::BIGINT AS int_value,
               list_filter(resource.attributes, lambda a: a.key = 'service.name')[1].value.stringValue AS service_name
        FROM p""",  # the pods' points carry no attributes of their own
        [files],
    )


def read_json_files(paths: list[Path]) -> None:
    """``read_json`` + ``unnest`` of span files (the same query as :func:`read_json`)."""
    read_json_list([str(p) for p in paths], attributes=False)  # TrainTicket spans have none


def read_json_list(files: list[str], *, attributes: bool = True) -> None:
    con = duckdb.connect()
    attrs = ", sp.attributes AS attributes" if attributes else ""
    con.execute(
        f"""CREATE TABLE spans AS
        WITH r AS (SELECT unnest(resourceSpans) AS rs FROM read_json(?, maximum_object_size=2000000000)),
             s AS (SELECT rs.resource AS resource, unnest(rs.scopeSpans) AS ss FROM r),
             p AS (SELECT resource, ss.scope AS scope, unnest(ss.spans) AS sp FROM s)
        SELECT sp.traceId AS trace_id, sp.spanId AS span_id, sp.parentSpanId AS parent_span_id, sp.name,
               list_filter(resource.attributes, lambda a: a.key = 'service.name')[1].value.stringValue AS service_name,
               make_timestamp_ns(sp.startTimeUnixNano::BIGINT) AS start_time,
               make_timestamp_ns(sp.endTimeUnixNano::BIGINT) AS end_time{attrs}
        FROM p""",
        [files],
    )


def lab_load(*paths: Path) -> dict[str, int]:
    with Lab() as lab:
        lab.con.execute("SET enable_progress_bar = false")
        return dict(lab.load(*paths))


_MEM_CHILD = """
import os, sys, tempfile
from otlp_lab import Lab

def status(key):  # kB; VmHWM is the peak RSS of this process image (ru_maxrss would include the parent's, pre-exec)
    return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]) * 1024

lab = Lab(os.path.join(tempfile.mkdtemp(), "bench.duckdb"))
lab.con.execute("SET enable_progress_bar = false")
base = status('VmRSS')
lab.load(sys.argv[1])
print(base, status('VmHWM'))
"""


SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "trainticket-nezha-2023-01-30"


def peak_memory(path: Path) -> tuple[int, int]:
    """(RSS of a fresh Lab, peak RSS while loading ``path`` into a database file), in bytes."""
    out = subprocess.run(
        [sys.executable, "-c", _MEM_CHILD, str(path)], capture_output=True, text=True, check=True
    )
    base, peak = (int(x) for x in out.stdout.split()[-2:])
    return base, peak


def compare(title: str, n: int, what: str, results: dict[str, float]) -> None:
    print(f"\n{title}\n{'method':38s} {'seconds':>8s} {what + '/s':>12s}")
    for name, s in results.items():
        print(f"{name:38s} {s:8.3f} {n / s:12,.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs of (d)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        req = make_request(args.spans)
        data = req.SerializeToString()
        pb_path, json_path = Path(tmp) / "req.binpb", Path(tmp) / "req.json"
        jsonl_path = Path(tmp) / "req.otlp.jsonl"
        pb_path.write_bytes(data)
        json_path.write_bytes(to_otlp_json(req))
        jsonl_path.write_bytes(to_otlp_json_lines(req))
        del req
        n = args.spans
        print(
            f"request: {n:,} spans, protobuf {len(data) / 1e6:.1f} MB, OTLP/JSON {json_path.stat().st_size / 1e6:.1f} MB, "
            f"JSON lines {jsonl_path.stat().st_size / 1e6:.1f} MB"
        )
        pb = {
            "(a) ParseFromString alone": timed(lambda: parse_only(data), 3),
            "(b) naive dict loop -> DuckDB": timed(lambda: naive(data)),
            "(c) DuckDB read_json + unnest": timed(lambda: read_json(json_path)),
            "(d) Lab.load": timed(lambda: lab_load(pb_path), args.repeat),
        }
        compare("protobuf (one request)", n, "spans", pb)
        lines = jsonl_path.read_bytes().splitlines()
        js = {
            "(a) orjson.loads of each line alone": timed(lambda: [orjson.loads(x) for x in lines], 3),
            "(b) naive dict loop -> DuckDB": timed(lambda: naive_json_lines(jsonl_path)),
            "(c) DuckDB read_json + unnest": timed(lambda: read_json_list([str(jsonl_path)])),
            "(d) Lab.load": timed(lambda: lab_load(jsonl_path), args.repeat),
        }
        compare("OTLP/JSON lines (2,000 spans a line)", n, "spans", js)
        print()
        for label, r in (("protobuf", pb), ("JSON lines", js)):
            a, b, c, d = r.values()
            print(
                f"{label:10s} (d) vs (b) naive loop {b / d:5.2f}x, vs (c) read_json {c / d:5.2f}x "
                f"(targets >= 4x); (d) takes {d / a:5.2f}x the time of (a)"
            )

        for label, path, size in (
            ("protobuf", pb_path, len(data)),
            ("JSON lines", jsonl_path, jsonl_path.stat().st_size),
        ):
            base, peak = peak_memory(path)
            grown = peak - base
            print(
                f"peak memory of (d), {label}, into a database file: +{grown / 1e6:.0f} MB over a fresh Lab = "
                f"{grown / size:.2f}x the request ({size / 1e6:.0f} MB); target < 3x"
            )

        export(pb_path, n, Path(tmp))

        prof = cProfile.Profile()
        prof.runcall(lab_load, pb_path)
        print("\nwhere (d) spends its time on protobuf (top 8 by own time):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)

    if SHARED.is_dir():
        trainticket()


def export(pb_path: Path, n: int, tmp: Path) -> None:
    """``write_otlp`` (issue 12.4's target: >= 100,000 spans/s) and ``to_parquet`` of the loaded request."""
    with Lab() as lab:
        lab.con.execute("SET enable_progress_bar = false")
        lab.load(pb_path)
        r = {
            "DuckDB COPY spans_parquet TO parquet": timed(
                lambda: lab.con.execute(f"COPY (FROM spans_parquet) TO '{tmp / 'copy.parquet'}'"), 1
            ),
            "lab.to_parquet (Hive-partitioned)": timed(lambda: lab.to_parquet(tmp / "pq", overwrite=True), 1),
            "lab.write_otlp, protobuf": timed(
                lambda: lab.write_otlp(tmp / "out.binpb", "traces", fmt="protobuf"), 1
            ),
            "lab.write_otlp, JSON lines": timed(
                lambda: lab.write_otlp(tmp / "out.jsonl", "traces", fmt="json"), 1
            ),
        }
    compare("export of the loaded request", n, "spans", r)
    print("target for write_otlp: >= 100,000 spans/s")


def trainticket() -> None:
    """Eight minutes of the shared TrainTicket day (attribute-poor spans), its logs and metrics."""
    spans = sorted((SHARED / "faulty").glob("*.otlp.jsonl.gz"))[:8]
    logs = sorted((SHARED / "logs" / "faulty").glob("*.otlp.jsonl.gz"))[:8]
    metrics = [SHARED / "metrics" / "pods.otlp.jsonl.gz"]
    for title, what, files, table, base in (
        ("TrainTicket spans, 8 minutes", "spans", spans, "spans", read_json_files),
        ("TrainTicket logs, 8 minutes", "records", logs, "logs", read_json_logs),
        ("TrainTicket pod metrics (gauges), whole day", "points", metrics, "metric_gauge", read_json_gauges),
    ):
        counts = lab_load(*files)
        n = counts[table]
        r = {
            "(c) DuckDB read_json + unnest": timed(lambda files=files, base=base: base(files), 2),
            "(d) Lab.load": timed(lambda files=files: lab_load(*files), 2),
        }
        compare(f"{title} ({sum(f.stat().st_size for f in files) / 1e6:.1f} MB gzip)", n, what, r)
        c, d = r.values()
        print(f"(d) vs (c) read_json: {c / d:5.2f}x  (target >= 1x for spans, >= 4x for logs and metrics)")


if __name__ == "__main__":
    main()
