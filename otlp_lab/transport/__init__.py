"""OTLP over the network: a receiver (gRPC and HTTP) that stores into a Lab, and a sender.

Thin adapters around the codec (:mod:`otlp_lab.otlp`) and the store (:class:`otlp_lab.Lab`).
"""

from otlp_lab.transport._receiver import Receiver, ReceiverConfig, ReceiverStats
from otlp_lab.transport._sender import PROTOCOLS, Replay, Sender, SendReport
from otlp_lab.transport._tls import ClientTls, ServerTls, TestCertificates, generate_certificates

__all__ = [
    "PROTOCOLS",
    "ClientTls",
    "Receiver",
    "ReceiverConfig",
    "ReceiverStats",
    "Replay",
    "SendReport",
    "Sender",
    "ServerTls",
    "TestCertificates",
    "generate_certificates",
]
