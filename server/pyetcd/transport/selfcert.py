"""Self-signed certificates for ``--auto-tls`` and ``--peer-auto-tls`` (etcd's ``SelfCert``).

etcd writes ``cert.pem`` and ``key.pem`` under ``<data-dir>/fixtures/client`` (or ``peer``) the
first time and reuses them after: an ECDSA P-521 key, organisation ``etcd``, server (and client)
authentication, the listen URLs' hosts as IP or DNS names, valid ``--self-signed-cert-validity``
years. Peers dialling such a member skip verification (nobody can verify a self-signed
certificate): auto TLS encrypts, it does not authenticate.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import logging
import os
import secrets
from collections.abc import Sequence

from pyetcd.fileutil import fsync_dir
from pyetcd.transport.tls import TLSConfigError, TLSInfo

log = logging.getLogger(__name__)


def self_cert(directory: str, hosts: Sequence[str], validity_years: int) -> TLSInfo:
    """The pair in ``directory``, made first if either file is missing; the TLS settings that
    serve it (``auto_tls``: dialled without verification)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if validity_years <= 0:
        raise TLSConfigError(
            "selfSignedCertValidity is invalid,it should be greater than 0 "
            "(--self-signed-cert-validity)"
        )
    cert_path = os.path.abspath(os.path.join(directory, "cert.pem"))
    key_path = os.path.abspath(os.path.join(directory, "key.pem"))
    if os.path.isfile(cert_path) and os.path.isfile(key_path):
        return TLSInfo(cert_file=cert_path, key_file=key_path, auto_tls=True)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as err:
        raise TLSConfigError(f"cannot create cert directory {directory}: {err.strerror}") from None
    key = ec.generate_private_key(ec.SECP521R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(127))
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * validity_years))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA512())
    _write(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    fsync_dir(directory)
    return TLSInfo(cert_file=cert_path, key_file=key_path, auto_tls=True)


def resolve_auto_tls(
    info: TLSInfo, directory: str, hosts: Sequence[str], validity_years: int
) -> TLSInfo:
    """``info`` with its self-signed pair when auto TLS is asked for and no pair is given
    (etcd ignores auto TLS when certificates are given, and says so)."""
    if not info.auto_tls:
        return info
    if not info.empty:
        log.warning("ignoring auto TLS since certs given (%s)", info.cert_file)
        return dataclasses.replace(info, auto_tls=False)
    made = self_cert(directory, hosts, validity_years)
    return dataclasses.replace(info, cert_file=made.cert_file, key_file=made.key_file)


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
