"""What one user may do, and what it did: RBAC objects against the API server's audit log.

Pure, no I/O: it takes parsed manifests (e.g. ``helm template``'s documents) and the audit log's
text.

- ``granted(docs, user)``: the permissions the Roles and ClusterRoles of ``docs`` grant ``user``
  through the bindings of ``docs``, per scope (``""``: every namespace, else one namespace), each
  a ``Permission`` (API group, resource[/subresource], verb, and a resource name when the rule
  lists ``resourceNames``). ``role_permissions`` folds one role's rules.
- ``requests(text, user)``: the resource requests ``user`` made, from the API server's JSON audit
  log (one event per request; the policy of ``e2e.controlplane`` logs them at level Metadata),
  each with the authoriser's decision and the response code.
- ``unused`` (granted, never needed by an allowed request) and ``needed``/``used`` (what the
  requests needed, for tables).

A request needs the permission of its own verb, and one more the audit log only shows
indirectly: a server-side apply (``patch``) that creates its object (answered ``201 Created``)
is also authorised for ``create``, inside the request.

Used by ``tests/unit/test_chart.py`` (the structure of the chart's RBAC in both modes) and by
``e2e/test_rbac.py`` (the chart grants the operator what its e2e run used, and nothing the
operator tried was forbidden).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]

RBAC_API = "rbac.authorization.k8s.io"
# The authoriser's verdict, an annotation of every audit event at level Metadata and above.
DECISION = "authorization.k8s.io/decision"
# The cause the NamespaceLifecycle admission plugin gives when it refuses (403) a write into a
# namespace being deleted: a refusal of the moment, not a missing permission. The audit log does
# not always keep the cause (a clean-clone run met a 403 with the message alone), so its message
# counts as well.
NAMESPACE_TERMINATING = "NamespaceTerminating"
NAMESPACE_TERMINATING_MESSAGE = "because it is being terminated"
# What OwnerReferencesPermissionEnforcement answers (403) while the API server's own discovery
# does not know a kind yet (a CRD installed a moment ago): a refusal of the moment too, which
# the operator's next pass gets past; the permission itself is checked once discovery caught up.
OWNER_KIND_NOT_DISCOVERED = "cannot find RESTMapping"


@dataclass(frozen=True, order=True)
class Permission:
    """One verb on one resource (``"pods"``, ``"etcdclusters/status"``) of one API group (``""``:
    the core group); ``name`` restricts it to one object (a rule's ``resourceNames``)."""

    group: str
    resource: str
    verb: str
    name: str = ""

    def covers(self, needed: Permission) -> bool:
        """This grant allows ``needed`` (a permission with the name of the object asked for)."""
        return (self.group, self.resource, self.verb) == (
            needed.group,
            needed.resource,
            needed.verb,
        ) and self.name in ("", needed.name)

    def any_name(self) -> Permission:
        return Permission(self.group, self.resource, self.verb)

    def __str__(self) -> str:
        group = f".{self.group}" if self.group else ""
        name = f" {self.name!r}" if self.name else ""
        return f"{self.verb} {self.resource}{group}{name}"


@dataclass(frozen=True)
class Request:
    """One resource request of the audit log."""

    user: str
    verb: str
    group: str
    resource: str  # with the subresource: "etcdclusters/status"
    namespace: str
    name: str
    code: int  # the response's status code; 0 when the log has none
    decision: str  # the authoriser's: "allow", "forbid", "" when not recorded
    uri: str = field(default="", compare=False)
    message: str = field(default="", compare=False)
    causes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"

    @property
    def forbidden(self) -> bool:
        """Refused for want of a permission: by the authoriser, or with 403 by an admission
        plugin that authorises too (OwnerReferencesPermissionEnforcement; the check of
        ``create`` inside a server-side apply). A 403 of NamespaceLifecycle is not one, nor one
        of OwnerReferencesPermissionEnforcement before discovery knows the owner's kind."""
        if self.decision == "forbid":
            return True
        return (
            self.code == 403
            and NAMESPACE_TERMINATING not in self.causes
            and NAMESPACE_TERMINATING_MESSAGE not in self.message
            and OWNER_KIND_NOT_DISCOVERED not in self.message
        )

    def needs(self) -> tuple[Permission, ...]:
        """The permissions the request was authorised for."""
        own = Permission(self.group, self.resource, self.verb, self.name)
        if self.verb == "patch" and self.code == 201:  # an apply that created its object
            return own, Permission(self.group, self.resource, "create", self.name)
        return (own,)

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.uri or self.resource}{where}: {self.code} {self.message}".strip()


def service_account_user(namespace: str, name: str) -> str:
    """The user name of a service account's tokens."""
    return f"system:serviceaccount:{namespace}:{name}"


def groups_of(user: str) -> frozenset[str]:
    """The groups a service account's user is in (other users: only ``system:authenticated``)."""
    groups = {"system:authenticated"}
    parts = user.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        groups |= {"system:serviceaccounts", f"system:serviceaccounts:{parts[2]}"}
    return frozenset(groups)


# --- granted ------------------------------------------------------------------------------------


def role_permissions(role: Mapping[str, Any]) -> frozenset[Permission]:
    """Every permission one Role or ClusterRole's rules spell out (non-resource URLs aside)."""
    found: set[Permission] = set()
    for rule in role.get("rules") or []:
        names = rule.get("resourceNames") or [""]
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    found.update(Permission(group, resource, verb, name) for name in names)
    return frozenset(found)


