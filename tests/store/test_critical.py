"""Critical path: one trace per jaeger-ui rule, a property test, and the aggregate over traces."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otlp_lab import ConfigError, Lab
from otlp_lab.store import critical_path

from .spans import MS, request, sid_hex, span, tid_hex


def frame(rows: list[tuple]) -> pl.DataFrame:
    """rows: (span_id, parent, start_ms, end_ms[, kind])."""
    return pl.DataFrame(
        {
            "span_id": [str(r[0]) for r in rows],
            "parent_span_id": [None if r[1] is None else str(r[1]) for r in rows],
            "start_ns": [int(r[2] * MS) for r in rows],
            "end_ns": [int(r[3] * MS) for r in rows],
            "kind": [r[4] if len(r) > 4 else None for r in rows],
        }
    )


def path(rows: list[tuple]) -> list[tuple[str, float, float]]:
    cp = critical_path(frame(rows)).sort("start_ns")
    return [(r["span_id"], r["start_ns"] / MS, r["end_ns"] / MS) for r in cp.to_dicts()]


def test_follows_the_last_finishing_child_then_the_one_that_ended_before_it_started():
    # A 0-100 with B 10-40 and C 50-90: A owns 0-10, 40-50 and 90-100.
    assert path([("A", None, 0, 100), ("B", "A", 10, 40), ("C", "A", 50, 90)]) == [
        ("A", 0, 10),
        ("B", 10, 40),
        ("A", 40, 50),
        ("C", 50, 90),
        ("A", 90, 100),
    ]


def test_a_child_still_running_when_the_followed_child_started_is_skipped():
    # B (10-60) ends after C started (50): the next child must end strictly before 50, so B is off the path.
    assert path([("A", None, 0, 100), ("B", "A", 10, 60), ("C", "A", 50, 90)]) == [
        ("A", 0, 50),
        ("C", 50, 90),
        ("A", 90, 100),
    ]


def test_a_child_ending_exactly_when_the_followed_one_starts_is_skipped():
    assert path([("A", None, 0, 100), ("B", "A", 10, 50), ("C", "A", 50, 90)]) == [
        ("A", 0, 50),
        ("C", 50, 90),
        ("A", 90, 100),
    ]


def test_children_are_clamped_to_their_parent():
    # B starts before A (truncated server timestamps) and C runs past A's end.
    assert path([("A", None, 10, 100), ("B", "A", 5, 30), ("C", "A", 40, 120)]) == [
        ("B", 10, 30),
        ("A", 30, 40),
        ("C", 40, 100),
    ]


def test_grandchildren_are_clamped_to_the_clamped_child():
    # C is clamped to 10-100 by A; D (95-110) is then clamped to 95-100 by the clamped C.
    assert path([("A", None, 0, 100), ("C", "A", 10, 150), ("D", "C", 95, 110)]) == [
        ("A", 0, 10),
        ("C", 10, 95),
        ("D", 95, 100),
    ]


def test_children_wholly_outside_the_parent_are_dropped_with_their_subtree():
    rows = [
        ("A", None, 0, 100),
        ("B", "A", 100, 150),
        ("B1", "B", 110, 120),
        ("C", "A", -20, 0),
        ("D", "A", 20, 30),
    ]
    assert path(rows) == [("A", 0, 20), ("D", 20, 30), ("A", 30, 100)]


def test_producer_to_consumer_children_are_pruned_with_their_subtree():
    rows = [
        ("A", None, 0, 100, "SERVER"),
        ("P", "A", 10, 20, "PRODUCER"),
        ("Q", "P", 15, 95, "CONSUMER"),
        ("Q1", "Q", 20, 90, "CLIENT"),
    ]
    assert path(rows) == [("A", 0, 10), ("P", 10, 20), ("A", 20, 100)]
    # a CONSUMER under a non-PRODUCER parent still blocks
    rows[1] = ("P", "A", 10, 20, "CLIENT")
    assert ("Q", 20, 95) not in path(rows) and any(s == "Q" for s, _, _ in path(rows))


def test_each_root_gets_its_own_path():
    # Two roots (the second one's parent is missing from the capture).
    cp = critical_path(frame([("A", None, 0, 50), ("A1", "A", 10, 20), ("B", "gone", 30, 80)]))
    assert cp.group_by("root_span_id").agg(pl.col("self_ms").sum()).sort("root_span_id").rows() == [
        ("A", 50.0),
        ("B", 50.0),
    ]


def test_duplicate_spans_count_once(lab: Lab):
    trace = [span(1, None, "front", 0, 100), span(2, 1, "cart", 10, 60), span(3, 1, "pay", 50, 90)]
    lab.load_bytes(request(trace))
    lab.load_bytes(request(trace))  # an overlapping capture: every span twice
    assert lab.sql("SELECT count(*) n FROM spans")["n"][0] == 6
    assert lab.info()["duplicate_spans"] == 3
    assert lab.span_tree().height == 3 and lab.traces()["spans"].to_list() == [3]
    cp = lab.critical_path(tid_hex())
    assert cp["self_ms"].sum() == pytest.approx(100.0)
    assert cp["span_id"].to_list() == [sid_hex(1), sid_hex(3), sid_hex(1)]
    with pytest.raises(ConfigError, match="lab.traces"):
        lab.critical_path("cd" * 16)


@st.composite
def traces(draw):
    n = draw(st.integers(1, 25))
    rows = [("s0", None, draw(st.integers(0, 50)), draw(st.integers(50, 200)), None)]
    for i in range(1, n):
        parent = f"s{draw(st.integers(0, i - 1))}"
        a = draw(st.integers(-50, 250))
        b = a + draw(st.integers(0, 150))
        kind = draw(st.sampled_from([None, "CLIENT", "SERVER", "PRODUCER", "CONSUMER"]))
        rows.append((f"s{i}", parent, a, b, kind))
    if draw(st.booleans()):
        rows.append(rows[draw(st.integers(0, n - 1))])  # a duplicate
    return rows


@settings(max_examples=200, deadline=None)
@given(traces())
def test_segments_never_overlap_and_fit_in_the_root(rows):
    cp = critical_path(frame(rows)).sort("start_ns")
    starts, ends = cp["start_ns"].to_list(), cp["end_ns"].to_list()
    assert all(a < b for a, b in zip(starts, ends, strict=True))
    assert all(b <= a for b, a in zip(ends, starts[1:], strict=False))  # no overlap
    root_start, root_end = rows[0][2] * MS, rows[0][3] * MS
    assert sum(b - a for a, b in zip(starts, ends, strict=True)) <= root_end - root_start
    assert all(root_start <= a and b <= root_end for a, b in zip(starts, ends, strict=True))


def test_summary_shares_critical_time_per_service_and_operation(lab: Lab):
    # trace 1: front 0-100 waits on cart 10-60 and pay 50-90 (cart is off the path after 50)
    # trace 2: front 0-40 waits on cart 5-35
    spans = [
        span(1, None, "front", 0, 100, name="GET /checkout"),
        span(2, 1, "cart", 10, 60, name="GetCart"),
        span(3, 1, "pay", 50, 90, name="Charge"),
        span(11, None, "front", 0, 40, name="GET /cart", trace=2),
        span(12, 11, "cart", 5, 35, name="GetCart", trace=2),
    ]
    lab.load_bytes(request(spans))
    by_svc = {r["service_name"]: r for r in lab.critical_path_summary().to_dicts()}
    assert by_svc["front"]["critical_ms"] == pytest.approx(50 + 10 + 10)  # 0-50 and 90-100; 0-5 and 35-40
    assert by_svc["pay"]["critical_ms"] == pytest.approx(40)
    assert by_svc["cart"]["critical_ms"] == pytest.approx(30) and by_svc["cart"]["traces"] == 1
    assert sum(r["share"] for r in by_svc.values()) == pytest.approx(1.0)
    only = lab.critical_path_summary("root_name = 'GET /cart'", by=["service_name", "name"])
    assert only.select("service_name", "name", "critical_ms").rows() == [
        ("cart", "GetCart", 30.0),
        ("front", "GET /cart", 10.0),
    ]
    with pytest.raises(ConfigError, match="by="):
        lab.critical_path_summary(by="kind")


# jaeger-ui's own critical-path test cases (packages/jaeger-ui/src/components/TracePage/CriticalPath/
# testCases/test2.js, test3.js, test6.js-test9.js; Apache-2.0, The Jaeger Authors): the spans
# (id, parent, start, start + duration) and the sections jaeger-ui expects, in its time units.
JAEGER_UI_CASES = {
    "test2": (
        [("X", None, 1, 101), ("A", "X", 10, 50), ("C", "X", 20, 60)],
        [("X", 60, 101), ("C", 20, 60), ("X", 1, 20)],
    ),
    "test3": ([("A", None, 100, 140), ("B", "A", 150, 200)], [("A", 100, 140)]),
    "test6": (
        [("A", None, 1, 30), ("B", "A", 15, 35), ("C", "B", 10, 25)],
        [("B", 25, 30), ("C", 15, 25), ("A", 1, 15)],
    ),
    "test7": (
        [("A", None, 1, 30), ("B", "A", 15, 35), ("C", "B", 20, 40)],
        [("C", 20, 30), ("B", 15, 20), ("A", 1, 15)],
    ),
    "test8": ([("A", None, 10, 30), ("B", "A", 5, 35)], [("B", 10, 30)]),
    "test9": ([("A", None, 10, 30), ("B", "A", 1, 5)], [("A", 10, 30)]),
}


@pytest.mark.parametrize("case", sorted(JAEGER_UI_CASES))
def test_jaeger_ui_test_cases(case):
    spans, expected = JAEGER_UI_CASES[case]
    got = critical_path(frame(spans).with_columns(pl.col("start_ns") // MS, pl.col("end_ns") // MS))
    assert sorted((r["span_id"], r["start_ns"], r["end_ns"]) for r in got.to_dicts()) == sorted(expected)
