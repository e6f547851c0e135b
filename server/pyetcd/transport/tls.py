"""TLS for the client and peer listeners and the peer dialer, as etcd's ``transport.TLSInfo``.

What etcd does, and so what this does:

- A listener serves the certificate and key as they are on disk at each handshake (etcd reads
  them in ``GetCertificate``), so a rotated certificate needs no restart. Here a handshake looks
  at the files' modification times and, when one changed, loads them again; a pair that fails to
  load (a half-written rotation) keeps the previous one and logs why.
- A trusted CA file, or ``--client-cert-auth``, makes the listener require a client certificate
  signed by that CA (``RequireAndVerifyClientCert``); without either, none is asked for.
- ``--*-crl-file``: a certificate the CRL revokes is refused.
- ``--peer-cert-allowed-cn`` / ``--peer-cert-allowed-hostname``: a client certificate whose CN
  (or whose names, for the hostname) do not match is refused after the handshake
  (``client certificate authentication failed``).
- A client certificate that names IPs or DNS names must name the address the connection comes
  from (etcd's ``checkSAN``, on every TLS listener; peers can skip it with
  ``--experimental-peer-skip-client-san-verification``).
- TLS 1.2 at least unless ``--tls-min-version`` says otherwise; ``--cipher-suites`` takes Go's
  names and applies to TLS 1.2 (Go cannot configure TLS 1.3 suites either).
- The dialer presents the same certificate as a client certificate and verifies the server's
  against the trusted CA and the dialled host name, as Go's ``crypto/tls`` does.

Every file problem at start is a ``TLSConfigError`` whose message names the file, raised before
the member accepts anything.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Go's TLS 1.2 cipher suite names (tls.CipherSuiteName) and their OpenSSL names.
CIPHER_SUITES: dict[str, str] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
}
TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS1.2": ssl.TLSVersion.TLSv1_2,
    "TLS1.3": ssl.TLSVersion.TLSv1_3,
}
# ALPN of the client port: gRPC clients (HTTP/2) and curl (HTTP/1.1) on one listener.
CLIENT_ALPN = ("h2", "http/1.1")


class TLSConfigError(Exception):
    """The TLS settings cannot be used; the message names the file or flag."""


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """Certificate settings of one side (client or peer), as etcd's ``transport.TLSInfo``."""

    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    crl_file: str = ""
    auto_tls: bool = False
    allowed_cn: str = ""
    allowed_hostname: str = ""
    # --experimental-peer-skip-client-san-verification (peers only).
    skip_client_san_verify: bool = False

    @property
    def empty(self) -> bool:
        return self.cert_file == "" and self.key_file == ""

    @property
    def verifies_clients(self) -> bool:
        """etcd requires a verified client certificate with a trusted CA or client-cert-auth."""
        return self.trusted_ca_file != "" or self.client_cert_auth


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """What applies to both sides: ``--tls-min-version``, ``--tls-max-version`` and
    ``--cipher-suites`` (Go's names)."""

    min_version: str = "TLS1.2"
    max_version: str = ""
    cipher_suites: tuple[str, ...] = ()

    def check(self) -> None:
        for flag, value in (("--tls-min-version", self.min_version), ("--tls-max-version", "")):
            if value and value not in TLS_VERSIONS:
                raise TLSConfigError(f"{flag}: unknown TLS version {value!r}")
        if self.max_version and self.max_version not in TLS_VERSIONS:
            raise TLSConfigError(f"--tls-max-version: unknown TLS version {self.max_version!r}")
        unknown = [c for c in self.cipher_suites if c not in CIPHER_SUITES]
        if unknown:
            raise TLSConfigError(f"--cipher-suites: unexpected TLS cipher suite {unknown[0]!r}")
        if self.cipher_suites and self.min_version == "TLS1.3":
            raise TLSConfigError(
                "--cipher-suites cannot be used with --tls-min-version TLS1.3: TLS 1.3 cipher "
                "suites are not configurable"
            )


def _stamp(paths: Sequence[str]) -> tuple[tuple[int, int] | None, ...]:
    found: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            found.append(None)
            continue
        found.append((st.st_mtime_ns, st.st_size))
    return tuple(found)


def _load_pair(ctx: ssl.SSLContext, cert_file: str, key_file: str) -> None:
    for path in (cert_file, key_file):
        if not os.path.isfile(path):
            raise TLSConfigError(f"open {path}: no such file or directory")
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as err:
        if "KEY_VALUES_MISMATCH" in str(err):
            raise TLSConfigError(
                f"tls: private key {key_file} does not match public key {cert_file}"
            ) from None
        raise TLSConfigError(
            f"tls: failed to load the certificate {cert_file} and key {key_file}: {err.reason}"
        ) from None


