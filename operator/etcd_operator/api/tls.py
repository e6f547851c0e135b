"""The TLS API: ``EtcdCluster.spec.tls``, client and peer TLS, each from a certificate source.

Two planes, as etcd has them: ``client`` (members serve https on the client port and, with
``--client-cert-auth``, accept only clients with a certificate from the client CA) and ``peer``
(https between members, ``--peer-client-cert-auth``). Each plane's certificates come from a
source:

- ``Generated``: the operator makes a CA per cluster and plane (kept in a Secret it owns) and
  issues the members' certificates and a client certificate (for itself, backups and
  applications), and renews them before they expire.
- ``Secret``: Secrets the user made (``tls.crt``, ``tls.key``, ``ca.crt``, the layout of
  ``kubernetes.io/tls`` Secrets with the CA beside, as cert-manager writes them).
- ``CertManager``: reserved; refused until an operator version implements it.

A plane is on or off for the life of the cluster, and keeps its source: switching a running
cluster between http and https needs the members to advertise both for a while, which this
version does not do, so the transition rule on the spec refuses it (``TLS_CHANGE_RULE``).

Every CEL rule here that does not look at ``oldSelf`` has its pydantic mirror.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# Generated certificates: a year unless told, at least an hour (renewal at two thirds of the
# lifetime must leave the kubelet time to refresh the mounted files), at most ten years (the CA's).
DEFAULT_VALIDITY_HOURS = 365 * 24
MAX_VALIDITY_HOURS = 10 * 365 * 24


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=True)


def _rules(*items: tuple[str, str, str | None]) -> dict[str, Any]:
    out = []
    for rule, message, path in items:
        entry = {"rule": rule, "message": message}
        if path is not None:
            entry["fieldPath"] = path
        out.append(entry)
    return {"x-kubernetes-validations": out}


class CertificateSource(StrEnum):
    """Where a plane's certificates come from."""

    GENERATED = "Generated"
    SECRET = "Secret"
    CERT_MANAGER = "CertManager"


CERT_MANAGER_MESSAGE = (
    "source CertManager is not supported yet by this operator version: use Generated (the "
    "operator's own CA) or Secret (Secrets you provide)"
)
SOURCE_MAX_LENGTH = 16  # bounds the enum for the CEL cost estimate

CLIENT_RULES = (
    ("self.source != 'CertManager'", CERT_MANAGER_MESSAGE, ".source"),
    (
        "self.source != 'Secret' || (has(self.serverSecretName) && has(self.clientSecretName))",
        "source Secret needs serverSecretName (the members' serving certificate) and "
        "clientSecretName (the client certificate the operator connects with)",
        ".source",
    ),
    (
        "self.source == 'Secret' || (!has(self.serverSecretName) && !has(self.clientSecretName))",
        "serverSecretName and clientSecretName are for source Secret only",
        ".source",
    ),
)
PEER_RULES = (
    ("self.source != 'CertManager'", CERT_MANAGER_MESSAGE, ".source"),
    (
        "self.source != 'Secret' || has(self.secretName)",
        "source Secret needs secretName (the members' peer certificate)",
        ".source",
    ),
    (
        "self.source == 'Secret' || !has(self.secretName)",
        "secretName is for source Secret only",
        ".source",
    ),
)
TLS_RULES = (
    (
        "has(self.client) || has(self.peer)",
        "tls needs client, peer or both: an empty tls would be a plaintext cluster",
        None,
    ),
)

# On the spec (a rule on the field itself is skipped when the field is added or removed).
TLS_CHANGE_RULE = (
    "has(self.tls) == has(oldSelf.tls) && (!has(self.tls) || ("
    "has(self.tls.client) == has(oldSelf.tls.client)"
    " && (!has(self.tls.client) || self.tls.client == oldSelf.tls.client)"
    " && has(self.tls.peer) == has(oldSelf.tls.peer)"
    " && (!has(self.tls.peer) || self.tls.peer == oldSelf.tls.peer)))",
    "tls.client and tls.peer are immutable: switching a running cluster between http and https, "
    "or changing where its certificates come from, is not supported by this operator version; "
    "create a new cluster (from a backup) with the TLS it needs. Renew certificates by updating "
    "the Secrets' contents",
    ".tls",
)


