"""TLS, mutual TLS and token/header auth on both protocols."""

from __future__ import annotations

import ssl

import grpc
import httpx
import pytest

from otlp_lab.transport import ClientTls, Receiver, Sender

from ..conftest import make_trace_request
from .conftest import TRACES, grpc_call, post, trace_body


def _grpc_tls_call(rx, tls: ClientTls, body: bytes, metadata=()):
    with grpc.secure_channel(f"127.0.0.1:{rx.grpc_port}", tls.grpc_credentials()) as ch:
        try:
            return ch.unary_unary(TRACES)(body, timeout=5, metadata=metadata), None
        except grpc.RpcError as exc:
            return None, exc


def test_tls_serves_both_protocols(certs):
    with Receiver(tls=certs.server(mtls=False)) as rx:
        assert rx.http_endpoint.startswith("https://")
        r = httpx.post(
            f"{rx.http_endpoint}/v1/traces",
            content=trace_body(),
            verify=certs.client(with_cert=False).ssl_context(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert r.status_code == 200
        _, err = _grpc_tls_call(rx, certs.client(with_cert=False), trace_body())
        assert err is None
        with pytest.raises(httpx.ConnectError):  # the server's certificate is not trusted by default
            httpx.post(
                f"{rx.http_endpoint}/v1/traces",
                content=trace_body(),
                headers={"content-type": "application/x-protobuf"},
            )
        assert rx.stats.spans == 6


def test_mtls_requires_a_client_certificate_signed_by_the_ca(certs, tmp_path):
    from otlp_lab.transport import generate_certificates

    other = generate_certificates(tmp_path / "other")  # a client certificate from another CA
    with Receiver(tls=certs.server(mtls=True)) as rx:
        for client in (
            certs.client(with_cert=False),
            ClientTls(
                ca_file=certs.ca_file, cert_file=other.client_cert_file, key_file=other.client_key_file
            ),
        ):
            with pytest.raises(
                (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)
            ):
                httpx.post(
                    f"{rx.http_endpoint}/v1/traces",
                    content=trace_body(),
                    verify=client.ssl_context(),
                    headers={"content-type": "application/x-protobuf"},
                )
            _, err = _grpc_tls_call(rx, client, trace_body())
            assert err is not None and err.code() is grpc.StatusCode.UNAVAILABLE
        for protocol, endpoint in (
            ("grpc", f"https://127.0.0.1:{rx.grpc_port}"),
            ("http/protobuf", rx.http_endpoint),
        ):
            report = Sender(endpoint, protocol=protocol, tls=certs.client()).send_requests(
                [make_trace_request(4)]
            )
            assert (report.sent, report.failed) == (4, 0), report.errors
        assert rx.stats.spans == 8


def test_mtls_failure_is_reported_with_a_tls_hint(certs):
    with Receiver(tls=certs.server(mtls=True), grpc=None) as rx:
        report = Sender(
            rx.http_endpoint, protocol="http/protobuf", tls=ClientTls(), breaker=None
        ).send_requests([make_trace_request(2)])
        assert report.failed == 2
        err = report.errors[0]
        assert err.status == "TLS" and not err.retryable and "--ca" in err.hint


def test_bearer_token_and_required_headers():
    with Receiver(bearer_token="s3cret", headers={"X-Tenant": "shop"}) as rx:
        r = post(rx, "/v1/traces", trace_body())
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        r = post(rx, "/v1/traces", trace_body(), authorization="Bearer s3cret")
        assert r.status_code == 401  # the tenant header is missing
        r = post(rx, "/v1/traces", trace_body(), authorization="Bearer s3cret", x_tenant="shop")
        assert r.status_code == 200
        _, err = grpc_call(
            rx, TRACES, trace_body(), metadata=(("authorization", "Bearer wrong"), ("x-tenant", "shop"))
        )
        assert err.code() is grpc.StatusCode.UNAUTHENTICATED
        _, err = grpc_call(
            rx, TRACES, trace_body(), metadata=(("authorization", "Bearer s3cret"), ("x-tenant", "shop"))
        )
        assert err is None
        report = Sender(rx.grpc_endpoint, headers="authorization=Bearer s3cret,x-tenant=shop").send_requests(
            [make_trace_request(2)]
        )
        assert report.sent == 2
        bad = Sender(rx.grpc_endpoint, headers={"authorization": "Bearer nope"}).send_requests(
            [make_trace_request(2)]
        )
        assert (
            bad.failed == 2 and bad.errors[0].status == "UNAUTHENTICATED" and "--header" in bad.errors[0].hint
        )
        assert bad.retries == 0
        assert rx.stats.unauthenticated == 4 and rx.stats.spans == 8


def test_receiver_binds_loopback_by_default(receiver):
    assert receiver.grpc_endpoint.startswith("127.0.0.1:")
    assert receiver.http_endpoint.startswith("http://127.0.0.1:")
