"""The auth API: ``EtcdCluster.spec.auth``, etcd's own users and roles turned on by the operator.

Its presence turns etcd's auth on: the operator adds the user ``root`` with the role ``root`` and
then enables auth, in etcd's order, and from then on connects as root. Root's password lives in
a Secret of type ``kubernetes.io/basic-auth`` (``username: root``, ``password``): the one the
operator creates (``<cluster>-root-auth``, owned by the cluster, created once and never rotated
behind the user's back) or the one ``rootSecretName`` names.

Auth stays on for the life of the cluster, and its Secret stays the one it was: turning auth off
again (``etcdctl auth disable`` as root) is not something the operator does, and another Secret
would hold another password than the one etcd has. The transition rules on the spec refuse both
(``AUTH_REMOVE_RULE``, ``AUTH_SECRET_RULE``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from etcd_operator.api.tls import SECRET_NAME_PATTERN

ROOT_USER = "root"
ROOT_ROLE = "root"

# On the spec (a rule on the field itself is skipped when the field is added or removed).
AUTH_REMOVE_RULE = (
    "!has(oldSelf.auth) || has(self.auth)",
    "auth cannot be removed: the operator does not turn etcd's auth off. By hand: "
    "etcdctl --user root:<password from status.auth.rootSecretName> auth disable, then a "
    "new cluster without spec.auth from a backup",
    ".auth",
)
AUTH_SECRET_RULE = (
    "!has(oldSelf.auth) || !has(self.auth) || ("
    "has(self.auth.rootSecretName) == has(oldSelf.auth.rootSecretName)"
    " && (!has(self.auth.rootSecretName)"
    " || self.auth.rootSecretName == oldSelf.auth.rootSecretName))",
    "auth.rootSecretName is immutable: change root's password in etcd and in the Secret",
    ".auth.rootSecretName",
)


class AuthSpec(BaseModel):
    """etcd's auth, on (see docs/security.md)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    rootSecretName: str | None = Field(
        default=None,
        description="A kubernetes.io/basic-auth Secret: username root, root's password. "
        "Unset: the operator creates <cluster>-root-auth. Immutable.",
        pattern=SECRET_NAME_PATTERN,
        max_length=253,
    )