def _check(rules: tuple[tuple[str, str, str | None], ...], failed: list[bool]) -> None:
    for (_, message, _), bad in zip(rules, failed, strict=True):
        if bad:
            raise ValueError(message)


class ClientTLSSpec(_Model):
    """TLS on the client port: https for every client, and a client certificate required."""

    model_config = ConfigDict(json_schema_extra=_rules(*CLIENT_RULES))

    source: CertificateSource = Field(
        default=CertificateSource.GENERATED,
        description="Generated: the operator's own CA and certificates, renewed before they "
        "expire; Secret: serverSecretName and clientSecretName; CertManager: not supported yet.",
        json_schema_extra={"maxLength": SOURCE_MAX_LENGTH},
    )
    serverSecretName: str | None = Field(
        default=None,
        description="Source Secret: the members' serving certificate (tls.crt, tls.key, and "
        "ca.crt, the CA that client certificates must come from). Its names must cover the "
        "members' and the client Service's DNS names.",
        pattern=SECRET_NAME_PATTERN,
        max_length=253,
    )
    clientSecretName: str | None = Field(
        default=None,
        description="Source Secret: the client certificate the operator (and its backups) "
        "connect with (tls.crt, tls.key, and ca.crt, the CA of the members' serving "
        "certificate).",
        pattern=SECRET_NAME_PATTERN,
        max_length=253,
    )

    @model_validator(mode="after")
    def _as_the_crd_checks_it(self) -> ClientTLSSpec:
        named = self.serverSecretName is not None, self.clientSecretName is not None
        _check(
            CLIENT_RULES,
            [
                self.source == CertificateSource.CERT_MANAGER,
                self.source == CertificateSource.SECRET and not all(named),
                self.source != CertificateSource.SECRET and any(named),
            ],
        )
        return self


class PeerTLSSpec(_Model):
    """TLS between members: https peer URLs, each member presenting a certificate."""

    model_config = ConfigDict(json_schema_extra=_rules(*PEER_RULES))

    source: CertificateSource = Field(
        default=CertificateSource.GENERATED,
        description="Generated: the operator's own CA and certificates, renewed before they "
        "expire; Secret: secretName; CertManager: not supported yet.",
        json_schema_extra={"maxLength": SOURCE_MAX_LENGTH},
    )
    secretName: str | None = Field(
        default=None,
        description="Source Secret: the members' peer certificate (tls.crt, tls.key, ca.crt), "
        "for both server and client authentication, covering the members' DNS names.",
        pattern=SECRET_NAME_PATTERN,
        max_length=253,
    )

    @model_validator(mode="after")
    def _as_the_crd_checks_it(self) -> PeerTLSSpec:
        _check(
            PEER_RULES,
            [
                self.source == CertificateSource.CERT_MANAGER,
                self.source == CertificateSource.SECRET and self.secretName is None,
                self.source != CertificateSource.SECRET and self.secretName is not None,
            ],
        )
        return self


class TLSSpec(_Model):
    """Client and peer TLS (see docs/security.md)."""

    model_config = ConfigDict(json_schema_extra=_rules(*TLS_RULES))

    client: ClientTLSSpec | None = Field(
        default=None, description="TLS for clients (https client URLs, client certificates)."
    )
    peer: PeerTLSSpec | None = Field(
        default=None, description="TLS between members (https peer URLs)."
    )
    certificateValidityHours: int = Field(
        default=DEFAULT_VALIDITY_HOURS,
        ge=1,
        le=MAX_VALIDITY_HOURS,
        description="Lifetime of the certificates the operator issues (source Generated); each "
        "is renewed at two thirds of its lifetime. The CA lives ten years.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> TLSSpec:
        _check(TLS_RULES, [self.client is None and self.peer is None])
        return self
