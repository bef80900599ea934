"""Service graph: one trace per rule of Tempo's service-graph processor, and the inferred mode."""

from __future__ import annotations

import pytest

from otlp_lab import ConfigError, Lab

from .spans import request, span


def edges(lab: Lab, spans: list[dict], mode: str = "auto") -> dict[tuple[str, str], dict]:
    lab.load_bytes(request(spans))
    return {(r["client"], r["server"]): r for r in lab.service_graph(mode).to_dicts()}


def test_client_pairs_with_the_server_span_under_it(lab: Lab):
    g = edges(
        lab,
        [
            span(1, None, "front", 0, 100, kind="SERVER"),
            span(2, 1, "front", 10, 60, kind="CLIENT"),
            span(3, 2, "cart", 12, 58, kind="SERVER"),
        ],
    )
    e = g[("front", "cart")]
    assert (e["mode"], e["connection_type"], e["calls"], e["errors"]) == ("tempo", "", 1, 0)
    assert (e["p50_ms"], e["client_p50_ms"]) == (46.0, 50.0)  # server side, client side


def test_a_root_server_span_is_called_by_user(lab: Lab):
    g = edges(lab, [span(1, None, "front", 0, 100, kind="SERVER")])
    assert g[("user", "front")]["connection_type"] == "virtual_node"
    assert g[("user", "front")]["client_p50_ms"] == 0.0


def test_a_root_server_span_with_a_peer_attribute_is_called_by_that_peer(lab: Lab):
    g = edges(lab, [span(1, None, "front", 0, 100, kind="SERVER", attrs={"peer.service": "mobile-app"})])
    assert set(g) == {("mobile-app", "front")}


def test_failed_when_the_client_span_is_error_and_the_server_span_unset(lab: Lab):
    g = edges(
        lab,
        [
            span(2, None, "front", 10, 60, kind="CLIENT", status="ERROR"),  # a client timeout
            span(3, 2, "cart", 12, 58, kind="SERVER", status="UNSET"),
        ],
    )
    assert g[("front", "cart")]["errors"] == 1


def test_failed_when_only_the_server_span_is_error(lab: Lab):
    g = edges(
        lab,
        [
            span(2, None, "front", 10, 60, kind="CLIENT"),
            span(3, 2, "cart", 12, 58, kind="SERVER", status="ERROR"),
        ],
    )
    assert g[("front", "cart")]["errors"] == 1


def test_a_server_span_under_an_internal_span_makes_no_edge(lab: Lab):
    g = edges(
        lab,
        [
            span(1, None, "front", 0, 100, kind="SERVER"),
            span(2, 1, "front", 10, 60, kind="INTERNAL"),
            span(3, 2, "cart", 12, 58, kind="SERVER"),
        ],
    )
    assert set(g) == {("user", "front")}


def test_producer_and_consumer_make_a_messaging_system_edge(lab: Lab):
    g = edges(
        lab, [span(2, None, "orders", 0, 5, kind="PRODUCER"), span(3, 2, "mailer", 20, 40, kind="CONSUMER")]
    )
    assert g[("orders", "mailer")]["connection_type"] == "messaging_system"


@pytest.mark.parametrize(
    ("attrs", "resource", "server"),
    [
        ({"db.system": "postgresql"}, {}, "postgresql"),
        ({"db.system": "postgresql", "db.name": "shop"}, {}, "shop"),
        ({"db.system": "postgresql", "db.name": "shop", "db.namespace": "shop2"}, {}, "shop2"),
        (
            {"db.name": "shop", "network.peer.address": "10.0.0.5", "network.peer.port": 5432},
            {},
            "10.0.0.5:5432",
        ),
        ({"db.name": "shop", "network.peer.address": "10.0.0.5"}, {}, "10.0.0.5"),
        (
            {"db.name": "shop", "server.address": "db.internal", "network.peer.address": "10.0.0.5"},
            {},
            "db.internal",
        ),
        ({"db.name": "shop", "server.address": "db.internal", "peer.service": "orders-db"}, {}, "orders-db"),
        ({"db.system": "redis"}, {"db.system": "mysql"}, "mysql"),  # the resource's value comes first
        ({"db.system.name": "postgresql"}, {}, "postgresql"),
    ],
)
def test_database_edges_are_named_as_tempo_names_them(lab: Lab, attrs, resource, server):
    g = edges(lab, [span(2, None, "cart", 10, 30, kind="CLIENT", attrs=attrs, resource=resource)])
    e = g[("cart", server)]
    assert (e["connection_type"], e["p50_ms"], e["client_p50_ms"]) == ("database", 20.0, 20.0)


