"""spec.auth as tables: the root Secret made before the pods that read it, the enabling sequence
in etcd's order resumed from every state a pass can stop in, the root Secret's checks, every
AuthReady reason, and the lock-out guard that keeps a pass the operator cannot authenticate
from acting on the failures it sees."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest
from etcd_operator.components import auth
from etcd_operator.components.auth import RootCredentials
from etcd_operator.reconcile.actions import (
    Action,
    AddMember,
    AddRootRole,
    AddRootUser,
    Apply,
    ChangeRootPassword,
    CreateRootSecret,
    DeletePod,
    DeletePVC,
    EnableAuth,
    GrantRootRole,
    PatchStatus,
    RemoveMember,
)
from etcd_operator.reconcile.auth import enabling_actions
from etcd_operator.reconcile.observed import AuthView, ChildKey, Observed, RootSecretFacts
from etcd_operator.reconcile.plan import plan

from tests.unit.operator.reconcile.builders import (
    SETTINGS,
    T0,
    auth_after,
    cluster,
    condition,
    formed,
)

PASSWORD = "s3cr3t-Pa55word"
ROOT = RootCredentials("root", PASSWORD)
GENERATED = "demo-root-auth"
NAMED = "my-root"


def with_secret(observed: Observed, name: str = GENERATED, **extra: Any) -> Observed:
    return dataclasses.replace(
        observed,
        root_secret=RootSecretFacts(name, exists=True),
        root_credentials=ROOT,
        **extra,
    )


def secret(data: dict[str, str], type_: str = auth.SECRET_TYPE) -> dict[str, Any]:
    return {
        "type": type_,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def auth_actions(actions: list[Action]) -> list[Action]:
    kinds = AddRootUser | ChangeRootPassword | AddRootRole | GrantRootRole | EnableAuth
    return [a for a in actions if isinstance(a, kinds)]


# -- the root Secret -------------------------------------------------------------------------


def test_a_new_cluster_gets_its_root_secret_before_the_statefulset() -> None:
    desired = cluster(auth={})
    actions = plan(desired, Observed(), SETTINGS, T0)
    creates = [a for a in actions if isinstance(a, CreateRootSecret)]
    assert len(creates) == 1
    manifest = creates[0].manifest
    assert manifest["metadata"]["name"] == GENERATED
    assert manifest["type"] == "kubernetes.io/basic-auth"
    assert manifest["stringData"] == {"username": "root"}  # the executor adds the password
    assert manifest["metadata"]["ownerReferences"][0]["kind"] == "EtcdCluster"
    sts = next(
        i
        for i, a in enumerate(actions)
        if isinstance(a, Apply) and a.key == ChildKey("StatefulSet", "demo")
    )
    assert actions.index(creates[0]) < sts
    ready = condition(actions, "AuthReady")
    assert (ready["status"], ready["reason"]) == ("False", "AuthPending")


def test_an_existing_root_secret_is_never_created_again() -> None:
    desired, observed = formed(auth={})
    actions = plan(desired, with_secret(observed, auth=AuthView(True, True)), SETTINGS, T0)
    assert not [a for a in actions if isinstance(a, CreateRootSecret)]
    assert not auth_actions(actions)


def test_a_named_secret_that_is_missing_holds_a_new_cluster_back() -> None:
    desired = cluster(auth={"rootSecretName": NAMED})
    observed = Observed(root_secret=RootSecretFacts(NAMED, exists=False))
    actions = plan(desired, observed, SETTINGS, T0)
    assert not [a for a in actions if isinstance(a, CreateRootSecret)]
    assert not [a for a in actions if isinstance(a, Apply) and a.key.kind == "StatefulSet"]
    ready = condition(actions, "AuthReady")
    assert (ready["status"], ready["reason"]) == ("False", "SecretMissing")
    assert NAMED in ready["message"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (secret({"username": "root", "password": PASSWORD}, "Opaque"), "has type Opaque"),
        (secret({"password": PASSWORD}), "has no readable username"),
        (secret({"username": "admin", "password": PASSWORD}), "has username 'admin'"),
        (secret({"username": "root"}), "has no password"),
        (secret({"username": "root", "password": ""}), "has no password"),
    ],
)
def test_a_root_secret_must_be_basic_auth_for_root(raw: dict[str, Any], problem: str) -> None:
    found, why = auth.read_credentials(raw)
    assert found is None
    assert why is not None and why.startswith(problem)
    assert PASSWORD not in why


def test_a_basic_auth_secret_for_root_gives_the_credentials_and_hides_the_password() -> None:
    found, why = auth.read_credentials(secret({"username": "root", "password": PASSWORD}))
    assert why is None and found == ROOT
    assert PASSWORD not in repr(found)
    assert PASSWORD not in repr(AddRootUser(ROOT)) and PASSWORD not in repr(
        ChangeRootPassword(ROOT)
    )


def test_an_invalid_secret_is_reported_without_its_password() -> None:
    desired, observed = formed(auth={"rootSecretName": NAMED})
    observed = dataclasses.replace(
        observed,
        root_secret=RootSecretFacts(NAMED, True, "has username 'admin': it must be 'root'"),
        auth=AuthView(False),
    )
    actions = plan(desired, observed, SETTINGS, T0)
    ready = condition(actions, "AuthReady")
    assert (ready["status"], ready["reason"]) == ("False", "SecretInvalid")
    assert not auth_actions(actions)  # nothing to enable auth with


# -- enabling, in etcd's order, from wherever a pass stopped ---------------------------------

FULL: list[Action] = [AddRootUser(ROOT), AddRootRole(), GrantRootRole(), EnableAuth()]


@pytest.mark.parametrize("done", range(len(FULL)))
def test_enabling_resumes_from_every_state_a_pass_can_stop_in(done: int) -> None:
    desired, observed = formed(auth={})
    view = auth_after(AuthView(False), FULL[:done])
    actions = plan(desired, with_secret(observed, auth=view), SETTINGS, T0)
    steps = auth_actions(actions)
    # The operator's own Secret is the source of truth: root's password is set to it.
    expected = [ChangeRootPassword(ROOT) if done else AddRootUser(ROOT), *FULL[max(done, 1) :]]
    assert steps == expected
    assert auth_after(view, steps).enabled
    ready = condition(actions, "AuthReady")
    assert (ready["status"], ready["reason"]) == ("False", "AuthPending")
    # In the order the pipeline runs them: after the membership changes, before the status.
    assert isinstance(actions[-1], PatchStatus)


def test_a_named_secrets_password_is_never_set_on_an_existing_root() -> None:
    desired = cluster(auth={"rootSecretName": NAMED})
    view = AuthView(False, root_user_roles=("root",), root_role=True)
    observed = with_secret(Observed(), NAMED, auth=view)
    assert enabling_actions(desired, observed) == [EnableAuth()]


def test_nothing_to_enable_once_auth_is_on_or_while_etcd_does_not_answer() -> None:
    desired, observed = formed(auth={})
    assert enabling_actions(desired, with_secret(observed, auth=AuthView(True, True))) == []
    assert enabling_actions(desired, with_secret(observed, auth=None)) == []
    ready = condition(plan(desired, with_secret(observed, auth=None), SETTINGS, T0), "AuthReady")
    assert (ready["status"], ready["reason"]) == ("False", "AuthPending")


def test_auth_on_with_working_credentials_is_ready_and_the_status_names_the_secret() -> None:
    desired, observed = formed(auth={})
    actions = plan(desired, with_secret(observed, auth=AuthView(True, True)), SETTINGS, T0)
    ready = condition(actions, "AuthReady")
    assert (ready["status"], ready["reason"]) == ("True", "AuthEnabled")
    status = actions[-1]
    assert isinstance(status, PatchStatus)
    assert status.status["auth"] == {"enabled": True, "rootSecretName": GENERATED}
    assert PASSWORD not in repr(actions)


def test_no_auth_condition_without_spec_auth_while_etcd_has_auth_off() -> None:
    desired, observed = formed()
    actions = plan(desired, dataclasses.replace(observed, auth=AuthView(False)), SETTINGS, T0)
    status = actions[-1]
    assert isinstance(status, PatchStatus)
    assert "AuthReady" not in [c["type"] for c in status.status["conditions"]]
    assert status.status.get("auth") is None


# -- the lock-out guard ----------------------------------------------------------------------


def destructive(actions: list[Action]) -> list[Action]:
    kinds = AddMember | RemoveMember | DeletePod | DeletePVC | Apply | CreateRootSecret
    return [a for a in actions if isinstance(a, kinds)] + auth_actions(actions)


def locked_out(observed: Observed) -> Observed:
    """What a pass sees of a cluster it cannot authenticate to: no member list, and the pods
    of members that stopped (the evidence replacement acts on) are not there to save them."""
    exited = tuple(
        dataclasses.replace(p, ready=False, exit_message="member 1 has already been bootstrapped")
        for p in observed.pods
    )
    return dataclasses.replace(observed, etcd=None, pods=exited)


@pytest.mark.parametrize(
    ("spec", "secret_facts", "credentials", "view", "reason"),
    [
        ({}, RootSecretFacts(GENERATED, True), ROOT, AuthView(True, False), "AuthRefused"),
        (
            {"rootSecretName": NAMED},
            RootSecretFacts(NAMED, False),
            None,
            AuthView(True, None),
            "SecretMissing",
        ),
        (
            {"rootSecretName": NAMED},
            RootSecretFacts(NAMED, True, "has no password (or an empty one)"),
            None,
            AuthView(True, None),
            "SecretInvalid",
        ),
        (None, None, None, AuthView(True, None), "AuthEnabledWithoutSpec"),
    ],
)
def test_a_pass_that_cannot_authenticate_stops_without_acting(
    spec: dict[str, str] | None,
    secret_facts: RootSecretFacts | None,
    credentials: RootCredentials | None,
    view: AuthView,
    reason: str,
) -> None:
    desired, observed = formed() if spec is None else formed(auth=spec)
    # A changed spec too: without the guard the pass would apply it.
    desired = desired.model_copy(update={"spec": desired.spec.model_copy(update={"replicas": 5})})
    observed = dataclasses.replace(
        locked_out(observed), root_secret=secret_facts, root_credentials=credentials, auth=view
    )
    actions = plan(desired, observed, SETTINGS, T0)
    assert destructive(actions) == []
    ready = condition(actions, "AuthReady")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert PASSWORD not in ready["message"]
    progressing = condition(actions, "Progressing")
    assert progressing["reason"] == reason


def test_the_same_pass_with_auth_off_would_act() -> None:
    """The control of the guard's table: the world it is given does lead to actions."""
    desired, observed = formed(auth={})
    desired = desired.model_copy(update={"spec": desired.spec.model_copy(update={"replicas": 5})})
    observed = with_secret(observed, auth=AuthView(True, True))
    assert [a for a in plan(desired, observed, SETTINGS, T0) if isinstance(a, AddMember | Apply)]