def _load_trust(ctx: ssl.SSLContext, path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise TLSConfigError(f"open {path}: no such file or directory")
    try:
        ctx.load_verify_locations(cafile=path)
    except ssl.SSLError as err:
        raise TLSConfigError(f"{what} {path}: {err.reason or err}") from None


def _base(protocol: int, options: TLSOptions) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = TLS_VERSIONS[options.min_version or "TLS1.2"]
    if options.max_version:
        ctx.maximum_version = TLS_VERSIONS[options.max_version]
    if options.cipher_suites:
        ctx.set_ciphers(":".join(CIPHER_SUITES[c] for c in options.cipher_suites))
    return ctx


class ServerTLS:
    """A listener's ``ssl.SSLContext`` that serves the certificate files as they are now."""

    def __init__(
        self, info: TLSInfo, options: TLSOptions = TLSOptions(), alpn: Sequence[str] = ()
    ) -> None:
        if info.empty:
            raise TLSConfigError("KeyFile and CertFile must both be present")
        if not info.cert_file or not info.key_file:
            raise TLSConfigError(
                f"KeyFile and CertFile must both be present[key: {info.key_file}, "
                f"cert: {info.cert_file}]"
            )
        options.check()
        self.info = info
        self._options = options
        self._alpn = tuple(alpn)
        self._files = (info.cert_file, info.key_file)
        self._stamp = _stamp(self._files)
        self.context = self._build()
        self._serving = self.context
        self.context.sni_callback = self._on_hello

    def _build(self) -> ssl.SSLContext:
        info = self.info
        ctx = _base(ssl.PROTOCOL_TLS_SERVER, self._options)
        _load_pair(ctx, info.cert_file, info.key_file)
        if info.trusted_ca_file:
            _load_trust(ctx, info.trusted_ca_file, "trusted CA file")
        if info.verifies_clients:
            if not info.trusted_ca_file:
                # Go verifies against the system roots then; so does OpenSSL's default paths.
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
            ctx.verify_mode = ssl.CERT_REQUIRED
        if info.crl_file:
            _load_trust(ctx, info.crl_file, "CRL file")
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        if self._alpn:
            ctx.set_alpn_protocols(list(self._alpn))
        return ctx

    def _on_hello(self, conn: Any, server_name: str | None, ctx: ssl.SSLContext) -> None:
        """At each ClientHello: the certificate files again if they changed (OpenSSL swaps the
        certificate and key of this connection; its verification settings stay the first
        context's)."""
        stamp = _stamp(self._files)
        if stamp != self._stamp:
            try:
                fresh = self._build()
            except TLSConfigError as err:
                log.warning("serving the previous certificate: %s", err)
            else:
                self._stamp, self._serving = stamp, fresh
                log.info("loaded the rotated certificate %s", self.info.cert_file)
        if self._serving is not ctx:
            conn.context = self._serving

    def refusal(self, peer_cert: dict[str, Any] | None) -> str | None:
        return refusal(self.info, peer_cert)

    async def admit(self, peer_cert: dict[str, Any] | None, remote_host: str) -> str | None:
        """Why a connection that completed its handshake is refused, else ``None``: the
        allowed CN or hostname, then (unless skipped) the client certificate's SANs against
        the remote address, as etcd's TLS listener checks them (DNS lookups off the loop)."""
        refused = refusal(self.info, peer_cert)
        if refused is not None or not peer_cert or self.info.skip_client_san_verify:
            return refused
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, san_refusal, peer_cert, remote_host)


def refusal(info: TLSInfo, peer_cert: dict[str, Any] | None) -> str | None:
    """Why a verified client certificate is refused by the allowed CN or hostname, else
    ``None`` (etcd's ``VerifyPeerCertificate``)."""
    if not (info.allowed_cn or info.allowed_hostname):
        return None
    if not peer_cert:
        return "client certificate authentication failed"
    if info.allowed_cn and common_name(peer_cert) != info.allowed_cn:
        return "client certificate authentication failed"
    if info.allowed_hostname and not _matches_hostname(peer_cert, info.allowed_hostname):
        return "client certificate authentication failed"
    return None


def client_context(info: TLSInfo, options: TLSOptions = TLSOptions()) -> ssl.SSLContext:
    """The dialer's context: the same pair as a client certificate, the trusted CA as roots
    (the system's when none), the host name checked; a self-signed pair (auto TLS) skips
    verification, as etcd's ``selfCert``."""
    options.check()
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, options)
    if not info.empty:
        _load_pair(ctx, info.cert_file, info.key_file)
    if info.auto_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif info.trusted_ca_file:
        _load_trust(ctx, info.trusted_ca_file, "trusted CA file")
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


def san_refusal(peer_cert: dict[str, Any], remote_host: str) -> str | None:
    """etcd's ``checkCertSAN`` (blocking: DNS): a client certificate that names IPs or DNS
    names must name the address it connects from, directly or through DNS (reverse lookup of
    the address, forward lookup of the names); one that names neither passes."""
    sans = peer_cert.get("subjectAltName", ())
    ips = [str(v) for k, v in sans if k == "IP Address"]
    names = [str(v) for k, v in sans if k == "DNS"]
    if not ips and not names:
        return None
    host = _normal_ip(remote_host)
    if ips:
        if host in {_normal_ip(ip) for ip in ips}:
            return None
        if not names:
            return f"x509: certificate is valid for {', '.join(ips)}, not {remote_host}"
    wildcards = [n[1:] for n in names if n.startswith("*.")]
    exact = [n for n in names if not n.startswith("*.")]
    try:
        primary, aliases, _ = socket.gethostbyaddr(remote_host)
        reverse = [primary, *aliases]
    except OSError:
        reverse = []
    for listed in reverse:
        name = listed.rstrip(".")
        if name in exact or any(name.endswith(w) for w in wildcards):
            return None
    for name in exact:
        try:
            found = socket.getaddrinfo(name, None)
        except OSError:
            continue
        if host in {_normal_ip(str(info[4][0])) for info in found}:
            return None
    listed = " ".join(f'"{n}"' for n in names)
    return f'tls: "{remote_host}" does not match any of DNSNames [{listed}]'


def _normal_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return text


def common_name(peer_cert: dict[str, Any]) -> str:
    """The subject CN of a certificate as ``SSLSocket.getpeercert()`` returns it."""
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


def _matches_hostname(peer_cert: dict[str, Any], hostname: str) -> bool:
    names = [v for k, v in peer_cert.get("subjectAltName", ()) if k in ("DNS", "IP Address")]
    wanted = hostname.lower()
    for listed in names:
        name = str(listed).lower()
        if name == wanted:
            return True
        if name.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == name[2:]:
            return True
    return False
