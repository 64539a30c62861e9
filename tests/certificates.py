"""Certificates for tests and benchmarks: a CA, and a server certificate it signs, as PEM text."""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PEM = serialization.Encoding.PEM


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: str, key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days)))


class CA:
    """A certificate authority: its certificate (`pem`) and what it signs (`server`)."""

    def __init__(self, name: str, days: int = 30):
        self.name, self.days = name, days
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.pem = (_builder(name, name, self._key, days)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                    .sign(self._key, hashes.SHA256()).public_bytes(PEM).decode())

    def server(self, *names: str) -> tuple[str, str]:
        """A server certificate for the addresses and host names given, and its key (PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        alternatives = []
        for name in names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        cert = (_builder(names[0], self.name, key, self.days)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
                .sign(self._key, hashes.SHA256()))
        return (cert.public_bytes(PEM).decode(),
                key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode())
