"""Certificates with the ``cryptography`` package: issue a CA and the certificates it signs, and
read back what a TLS Secret holds. No I/O and no clock: the caller says when "now" is.

Keys are ECDSA P-256: etcd (Go's crypto/tls), pyetcd (OpenSSL through Python's ssl and gRPC's
BoringSSL) and etcdctl all speak it, and a key is made in microseconds where RSA takes tens of
milliseconds per key on a shared core. Certificates are X.509 v3 as Go's crypto/x509 wants them:
names only in the subject alternative names (Go ignores the common name), the key usages and
extended key usages each role needs, and the authority and subject key identifiers that chain
building uses. ``notBefore`` lies a few minutes back, so that a member whose clock is slightly
behind the operator's does not refuse a certificate as not yet valid.

``inspect`` is the other direction: the facts of a Secret's ``tls.crt``/``tls.key``/``ca.crt``
that the decisions need (validity, names, whether the key matches and the CA signed it), or one
sentence saying what is wrong with it, never an exception.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The keys of a TLS Secret (kubernetes.io/tls, with the CA beside as cert-manager writes it).
CERT_KEY = "tls.crt"
PRIVATE_KEY_KEY = "tls.key"
CA_KEY = "ca.crt"
SECRET_KEYS = (CERT_KEY, PRIVATE_KEY_KEY, CA_KEY)

BACKDATE = timedelta(minutes=5)
CA_VALIDITY = timedelta(days=3650)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, PEM."""

    cert: bytes
    key: bytes


@dataclass(frozen=True)
class CertificateRequest:
    """What to issue: the subject's common name, its names (DNS and IP subject alternative
    names), what it may authenticate as (``server``: TLS server; ``client``: TLS client) and
    for how long. ``ca``: a CA certificate (self-signed) instead of a leaf."""

    common_name: str
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    validity: timedelta = timedelta(days=365)
    ca: bool = False
    organization: str = "etcd-operator"


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def issue(request: CertificateRequest, now: datetime, ca: KeyPair | None = None) -> KeyPair:
    """A new key and its certificate for ``request``, signed by ``ca`` (self-signed when
    ``ca`` is ``None``, which only a CA request may be)."""
    if ca is None and not request.ca:
        raise ValueError("a leaf certificate needs a CA to sign it")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(request.common_name, request.organization)
    if ca is not None:
        ca_cert = x509.load_pem_x509_certificate(ca.cert)
        signing_key = serialization.load_pem_private_key(ca.key, password=None)
        if not isinstance(signing_key, ec.EllipticCurvePrivateKey):
            raise ValueError("the CA key is not an ECDSA key")
        issuer, issuer_public = ca_cert.subject, ca_cert.public_key()
        if not isinstance(issuer_public, ec.EllipticCurvePublicKey):
            raise ValueError("the CA certificate does not hold an ECDSA key")
    else:
        signing_key, issuer, issuer_public = key, subject, key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + request.validity)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), False)
    )
    if request.ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usages = []
        if request.server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if request.client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    # ECDSA keys sign the handshake; key encipherment is RSA's.
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
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in request.dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in request.ip_addresses]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signing_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def new_ca(common_name: str, now: datetime, validity: timedelta = CA_VALIDITY) -> KeyPair:
    """A self-signed CA."""
    return issue(CertificateRequest(common_name, ca=True, validity=validity), now)


def fingerprint(pem: bytes) -> str:
    """The SHA-256 of the (first) certificate's DER, in hex."""
    cert = x509.load_pem_x509_certificate(pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class CertificateFacts:
    """What a TLS Secret holds, as far as it could be read: ``problem`` says why it cannot be
    used (then the other fields may be empty); ``ca_fingerprint`` is the SHA-256 of its
    ``ca.crt``, ``own_fingerprint`` of its ``tls.crt``; ``is_ca``: ``tls.crt`` is a CA."""

    problem: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    server: bool = False
    client: bool = False
    is_ca: bool = False
    own_fingerprint: str | None = None
    ca_fingerprint: str | None = None

    @property
    def usable(self) -> bool:
        return self.problem is None

    def renew_at(self) -> datetime | None:
        """Two thirds into its lifetime: a third is left for the new files to reach every
        member (the kubelet refreshes Secret volumes within a minute or two)."""
        if self.not_before is None or self.not_after is None:
            return None
        return self.not_before + (self.not_after - self.not_before) * 2 / 3


def _problem(message: str) -> CertificateFacts:
    return CertificateFacts(problem=message)


def inspect(data: Mapping[str, bytes], now: datetime | None = None) -> CertificateFacts:
    """The facts of a TLS Secret's data (keys ``tls.crt``, ``tls.key``, ``ca.crt``, decoded).

    A problem is reported for a missing key, PEM that does not parse, a key that does not belong
    to the certificate, a certificate that ``ca.crt`` did not sign, and (given ``now``) one that
    has expired or is not valid yet."""
    missing = [k for k in SECRET_KEYS if not data.get(k)]
    if missing:
        return _problem(f"has no {', '.join(missing)} (it needs {', '.join(SECRET_KEYS)})")
    try:
        cert = x509.load_pem_x509_certificate(data[CERT_KEY])
    except ValueError:
        return _problem(f"{CERT_KEY} is not a PEM certificate")
    try:
        ca = x509.load_pem_x509_certificate(data[CA_KEY])
    except ValueError:
        return _problem(f"{CA_KEY} is not a PEM certificate")
    try:
        key = serialization.load_pem_private_key(data[PRIVATE_KEY_KEY], password=None)
    except (ValueError, TypeError):
        return _problem(f"{PRIVATE_KEY_KEY} is not an unencrypted PEM private key")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) != cert.public_key().public_bytes(serialization.Encoding.DER, public):
        return _problem(f"{PRIVATE_KEY_KEY} is not the key of {CERT_KEY}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return _problem(f"{CERT_KEY} is not signed by {CA_KEY}")
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    facts = CertificateFacts(
        not_before=not_before,
        not_after=not_after,
        dns_names=tuple(str(n) for n in _san(cert, x509.DNSName)),
        ip_addresses=tuple(str(ip) for ip in _san(cert, x509.IPAddress)),
        server=_eku(cert, ExtendedKeyUsageOID.SERVER_AUTH),
        client=_eku(cert, ExtendedKeyUsageOID.CLIENT_AUTH),
        is_ca=_is_ca(cert),
        own_fingerprint=fingerprint(data[CERT_KEY]),
        ca_fingerprint=fingerprint(data[CA_KEY]),
    )
    if now is not None and not_after <= now:
        return _replace_problem(facts, f"{CERT_KEY} expired at {not_after.isoformat()}")
    if now is not None and now < not_before:
        return _replace_problem(facts, f"{CERT_KEY} is not valid before {not_before.isoformat()}")
    return facts


def _replace_problem(facts: CertificateFacts, problem: str) -> CertificateFacts:
    return replace(facts, problem=problem)


def _san(cert: x509.Certificate, kind: type[x509.DNSName] | type[x509.IPAddress]) -> list[object]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(names.get_values_for_type(kind))


def _eku(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no restriction: any usage
    return usage in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def covers(dns_names: tuple[str, ...], host: str) -> bool:
    """Whether a certificate with ``dns_names`` is valid for ``host``: an exact name, or a
    wildcard in the leftmost label (``*.peer.ns.svc`` covers ``a.peer.ns.svc``), as Go and
    OpenSSL match them."""
    host = host.lower().rstrip(".")
    for name in dns_names:
        pattern = name.lower().rstrip(".")
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == pattern[2:]:
                return True
    return False
