"""OTLP over the network: a receiver (gRPC and HTTP) that stores into a Lab, and a sender.

Thin adapters around the codec (:mod:`otlp_lab.otlp`) and the store (:class:`otlp_lab.Lab`),
with retries and a circuit breaker from :mod:`otlp_lab.resilience`.

Layout: ``_receiver`` (config, the in-flight budget, the writer thread) behind ``_grpc`` and
``_http``; ``_payload`` (request bodies -> batches) and ``_replies`` (replies both ways, shared by
receiver and sender); ``_sender`` (batching, policies, report) over ``_clients`` (the gRPC and HTTP
transports); ``_replay`` (time-shifting and pacing, shared with the simulator's live mode);
``_queue`` (the sender's persistent store-and-forward queue); ``_live`` (live queries on a
database the receiver writes).

Examples
--------
>>> from otlp_lab import Lab
>>> from otlp_lab.transport import Receiver, Replay, Sender
>>> with Receiver(Lab()) as rx:                                     # doctest: +SKIP
...     report = Sender(rx.grpc_endpoint).send_files("datasets/sdk-shop")
...     print(report, rx.stats)
...     rx.lab.red()
>>> Sender("http://127.0.0.1:4318", protocol="http/protobuf").send_lab(  # doctest: +SKIP
...     Lab("capture.duckdb"), "traces", replay=Replay(speed=10, paced=True))
"""

from otlp_lab.transport._live import LiveLab, open_lab
from otlp_lab.transport._queue import PersistentQueue, QueueStats
from otlp_lab.transport._receiver import Receiver, ReceiverConfig, ReceiverStats
from otlp_lab.transport._sender import PROTOCOLS, Replay, Sender, SendReport
from otlp_lab.transport._tls import ClientTls, ServerTls, TestCertificates, generate_certificates

__all__ = [
    "PROTOCOLS",
    "ClientTls",
    "LiveLab",
    "PersistentQueue",
    "QueueStats",
    "Receiver",
    "ReceiverConfig",
    "ReceiverStats",
    "Replay",
    "SendReport",
    "Sender",
    "ServerTls",
    "TestCertificates",
    "generate_certificates",
    "open_lab",
]
