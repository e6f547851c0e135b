"""The TLS step as tables: what is issued on creation (CAs first, everything before the pods
that mount it), renewal at two thirds of a lifetime, certificates that no longer fit, and the
user's Secrets checked with a condition that says what is wrong. Issuing runs the real
certificate builder, as the executor does, so the facts the next pass sees are real."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from etcd_operator.components import pki, tls
from etcd_operator.reconcile.actions import Action, Apply, Event, IssueCertificate
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.plan import plan

from tests.unit.operator.reconcile.builders import (
    SETTINGS,
    T0,
    cluster,
    condition,
    execute,
    status_of,
)

BOTH = {"client": {}, "peer": {}, "certificateValidityHours": 90}
LIFETIME = timedelta(hours=90)

Store = dict[str, dict[str, bytes]]


def issued(actions: list[Action]) -> list[IssueCertificate]:
    return [a for a in actions if isinstance(a, IssueCertificate)]


def run_issuing(actions: list[Action], store: Store) -> Store:
    """What the executor does with the IssueCertificate actions, into ``store``."""
    out = dict(store)
    for action in issued(actions):
        if action.ca_secret is None:
            pair = pki.issue(action.request, action.now)
            ca = pair.cert
        else:
            ca_data = out[action.ca_secret]
            ca = ca_data[pki.CERT_KEY]
            pair = pki.issue(
                action.request, action.now, pki.KeyPair(ca, ca_data[pki.PRIVATE_KEY_KEY])
            )
        name = action.manifest["metadata"]["name"]
        out[name] = {pki.CERT_KEY: pair.cert, pki.PRIVATE_KEY_KEY: pair.key, pki.CA_KEY: ca}
    return out


def seen(observed: Observed, store: Store, now: datetime) -> Observed:
    facts = {name: pki.inspect(data, now) for name, data in store.items()}
    return dataclasses.replace(observed, certificates=facts, now=now)


def one_pass(
    desired: Any, observed: Observed, store: Store, now: datetime
) -> tuple[Any, Observed, Store, list[Action]]:
    actions = plan(desired, seen(observed, store, now), SETTINGS, now)
    desired, observed = execute(desired, observed, actions)
    return desired, observed, run_issuing(actions, store), actions


def created(spec: dict[str, Any] = BOTH) -> tuple[Any, Observed, Store]:
    desired = cluster(tls=spec)
    desired, observed, store, _ = one_pass(desired, Observed(), {}, T0)
    return desired, observed, store


def test_a_new_cluster_gets_its_cas_and_certificates_before_any_pod() -> None:
    desired = cluster(tls=BOTH)
    actions = plan(desired, Observed(now=T0), SETTINGS, T0)
    made = issued(actions)
    assert [(a.manifest["metadata"]["name"], a.ca_secret) for a in made] == [
        ("demo-client-ca", None),
        ("demo-server-tls", "demo-client-ca"),
        ("demo-client-tls", "demo-client-ca"),
        ("demo-peer-ca", None),
        ("demo-peer-tls", "demo-peer-ca"),
    ]
    assert all(a.now == T0 and a.manifest["type"] == "kubernetes.io/tls" for a in made)
    # Owned by the cluster: garbage-collected with it.
    assert made[0].manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    sts = next(
        i for i, a in enumerate(actions) if isinstance(a, Apply) and a.key.kind == "StatefulSet"
    )
    assert max(actions.index(a) for a in made) < sts
    assert [e.reason for e in actions if isinstance(e, Event)].count("CertificateIssued") == 1


def test_the_next_pass_issues_nothing_and_reports_the_expiry() -> None:
    desired, observed, store = created()
    now = T0 + timedelta(minutes=1)
    desired, observed, store, actions = one_pass(desired, observed, store, now)
    assert issued(actions) == []
    ready = condition(actions, "TLSReady")
    assert ready["status"] == "True" and ready["reason"] == "CertificatesReady"
    expiry = "2025-01-05T21:04:05Z"  # T0 + 90 h
    assert expiry in ready["message"]
    status = status_of(actions)["tls"]
    assert status["notAfter"] == expiry
    by_secret = {c["secret"]: c for c in status["certificates"]}
    assert by_secret["demo-server-tls"]["role"] == "Server"
    assert by_secret["demo-server-tls"]["renewAfter"] is not None
    assert by_secret["demo-client-ca"]["renewAfter"] is None  # a CA is not renewed
    assert by_secret["demo-client-ca"]["notAfter"] > expiry
    assert status["lastRenewal"] == "2025-01-02T03:04:05Z"  # kept from the pass that issued


def test_certificates_are_renewed_at_two_thirds_of_their_lifetime_and_not_before() -> None:
    desired, observed, store = created()
    renew_at = T0 - pki.BACKDATE + (LIFETIME + pki.BACKDATE) * 2 / 3
    _, _, _, early = one_pass(desired, observed, store, renew_at - timedelta(seconds=1))
    assert issued(early) == []
    _, _, renewed_store, actions = one_pass(desired, observed, store, renew_at)
    assert [a.manifest["metadata"]["name"] for a in issued(actions)] == [
        "demo-server-tls",
        "demo-client-tls",
        "demo-peer-tls",
    ]
    renewed = [e for e in actions if isinstance(e, Event) and e.reason == "CertificateRenewed"]
    assert len(renewed) == 3 and all(e.type == "Normal" for e in renewed)
    # The same CA: members keep trusting each other through the renewal.
    assert renewed_store["demo-client-ca"] == store["demo-client-ca"]
    assert renewed_store["demo-server-tls"][pki.CA_KEY] == store["demo-client-ca"][pki.CERT_KEY]
    assert renewed_store["demo-server-tls"][pki.CERT_KEY] != store["demo-server-tls"][pki.CERT_KEY]
    # Renewal changes no pod template: nothing restarts.
    assert not [a for a in actions if isinstance(a, Apply) and a.key.kind == "StatefulSet"]


def test_a_lost_ca_takes_its_planes_certificates_with_it_and_only_those() -> None:
    desired, observed, store = created()
    del store["demo-peer-ca"]
    _, _, _, actions = one_pass(desired, observed, store, T0 + timedelta(minutes=5))
    assert [a.manifest["metadata"]["name"] for a in issued(actions)] == [
        "demo-peer-ca",
        "demo-peer-tls",
    ]
    warned = [e for e in actions if isinstance(e, Event) and e.type == "Warning"]
    assert [e.reason for e in warned] == ["CertificateIssued"]
    assert "demo-peer-tls" in warned[0].message and "CA is new" in warned[0].message


def test_a_certificate_from_another_ca_or_a_broken_one_is_issued_anew() -> None:
    desired, observed, store = created()
    other = pki.new_ca("someone", T0)
    forged = pki.issue(pki.CertificateRequest("x", client=True), T0, other)
    store["demo-client-tls"] = {
        pki.CERT_KEY: forged.cert,
        pki.PRIVATE_KEY_KEY: forged.key,
        pki.CA_KEY: other.cert,
    }
    store["demo-peer-tls"] = {**store["demo-peer-tls"], pki.PRIVATE_KEY_KEY: b"garbage"}
    _, _, _, actions = one_pass(desired, observed, store, T0 + timedelta(minutes=5))
    reasons = {a.manifest["metadata"]["name"]: a.reason for a in issued(actions)}
    assert set(reasons) == {"demo-client-tls", "demo-peer-tls"}
    assert "not issued by the current client CA" in reasons["demo-client-tls"]
    assert "tls.key is not an unencrypted PEM private key" in reasons["demo-peer-tls"]


USER = {
    "client": {"source": "Secret", "serverSecretName": "srv", "clientSecretName": "cli"},
}


def user_store(names: tuple[str, ...]) -> Store:
    ca = pki.new_ca("mine", T0)

    def make(request: pki.CertificateRequest) -> dict[str, bytes]:
        pair = pki.issue(request, T0, ca)
        return {pki.CERT_KEY: pair.cert, pki.PRIVATE_KEY_KEY: pair.key, pki.CA_KEY: ca.cert}

    return {
        "srv": make(pki.CertificateRequest("srv", dns_names=names, server=True)),
        "cli": make(pki.CertificateRequest("cli", client=True)),
    }


def test_a_missing_user_secret_holds_the_creation_and_says_which() -> None:
    desired = cluster(tls=USER)
    actions = plan(desired, Observed(now=T0), SETTINGS, T0)
    assert not [a for a in actions if isinstance(a, Apply | IssueCertificate)]
    ready = condition(actions, "TLSReady")
    assert ready["status"] == "False" and ready["reason"] == "SecretMissing"
    assert "Server Secret srv does not exist in namespace ns" in ready["message"]
    assert "Client Secret cli does not exist" in ready["message"]
    warnings = [e for e in actions if isinstance(e, Event) and e.reason == "TLSNotReady"]
    assert len(warnings) == 1 and "srv" in warnings[0].message


def test_a_user_certificate_that_does_not_name_the_members_is_refused_with_the_names() -> None:
    desired = cluster(tls=USER)
    store = user_store(("*.demo-peer.ns.svc.cluster.local",))
    actions = plan(desired, seen(Observed(), store, T0), SETTINGS, T0)
    ready = condition(actions, "TLSReady")
    assert ready["reason"] == "SecretInvalid"
    assert "does not name demo-client.ns.svc.cluster.local" in ready["message"]
    assert "demo-0" not in ready["message"]  # the wildcard covers the members
    assert not [a for a in actions if isinstance(a, Apply)]


def test_good_user_secrets_let_the_cluster_be_created_and_nothing_is_issued() -> None:
    desired = cluster(tls=USER)
    store = user_store(("*.demo-peer.ns.svc.cluster.local", "demo-client.ns.svc.cluster.local"))
    actions = plan(desired, seen(Observed(), store, T0), SETTINGS, T0)
    assert issued(actions) == []
    assert any(isinstance(a, Apply) and a.key.kind == "StatefulSet" for a in actions)
    assert condition(actions, "TLSReady")["status"] == "True"


def test_a_running_cluster_with_a_broken_user_secret_keeps_running_and_says_so() -> None:
    desired = cluster(tls=USER)
    store = user_store(("*.demo-peer.ns.svc.cluster.local", "demo-client.ns.svc.cluster.local"))
    desired, observed = execute(
        desired, Observed(), plan(desired, seen(Observed(), store, T0), SETTINGS, T0)
    )
    store["cli"] = {k: v for k, v in store["cli"].items() if k != pki.CA_KEY}
    # Someone deleted the client Service meanwhile: a pass that goes on puts it back.
    children = {k: v for k, v in observed.children.items() if k.name != "demo-client"}
    observed = dataclasses.replace(observed, children=children)
    actions = plan(desired, seen(observed, store, T0), SETTINGS, T0)
    ready = condition(actions, "TLSReady")
    assert ready["reason"] == "SecretInvalid" and "Secret cli has no ca.crt" in ready["message"]
    assert [a.key.name for a in actions if isinstance(a, Apply)] == ["demo-client"]
    assert tls.secret_for(desired, tls.Plane.CLIENT, tls.Role.CLIENT) is not None
