"""Per-run certificates and keys for the control plane, made with the ``openssl`` command.

One CA signs the API server's serving certificate and the client certificates of the admin user and
of each component (Kubernetes maps the subject's CN to the user name and each O to a group). A
second CA, the front-proxy CA, signs only the API server's client certificate towards aggregated
API servers (the requestheader scheme). The service-account signing key pair (RSA) is separate.
Other keys are ECDSA P-256: fast to generate, and accepted everywhere Kubernetes uses them.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "openssl"
DAYS = "3650"


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def _ec_key(path: Path) -> None:
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        str(path),
        cwd=path.parent,
    )
    path.chmod(0o600)


def make_ca(directory: Path, common_name: str = "pyetcd-e2e-ca", name: str = "ca") -> KeyPair:
    """A self-signed CA, ``<name>.crt``/``<name>.key`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    _ec_key(pair.key)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(pair.key),
        "-out",
        str(pair.cert),
        "-days",
        DAYS,
        "-subj",
        f"/CN={common_name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=directory,
    )
    return pair


def _subject(common_name: str, organizations: tuple[str, ...]) -> str:
    return "".join(f"/O={org}" for org in organizations) + f"/CN={common_name}"


def issue(
    ca: KeyPair,
    name: str,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    client: bool = True,
    server: bool = False,
    hosts: tuple[str, ...] = (),
) -> KeyPair:
    """Issue ``<name>.crt``/``<name>.key`` next to the CA, signed by it."""
    directory = ca.cert.parent
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    _ec_key(pair.key)
    _openssl(
        "req",
        "-new",
        "-key",
        str(pair.key),
        "-out",
        str(csr),
        "-subj",
        _subject(common_name, organizations),
        cwd=directory,
    )
    usages = [u for u, wanted in (("serverAuth", server), ("clientAuth", client)) if wanted]
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={','.join(usages)}",
    ]
    if hosts:
        sans = []
        for host in hosts:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                sans.append(f"DNS:{host}")
            else:
                sans.append(f"IP:{host}")
        lines.append(f"subjectAltName={','.join(sans)}")
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-out",
        str(pair.cert),
        "-days",
        DAYS,
        "-sha256",
        "-extfile",
        str(ext),
        cwd=directory,
    )
    csr.unlink()
    ext.unlink()
    return pair


def common_name(cert: Path) -> str:
    """The subject's common name of a certificate (the user name Kubernetes sees)."""
    result = subprocess.run(
        [OPENSSL, "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "multiline,utf8"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "commonName":
            return value.strip()
    raise RuntimeError(f"no common name in {cert}: {result.stderr.strip() or result.stdout}")


def make_service_account_keys(directory: Path) -> KeyPair:
    """The token signing key (``sa.key``) and its public half (``sa.pub``, in ``cert``)."""
    pair = KeyPair(directory / "sa.pub", directory / "sa.key")
    _openssl(
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        str(pair.key),
        cwd=directory,
    )
    pair.key.chmod(0o600)
    _openssl("pkey", "-in", str(pair.key), "-pubout", "-out", str(pair.cert), cwd=directory)
    return pair
