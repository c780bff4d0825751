"""Throwaway self-signed certificates for the simulated hosts' HTTPS listener and cert auth."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Microsoft's User Principal Name otherName, which WinRM certificate mapping matches on.
_UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
_VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class CertFiles:
    """PEM files of one certificate and its unencrypted private key."""

    cert: Path
    key: Path


def write_server_cert(
    directory: Path, name: str = "server", dns_name: str | None = None
) -> CertFiles:
    """Write a self-signed TLS server certificate into directory.

    For 127.0.0.1 and localhost; for ``dns_name`` alone when given (a host reached by an
    address its certificate does not name).
    """
    if dns_name is not None:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)])
        san = x509.SubjectAlternativeName([x509.DNSName(dns_name)])
        return _write(directory, name, subject, san, ExtendedKeyUsageOID.SERVER_AUTH)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.IPAddress(ipaddress.IPv6Address("::1")),
        ]
    )
    return _write(directory, name, subject, san, ExtendedKeyUsageOID.SERVER_AUTH)


def write_client_cert(directory: Path, username: str, name: str = "client") -> CertFiles:
    """Write a self-signed TLS client certificate for username (CN and UPN) into directory."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, username)])
    upn = _der_utf8_string(f"{username}@localhost")
    san = x509.SubjectAlternativeName([x509.OtherName(_UPN_OID, upn)])
    return _write(directory, name, subject, san, ExtendedKeyUsageOID.CLIENT_AUTH)


def _write(
    directory: Path,
    name: str,
    subject: x509.Name,
    san: x509.SubjectAlternativeName,
    usage: x509.ObjectIdentifier,
) -> CertFiles:
    # P-256 keeps generation in the low milliseconds, which matters for per-test certificates.
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + _VALIDITY)
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return CertFiles(cert=cert_path, key=key_path)


def _der_utf8_string(text: str) -> bytes:
    # An otherName value is DER; a UPN is a UTF8String (tag 0x0C), short enough for 1-byte length.
    raw = text.encode("utf-8")
    if len(raw) > 127:
        raise ValueError(f"user principal name too long for this helper: {text!r}")
    return bytes([0x0C, len(raw)]) + raw
