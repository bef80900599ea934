"""An Envoy upstream connection pool with the cluster's circuit breakers, as a pure state machine.

Envoy (``intro/arch_overview/upstream/circuit_breaking``, ``connection_pooling``) keeps, per
upstream cluster, one connection pool per host and four cluster-wide thresholds:

* **max_connections**: connections to all hosts (connecting, busy, idle and draining count).
  At the limit no new connection is made (``upstream_cx_overflow``) and the request waits as
  pending, except that a host picked by the load balancer always gets at least one
  connection ("Envoy will ensure that a host selected by cluster load balancing has at least
  one connection allocated").
* **max_pending_requests**: requests waiting for a connection (while one connects, or while
  every connection is busy). Over it the request fails at once with a local ``503`` and the
  ``UO`` response flag (``upstream_rq_pending_overflow``).
* **max_requests**: requests in flight to all hosts; checked when a request is attached to a
  connection. Over it: ``503`` ``UO`` (``upstream_rq_pending_overflow`` too in Envoy).
* **max_retries**: retries in flight; over it the retry is not sent and the previous answer
  stands (``upstream_rq_retry_overflow``). The pool only holds the cap (``max_retries``); the
  retry machine enforces it through a :class:`~otlp_lab.resilience.RetryBudget` with
  ``budget_percent=0`` (a configured retry budget replaces it, as in Envoy).

plus ``max_requests_per_connection``: a connection is closed after serving that many requests
(``1`` turns keep-alive off, so every request waits for a new connection).

HTTP/1.1 connections carry one request at a time; HTTP/2 connections multiplex every request
to a host over one connection. Cancelling an in-flight HTTP/1.1 request resets (closes) its
connection; an HTTP/2 stream reset does not.

The pool never reads a clock. The driver calls :meth:`ConnectionPool.request`,
:meth:`~ConnectionPool.connected` (when a connection it was asked to open is up),
:meth:`~ConnectionPool.finish` and :meth:`~ConnectionPool.cancel`; each returns the effects the
driver must act on: :class:`PoolConnection` objects to open, and :class:`PoolStream` objects
whose ``state`` changed (to ``"active"``, or ``"overflow"``).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from otlp_lab.resilience._core import ConfigBase, check, check_int

__all__ = ["ConnectionPool", "ConnectionPoolConfig", "PoolConnection", "PoolStream", "StreamState"]

StreamState = Literal["pending", "active", "overflow", "done"]
OverflowKind = Literal["pending_requests", "requests"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionPoolConfig(ConfigBase):
    """Envoy cluster ``circuit_breakers`` thresholds (DEFAULT priority) and connection reuse.

    Parameters
    ----------
    max_connections, max_pending_requests, max_requests : int
        Envoy's defaults: 1024 each.
    max_retries : int
        Retries in flight at once (default 3).
    max_requests_per_connection : int, optional
        Close a connection after this many requests (None: unlimited; Istio's
        ``maxRequestsPerConnection``, Envoy's ``max_requests_per_connection``).
    http2 : bool, default False
        One multiplexed connection per host instead of one request per connection.

    Examples
    --------
    >>> ConnectionPoolConfig.from_dict({"max_connections": 1, "max_pending_requests": 1}).max_requests
    1024
    """

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3
    max_requests_per_connection: int | None = None
    http2: bool = False

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_pending_requests", "max_requests", "max_retries"):
            check_int("ConnectionPoolConfig", name, getattr(self, name), minimum=0)
        if self.max_requests_per_connection is not None:
            check_int("ConnectionPoolConfig", "max_requests_per_connection", self.max_requests_per_connection)
        check(isinstance(self.http2, bool), "ConnectionPoolConfig", "http2", "true or false", self.http2)

    def describe(self) -> str:
        """The settings in words (for reports)."""

        def n(v: int) -> str:
            return "unlimited" if v >= 2**32 - 1 else str(v)

        parts = [
            f"connections {n(self.max_connections)}",
            f"pending requests {n(self.max_pending_requests)}",
            f"requests {n(self.max_requests)}",
            f"concurrent retries {n(self.max_retries)}",
        ]
        if self.max_requests_per_connection is not None:
            parts.append(f"{self.max_requests_per_connection} request(s) per connection")
        return "circuit breakers: " + ", ".join(parts) + (" (HTTP/2)" if self.http2 else "")


class PoolConnection:
    """One upstream connection: to ``host``; ``ready`` once connected; ``streams`` in flight on it."""

    __slots__ = ("host", "ready", "remaining", "streams")

    def __init__(self, host: Any, remaining: float) -> None:
        self.host = host
        self.ready = False
        self.streams = 0
        self.remaining = remaining  # requests it may still carry

    def __repr__(self) -> str:
        return f"PoolConnection(host={self.host!r}, ready={self.ready}, streams={self.streams})"


class PoolStream:
    """One request through the pool: ``state`` is pending, active (on ``conn``), overflow or done."""

    __slots__ = ("conn", "host", "overflow", "state", "waiter")

    def __init__(self, host: Any) -> None:
        self.host = host
        self.state: StreamState = "pending"
        self.conn: PoolConnection | None = None
        self.overflow: OverflowKind | None = None
        self.waiter: Any = None  # for the driver (e.g. a SimPy event)

    def __repr__(self) -> str:
        return f"PoolStream(host={self.host!r}, state={self.state!r})"


class _HostPool:
    __slots__ = ("conns", "pending")

    def __init__(self) -> None:
        self.conns: list[PoolConnection] = []
        self.pending: deque[PoolStream] = deque()


Effect = PoolConnection | PoolStream


class ConnectionPool:
    """The connection pools of one Envoy cluster (one per host) under the cluster's circuit breakers.

    Examples
    --------
    >>> pool = ConnectionPool(ConnectionPoolConfig(max_connections=1, max_pending_requests=1))
    >>> a, fx = pool.request("h1")
    >>> a.state, len(fx)                                    # pending; the driver opens fx[0]
    ('pending', 1)
    >>> b, _ = pool.request("h1")                           # a second pending request
    >>> b.state, b.overflow, pool.overflows["pending_requests"]
    ('overflow', 'pending_requests', 1)
    >>> [s.state for s in pool.connected(fx[0])]            # connected: a is sent
    ['active']
    """

    __slots__ = (
        "active",
        "capacity",
        "config",
        "connections",
        "cx_opened",
        "cx_overflows",
        "hosts",
        "overflows",
        "pending",
    )

    def __init__(self, config: ConnectionPoolConfig | None = None) -> None:
        self.config = config if config is not None else ConnectionPoolConfig()
        self.capacity = math.inf if self.config.http2 else 1  # concurrent streams per connection
        self.hosts: dict[Any, _HostPool] = {}
        self.connections = 0  # open or connecting
        self.pending = 0
        self.active = 0
        self.cx_opened = 0
        self.cx_overflows = 0  # upstream_cx_overflow: a connection not made (not a failure by itself)
        self.overflows: dict[OverflowKind, int] = {"pending_requests": 0, "requests": 0}

    # -- queries --------------------------------------------------------------------------------
    @property
    def overflowed(self) -> int:
        """Requests answered with a local 503 ``UO``."""
        return self.overflows["pending_requests"] + self.overflows["requests"]

    # -- the driver's calls ---------------------------------------------------------------------
    def request(self, host: Any) -> tuple[PoolStream, list[Effect]]:
        """A request to ``host``: active at once, pending (wait for it to turn active), or overflow."""
        hp = self.hosts.get(host)
        if hp is None:
            hp = self.hosts[host] = _HostPool()
        stream = PoolStream(host)
        conn = self._ready_conn(hp)
        if conn is not None:
            self._attach(stream, conn)
            return stream, []
        if self.pending >= self.config.max_pending_requests:
            self._overflow(stream, "pending_requests")
            return stream, []
        hp.pending.append(stream)
        self.pending += 1
        return stream, list(self._connect(hp))

    def connected(self, conn: PoolConnection) -> list[Effect]:
        """A connection the driver opened is up: pending requests of its host go on it."""
        conn.ready = True
        hp = self.hosts[conn.host]
        return self._dispatch(hp)

    def finish(self, stream: PoolStream, *, reset: bool = False) -> list[Effect]:
        """An active request got its answer (``reset``: the connection broke or was reset)."""
        if stream.state != "active":
            return []
        conn = stream.conn
        stream.state = "done"
        self.active -= 1
        conn.streams -= 1  # type: ignore[union-attr]
        hp = self.hosts[stream.host]
        if reset or (conn.remaining <= 0 and conn.streams == 0):  # type: ignore[union-attr]
            self._close(hp, conn)  # type: ignore[arg-type]
        return self._dispatch(hp)

    def cancel(self, stream: PoolStream) -> list[Effect]:
        """The caller gave up on ``stream`` (timeout, lost hedge): leave the queue, or reset HTTP/1.1."""
        if stream.state == "pending":
            hp = self.hosts[stream.host]
            hp.pending.remove(stream)
            self.pending -= 1
            stream.state = "done"
            return []
        return self.finish(stream, reset=not self.config.http2)

    # -- internals ------------------------------------------------------------------------------
    def _ready_conn(self, hp: _HostPool) -> PoolConnection | None:
        for conn in hp.conns:
            if conn.ready and conn.streams < self.capacity and conn.remaining > 0:
                return conn
        return None

    def _attach(self, stream: PoolStream, conn: PoolConnection) -> None:
        if self.active >= self.config.max_requests:
            self._overflow(stream, "requests")
            return
        stream.state = "active"
        stream.conn = conn
        conn.streams += 1
        conn.remaining -= 1
        self.active += 1

    def _overflow(self, stream: PoolStream, kind: OverflowKind) -> None:
        stream.state = "overflow"
        stream.overflow = kind
        self.overflows[kind] += 1

    def _dispatch(self, hp: _HostPool) -> list[Effect]:
        """Put pending requests of a host on its ready connections, then open what is still needed."""
        out: list[Effect] = []
        while hp.pending:
            conn = self._ready_conn(hp)
            if conn is None:
                break
            stream = hp.pending.popleft()
            self.pending -= 1
            self._attach(stream, conn)
            out.append(stream)
        out.extend(self._connect(hp))
        return out

    def _connect(self, hp: _HostPool) -> list[PoolConnection]:
        """Open connections for pending requests that no connecting connection will take."""
        out: list[PoolConnection] = []
        rpc = self.config.max_requests_per_connection
        while True:
            # what the connections still connecting will carry once up
            coming = sum(min(self.capacity, c.remaining) for c in hp.conns if not c.ready)
            if len(hp.pending) <= coming:
                return out
            if self.connections >= self.config.max_connections and hp.conns:
                self.cx_overflows += 1  # the at-least-one-connection rule only helps a host with none
                return out
            conn = PoolConnection(hp.pending[0].host, math.inf if rpc is None else rpc)
            hp.conns.append(conn)
            self.connections += 1
            self.cx_opened += 1
            out.append(conn)

    def _close(self, hp: _HostPool, conn: PoolConnection) -> None:
        hp.conns.remove(conn)
        self.connections -= 1

    def __repr__(self) -> str:
        return (
            f"ConnectionPool(connections={self.connections}, pending={self.pending}, active={self.active},"
            f" overflows={self.overflows})"
        )
