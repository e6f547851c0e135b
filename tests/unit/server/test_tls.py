"""The pure parts of ``transport.tls``: which verified client certificates the allowed CN and
hostname settings refuse, and the checks of the version and cipher suite settings."""

from __future__ import annotations

from typing import Any

import pytest
from pyetcd.transport.tls import (
    ServerTLS,
    TLSConfigError,
    TLSInfo,
    TLSOptions,
    common_name,
    refusal,
    san_refusal,
)


def cert(cn: str, *sans: tuple[str, str]) -> dict[str, Any]:
    """A certificate as ``getpeercert()`` returns it."""
    return {"subject": ((("commonName", cn),),), "subjectAltName": sans}


REFUSED = "client certificate authentication failed"


def test_allowed_cn_and_hostname() -> None:
    member = cert("member", ("DNS", "m0.peers.svc"), ("IP Address", "10.0.0.7"))
    assert common_name(member) == "member"
    assert refusal(TLSInfo(), None) is None  # nothing asked: nothing refused
    assert refusal(TLSInfo(allowed_cn="member"), member) is None
    assert (
        refusal(TLSInfo(allowed_cn="other"), member) == "client certificate authentication failed"
    )
    assert refusal(TLSInfo(allowed_cn="member"), None) is not None
    assert refusal(TLSInfo(allowed_hostname="m0.peers.svc"), member) is None
    assert refusal(TLSInfo(allowed_hostname="10.0.0.7"), member) is None
    assert refusal(TLSInfo(allowed_hostname="m1.peers.svc"), member) is not None
    wildcard = cert("x", ("DNS", "*.peers.svc"))
    assert refusal(TLSInfo(allowed_hostname="m1.peers.svc"), wildcard) is None
    assert refusal(TLSInfo(allowed_hostname="a.b.peers.svc"), wildcard) is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (TLSOptions(cipher_suites=("TLS_AES_128_GCM_SHA256",)), "unexpected TLS cipher suite"),
        (TLSOptions(min_version="TLS1.0"), "unknown TLS version"),
        (TLSOptions(max_version="SSL3"), "unknown TLS version"),
        (
            TLSOptions(min_version="TLS1.3", cipher_suites=("TLS_RSA_WITH_AES_128_GCM_SHA256",)),
            "not configurable",
        ),
    ],
)
def test_refused_options(options: TLSOptions, message: str) -> None:
    with pytest.raises(TLSConfigError, match=message):
        options.check()


def test_a_server_needs_both_files() -> None:
    with pytest.raises(TLSConfigError, match=r"must both be present\[key: /k, cert: \]"):
        ServerTLS(TLSInfo(key_file="/k"))


def test_client_certificate_sans_must_name_the_remote_address() -> None:
    assert san_refusal(cert("c"), "10.1.2.3") is None  # no SAN: nothing to check
    by_ip = cert("c", ("IP Address", "127.0.0.1"))
    assert san_refusal(by_ip, "127.0.0.1") is None
    assert san_refusal(by_ip, "10.1.2.3") == (
        "x509: certificate is valid for 127.0.0.1, not 10.1.2.3"
    )
    # A DNS name that resolves to the address (forward lookup) passes; one that does not fails.
    assert san_refusal(cert("c", ("DNS", "localhost")), "127.0.0.1") is None
    unknown = cert("c", ("DNS", "nowhere.invalid"))
    assert san_refusal(unknown, "127.0.0.1") == (
        'tls: "127.0.0.1" does not match any of DNSNames ["nowhere.invalid"]'
    )
