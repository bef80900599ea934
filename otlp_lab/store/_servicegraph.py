"""Service graph: Tempo's service-graph processor rules, and an inferred mode for kind-less captures.

``mode = 'tempo'`` follows grafana/tempo ``modules/generator/processor/servicegraphs`` with its
default settings, over a whole capture at once (no wait window: a pair is made whenever both
spans are in the database):

* An edge is a CLIENT or PRODUCER span paired with the SERVER or CONSUMER span whose parent is
  that client span (same trace). Spans of other kinds, and spans with no ``service.name``, are
  not part of any edge. When several server spans name one client span, the first to start is
  paired; the others stay unpaired.
* ``failed``: the client span OR the server span has status ERROR.
* ``connection_type``: ``''`` for a plain call, ``messaging_system`` when the client side is a
  PRODUCER (or the server side a CONSUMER and the client side is missing), ``database`` for
  database calls, ``virtual_node`` for edges to or from an uninstrumented peer. (Tempo lets the
  side processed last decide; a client span usually ends, and so is exported, last.)
* Database: a client span with ``db.namespace``, ``db.name`` or ``db.system`` (also
  ``db.system.name``, the newer semantic-convention name) in its resource or span attributes
  completes at once as a ``database`` edge; the server is named by ``peer.service``, else
  ``server.address``, else ``network.peer.address`` (``:network.peer.port`` when present), else
  the database name. Its server latency is the client span's duration. A SERVER span under such a
  client span (an instrumented database) is not a separate edge; its ERROR still fails the call
  (Tempo: the server span usually arrives first and the client span then renames the edge).
* Virtual nodes (an edge that never found its other side): a root SERVER/CONSUMER span (no
  parent id) gets the client named by its ``peer.service``/``db.name``/``db.system`` attribute,
  else ``user``; a client span with no server span gets the server named by the same peer
  attributes. Without one, or when a server span's parent is some other (e.g. INTERNAL) span,
  the half edge is dropped, as Tempo expires it.
* Latencies: ``p50_ms``... are the server side (Tempo's ``..._request_server_seconds``, 0 for a
  client-only virtual edge), ``client_p50_ms``... the client side (``..._client_seconds``, 0
  for a ``user`` edge).

``mode = 'inferred'`` is for captures that record no span kinds (such as the bundled
TrainTicket capture): every span whose parent is in another service is one call from the
parent's service to the span's service (``connection_type`` ``''``), failed if either span is
ERROR; a root span is a call from ``user`` (``virtual_node``); a span whose parent is missing
from the capture is not a call. Server latency is the span's
duration; there is no client latency. These rows say ``mode = 'inferred'`` and are never mixed
with ``tempo`` rows: the ``service_graph`` view picks ``tempo`` when any span has a kind of
CLIENT, SERVER, PRODUCER or CONSUMER, else ``inferred``.
"""

from __future__ import annotations


def _attr(key: str, *, resource: bool = True) -> str:
    """Tempo's FindAttributeValue: the resource's value first, then the span's, as text."""
    span = f"s.attributes['{key}']::VARCHAR"
    return f"coalesce(s.resource_attributes['{key}']::VARCHAR, {span})" if resource else span


_DB_NAME = (
    f"coalesce({_attr('db.namespace')}, {_attr('db.name')}, {_attr('db.system')}, {_attr('db.system.name')})"
)
_DB_SERVER = (
    f"coalesce({_attr('peer.service')}, {_attr('server.address')}, "
    f"{_attr('network.peer.address')} || coalesce(':' || {_attr('network.peer.port')}, ''), db_name)"
)
_PEER = (
    f"coalesce({_attr('peer.service', resource=False)}, {_attr('db.name', resource=False)}, "
    f"{_attr('db.system', resource=False)})"
)

_AGG = """
    SELECT mode, client, server, connection_type, count(*) AS calls,
           count(*) FILTER (WHERE failed) AS errors,
           round(count(*) FILTER (WHERE failed) / count(*), 4) AS error_rate,
           round(quantile_cont(server_ns, 0.50) / 1e6, 3) AS p50_ms,
           round(quantile_cont(server_ns, 0.95) / 1e6, 3) AS p95_ms,
           round(quantile_cont(server_ns, 0.99) / 1e6, 3) AS p99_ms,
           round(quantile_cont(client_ns, 0.50) / 1e6, 3) AS client_p50_ms,
           round(quantile_cont(client_ns, 0.95) / 1e6, 3) AS client_p95_ms,
           round(quantile_cont(client_ns, 0.99) / 1e6, 3) AS client_p99_ms
    FROM {calls} GROUP BY ALL"""

