"""The chart's RBAC against what the operator did: every permission the chart grants the
operator was used during the operator scenarios, and nothing the operator asked for was refused.

The tests run last on their control plane (marker ``last_on_storage``), after the scenarios of
``test_operator.py`` and with the same release of the chart, and read the API server's audit log
(``ControlPlane.audit_log``; the policy, ``AUDIT_POLICY`` in ``e2e.controlplane``, records the
requests of service accounts): the operator's requests, with the authoriser's decision and the
response code. The grants are those of ``helm template`` with the arguments the ``operator``
fixture installed the chart with (``e2e.chart.render``), folded by ``e2e.rbac``. The table of
what the operator used is written to ``logs/operator-permissions.txt`` of the control plane.

They need the control plane built here (its audit log): not ``any_cluster``.
"""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path

import pytest

from e2e import chart, rbac
from e2e.chart import OperatorRelease
from e2e.conftest import outcomes, storage_of
from e2e.controlplane import ControlPlane
from e2e.rbac import Permission, Request

pytestmark = pytest.mark.last_on_storage

# The scenarios whose requests show what the operator needs (pod deletion: the replacement;
# EtcdBackup objects and their status: the backups).
SCENARIOS = ("test_operator.py", "test_replacement.py", "test_backups.py")
COMMAND = (
    "pytest e2e/test_operator.py e2e/test_replacement.py e2e/test_backups.py e2e/test_rbac.py "
    "--storage={storage}"
)

# What the chart grants the operator that no request of the e2e run shows as used, each with the
# reason it is needed all the same. Keep it short: anything else unused goes from the chart.
NOT_REQUESTED: dict[Permission, str] = {
    # Each child carries a controller owner reference to its EtcdCluster with blockOwnerDeletion
    # (components/owner.py). The OwnerReferencesPermissionEnforcement admission plugin (on in
    # this control plane, as in OpenShift) allows that only to a user who may update the owner's
    # finalizers: a check inside the apply that creates the child, never a request of its own.
    # Without the grant that apply is refused (403), which the other test here would report.
    Permission("etcd.pyetcd.io", "etcdclusters/finalizers", "update"): (
        "authorised inside each creating apply (blockOwnerDeletion), not requested"
    ),
}


def operator_user(docs: list[rbac.Doc], release: OperatorRelease) -> str:
    """The user the operator's pods run as: the rendered Deployment's service account."""
    deployments = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == release.deployment
    ]
    assert len(deployments) == 1, f"the chart renders no Deployment {release.deployment}"
    account = deployments[0]["spec"]["template"]["spec"].get("serviceAccountName") or "default"
    return rbac.service_account_user(release.namespace, str(account))


def operator_requests(control_plane: ControlPlane, user: str) -> list[Request]:
    path = control_plane.audit_log
    if not path.is_file():
        pytest.fail(
            f"no audit log at {path}: the API server writes it with --audit-log-path and "
            "--audit-policy-file (e2e/controlplane.py, AUDIT_POLICY)",
            pytrace=False,
        )
    found = rbac.requests(path.read_text(), user)
    assert found, f"no request of {user} in {path}: did the operator run?"
    return found


def require_the_scenarios(request: pytest.FixtureRequest, storage: str) -> None:
    """Every scenario of test_operator.py ran on this plane, before this test, and passed: what
    the operator used is what they made it do."""
    command = COMMAND.format(storage=storage)
    mine = [
        i
        for i in request.session.items
        if isinstance(i, pytest.Function) and i.path.name in SCENARIOS and storage_of(i) == storage
    ]
    files = {i.path.name: i.module for i in mine}
    if set(files) != set(SCENARIOS):
        pytest.fail(
            f"the operator scenarios ({', '.join(SCENARIOS)}) are not all in this run on "
            f"{storage}: this test checks what they made the operator do; run them: {command}",
            pytrace=False,
        )
    defined = {
        name
        for module in files.values()
        for name, function in inspect.getmembers(module, inspect.isfunction)
        # A one_storage scenario runs on the first plane only: what it needs, the others must
        # use on every plane.
        if name.startswith("test_") and not _one_storage(function)
    }
    missing = sorted(defined - {i.originalname for i in mine})
    if missing:
        pytest.fail(
            f"operator scenarios deselected on {storage}: {missing}; the permissions only they "
            f"use would show as unused. Run them all: {command}",
            pytrace=False,
        )
    went = outcomes(request.config)
    not_passed = {i.nodeid: went.get(i.nodeid, "not run") for i in mine}
    not_passed = {k: v for k, v in not_passed.items() if v != "passed"}
    if not_passed:
        pytest.fail(
            f"operator scenarios did not pass, so the operator may not have done all they ask "
            f"of it: {not_passed}",
            pytrace=False,
        )


def _one_storage(function: object) -> bool:
    marks = getattr(function, "pytestmark", [])
    return any(getattr(m, "name", "") == "one_storage" for m in marks)


def write_table(control_plane: ControlPlane, user: str, found: list[Request]) -> tuple[Path, str]:
    text = rbac.table(rbac.used(found))
    path = control_plane.log_dir / "operator-permissions.txt"
    path.write_text(f"# allowed requests of {user}, by permission\n{text}\n")
    return path, text


def test_nothing_the_operator_asked_for_was_forbidden(
    control_plane: ControlPlane, operator: OperatorRelease, helm_binary: Path
) -> None:
    docs = chart.render(helm_binary, operator.release, operator.namespace)
    user = operator_user(docs, operator)
    found = operator_requests(control_plane, user)
    forbidden = Counter(
        f"{Permission(r.group, r.resource, r.verb)} in {r.namespace or '-'}: {r.code} {r.message}"
        for r in found
        if r.forbidden
    )
    assert not forbidden, (
        f"{forbidden.total()} requests of {user} refused for want of a permission "
        f"(audit log {control_plane.audit_log}):\n"
        + "\n".join(f"{n} x {what}" for what, n in forbidden.most_common(20))
    )


def test_the_chart_grants_the_operator_only_what_it_used(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    operator: OperatorRelease,
    helm_binary: Path,
) -> None:
    require_the_scenarios(request, control_plane.storage)
    docs = chart.render(helm_binary, operator.release, operator.namespace)
    user = operator_user(docs, operator)
    grants = rbac.granted(docs, user, operator.namespace)
    assert set(grants) == {""}, f"expected cluster-wide RBAC (no watchNamespaces): {set(grants)}"
    found = operator_requests(control_plane, user)
    path, used = write_table(control_plane, user, found)
    stale = sorted(set(NOT_REQUESTED) - grants[""])
    assert not stale, f"NOT_REQUESTED lists permissions the chart does not grant: {stale}"
    idle = rbac.unused(grants, found).get("", frozenset())
    requested = sorted(set(NOT_REQUESTED) - idle)
    assert not requested, (
        f"NOT_REQUESTED lists permissions the run did request: {list(map(str, requested))}"
    )
    unexplained = sorted(idle - set(NOT_REQUESTED))
    assert not unexplained, (
        f"the chart grants {user} permissions no request of the e2e run used: "
        f"{[str(p) for p in unexplained]}. Drop them from the chart's rules, or, if a path the "
        f"run does not take needs them, add them to NOT_REQUESTED with the reason. What the "
        f"operator used ({path}):\n{used}"
    )
