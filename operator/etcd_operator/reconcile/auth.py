"""The auth steps: keep etcd's auth on as ``spec.auth`` says, and never act on a cluster the
operator cannot get into. Pure.

``step`` (before the children): the root Secret first (created when the operator owns it, so
that it exists before any member pod names it), then, while etcd reports auth off, the steps
that turn it on in etcd's order, each only when what it makes is missing: user root (with the
Secret's password; when root exists and the Secret is the operator's own, its password is set
to the Secret's, since the operator's Secret is the source of truth), role root, the grant of
role root to user root, and ``auth enable``. etcd refuses ``auth enable`` until root has role
root, and each step is idempotent, so a pass interrupted anywhere resumes where it stopped.

A Secret the user names is never the reason to change root's password: with auth off etcd
checks no password, so a root that exists keeps its own, and once auth is on a password that
does not authenticate is reported (``AuthRefused``), not reset.

``guard_step`` (first after the deletion): when etcd reports auth on and the operator has no
working credentials (no ``spec.auth``, a Secret missing or invalid, a password etcd refuses),
every call but a few would fail, and what failing calls look like (members "unhealthy", no
member list) is exactly what the other steps act on: they would replace members or rebuild a
quorum that is fine. The pass stops there, changing nothing, and ``AuthReady`` says why.
"""

from __future__ import annotations

from etcd_operator.api.auth import ROOT_ROLE
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import AuthStatus, EtcdCluster
from etcd_operator.components import auth, naming
from etcd_operator.reconcile.actions import (
    Action,
    AddRootRole,
    AddRootUser,
    ChangeRootPassword,
    CreateRootSecret,
    EnableAuth,
    Event,
    GrantRootRole,
)
from etcd_operator.reconcile.conditions.common import FALSE, TRUE, Verdict
from etcd_operator.reconcile.observed import ChildKey, Observed
from etcd_operator.reconcile.pipeline import Decided, Progress, StepResult, with_progress

AUTH_ENABLED = "AuthEnabled"
AUTH_PENDING = "AuthPending"
SECRET_MISSING = "SecretMissing"
SECRET_INVALID = "SecretInvalid"
AUTH_REFUSED = "AuthRefused"
AUTH_ENABLED_WITHOUT_SPEC = "AuthEnabledWithoutSpec"
AUTH_NOT_READY = "AuthNotReady"
ENABLING_EVENT = "EnablingAuth"


def _secret_problem(desired: EtcdCluster, observed: Observed) -> tuple[str, str] | None:
    """(reason, message) when the root Secret cannot give root's credentials."""
    secret = auth.root_secret(desired)
    assert secret is not None
    facts = observed.root_secret
    if facts is None or not facts.exists:
        if secret.generated:
            return AUTH_PENDING, f"creating the root Secret {secret.name}"
        return (
            SECRET_MISSING,
            f"spec.auth.rootSecretName: Secret {secret.name} does not exist in namespace "
            f"{desired.namespace}",
        )
    if facts.problem is not None or observed.root_credentials is None:
        why = facts.problem or "does not hold root's credentials"
        return SECRET_INVALID, f"Secret {secret.name} {why}"
    return None


def lockout(desired: EtcdCluster, observed: Observed) -> tuple[str, str] | None:
    """(reason, message) when etcd has auth on and the operator cannot get in."""
    view = observed.auth
    if view is None or not view.enabled or view.credentials_work:
        return None
    secret = auth.root_secret(desired)
    if secret is None:
        return (
            AUTH_ENABLED_WITHOUT_SPEC,
            "etcd has auth enabled but spec.auth is not set, so the operator has no user to "
            "connect as and changes nothing in this cluster: set spec.auth.rootSecretName to a "
            "kubernetes.io/basic-auth Secret with username root and root's password",
        )
    problem = _secret_problem(desired, observed)
    if problem is not None:
        return problem[0], problem[1] + ", and etcd has auth enabled: the operator cannot connect"
    return (
        AUTH_REFUSED,
        f"etcd has auth enabled and refuses the password of user root from Secret "
        f"{secret.name}: put root's current password into the Secret's password key",
    )


def guard_step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    locked = lockout(desired, observed)
    if locked is None:
        return StepResult()
    reason, message = locked
    decided = with_progress(decided, Progress(reason, message, False))
    return StepResult(decided=decided, stop=True)


def enabling_actions(desired: EtcdCluster, observed: Observed) -> list[Action]:
    """The steps that turn auth on, from what etcd has (none once it is on, or while etcd or
    the root Secret cannot be read)."""
    secret = auth.root_secret(desired)
    view, credentials = observed.auth, observed.root_credentials
    if secret is None or view is None or view.enabled or credentials is None:
        return []
    actions: list[Action] = []
    roles = view.root_user_roles
    if roles is None:
        actions.append(AddRootUser(credentials))
    elif secret.generated:
        actions.append(ChangeRootPassword(credentials))
    if not view.root_role:
        actions.append(AddRootRole())
    if roles is None or ROOT_ROLE not in roles:
        actions.append(GrantRootRole())
    actions.append(EnableAuth())
    return actions


def step(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, decided: Decided
) -> StepResult:
    secret = auth.root_secret(desired)
    if secret is None:
        return StepResult()
    actions: list[Action] = []
    facts = observed.root_secret
    if secret.generated and (facts is None or not facts.exists):
        actions.append(CreateRootSecret(auth.secret_manifest(desired)))
        actions.append(Event("Normal", "RootSecretCreated", f"created Secret {secret.name}"))
    problem = _secret_problem(desired, observed)
    sts = ChildKey("StatefulSet", naming.statefulset_name(desired.name))
    if problem is not None and problem[0] != AUTH_PENDING and sts not in observed.children:
        # Not created until the Secret is right: member-init reads root's credentials from it.
        decided = with_progress(decided, Progress(AUTH_PENDING, problem[1], False))
        return StepResult(actions=tuple(actions), decided=decided, stop=True)
    enabling = enabling_actions(desired, observed)
    if enabling:
        actions.append(
            Event("Normal", ENABLING_EVENT, f"enabling etcd's auth with user root ({secret.name})")
        )
        actions += enabling
    return StepResult(actions=tuple(actions))


def auth_ready_verdict(desired: EtcdCluster, observed: Observed) -> Verdict | None:
    """The AuthReady condition; ``None`` without ``spec.auth`` unless etcd has auth on."""
    locked = lockout(desired, observed)
    if locked is not None:
        return Verdict(FALSE, *locked)
    secret = auth.root_secret(desired)
    if secret is None:
        return None
    problem = _secret_problem(desired, observed)
    if problem is not None:
        return Verdict(FALSE, *problem)
    view = observed.auth
    if view is None:
        return Verdict(FALSE, AUTH_PENDING, "waiting for etcd to answer")
    if view.enabled:
        return Verdict(
            TRUE,
            AUTH_ENABLED,
            f"auth is enabled; the operator connects as user root (Secret {secret.name})",
        )
    return Verdict(FALSE, AUTH_PENDING, "enabling auth: user root, role root, auth enable")


def auth_status(
    desired: EtcdCluster, observed: Observed, previous: AuthStatus | None
) -> AuthStatus | None:
    """``status.auth``: whether etcd has auth on (the last known, while etcd does not answer)
    and where root's password is. Never the password."""
    secret = auth.root_secret(desired)
    view = observed.auth
    if secret is None and (view is None or not view.enabled):
        return None
    if view is not None:
        enabled = view.enabled
    else:
        enabled = previous.enabled if previous is not None else False
    return AuthStatus(enabled=enabled, rootSecretName=secret.name if secret else None)
