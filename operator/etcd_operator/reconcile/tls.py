"""The TLS step: keep the certificates of ``spec.tls`` issued, valid and renewed. Pure.

For a plane whose source is ``Generated``, the step issues what is missing or no longer fits:

- the plane's CA, when its Secret is absent or does not hold a usable CA (then every
  certificate of the plane is issued anew from the new CA);
- each certificate (Server, Peer, Client), when its Secret is absent or unusable, was not issued
  by the plane's current CA, does not carry the names it should (the cluster domain changed),
  or has lived two thirds of its lifetime (renewal: ``CertificateRenewed`` event).

Issuing is an ``IssueCertificate`` action: the executor makes the key. The members read the
renewed files from their Secret volumes, which the kubelet refreshes, and load them on the next
handshake (etcd and pyetcd both do), so renewal restarts nothing; the pod template names the
Secrets, never their contents, so it does not change either. A CA is not renewed: it lives ten
years (``status.tls`` shows its expiry).

For a plane whose source is ``Secret``, the step checks the user's Secrets: present, with
``tls.crt``, ``tls.key`` and ``ca.crt`` that parse, a key that matches and a CA that signed the
certificate, not expired, the usage the role needs, and (Server and Peer) names that cover
every member and the client Service. What is wrong goes into the ``TLSReady`` condition and a
Warning event; a cluster that does not exist yet is not created until the Secrets are right
(its pods could not start, and would start again in a loop), while a running cluster keeps
running on the files its members have.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import CertificateStatus, EtcdCluster, TLSStatus
from etcd_operator.components import naming, tls
from etcd_operator.components.pki import CertificateFacts, covers
from etcd_operator.reconcile.actions import Action, Event, IssueCertificate
from etcd_operator.reconcile.conditions.common import FALSE, TRUE, Verdict
from etcd_operator.reconcile.observed import ChildKey, Observed
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress

# Notes of this step: the problems of the user's Secrets (tuple of str), and the time of the
# issue this pass made (kept as ``acted``: the status's lastRenewal).
PROBLEMS = "tls-problems"
ISSUED = "tls-issued"

TLS_NOT_READY = "TLSNotReady"
CERTIFICATES_READY = "CertificatesReady"
SECRET_MISSING = "SecretMissing"
SECRET_INVALID = "SecretInvalid"
CERTIFICATES_PENDING = "CertificatesPending"
RENEWED = "CertificateRenewed"
ISSUED_EVENT = "CertificateIssued"


def _renewal_due(facts: CertificateFacts, now: datetime | None) -> bool:
    renew_at = facts.renew_at()
    return now is not None and renew_at is not None and now >= renew_at


def _leaf_reason(
    cluster: EtcdCluster,
    settings: OperatorSettings,
    secret: tls.TLSSecret,
    *,
    facts: CertificateFacts | None,
    ca: CertificateFacts | None,
    now: datetime | None,
) -> tuple[str, bool] | None:
    """Why a generated certificate is to be issued (and whether that is a renewal), or
    ``None`` when it is fine."""
    if facts is None:
        return f"Secret {secret.name} does not exist", False
    if not facts.usable:
        return f"Secret {secret.name} {facts.problem}", False
    if ca is None or facts.ca_fingerprint != ca.own_fingerprint:
        return f"Secret {secret.name} was not issued by the current {secret.plane} CA", False
    wanted = tls.request(cluster, settings, secret).dns_names
    if set(facts.dns_names) != set(wanted):
        return f"Secret {secret.name} does not carry the names the members have now", False
    if _renewal_due(facts, now):
        assert facts.not_after is not None
        return (
            f"Secret {secret.name}: the certificate expires at {rfc3339(facts.not_after)} "
            "and has lived two thirds of its lifetime",
            True,
        )
    return None


def _issue(
    cluster: EtcdCluster,
    settings: OperatorSettings,
    observed: Observed,
    now: datetime,
) -> tuple[list[IssueCertificate], list[Event]]:
    """The certificates to issue for the generated planes, and the events saying so."""
    actions: list[IssueCertificate] = []
    events: list[Event] = []
    cas: dict[tls.Plane, str | None] = {}
    ca_renewed: dict[tls.Plane, bool] = {}
    for secret in tls.secrets(cluster):
        if not secret.generated:
            continue
        facts = observed.certificates.get(secret.name)
        if secret.role == tls.Role.CA:
            cas[secret.plane] = secret.name
            why: tuple[str, bool] | None = None
            if facts is None:
                why = (f"Secret {secret.name} does not exist", False)
            elif not facts.usable or not facts.is_ca:
                why = (f"Secret {secret.name} does not hold a usable CA ({facts.problem})", False)
            ca_renewed[secret.plane] = why is not None
            ca_secret = None
        else:
            ca_name = cas.get(secret.plane)
            ca_facts = observed.certificates.get(ca_name) if ca_name else None
            if ca_renewed.get(secret.plane):
                why = (f"the {secret.plane} CA is new", False)
            else:
                why = _leaf_reason(cluster, settings, secret, facts=facts, ca=ca_facts, now=now)
            ca_secret = ca_name
        if why is None:
            continue
        reason, renewal = why
        actions.append(
            IssueCertificate(
                tls.secret_manifest(cluster, secret),
                tls.request(cluster, settings, secret),
                ca_secret,
                now,
                reason,
            )
        )
        if renewal:
            events.append(
                Event(
                    "Normal", RENEWED, f"renewed {secret.role} certificate {secret.name}: {reason}"
                )
            )
        elif facts is not None:
            # A certificate replaced for another reason than its age: worth a Warning, since
            # someone or something changed a Secret the operator owns.
            events.append(
                Event("Warning", ISSUED_EVENT, f"issued {secret.role} {secret.name} anew: {reason}")
            )
    if actions and not events:
        names = ", ".join(a.manifest["metadata"]["name"] for a in actions)
        events.append(Event("Normal", ISSUED_EVENT, f"issued the TLS certificates: {names}"))
    return actions, events


def _user_problems(
    cluster: EtcdCluster, settings: OperatorSettings, observed: Observed
) -> list[str]:
    """What is wrong with the user's Secrets, one sentence each."""
    problems: list[str] = []
    ns, domain = cluster.namespace, settings.cluster_domain
    hosts = [naming.member_host(cluster.name, ns, i, domain) for i in range(cluster.spec.replicas)]
    hosts.append(naming.client_service_host(cluster.name, ns, domain))
    for secret in tls.secrets(cluster):
        if secret.generated:
            continue
        facts = observed.certificates.get(secret.name)
        what = f"spec.tls.{secret.plane}: {secret.role} Secret {secret.name}"
        if facts is None:
            problems.append(f"{what} does not exist in namespace {ns}")
            continue
        if not facts.usable:
            problems.append(f"{what} {facts.problem}")
            continue
        server = secret.role in (tls.Role.SERVER, tls.Role.PEER)
        client = secret.role in (tls.Role.CLIENT, tls.Role.PEER)
        if server and not facts.server:
            problems.append(f"{what}: tls.crt is not for TLS servers (extended key usage)")
        if client and not facts.client:
            problems.append(f"{what}: tls.crt is not for TLS clients (extended key usage)")
        if server:
            wanted = hosts if secret.role == tls.Role.SERVER else hosts[:-1]
            missing = [h for h in wanted if not covers(facts.dns_names, h)]
            if missing:
                problems.append(f"{what}: tls.crt does not name {', '.join(missing)}")
    return problems


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    if desired.spec.tls is None:
        return StepResult()
    actions: list[Action] = []
    if observed.now is not None:
        issued, events = _issue(desired, settings, observed, observed.now)
        actions += [*issued, *events]
        if issued:
            decided = dataclasses.replace(decided, acted=(*decided.acted, (ISSUED, observed.now)))
    problems = _user_problems(desired, settings, observed)
    decided = dataclasses.replace(decided, notes=(*decided.notes, (PROBLEMS, tuple(problems))))
    sts = ChildKey("StatefulSet", naming.statefulset_name(desired.name))
    if problems and sts not in observed.children:
        # Not created until the Secrets are right: its pods could not start.
        decided = with_progress(
            decided,
            Progress(CERTIFICATES_PENDING, "waiting for the TLS Secrets: " + problems[0], False),
        )
        return StepResult(actions=tuple(actions), decided=decided, stop=True)
    return StepResult(actions=tuple(actions), decided=decided)