def test_a_client_span_without_server_goes_to_its_peer_or_nowhere(lab: Lab):
    g = edges(
        lab,
        [
            span(2, None, "cart", 10, 30, kind="CLIENT", attrs={"peer.service": "stripe"}),
            span(4, None, "cart", 10, 30, kind="CLIENT", attrs={"server.address": "api.example.com"}),
        ],
    )
    assert set(g) == {("cart", "stripe")}
    assert g[("cart", "stripe")]["connection_type"] == "virtual_node"
    assert g[("cart", "stripe")]["p50_ms"] == 0.0  # Tempo records no server latency for it


def test_self_calls_and_spans_without_a_service_name(lab: Lab):
    g = edges(
        lab,
        [
            span(2, None, "cart", 0, 50, kind="CLIENT"),
            span(3, 2, "cart", 5, 45, kind="SERVER"),
            span(4, None, None, 0, 50, kind="CLIENT"),
            span(5, 4, "cart", 5, 45, kind="SERVER"),
        ],
    )
    assert set(g) == {("cart", "cart")}


def test_one_client_pairs_with_one_server_span_and_duplicates_count_once(lab: Lab):
    spans = [
        span(2, None, "front", 0, 50, kind="CLIENT"),
        span(3, 2, "cart", 5, 45, kind="SERVER"),
        span(4, 2, "cart", 6, 44, kind="SERVER"),
    ]
    lab.load_bytes(request(spans))
    g = edges(lab, spans)  # loaded twice
    assert g[("front", "cart")]["calls"] == 1 and g[("front", "cart")]["p50_ms"] == 40.0


def test_kindless_captures_use_the_labelled_inferred_mode(lab: Lab):
    spans = [
        span(1, None, "front", 0, 100),
        span(2, 1, "front", 10, 60),
        span(3, 2, "cart", 12, 58, status="ERROR"),
        span(4, 99, "orphan", 0, 10),  # its parent is not in the capture
    ]
    g = edges(lab, spans)
    assert set(g) == {("user", "front"), ("front", "cart")}
    assert {r["mode"] for r in g.values()} == {"inferred"}
    assert g[("front", "cart")]["errors"] == 1 and g[("user", "front")]["connection_type"] == "virtual_node"
    assert lab.service_graph("tempo").is_empty()
    assert lab.sql("SELECT DISTINCT mode FROM service_graph")["mode"].to_list() == ["inferred"]
    with pytest.raises(ConfigError, match="mode"):
        lab.service_graph("jaeger")


def test_modes_are_never_mixed(lab: Lab):
    spans = [
        span(1, None, "front", 0, 100, kind="SERVER"),
        span(2, 1, "front", 10, 60),  # no kind
        span(3, 2, "cart", 12, 58),  # no kind
    ]
    assert set(edges(lab, spans)) == {("user", "front")}
    assert set((r["client"], r["server"]) for r in lab.service_graph("inferred").to_dicts()) == {
        ("user", "front"),
        ("front", "cart"),
    }


def test_a_database_call_with_an_instrumented_server_stays_one_database_edge(lab: Lab):
    g = edges(
        lab,
        [
            span(
                2,
                None,
                "cart",
                10,
                30,
                kind="CLIENT",
                attrs={"db.system": "postgresql", "peer.service": "pg"},
            ),
            span(3, 2, "postgres", 12, 28, kind="SERVER", status="ERROR"),
        ],
    )
    assert set(g) == {("cart", "pg")}
    assert (g[("cart", "pg")]["connection_type"], g[("cart", "pg")]["errors"]) == ("database", 1)
