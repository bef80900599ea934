"""Runs: determinism, what lands in the Lab (spans, metrics, logs, ground truth), the run API and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from otlp_lab import Lab
from otlp_lab.cli import main
from otlp_lab.errors import ScenarioError
from otlp_lab.sim import (
    Brownout,
    Call,
    ClosedLoop,
    Constant,
    CpuContention,
    Crash,
    Empirical,
    Endpoint,
    Errors,
    Exponential,
    Latency,
    OpenLoop,
    Parallel,
    Partition,
    Policy,
    Scenario,
    Service,
    ZoneOutage,
    compare,
    lab_timeline,
    run,
    run_many,
    timelines,
)
from otlp_lab.sim._run import DEFAULT_BATCH_ROWS


def small(**kw) -> Scenario:
    """front -> (cart, then ads and recs in parallel); recs -> cart. Retries on every call."""
    base = dict(
        duration_s=10.0,
        default_policy="std",
        policies={
            "std": Policy(
                1.0,
                retry={
                    "max_attempts": 3,
                    "per_try_timeout_s": 0.2,
                    "initial_backoff_s": 0.001,
                    "jitter": "full",
                },
                breaker={
                    "minimum_number_of_calls": 10,
                    "sliding_window_size": 10,
                    "wait_duration_in_open_state_s": 1.0,
                },
                balancer="p2c",
            )
        },
        services=[
            Service(
                "front",
                instances=2,
                concurrency=16,
                zones=("z1", "z2"),
                service_time=Constant(0.001),
                endpoints=(
                    Endpoint(
                        "home",
                        calls=(Call("cart/get"), Parallel((Call("ads"), Call("recs", critical=False)))),
                    ),
                ),
            ),
            Service(
                "cart",
                instances=3,
                concurrency=4,
                zones=("z1", "z2"),
                service_time=Exponential(0.002),
                endpoints=(Endpoint("get"),),
            ),
            Service("ads", instances=2, concurrency=4, service_time=Constant(0.002)),
            Service(
                "recs",
                instances=2,
                concurrency=4,
                zones=("z1",),
                service_time=Exponential(0.003),
                endpoints=(Endpoint("list", calls=(Call("cart/get"),)),),
            ),
        ],
        workloads=[OpenLoop("front/home", rate=50.0, deadline_s=2.0)],
    )
    base.update(kw)
    return Scenario("small", **base)


# ---------------------------------------------------------------- determinism


def _dump(lab: Lab) -> dict[str, pl.DataFrame]:
    out = {}
    for table, order in [
        ("spans", "trace_id, span_id"),
        ("logs", "time, body::VARCHAR"),
        ("metric_sum", "time, metric_name, service_name, attributes::VARCHAR, resource_attributes::VARCHAR"),
        (
            "metric_gauge",
            "time, metric_name, service_name, attributes::VARCHAR, resource_attributes::VARCHAR",
        ),
        ("metric_histogram", "time, service_name, resource_attributes::VARCHAR"),
        ("faults", "start, instance"),
    ]:
        out[table] = lab.sql(
            f"SELECT * EXCLUDE (load_id) FROM {table} ORDER BY {order}"
            if table != "faults"
            else f"SELECT * FROM faults ORDER BY {order}"
        )
    out["sim_runs"] = lab.sql("SELECT * EXCLUDE (wall_s) FROM sim_runs")
    return out


def test_same_seed_same_output() -> None:
    sc = small(
        faults=(
            Crash(service="cart", instance=0, at_s=3.0, duration_s=2.0),
            Latency(service="ads", at_s=6.0, delay_s=0.05),
        )
    )
    dumps = []
    for _ in range(2):
        with Lab() as lab:
            r = run(sc, lab=lab, seed=7)
            dumps.append((_dump(lab), r.summary(), r.per_service, r.timeline()))
    (a, sa, pa_, ta), (b, sb, pb, tb) = dumps
    assert a["spans"].height > 1000
    for table in a:
        assert a[table].equals(b[table]), table
    assert sa == sb
    assert pa_.equals(pb) and ta.equals(tb)
    with Lab() as lab:
        run(sc, lab=lab, seed=8)
        assert not _dump(lab)["spans"].equals(a["spans"])


# ---------------------------------------------------------------- what lands in the Lab


@pytest.fixture(scope="module")
def shop_lab():
    with Lab() as lab:
        result = run("shop", lab=lab, seed=2, duration_s=45)
        yield lab, result


def test_parent_links_and_kinds(shop_lab) -> None:
    lab, _ = shop_lab
    orphans = lab.sql(
        """SELECT count(*) n FROM spans c LEFT JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id
           WHERE c.parent_span_id IS NOT NULL AND p.span_id IS NULL"""
    )["n"][0]
    assert orphans == 0
    pairs = lab.sql(
        """SELECT p.kind AS parent_kind, c.kind AS kind, count(*) n FROM spans c JOIN spans p
           ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id GROUP BY ALL"""
    )
    got = {(r["parent_kind"], r["kind"]) for r in pairs.to_dicts()}
    assert got == {("INTERNAL", "CLIENT"), ("CLIENT", "SERVER"), ("SERVER", "CLIENT")}
    # the client span names the instance that served it, as the server span's resource does
    mismatched = lab.sql(
        """SELECT count(*) n FROM spans c JOIN spans s ON s.trace_id = c.trace_id AND s.parent_span_id = c.span_id
           WHERE c.attributes['server.address']::VARCHAR <> s.resource_attributes['service.instance.id']::VARCHAR"""
    )["n"][0]
    assert mismatched == 0
    roots = lab.sql("SELECT count(*) n, count(DISTINCT trace_id) t FROM spans WHERE parent_span_id IS NULL")
    assert roots["n"][0] == roots["t"][0]


def test_service_graph_is_the_call_graph(shop_lab) -> None:
    lab, _ = shop_lab
    from otlp_lab.sim import scenario_path

    sc = Scenario.from_yaml(scenario_path("shop"))
    want = {("loadgen", "frontend")}
    for svc in sc.services:
        for ep in svc.endpoints:
            want |= {(svc.name, c.to.split("/")[0]) for c in ep.all_calls()}
    graph = lab.service_graph()
    assert {(r["client"], r["server"]) for r in graph.to_dicts()} == want


def test_resources_tag_the_run(shop_lab) -> None:
    lab, result = shop_lab
    tags = lab.sql(
        """SELECT DISTINCT resource_attributes['sim.run_id']::VARCHAR AS run, resource_attributes['sim.policy']::VARCHAR AS pol FROM spans
           UNION SELECT DISTINCT resource_attributes['sim.run_id']::VARCHAR, resource_attributes['sim.policy']::VARCHAR FROM metric_sum"""
    )
    assert tags.to_dicts() == [{"run": result.run_id, "pol": "default"}]
    assert (
        lab.sql(
            "SELECT count(DISTINCT resource_attributes['service.instance.id']) n FROM spans WHERE service_name = 'frontend'"
        )["n"][0]
        == 3
    )
    assert lab.sql("SELECT min(start_time) t FROM spans")["t"][0].isoformat().startswith("2025-01-01T00:00:0")


def test_faults_table_and_fault_labels(shop_lab) -> None:
    lab, result = shop_lab
    faults = lab.sql(
        'SELECT service, instance, kind, epoch(start) AS start_s, epoch("end") AS end_s, params FROM faults ORDER BY start'
    )
    base = 1735689600.0  # 2025-01-01T00:00:00Z
    rows = [
        (
            r["service"],
            r["instance"],
            r["kind"],
            r["start_s"] - base,
            r["end_s"] - base,
            json.loads(r["params"]),
        )
        for r in faults.to_dicts()
    ]
    assert rows == [
        ("inventory", "inventory-1", "crash", 40.0, 45.0, {})
    ]  # the latency fault at 70 s is after the end
    labelled = lab.sql(
        """SELECT CASE kind WHEN 'SERVER' THEN resource_attributes['service.instance.id'] ELSE attributes['server.address'] END::VARCHAR
                  AS inst, count(*) n FROM spans WHERE attributes['sim.fault.kind']::VARCHAR = 'crash' GROUP BY ALL"""
    )
    assert labelled["inst"].to_list() == [
        "inventory-1"
    ]  # servers that crashed, and clients of the crashed instance
    refused = lab.sql(
        """SELECT count(*) n FROM spans WHERE kind = 'CLIENT' AND attributes['server.address']::VARCHAR = 'inventory-1'
           AND start_time >= TIMESTAMP '2025-01-01 00:00:40.001' AND status_code <> 'ERROR'"""
    )["n"][0]
    assert refused == 0  # while it is down, every attempt sent to it fails
    logs = lab.sql(
        "SELECT event_name, service_name FROM logs WHERE event_name LIKE 'sim.fault.%' ORDER BY time"
    )
    assert logs.to_dicts() == [
        {"event_name": "sim.fault.start", "service_name": "inventory"}
    ]  # it ends after the run


def test_metrics_and_state_logs(shop_lab) -> None:
    lab, result = shop_lab
    m = lab.sql(
        """SELECT service_name, sum(last) AS requests FROM (
               SELECT service_name, max(int_value) AS last FROM metric_sum WHERE metric_name = 'sim.server.requests'
               GROUP BY service_name, resource_attributes['service.instance.id']::VARCHAR) GROUP BY ALL"""
    )
    arrivals = dict(zip(result.per_service["service"], result.per_service["arrivals"], strict=True))
    assert dict(zip(m["service_name"], m["requests"], strict=True)) == arrivals
    names = set(
        lab.sql(
            "SELECT DISTINCT metric_name FROM metric_sum UNION SELECT DISTINCT metric_name FROM metric_gauge"
        )["metric_name"]
    )
    assert {
        "sim.server.requests",
        "sim.server.errors",
        "sim.client.retries",
        "sim.client.ejections",
        "sim.server.in_flight",
        "sim.server.queue_length",
        "sim.client.breaker_state",
    } <= names
    answered = lab.sql(
        "SELECT sum(count) n FROM metric_histogram WHERE time = (SELECT max(time) FROM metric_histogram)"
    )["n"][0]
    arrived = result.per_service["arrivals"].sum()
    assert 0.99 * arrived <= answered <= arrived  # all but those still in flight at the end
    opened = lab.sql(
        "SELECT count(*) n FROM logs WHERE event_name = 'sim.breaker.transition' AND attributes['sim.breaker.state']::VARCHAR = 'open'"
    )["n"][0]
    assert opened == result.per_service["breaker_opens"].sum()


def test_retries_carry_resend_count_and_errors_are_marked() -> None:
    sc = small(faults=(Errors(service="cart", error_rate=1.0, at_s=0.0),), duration_s=3.0)
    sc = sc.with_policies({"std": {"breaker": None}})
    with Lab() as lab:
        r = run(sc, lab=lab, seed=1)
        tries = lab.sql(
            """SELECT parent_span_id, list(coalesce(attributes['http.request.resend_count']::BIGINT, 0) ORDER BY start_time) AS resends,
                      list(status_code ORDER BY start_time) AS status
               FROM spans WHERE kind = 'CLIENT' AND attributes['peer.service']::VARCHAR = 'cart' AND service_name = 'front'
               GROUP BY ALL"""
        )
        assert tries.height > 50
        assert all(x == [0, 1, 2] for x in tries["resends"].to_list())
        assert all(x == ["ERROR"] * 3 for x in tries["status"].to_list())
        err = lab.sql(
            "SELECT DISTINCT attributes['error.type']::VARCHAR AS e FROM spans WHERE kind = 'SERVER' AND service_name = 'cart'"
        )
        assert err["e"].to_list() == ["UNAVAILABLE"]
        assert (
            lab.sql("SELECT count(*) n FROM spans WHERE parent_span_id IS NULL AND status_code <> 'ERROR'")[
                "n"
            ][0]
            == 0
        )
    assert r.error_rate == 1.0
    assert r.amplification > 2.0


def test_all_fault_kinds_reach_the_ground_truth() -> None:
    faults = (
        Crash(service="cart", instance=0, at_s=1.0, duration_s=1.0),
        Latency(service="ads", at_s=1.0, duration_s=2.0, delay_s=0.05),
        Errors(service="ads", instance=1, at_s=2.0, error_rate=0.5),
        ZoneOutage(zone="z2", at_s=3.0, duration_s=1.0),
        Partition(service="front", peer="recs", at_s=4.0, duration_s=1.0, mode="reject"),
        CpuContention(service="cart", instance=2, at_s=0.5, duration_s=3.0, factor=3.0),
        Brownout(service="recs", at_s=5.0, delay_s=0.01, error_rate=0.2),
    )
    with Lab() as lab:
        r = run(small(faults=faults, duration_s=6.0), lab=lab, seed=3)
        got = lab.sql("SELECT service, instance, kind FROM faults ORDER BY start, kind, instance").rows()
        kinds = lab.sql(
            "SELECT DISTINCT attributes['sim.fault.kind']::VARCHAR k FROM spans WHERE attributes['sim.fault.kind'] IS NOT NULL"
        )
    assert got == [
        ("cart", "cart-2", "cpu"),
        ("cart", "cart-0", "crash"),
        ("ads", "ads-0", "latency"),
        ("ads", "ads-1", "latency"),
        ("ads", "ads-1", "errors"),
        ("cart", "cart-1", "zone_outage"),
        ("front", "front-1", "zone_outage"),
        ("front", None, "partition"),
        ("recs", "recs-0", "brownout"),
        ("recs", "recs-1", "brownout"),
    ]
    assert {"crash", "latency", "cpu", "partition"} <= {k for x in kinds["k"] for k in x.split(",")}
    assert r.completed > 0


def test_batches_are_bounded() -> None:
    sizes: list[int] = []

    class CountingLab(Lab):
        def load_batches(self, batches, *, source="<batches>"):
            def counted():
                for b in batches:
                    sizes.append(b["spans"].num_rows if "spans" in b else 0)
                    yield b

            return super().load_batches(counted(), source=source)

    with CountingLab() as lab:
        r = run(small(duration_s=20.0), lab=lab, seed=1, batch_rows=2000)
    assert sum(sizes) == r.spans
    assert len(sizes) >= r.spans // 4000
    assert max(sizes) <= 3 * 2000


def test_closed_loop_and_run_api() -> None:
    sc = small(workloads=[ClosedLoop("front/home", users=5, think_time=Exponential(0.05))], duration_s=5.0)
    r = run(sc, seed=1)
    assert r.spans == 0 and r.requests > 200
    assert 0 < r.p50_s <= r.p95_s <= r.p99_s
    tl = r.timeline()
    assert tl.columns[:3] == ["t_s", "offered_rps", "goodput_rps"] and tl.height == 5
    assert r.per_service["service"].to_list() == ["front", "cart", "ads", "recs"]
    with pytest.raises(ScenarioError, match="seed"):
        run(sc, seed=-1)


def test_compare_and_timelines() -> None:
    policies = {"as is": {}, "no retries": {"std": {"retry": None}}}
    with Lab() as lab:
        frame = compare(small(duration_s=4.0), policies, lab, seed=1)
        assert frame["policy"].to_list() == ["as is", "no retries"]
        assert {
            "goodput_rps",
            "offered_rps",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "error_rate",
            "amplification",
        } <= set(frame.columns)
        runs = lab.sql("SELECT run_id, policy FROM sim_runs ORDER BY policy")
        assert runs["policy"].to_list() == ["as is", "no retries"]
        back = lab_timeline(lab, frame["run_id"][0])
        results = run_many(small(duration_s=4.0), policies, seed=1)
    stacked = timelines(results)
    assert stacked.height == 8 and set(stacked["policy"]) == set(policies)
    mine = results["as is"].timeline()
    assert back["offered_rps"].sum() == mine["offered_rps"].sum()
    # the same run twice into one Lab gets a fresh run id
    with Lab() as lab:
        a = run(small(duration_s=1.0), lab=lab, seed=1)
        b = run(small(duration_s=1.0), lab=lab, seed=1)
        assert b.run_id == a.run_id + "#2"
        assert lab.sql("SELECT count(DISTINCT trace_id) n FROM spans")["n"][0] == a.requests + b.requests


def test_breaker_timeline() -> None:
    r = run(
        "retry_storm",
        seed=0,
        duration_s=30,
        policy_overrides={
            "storm": {
                "breaker": {
                    "minimum_number_of_calls": 20,
                    "sliding_window_size": 20,
                    "wait_duration_in_open_state_s": 1.0,
                }
            }
        },
    )
    bt = r.breaker_timeline()
    assert set(bt.columns) == {"t_s", "caller", "target", "closed", "open", "half_open"}
    assert bt.filter(pl.col("t_s") < 20)["open"].sum() == 0
    assert bt.filter(pl.col("t_s") >= 20)["open"].sum() > 0


def test_empirical_from_lab() -> None:
    with Lab() as lab:
        run(small(duration_s=3.0), lab=lab, seed=1)
        d = Empirical.from_lab(lab, "ads", "default")
        assert d.mean_s == pytest.approx(0.002, rel=1e-6)
        with pytest.raises(ScenarioError, match="no spans"):
            Empirical.from_lab(lab, "ads", "nope")


def test_cli_simulate(tmp_path: Path) -> None:
    db = tmp_path / "out.duckdb"
    res = CliRunner().invoke(
        main, ["simulate", "retry_storm", "--db", str(db), "--seed", "3", "--duration", "5s", "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert "goodput" in res.output and "api" in res.output
    with Lab(db, read_only=True) as lab:
        assert lab.sql("SELECT seed, duration_s FROM sim_runs").rows() == [(3, 5.0)]
    bad = CliRunner().invoke(main, ["simulate", "no_such_scenario", "--no-progress"])
    assert bad.exit_code == 2 and "no shipped scenario" in bad.output


def test_default_batch_rows_is_sane() -> None:
    assert 1000 <= DEFAULT_BATCH_ROWS <= 1_000_000


# ---------------------------------------------------------------- workloads and policies at work


def test_time_varying_rates_follow_their_profile() -> None:
    import random

    from otlp_lab.sim import Burst, Diurnal, Steps

    for rate, windows in [
        (Steps(100.0, ((10.0, 300.0), (20.0, 50.0))), [(0, 10, 100), (10, 20, 300), (20, 30, 50)]),
        (Burst(100.0, 400.0, 5.0, 5.0), [(0, 5, 100), (5, 10, 400), (10, 20, 100)]),
        (
            Diurnal(200.0, amplitude=0.5, period_s=40.0),
            [(0, 20, 200 * (1 + 0.5 * 2 / math.pi)), (20, 40, 200 * (1 - 0.5 * 2 / math.pi))],
        ),
    ]:
        times = []
        for t in rate.arrivals(random.Random(4)):
            if t >= 40:
                break
            times.append(t)
        for lo, hi, rps in windows:
            n = sum(lo <= t < hi for t in times)
            expected = rps * (hi - lo)
            assert abs(n - expected) < 4 * math.sqrt(expected), (rate, lo, hi, n, expected)


def test_deadlines_propagate_down_the_call_graph() -> None:
    sc = small(
        workloads=[OpenLoop("front/home", rate=20.0, deadline_s=0.05)],
        duration_s=3.0,
        faults=(Latency(service="cart", delay_s=1.0),),
    )
    sc = sc.with_policies(
        {"std": {"retry": None, "timeout_s": None}}
    )  # only the root's 50 ms deadline is left
    with Lab() as lab:
        run(sc, lab=lab, seed=1)
        d = lab.sql(
            """SELECT max(duration_ns) / 1e9 AS longest FROM spans
               WHERE kind = 'CLIENT' AND service_name = 'front' AND attributes['peer.service']::VARCHAR = 'cart'"""
        )["longest"][0]
        servers = lab.sql(
            "SELECT min(duration_ns) / 1e9 AS shortest FROM spans WHERE kind = 'SERVER' AND service_name = 'cart'"
        )
    assert d < 0.05  # front gave up on cart at the request's deadline, not after cart's 1 s
    assert servers["shortest"][0] >= 1.0  # while cart (no server-side cancellation) finished the work anyway


def test_hedging_cancels_the_losers() -> None:
    sc = small(duration_s=3.0).with_policies(
        {"std": {"retry": {"max_attempts": 2, "hedging_delay_s": 0.001}, "breaker": None}}
    )
    with Lab() as lab:
        r = run(sc, lab=lab, seed=1)
        cancelled = lab.sql(
            "SELECT count(*) n FROM spans WHERE kind = 'CLIENT' AND status_message = 'CANCELLED'"
        )["n"][0]
    assert r.amplification > 1.2 and cancelled > 0 and r.error_rate == 0.0


def test_ring_hash_sticks_a_key_to_an_instance() -> None:
    sc = small(
        workloads=[OpenLoop("cart/get", rate=100.0, keys=1)],
        duration_s=2.0,
        policies={"std": Policy(balancer="ring_hash")},
    )
    arrivals = run(sc, seed=1).per_service.filter(pl.col("service") == "cart")["arrivals"][0]
    sim_lab = Lab()
    with sim_lab:
        run(sc, lab=sim_lab, seed=1)
        insts = sim_lab.sql(
            "SELECT DISTINCT resource_attributes['service.instance.id']::VARCHAR i FROM spans WHERE kind = 'SERVER'"
        )
    assert arrivals > 100 and insts.height == 1


def test_outlier_ejection_and_health_checks_log_their_changes() -> None:
    sc = small(
        duration_s=6.0,
        faults=(
            Errors(service="cart", instance=1, error_rate=1.0, at_s=1.0),
            Crash(service="ads", instance=0, at_s=1.0),
        ),
    )
    sc = sc.with_policies(
        {
            "std": {
                "breaker": None,
                "outlier_detection": {
                    "consecutive_5xx": 3,
                    "max_ejection_percent": 50,
                    "interval_s": 1.0,
                    "base_ejection_time_s": 2.0,
                },
                "health_check": {"interval_s": 0.5, "timeout_s": 0.1, "unhealthy_threshold": 2},
            }
        }
    )
    with Lab() as lab:
        r = run(sc, lab=lab, seed=1)
        events = lab.sql("SELECT event_name, count(*) n FROM logs GROUP BY ALL")
        late_to_bad = lab.sql(
            """SELECT count(*) n FROM spans WHERE kind = 'CLIENT' AND start_time > TIMESTAMP '2025-01-01 00:00:03'
               AND attributes['server.address']::VARCHAR IN ('ads-0')"""
        )["n"][0]
    ev = dict(events.rows())
    assert ev.get("sim.outlier.eject", 0) > 0 and ev.get("sim.health.change", 0) > 0
    assert r.per_service.filter(pl.col("service") == "cart")["ejections"][0] > 0
    assert late_to_bad == 0  # health checks took the crashed instance out of every balancer


def test_bulkhead_refusals_are_local() -> None:
    sc = small(duration_s=2.0, workloads=[OpenLoop("front/home", rate=500.0)])
    sc = sc.with_policies({"std": {"bulkhead": {"max_requests": 1}, "breaker": None, "retry": None}})
    r = run(sc, seed=1)
    front = r.per_service.filter(pl.col("service") == "front").to_dicts()[0]
    assert (
        front["attempts"] < front["calls"]
    )  # the load generator's bulkhead refused calls, which were never sent
    assert r.error_rate > 0


def test_progress_bar_and_server_side_cancellation() -> None:
    import dataclasses

    from otlp_lab.sim import scenario_path

    sc = Scenario.from_yaml(scenario_path("retry_storm"))
    cancelling = sc.replace(
        services=tuple(
            dataclasses.replace(s, drop_expired=True) if s.name == "api" else s for s in sc.services
        )
    )
    plain = (
        run(sc, seed=0, duration_s=30, progress=True)
        .per_service.filter(pl.col("service") == "api")
        .to_dicts()[0]
    )
    dropping = (
        run(cancelling, seed=0, duration_s=30).per_service.filter(pl.col("service") == "api").to_dicts()[0]
    )
    assert plain["errors"] == 0  # works on every abandoned attempt
    assert dropping["errors"] > 0  # skips the expired ones (answered DEADLINE_EXCEEDED without work)
    assert dropping["utilisation"] < plain["utilisation"]


def test_staging_tables_have_the_codec_schema() -> None:
    """The simulator writes the very staging form the OTLP codec produces (names, order and types)."""
    from otlp_lab.otlp import decode_bytes
    from otlp_lab.sim._emit import Emitter
    from otlp_lab.sim._engine import Simulation

    res = {"attributes": [{"key": "service.name", "value": {"stringValue": "a"}}]}
    attrs = [{"key": "k", "value": {"stringValue": "v"}}]
    point = {"timeUnixNano": "2", "startTimeUnixNano": "1", "attributes": attrs}
    docs = [
        {
            "resourceSpans": [
                {
                    "resource": res,
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "01" * 16,
                                    "spanId": "02" * 8,
                                    "name": "x",
                                    "startTimeUnixNano": "1",
                                    "endTimeUnixNano": "2",
                                    "attributes": attrs,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
        {
            "resourceLogs": [
                {
                    "resource": res,
                    "scopeLogs": [
                        {
                            "logRecords": [
                                {"timeUnixNano": "1", "body": {"stringValue": "b"}, "attributes": attrs}
                            ]
                        }
                    ],
                }
            ]
        },
        {
            "resourceMetrics": [
                {
                    "resource": res,
                    "scopeMetrics": [
                        {
                            "metrics": [
                                {
                                    "name": "s",
                                    "sum": {
                                        "aggregationTemporality": 2,
                                        "isMonotonic": True,
                                        "dataPoints": [{**point, "asInt": "3"}],
                                    },
                                },
                                {"name": "g", "gauge": {"dataPoints": [{**point, "asDouble": 1.5}]}},
                                {
                                    "name": "h",
                                    "histogram": {
                                        "aggregationTemporality": 2,
                                        "dataPoints": [
                                            {
                                                **point,
                                                "count": "1",
                                                "sum": 1.0,
                                                "bucketCounts": ["0", "1"],
                                                "explicitBounds": [1.0],
                                            }
                                        ],
                                    },
                                },
                            ]
                        }
                    ],
                }
            ]
        },
    ]
    codec: dict[str, object] = {}
    for doc in docs:
        for batch in decode_bytes(json.dumps(doc).encode()):
            codec.update({k: t.schema for k, t in batch.items()})
    sc = small(duration_s=2.0)
    sim = Simulation(
        sc,
        seed=1,
        duration_s=2.0,
        run_id="r",
        label="l",
        emitter_factory=lambda c: Emitter(c, salt=1, start_ns=sc.start_ns(), scope=("s", "1")),
    )
    sim.start()
    sim.run_until(2.0)
    sim.log(1.0, "INFO", "hello", "sim.test", 0, {"a": 1})
    sim.snapshot_metrics()
    mine = {k: t.schema for k, t in sim.emitter.flush().items()}
    assert set(mine) == set(codec)
    for table, schema in codec.items():
        assert mine[table].names == schema.names, table
        assert mine[table].types == schema.types, table