def problems_of(decided: Decided) -> tuple[str, ...]:
    found = decided.note(PROBLEMS)
    return found if isinstance(found, tuple) else ()


def tls_ready_verdict(desired: EtcdCluster, observed: Observed, decided: Decided) -> Verdict | None:
    """The TLSReady condition; ``None`` without ``spec.tls``."""
    if desired.spec.tls is None:
        return None
    problems = problems_of(decided)
    if problems:
        missing = any("does not exist" in p for p in problems)
        return Verdict(FALSE, SECRET_MISSING if missing else SECRET_INVALID, "; ".join(problems))
    absent = [s.name for s in tls.secrets(desired) if s.name not in observed.certificates]
    unusable = [
        s.name
        for s in tls.secrets(desired)
        if s.name in observed.certificates and not observed.certificates[s.name].usable
    ]
    if absent or unusable:
        return Verdict(
            FALSE,
            CERTIFICATES_PENDING,
            "issuing the certificates: " + ", ".join([*absent, *unusable]),
        )
    status = tls_status(desired, observed, None)
    until = f" until {status.notAfter}" if status is not None and status.notAfter else ""
    planes = " and ".join(p for p in ("client", "peer") if getattr(desired.spec.tls, p))
    return Verdict(TRUE, CERTIFICATES_READY, f"{planes} TLS certificates are valid{until}")


def tls_status(
    desired: EtcdCluster,
    observed: Observed,
    previous: TLSStatus | None,
    decided: Decided | None = None,
) -> TLSStatus | None:
    """``status.tls``: every certificate's expiry, the earliest of the members' and the
    client's, and the last time the operator issued any."""
    if desired.spec.tls is None:
        return None
    certificates = []
    for secret in tls.secrets(desired):
        facts = observed.certificates.get(secret.name)
        renew_at = facts.renew_at() if facts is not None and secret.generated else None
        if secret.role == tls.Role.CA:
            renew_at = None  # not renewed (see the module doc)
        certificates.append(
            CertificateStatus(
                secret=secret.name,
                plane=secret.plane.value,
                role=secret.role.value,
                notAfter=rfc3339(facts.not_after) if facts and facts.not_after else None,
                renewAfter=rfc3339(renew_at) if renew_at is not None else None,
            )
        )
    leaves = [
        observed.certificates[s.name].not_after
        for s in tls.secrets(desired)
        if s.role != tls.Role.CA and s.name in observed.certificates
    ]
    known = [t for t in leaves if t is not None]
    issued = decided.acted_on(ISSUED) if decided is not None else None
    last = rfc3339(issued) if isinstance(issued, datetime) else None
    return TLSStatus(
        notAfter=rfc3339(min(known)) if known else None,
        certificates=certificates,
        lastRenewal=last or (previous.lastRenewal if previous is not None else None),
    )
