"""The certificate builder and reader (``components.pki``): what is issued (names, validity,
key usages, chain), and every way a Secret's files can be unusable, each named in one
sentence."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from etcd_operator.components.pki import (
    BACKDATE,
    CA_KEY,
    CERT_KEY,
    PRIVATE_KEY_KEY,
    CertificateRequest,
    KeyPair,
    covers,
    inspect,
    issue,
    new_ca,
)

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
SERVER = CertificateRequest(
    "demo-server",
    dns_names=("demo-0.demo-peer.ns.svc.cluster.local", "demo-client"),
    ip_addresses=("127.0.0.1", "::1"),
    server=True,
    validity=timedelta(hours=90),
)


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_ca("demo CA", NOW)


def data(pair: KeyPair, ca: KeyPair) -> dict[str, bytes]:
    return {CERT_KEY: pair.cert, PRIVATE_KEY_KEY: pair.key, CA_KEY: ca.cert}


def test_a_server_certificate_names_its_hosts_for_its_lifetime_and_serves_only(ca: KeyPair) -> None:
    pair = issue(SERVER, NOW, ca)
    cert = x509.load_pem_x509_certificate(pair.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == list(SERVER.dns_names)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    # Backdated for clock skew; the lifetime counts from now.
    assert cert.not_valid_before_utc == NOW - BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(hours=90)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature and not key_usage.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == x509.load_pem_x509_certificate(ca.cert).subject
    facts = inspect(data(pair, ca), NOW)
    assert facts.usable and facts.server and not facts.client and not facts.is_ca
    assert facts.renew_at() == NOW - BACKDATE + (timedelta(hours=90) + BACKDATE) * 2 / 3


def test_a_ca_signs_certificates_and_nothing_else_about_it_is_a_leaf(ca: KeyPair) -> None:
    cert = x509.load_pem_x509_certificate(ca.cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert inspect(data(ca, ca), NOW).is_ca
    with pytest.raises(ValueError, match="needs a CA"):
        issue(SERVER, NOW)


def test_a_peer_certificate_serves_and_dials(ca: KeyPair) -> None:
    request = CertificateRequest("peer", dns_names=("a",), server=True, client=True)
    facts = inspect(data(issue(request, NOW, ca), ca), NOW)
    assert facts.server and facts.client


def test_python_ssl_verifies_the_chain_and_the_names(tmp_path: Path) -> None:
    # The hostname check Python's ssl (OpenSSL) makes, as pyetcd.client and etcdctl make it.
    now = datetime.now(UTC)  # the handshake checks validity against the real clock
    ca = new_ca("demo CA", now)
    pair = issue(SERVER, now, ca)
    (tmp_path / "ca.pem").write_bytes(ca.cert)
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    # Strict X.509 checks (Python 3.13's default): the extensions must be as RFC 5280 says.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (tmp_path / "c.pem").write_bytes(pair.cert)
    (tmp_path / "k.pem").write_bytes(pair.key)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    for host, ok in (("demo-client", True), ("demo-1.demo-peer.ns.svc.cluster.local", False)):
        client_in, client_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = context.wrap_bio(client_in, client_out, server_hostname=host)
        served = server.wrap_bio(server_in, server_out, server_side=True)
        error: Exception | None = None
        for _ in range(10):
            for side in (client, served):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLError as err:
                    error = err
            server_in.write(client_out.read())
            client_in.write(server_out.read())
            if error is not None:
                break
        assert (error is None) == ok, (host, error)
        assert ok or "Hostname mismatch" in str(error), error


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d, other: {k: v for k, v in d.items() if k != CA_KEY}, "has no ca.crt"),
        (lambda d, other: {**d, CERT_KEY: b"junk"}, "tls.crt is not a PEM certificate"),
        (lambda d, other: {**d, CA_KEY: b"junk"}, "ca.crt is not a PEM certificate"),
        (lambda d, other: {**d, PRIVATE_KEY_KEY: b"junk"}, "tls.key is not an unencrypted PEM"),
        (lambda d, other: {**d, PRIVATE_KEY_KEY: other.key}, "tls.key is not the key of tls.crt"),
        (lambda d, other: {**d, CA_KEY: other.cert}, "tls.crt is not signed by ca.crt"),
    ],
)
def test_an_unusable_secret_says_why_in_one_sentence(
    ca: KeyPair, change: object, problem: str
) -> None:
    other = new_ca("someone else", NOW)
    broken = change(data(issue(SERVER, NOW, ca), ca), other)  # type: ignore[operator]
    facts = inspect(broken, NOW)
    assert not facts.usable and facts.problem is not None
    assert facts.problem.startswith(problem), facts.problem


def test_an_expired_or_future_certificate_is_unusable(ca: KeyPair) -> None:
    files = data(issue(SERVER, NOW, ca), ca)
    assert inspect(files, NOW + timedelta(hours=89)).usable
    late = inspect(files, NOW + timedelta(hours=90))
    assert late.problem is not None and "expired" in late.problem
    early = inspect(files, NOW - timedelta(hours=1))
    assert early.problem is not None and "not valid before" in early.problem


def test_names_are_covered_exactly_or_by_a_leftmost_wildcard() -> None:
    names = ("a.peer.ns.svc", "*.peer.ns", "Client")
    assert covers(names, "a.peer.ns.svc") and covers(names, "client")
    assert covers(names, "b.peer.ns") and not covers(names, "x.b.peer.ns")
    assert not covers(names, "peer.ns") and not covers(names, "b.peer.ns.svc")
