"""TLS and mutual TLS for the receiver and the sender, and throwaway certificates for tests and demos."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otlp_lab.errors import ConfigError

__all__ = ["ClientTls", "ServerTls", "TestCertificates", "generate_certificates"]


def _read(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path!r} cannot be read ({exc.strerror}). Check the path.") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerTls:
    """The receiver's certificate, and the CA its clients' certificates must chain to (mTLS).

    Parameters
    ----------
    cert_file, key_file : str
        PEM certificate (chain) and private key the receiver presents.
    client_ca_file : str, optional
        PEM CA bundle. When set, clients must present a certificate signed by it (mTLS);
        gRPC and HTTP both refuse the handshake otherwise.
    """

    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    def __post_init__(self) -> None:
        for name in ("cert_file", "key_file", "client_ca_file"):
            value = getattr(self, name)
            if value is not None and not os.path.isfile(value):
                raise ConfigError(f"tls {name} must be an existing PEM file. Got {value!r} instead.")

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side :class:`ssl.SSLContext` (HTTP)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(self.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def grpc_credentials(self) -> Any:
        """``grpc.ssl_server_credentials`` for the gRPC server."""
        import grpc

        ca = _read(self.client_ca_file, "client_ca_file")
        pair = (_read(self.key_file, "key_file"), _read(self.cert_file, "cert_file"))
        return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTls:
    """How the sender verifies the server, and the certificate it presents (mTLS).

    The fields mirror ``OTEL_EXPORTER_OTLP_CERTIFICATE``, ``OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE``,
    ``OTEL_EXPORTER_OTLP_CLIENT_KEY`` and ``OTEL_EXPORTER_OTLP_INSECURE``.

    Parameters
    ----------
    ca_file : str, optional
        PEM CA bundle to verify the server with (the system store when omitted).
    cert_file, key_file : str, optional
        Client certificate and key, for servers that require mTLS.
    insecure : bool
        gRPC only: plaintext even for an ``https``-less endpoint (the default for ``http://``).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("tls cert_file and key_file go together: give both or neither.")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, signal: str | None = None) -> ClientTls | None:
        """From ``OTEL_EXPORTER_OTLP_[{SIGNAL}_]CERTIFICATE`` and friends; None when none is set."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            if signal:
                v = env.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}")
                if v:
                    return v
            return env.get(f"OTEL_EXPORTER_OTLP_{name}") or None

        ca, cert, key, insecure = (
            get("CERTIFICATE"),
            get("CLIENT_CERTIFICATE"),
            get("CLIENT_KEY"),
            get("INSECURE"),
        )
        if not (ca or cert or key or insecure):
            return None
        return cls(ca_file=ca, cert_file=cert, key_file=key, insecure=(insecure or "").lower() == "true")

    def ssl_context(self) -> ssl.SSLContext:
        """A client-side :class:`ssl.SSLContext` (HTTP)."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def grpc_credentials(self) -> Any:
        """``grpc.ssl_channel_credentials`` for a secure channel."""
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "ca_file"),
            private_key=_read(self.key_file, "key_file"),
            certificate_chain=_read(self.cert_file, "cert_file"),
        )


@dataclass(frozen=True, slots=True)
class TestCertificates:
    """Paths of a throwaway CA, a server certificate and a client certificate (PEM)."""

    __test__ = False  # not a pytest test class

    ca_file: str
    server_cert_file: str
    server_key_file: str
    client_cert_file: str
    client_key_file: str

    def server(self, *, mtls: bool = True) -> ServerTls:
        return ServerTls(
            cert_file=self.server_cert_file,
            key_file=self.server_key_file,
            client_ca_file=self.ca_file if mtls else None,
        )

    def client(self, *, with_cert: bool = True) -> ClientTls:
        if not with_cert:
            return ClientTls(ca_file=self.ca_file)
        return ClientTls(ca_file=self.ca_file, cert_file=self.client_cert_file, key_file=self.client_key_file)


def generate_certificates(
    directory: str | os.PathLike[str],
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1"),
    days: int = 2,
) -> TestCertificates:
    """Write a CA, a server certificate for ``hosts`` and a client certificate into ``directory``.

    For tests and demos only (short-lived, unencrypted keys). Needs the ``cryptography`` package.

    Examples
    --------
    >>> certs = generate_certificates(tmp_path)  # doctest: +SKIP
    >>> Receiver(lab, tls=certs.server())         # doctest: +SKIP
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "generating certificates needs the cryptography package: pip install cryptography"
        ) from None

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
        cpath, kpath = out / f"{stem}.pem", out / f"{stem}-key.pem"
        cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kpath.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return str(cpath), str(kpath)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("otlp_lab test CA"))
        .issuer_name(name("otlp_lab test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, _ = write("ca", ca, ca_key)

    def leaf(cn: str, usage: Any, sans: list[x509.GeneralName]) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return write(cn, b.sign(ca_key, hashes.SHA256()), key)

    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    server_cert, server_key = leaf("server", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_cert, client_key = leaf(
        "client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("otlp-lab-client")]
    )
    return TestCertificates(ca_file, server_cert, server_key, client_cert, client_key)
