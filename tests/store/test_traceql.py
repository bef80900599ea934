"""TraceQL subset: the query shapes of Tempo's TraceQL documentation, on two known traces."""

from __future__ import annotations

import pytest

from otlp_lab import Lab
from otlp_lab.errors import TraceQLError

from .spans import request, span

# trace 1: frontend GET /checkout -> cart GetCart (500, error) -> SELECT (db, error), serialize
# trace 2: frontend GET / (DELETE, 204) -> ads GetAds (200)
SPANS = [
    span(
        1,
        None,
        "frontend",
        0,
        1000,
        kind="SERVER",
        name="GET /checkout",
        attrs={"http.method": "GET", "http.status_code": 200},
    ),
    span(2, 1, "frontend", 10, 900, kind="CLIENT", name="call cart", attrs={"http.method": "GET"}),
    span(
        3, 2, "cart", 20, 880, kind="SERVER", name="GetCart", status="ERROR", attrs={"http.status_code": 500}
    ),
    span(4, 3, "cart", 30, 600, kind="CLIENT", name="SELECT", status="ERROR", attrs={"db.name": "shop"}),
    span(5, 3, "cart", 600, 700, kind="INTERNAL", name="serialize"),
    span(
        11,
        None,
        "frontend",
        0,
        50,
        kind="SERVER",
        name="GET /",
        trace=2,
        attrs={"http.method": "DELETE", "http.status_code": 204},
    ),
    span(12, 11, "frontend", 5, 40, kind="CLIENT", name="call ads", trace=2),
    span(13, 12, "ads", 6, 39, kind="SERVER", name="GetAds", trace=2, attrs={"http.status_code": 200}),
]


@pytest.fixture(scope="module")
def tq():
    with Lab() as lab:  # read only by the tests: loaded once
        lab.load_bytes(request(SPANS))
        yield lab


def ids(lab: Lab, query: str) -> set[int]:
    return {int(s, 16) for s in lab.traceql(query)["span_id"].to_list()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("{ }", {1, 2, 3, 4, 5, 11, 12, 13}),
        ("{ span.http.status_code >= 200 && span.http.status_code < 300 } | count() > 2", set()),
        ("{ span.http.status_code >= 200 && span.http.status_code < 300 } | count() > 1", {11, 13}),
        ("{ status = error }", {3, 4}),
        ("{ span:status = error }", {3, 4}),
        ("{ kind = server }", {1, 3, 11, 13}),
        ('{ name = "GetCart" }', {3}),
        ("{ duration > 500ms }", {1, 2, 3, 4}),
        ("{ span:duration <= 35ms }", {12, 13}),
        ('{ .http.method =~ "DELETE|GET" }', {1, 2, 11}),
        ('{ .http.method !~ "GET" }', {11}),
        ('{ .http.method =~ "GE" }', set()),  # regular expressions are fully anchored
        ('{ span.http.method = "GET" && status = unset }', {1, 2}),
        ("{ span.http.status_code = 500 || span.http.status_code = 204 }", {3, 11}),
        ('{ resource.service.name = "frontend" } >> { status = error }', {3, 4}),
        ('{ resource.service.name = "cart" && duration > 500ms } >> { status = error }', {4}),
        ('{ resource.service.name = "frontend" } > { resource.service.name = "cart" }', {3}),
        ('{ name = "serialize" } ~ { }', {4}),
        ('{ .http.status_code = 500 } && { .db.name = "shop" }', {3, 4}),
        ('{ .http.status_code = 500 } && { .http.method = "DELETE" }', set()),
        ('{ .http.status_code = 500 } || { .http.method = "DELETE" }', {3, 11}),
        ('({ kind = server } > { kind = client }) || { name = "GetAds" }', {2, 4, 12, 13}),
        # && and || share one precedence and group from the left, as in Tempo's grammar
        ('{ .http.status_code = 500 } || { .http.method = "DELETE" } && { .db.name = "shop" }', {3, 4}),
        ("{ kind = client || kind = server && status = error }", {3, 4}),
        ("{ status = error } | by(resource.service.name) | count() > 1", {3, 4}),
        ("{ } | avg(duration) > 200ms", {1, 2, 3, 4, 5}),
        ("{ } | max(duration) < 100ms", {11, 12, 13}),
        ('{ trace:rootService = "frontend" && trace:duration > 500ms }', {1, 2, 3, 4, 5}),
        ('{ rootName = "GET /" }', {11, 12, 13}),
        ("{ .db.name != nil }", {4}),
        ("{ !(status = error) && kind = client }", {2, 12}),
        ('{ resource.service.name = "cart" } | { kind = internal }', {5}),
        # the other structural operators, negated and union forms
        ("{ status = error } < { }", {2, 3}),
        ('{ name = "SELECT" } << { kind = server }', {1, 3}),
        ('{ resource.service.name = "frontend" } !>> { }', {1, 11}),
        ("{ kind = server } !> { }", {1, 3, 11, 13}),
        ('{ name = "GetCart" } !< { }', {1, 3, 4, 5, 11, 12, 13}),
        ('{ name = "SELECT" } !<< { resource.service.name = "frontend" }', {11, 12}),
        ('{ name = "serialize" } !~ { kind = client }', {2, 12}),
        ("{ kind = server } &> { status = error }", {3, 4}),
        ('{ name = "SELECT" } &~ { name = "serialize" }', {4, 5}),
        ('{ name = "SELECT" } &<< { kind = server }', {1, 3, 4}),
    ],
)
def test_documented_query_shapes(tq: Lab, query: str, expected: set[int]):
    assert ids(tq, query) == expected


def test_pipeline_columns(tq: Lab):
    out = tq.traceql(
        "{ status = error } | by(resource.service.name) | count() > 1 | select(span.http.status_code)"
    )
    assert out.columns[-3:] == ["by(resource.service.name)", "count()", "span.http.status_code"]
    assert out.sort("span_id")["span.http.status_code"].to_list() == ["500", None]
    assert set(out["count()"].to_list()) == {2}
    avg = tq.traceql('{ resource.service.name = "ads" } | avg(duration)')
    assert avg["avg(duration)"].to_list() == [33_000_000]


@pytest.mark.parametrize(
    ("query", "part"),
    [
        ("{ } | quantile_over_time(duration, .9)", "quantile_over_time"),
        ("{ parent.http.method = 1 }", "parent.http.method"),
        ("{ span.http.status_code + 1 > 2 }", "+"),
        ("{ } | rate()", "rate"),
        ('{ event.name = "x" }', "event.name"),
        ("{ nestedSetParent < 0 }", "nestedSetParent"),
    ],
)
def test_unsupported_syntax_names_the_part(tq: Lab, query: str, part: str):
    with pytest.raises(TraceQLError, match="not supported") as info:
        tq.traceql(query)
    assert info.value.part == part and query[info.value.position :].startswith(part)


@pytest.mark.parametrize("query", ["{ status = 404 }", "{ name = }", "{ duration > 1s", "status = error"])
def test_bad_queries_raise_a_named_error(tq: Lab, query: str):
    with pytest.raises(TraceQLError, match="TraceQL"):
        tq.traceql(query)