TEMPO_CALLS = f"""
    WITH s AS (
        SELECT * FROM unique_spans
        WHERE service_name IS NOT NULL AND kind IN ('CLIENT', 'PRODUCER', 'SERVER', 'CONSUMER')),
    clients AS (
        SELECT s.trace_id, s.span_id, s.service_name, s.kind, s.duration_ns, s.status_code = 'ERROR' AS failed,
               {_DB_NAME} AS db_name, {_PEER} AS peer_node,
               {_DB_SERVER.replace("db_name", _DB_NAME)} AS db_server
        FROM s WHERE s.kind IN ('CLIENT', 'PRODUCER')),
    servers AS (
        SELECT s.trace_id, s.span_id, s.parent_span_id, s.service_name, s.kind, s.duration_ns,
               s.status_code = 'ERROR' AS failed, {_PEER} AS peer_node,
               row_number() OVER (PARTITION BY s.trace_id, s.parent_span_id ORDER BY s.start_time, s.span_id) AS nth
        FROM s WHERE s.kind IN ('SERVER', 'CONSUMER')),
    paired AS (
        SELECT c.trace_id, c.span_id AS client_span_id, v.span_id AS server_span_id,
               c.service_name AS client,
               CASE WHEN c.db_name IS NOT NULL THEN c.db_server ELSE v.service_name END AS server,
               CASE WHEN c.db_name IS NOT NULL THEN 'database'
                    WHEN v.span_id IS NULL THEN 'virtual_node'
                    WHEN c.kind = 'PRODUCER' THEN 'messaging_system' ELSE '' END AS connection_type,
               c.failed OR coalesce(v.failed, false) AS failed,
               CASE WHEN c.db_name IS NOT NULL THEN c.duration_ns ELSE coalesce(v.duration_ns, 0) END AS server_ns,
               c.duration_ns AS client_ns, c.peer_node, c.db_name
        FROM clients c
        LEFT JOIN servers v ON v.trace_id = c.trace_id AND v.parent_span_id = c.span_id AND v.nth = 1
    ),
    calls AS (
        SELECT trace_id, client_span_id, server_span_id, client, coalesce(server, peer_node) AS server,
               connection_type, failed, server_ns, client_ns
        FROM paired WHERE db_name IS NOT NULL OR server_span_id IS NOT NULL OR peer_node IS NOT NULL
        UNION ALL
        SELECT trace_id, NULL, span_id, coalesce(peer_node, 'user'), service_name, 'virtual_node',
               failed, duration_ns, 0
        FROM servers WHERE parent_span_id IS NULL AND nth = 1
    )
    SELECT 'tempo' AS mode, * FROM calls"""

INFERRED_CALLS = """
    SELECT 'inferred' AS mode, trace_id, NULL::VARCHAR AS client_span_id, span_id AS server_span_id,
           coalesce(parent_service, 'user') AS client, service_name AS server,
           CASE WHEN parent_service IS NULL THEN 'virtual_node' ELSE '' END AS connection_type,
           status_code = 'ERROR' OR coalesce(parent_status = 'ERROR', false) AS failed,
           duration_ns AS server_ns, NULL::BIGINT AS client_ns
    FROM (SELECT s.*, p.service_name AS parent_service, p.status_code AS parent_status
          FROM unique_spans s LEFT JOIN unique_spans p
            ON s.trace_id = p.trace_id AND s.parent_span_id = p.span_id AND s.parent_span_id IS DISTINCT FROM s.span_id)
    WHERE service_name IS NOT NULL
      AND (parent_span_id IS NULL OR parent_service IS NOT NULL AND parent_service <> service_name)"""

HAS_KINDS = "EXISTS (SELECT 1 FROM unique_spans WHERE kind IN ('CLIENT', 'SERVER', 'PRODUCER', 'CONSUMER'))"

SERVICE_GRAPH_VIEWS: dict[str, str] = {
    "service_graph_calls_tempo": TEMPO_CALLS,
    "service_graph_calls_inferred": INFERRED_CALLS,
    "service_graph_calls": f"""
        SELECT * FROM service_graph_calls_tempo WHERE {HAS_KINDS}
        UNION ALL
        SELECT * FROM service_graph_calls_inferred WHERE NOT {HAS_KINDS}""",
    "service_graph": _AGG.format(calls="service_graph_calls"),
}

MODES = ("auto", "tempo", "inferred")


def service_graph_sql(mode: str) -> str:
    """Edges for ``mode`` (``auto`` picks by the presence of span kinds, like the view)."""
    calls = {"auto": "service_graph_calls", "tempo": "service_graph_calls_tempo"}.get(
        mode, "service_graph_calls_inferred"
    )
    return _AGG.format(calls=calls) + " ORDER BY calls DESC, client, server"
