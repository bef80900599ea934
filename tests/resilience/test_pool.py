"""The Envoy connection pool and circuit breakers: one rule per test, as Envoy documents it."""

from __future__ import annotations

import pytest

from otlp_lab.errors import ConfigError
from otlp_lab.resilience import ConnectionPool, ConnectionPoolConfig
from otlp_lab.resilience._pool import PoolConnection


def _pool(**kw):
    return ConnectionPool(ConnectionPoolConfig(**kw))


def test_pending_while_connecting_then_active_and_connection_reused():
    pool = _pool()
    a, fx = pool.request("h")
    assert a.state == "pending" and len(fx) == 1 and isinstance(fx[0], PoolConnection)
    [conn] = fx
    assert pool.connected(conn) == [a] and a.state == "active" and a.conn is conn
    assert pool.finish(a) == []
    b, fx = pool.request("h")  # keep-alive: the idle connection carries the next request at once
    assert b.state == "active" and b.conn is conn and fx == [] and pool.cx_opened == 1


def test_max_pending_requests_overflows_at_once():
    pool = _pool(max_connections=1, max_pending_requests=1)
    a, [conn] = pool.request("h")
    b, fx = pool.request("h")
    assert (b.state, b.overflow, fx) == ("overflow", "pending_requests", [])
    assert pool.overflows == {"pending_requests": 1, "requests": 0} and pool.overflowed == 1


def test_max_connections_queues_and_the_freed_connection_takes_the_next_request():
    pool = _pool(max_connections=1, max_pending_requests=5)
    a, [conn] = pool.request("h")
    pool.connected(conn)
    b, fx = pool.request("h")
    assert b.state == "pending" and fx == [] and pool.cx_overflows == 1 and pool.connections == 1
    assert pool.finish(a) == [b] and b.conn is conn


def test_every_host_gets_at_least_one_connection_over_the_limit():
    pool = _pool(max_connections=1)
    _, [c1] = pool.request("h1")
    s2, fx = pool.request("h2")
    assert len(fx) == 1 and pool.connections == 2  # Envoy's at-least-one-connection rule
    _, fx = pool.request("h2")
    assert fx == [] and pool.cx_overflows == 1


def test_max_requests_per_connection_closes_it_and_a_new_one_is_opened():
    pool = _pool(max_connections=1, max_requests_per_connection=1)
    a, [c1] = pool.request("h")
    pool.connected(c1)
    b, fx = pool.request("h")
    assert fx == [] and b.state == "pending"
    fx = pool.finish(a)  # c1 is closed after one request: a new connection for b
    assert len(fx) == 1 and fx[0] is not c1 and pool.connections == 1 and b.state == "pending"
    assert pool.connected(fx[0]) == [b]


def test_max_requests_checked_when_attached():
    pool = _pool(max_requests=1, http2=True)
    a, [conn] = pool.request("h")
    b, _ = pool.request("h")
    out = pool.connected(conn)  # both pending on the one HTTP/2 connection; only one may be in flight
    assert [s.state for s in out] == ["active", "overflow"] and b.overflow == "requests"


def test_http2_multiplexes_and_a_stream_reset_keeps_the_connection():
    pool = _pool(http2=True)
    a, [conn] = pool.request("h")
    pool.connected(conn)
    b, fx = pool.request("h")
    assert b.conn is conn and fx == [] and pool.active == 2
    pool.cancel(a)
    assert pool.connections == 1


def test_cancel_http1_resets_the_connection_and_pending_leaves_the_queue():
    pool = _pool(max_connections=1, max_pending_requests=2)
    a, [conn] = pool.request("h")
    b, _ = pool.request("h")
    pool.cancel(b)
    assert pool.pending == 1
    pool.connected(conn)
    pool.cancel(a)
    assert pool.connections == 0 and pool.active == 0


@pytest.mark.parametrize(
    "bad", [{"max_connections": -1}, {"max_requests_per_connection": 0}, {"http2": "yes"}]
)
def test_bad_settings_are_named(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        ConnectionPoolConfig(**bad)