def _is_subject(subject: Mapping[str, Any], user: str, binding_namespace: str) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return service_account_user(namespace, str(subject.get("name"))) == user
    if kind == "User":
        return subject.get("name") == user
    if kind == "Group":
        return subject.get("name") in groups_of(user)
    return False


def _rbac(docs: Iterable[Mapping[str, Any]], kind: str) -> Iterator[Mapping[str, Any]]:
    for doc in docs:
        if doc and doc.get("kind") == kind and str(doc.get("apiVersion", "")).startswith(RBAC_API):
            yield doc


def granted(
    docs: Iterable[Mapping[str, Any]], user: str, default_namespace: str = "default"
) -> dict[str, frozenset[Permission]]:
    """What the bindings of ``docs`` grant ``user``, by scope: ``""`` for every namespace (a
    ClusterRole bound by a ClusterRoleBinding), else the namespace of a RoleBinding.
    ``default_namespace`` is that of namespaced objects without one (``helm template`` leaves
    it to the templates)."""
    docs = list(docs)

    def namespace_of(doc: Mapping[str, Any]) -> str:
        return str(doc.get("metadata", {}).get("namespace") or default_namespace)

    cluster_roles = {r["metadata"]["name"]: r for r in _rbac(docs, "ClusterRole")}
    roles = {(namespace_of(r), r["metadata"]["name"]): r for r in _rbac(docs, "Role")}
    scopes: dict[str, set[Permission]] = {}
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in _rbac(docs, kind):
            scope = "" if kind == "ClusterRoleBinding" else namespace_of(binding)
            subjects = binding.get("subjects") or []
            if not any(_is_subject(s, user, namespace_of(binding)) for s in subjects):
                continue
            ref = binding["roleRef"]
            role = (
                cluster_roles.get(ref["name"])
                if ref["kind"] == "ClusterRole"
                else roles.get((scope, ref["name"]))
            )
            if role is not None:  # a role from elsewhere (not in docs) grants nothing here
                scopes.setdefault(scope, set()).update(role_permissions(role))
    return {scope: frozenset(permissions) for scope, permissions in scopes.items()}


# --- the audit log ------------------------------------------------------------------------------


def _request(event: Mapping[str, Any]) -> Request | None:
    ref = event.get("objectRef")
    if not ref or not ref.get("resource"):
        return None  # a non-resource URL (discovery, /version)
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    status = event.get("responseStatus") or {}
    causes = (status.get("details") or {}).get("causes") or []
    return Request(
        user=str((event.get("user") or {}).get("username", "")),
        verb=str(event.get("verb", "")),
        group=str(ref.get("apiGroup") or ""),
        resource=resource,
        namespace=str(ref.get("namespace") or ""),
        name=str(ref.get("name") or ""),
        code=int(status.get("code") or 0),
        decision=str((event.get("annotations") or {}).get(DECISION, "")),
        uri=str(event.get("requestURI", "")),
        message=str(status.get("message") or ""),
        causes=tuple(str(c.get("type")) for c in causes if isinstance(c, Mapping)),
    )


def requests(audit_log: str, user: str) -> list[Request]:
    """The resource requests of ``user`` in a JSON audit log, in order, one per request (its
    last stage: a watch still open when the log is read has only ``ResponseStarted``).

    A last line without its newline (an event being written) is left out."""
    events: dict[str, Mapping[str, Any]] = {}
    for line in audit_log.splitlines(keepends=True):
        if not line.endswith("\n") or not line.strip():
            continue
        event = json.loads(line)
        if (event.get("user") or {}).get("username") == user:
            events[str(event.get("auditID"))] = event  # later stages replace earlier ones
    found = (_request(event) for event in events.values())
    return [r for r in found if r is not None]


def needed(found: Iterable[Request]) -> frozenset[Permission]:
    """Every permission the allowed requests were authorised for (names kept)."""
    return frozenset(p for r in found if r.allowed for p in r.needs())


def used(found: Iterable[Request]) -> Counter[Permission]:
    """How many allowed requests needed each permission, whatever the object's name."""
    return Counter(p.any_name() for r in found if r.allowed for p in r.needs())


def unused(
    grants: Mapping[str, Iterable[Permission]], found: Iterable[Request]
) -> dict[str, frozenset[Permission]]:
    """The grants (by scope, as ``granted`` returns them) that no allowed request needed;
    a namespace's grants count only that namespace's requests. Scopes fully used are left out."""
    everywhere: set[Permission] = set()
    per_namespace: dict[str, set[Permission]] = {}
    for request in found:
        if request.allowed:
            everywhere.update(request.needs())
            per_namespace.setdefault(request.namespace, set()).update(request.needs())
    result: dict[str, frozenset[Permission]] = {}
    for scope, permissions in grants.items():
        seen = everywhere if scope == "" else per_namespace.get(scope, set())
        idle = frozenset(g for g in permissions if not any(g.covers(n) for n in seen))
        if idle:
            result[scope] = idle
    return result


def table(counts: Mapping[Permission, int]) -> str:
    """``used``'s counts as aligned text, one permission a line."""
    rows = [(p.group or "(core)", p.resource, p.verb, str(n)) for p, n in sorted(counts.items())]
    header = ("group", "resource", "verb", "requests")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )
