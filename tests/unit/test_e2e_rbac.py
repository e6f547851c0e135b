"""``e2e.rbac`` on small inputs: RBAC objects folded into permissions, the audit log read into
requests, and the two compared (the e2e test ``e2e/test_rbac.py`` relies on each rule here)."""

from __future__ import annotations

import json
from typing import Any

from e2e.rbac import Permission, granted, requests, role_permissions, unused, used

USER = "system:serviceaccount:ops:op"
OTHER = "system:serviceaccount:ops:someone-else"


def event(
    audit_id: str,
    verb: str,
    resource: str | None,
    *,
    user: str = USER,
    group: str = "",
    namespace: str = "ns",
    name: str = "",
    subresource: str = "",
    code: int = 200,
    decision: str = "allow",
    stage: str = "ResponseComplete",
    causes: tuple[str, ...] = (),
    message: str = "",
) -> str:
    """One line of a JSON audit log, as the API server writes it at level Metadata."""
    body: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": stage,
        "requestURI": f"/x/{resource}",
        "verb": verb,
        "user": {"username": user},
        "responseStatus": {"metadata": {}, "code": code},
        "annotations": {"authorization.k8s.io/decision": decision},
    }
    if resource is not None:
        ref = {"resource": resource, "namespace": namespace, "apiVersion": "v1"}
        ref |= {"apiGroup": group} if group else {}
        ref |= {"name": name} if name else {}
        ref |= {"subresource": subresource} if subresource else {}
        body["objectRef"] = ref
    if message or causes:
        body["responseStatus"] |= {
            "message": message,
            "details": {"causes": [{"type": c} for c in causes]},
        }
    return json.dumps(body) + "\n"


def test_a_request_is_read_at_its_last_stage_and_a_line_being_written_is_left_out() -> None:
    log = (
        event("1", "watch", "pods", stage="ResponseStarted")
        + event("1", "watch", "pods", code=500)
        + event("2", "list", "pods")
        + event("3", "get", "pods")[:-20]  # no newline yet
    )
    found = requests(log, USER)
    assert [(r.verb, r.code) for r in found] == [("watch", 500), ("list", 200)]


def test_only_the_users_resource_requests() -> None:
    log = (
        event("1", "get", None)  # /apis: a non-resource URL
        + event("2", "get", "pods", user=OTHER)
        + event("3", "get", "etcdclusters", group="g", subresource="status", name="a")
    )
    (only,) = requests(log, USER)
    assert (only.group, only.resource, only.name, only.namespace) == (
        "g",
        "etcdclusters/status",
        "a",
        "ns",
    )


def test_an_apply_that_creates_its_object_needs_create_too() -> None:
    log = event("1", "patch", "configmaps", name="a", code=201) + event(
        "2", "patch", "services", name="b", code=200
    )
    assert set(used(requests(log, USER))) == {
        Permission("", "configmaps", "patch"),
        Permission("", "configmaps", "create"),
        Permission("", "services", "patch"),
    }


def test_forbidden_means_a_missing_permission_not_a_terminating_namespace() -> None:
    log = (
        event("1", "get", "secrets", code=403, decision="forbid")
        + event("2", "patch", "configmaps", code=403, message="cannot set blockOwnerDeletion")
        + event("3", "create", "events", code=403, causes=("NamespaceTerminating",))
        + event("4", "get", "pods", code=404)
        + event(
            "5",
            "patch",
            "configmaps",
            code=403,
            message='configmaps "x" is forbidden: cannot set blockOwnerDeletion in this case '
            "because cannot find RESTMapping for APIVersion etcd.pyetcd.io/v1alpha1 Kind "
            "EtcdCluster: no matches for kind",
        )
        + event(
            "6",
            "create",
            "events",
            code=403,
            message='events "roll-c." is forbidden: unable to create new content in namespace '
            "e2e-1 because it is being terminated",
        )
    )
    assert [r.forbidden for r in requests(log, USER)] == [True, True, False, False, False, False]
    # Refused requests use nothing.
    assert set(used(requests(log, USER))) == {
        Permission("", "configmaps", "patch"),
        Permission("", "events", "create"),
        Permission("", "pods", "get"),
    }


Doc = dict[str, Any]
ACCOUNT = {"kind": "ServiceAccount", "name": "op", "namespace": "ops"}
GROUP = {"kind": "Group", "name": "system:serviceaccounts:ops"}  # USER is in it
STRANGER = {"kind": "ServiceAccount", "name": "x", "namespace": "ops"}


def rbac(kind: str, name: str, namespace: str = "", **fields: Any) -> Doc:
    meta = {"name": name} | ({"namespace": namespace} if namespace else {})
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta} | fields


def role(kind: str, name: str, rules: list[Doc], namespace: str = "") -> Doc:
    return rbac(kind, name, namespace, rules=rules)


def bind(kind: str, role_kind: str, role_name: str, subject: Doc, namespace: str = "") -> Doc:
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name}
    return rbac(
        kind, f"{role_name}-{len(str(subject))}", namespace, roleRef=ref, subjects=[subject]
    )


def test_role_permissions_spell_out_every_combination() -> None:
    rules = [
        {"apiGroups": ["", "apps"], "resources": ["a", "b/status"], "verbs": ["get", "list"]},
        {"apiGroups": ["x"], "resources": ["crds"], "resourceNames": ["one"], "verbs": ["get"]},
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
    ]
    found = role_permissions(role("ClusterRole", "r", rules))
    assert len(found) == 2 * 2 * 2 + 1
    assert Permission("apps", "b/status", "list") in found
    assert Permission("x", "crds", "get", "one") in found


def test_granted_follows_the_bindings_of_the_user_by_scope() -> None:
    get_pods = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    list_pods = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    delete_pods = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]
    watch_pods = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["watch"]}]
    docs = [
        role("ClusterRole", "wide", get_pods),
        role("ClusterRole", "reused", list_pods),
        role("Role", "local", delete_pods, "team-a"),
        role("Role", "grouped", watch_pods, "team-c"),
        bind("ClusterRoleBinding", "ClusterRole", "wide", ACCOUNT),
        # A ClusterRole bound in one namespace grants there only.
        bind("RoleBinding", "ClusterRole", "reused", ACCOUNT, "team-b"),
        bind("RoleBinding", "Role", "local", ACCOUNT, "team-a"),
        # A group the service account is in; and someone else's binding.
        bind("RoleBinding", "Role", "grouped", GROUP, "team-c"),
        bind("ClusterRoleBinding", "ClusterRole", "reused", STRANGER),
    ]
    assert granted(docs, USER) == {
        "": {Permission("", "pods", "get")},
        "team-a": {Permission("", "pods", "delete")},
        "team-b": {Permission("", "pods", "list")},
        "team-c": {Permission("", "pods", "watch")},
    }
    assert granted(docs, "system:serviceaccount:elsewhere:op") == {}


def test_unused_grants_by_name_and_scope() -> None:
    grants = {
        "": frozenset(
            {
                Permission("x", "crds", "get", "one"),
                Permission("x", "crds", "list"),
                Permission("", "pods", "list"),
            }
        ),
        "team-a": frozenset({Permission("", "pods", "delete")}),
    }
    log = (
        event("1", "get", "crds", group="x", name="two", namespace="")  # not the granted name
        + event("2", "list", "crds", group="x", namespace="")
        + event("3", "list", "pods", namespace="team-b")
        + event("4", "delete", "pods", namespace="team-b", name="p")  # not in team-a
        + event("5", "delete", "pods", namespace="team-a", name="p", decision="forbid", code=403)
    )
    assert unused(grants, requests(log, USER)) == {
        "": {Permission("x", "crds", "get", "one")},
        "team-a": {Permission("", "pods", "delete")},
    }
    with_the_name = log + event("6", "get", "crds", group="x", name="one")
    assert "" not in unused(grants, requests(with_the_name, USER))
