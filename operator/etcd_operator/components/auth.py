"""The root Secret of ``spec.auth``: its name, the manifest the operator creates, and what a
Secret's data says about root's credentials. Pure.

The Secret has type ``kubernetes.io/basic-auth`` with ``username: root`` and ``password``. The
operator creates ``<cluster>-root-auth`` when ``rootSecretName`` is unset (the password is made
by the executor, never in a decision: it is random and secret) and then only reads it; a
Secret the user names is only read. The member-init container gets the credentials as
environment variables from the Secret (``secretKeyRef``), never as literal values in the pod
template.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from etcd_operator.api.auth import ROOT_USER
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components.owner import object_meta

Json = dict[str, Any]

SECRET_TYPE = "kubernetes.io/basic-auth"
USERNAME_KEY = "username"
PASSWORD_KEY = "password"
COMPONENT_AUTH = "auth"
GENERATED_SUFFIX = "root-auth"
# The member-init container's environment: etcdctl's own names, so that its meaning is plain.
ENV_USER = "ETCDCTL_USER"
ENV_PASSWORD = "ETCDCTL_PASSWORD"


@dataclass(frozen=True)
class RootCredentials:
    """Root's user and password, read from the root Secret. Never shown (``repr`` leaves the
    password out) and never written to the status, an event or a log."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class RootSecret:
    """What the root Secret of a cluster is: its name, and whether the operator creates it
    (then it is the source of truth for root's password)."""

    name: str
    generated: bool


def root_secret(cluster: EtcdCluster) -> RootSecret | None:
    """The cluster's root Secret; ``None`` without ``spec.auth``."""
    auth = cluster.spec.auth
    if auth is None:
        return None
    if auth.rootSecretName:
        return RootSecret(auth.rootSecretName, generated=False)
    return RootSecret(f"{cluster.name}-{GENERATED_SUFFIX}", generated=True)


def secret_manifest(cluster: EtcdCluster) -> Json:
    """The generated root Secret without its password (the executor adds it, at creation)."""
    secret = root_secret(cluster)
    assert secret is not None and secret.generated
    meta = object_meta(cluster, secret.name, COMPONENT_AUTH)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": SECRET_TYPE,
        "stringData": {USERNAME_KEY: ROOT_USER},
    }


def with_password(manifest: Json, password: str) -> Json:
    return {**manifest, "stringData": {**manifest["stringData"], PASSWORD_KEY: password}}


def read_credentials(secret: Json) -> tuple[RootCredentials | None, str | None]:
    """Root's credentials in a Secret, or why it does not hold them (a sentence that never
    contains the password)."""
    data = secret.get("data") or {}

    def value(key: str) -> str | None:
        raw = data.get(key)
        if raw is None:
            return None
        try:
            return base64.b64decode(str(raw), validate=True).decode()
        except ValueError:
            return None

    kind = secret.get("type") or "Opaque"
    if kind != SECRET_TYPE:
        return None, f"has type {kind}, not {SECRET_TYPE}"
    user, password = value(USERNAME_KEY), value(PASSWORD_KEY)
    if user is None:
        return None, f"has no readable {USERNAME_KEY}"
    if user != ROOT_USER:
        # The user name is not secret: saying which one helps.
        return None, f"has {USERNAME_KEY} {user!r}: it must be {ROOT_USER!r}"
    if not password:
        return None, f"has no {PASSWORD_KEY} (or an empty one)"
    return RootCredentials(user, password), None


def member_init_env(cluster: EtcdCluster) -> list[Json]:
    """The member-init container's root credentials, from the root Secret: with auth on, etcd
    3.5 and pyetcd answer its member list only to a user. Empty without ``spec.auth``."""
    secret = root_secret(cluster)
    if secret is None:
        return []
    return [
        {
            "name": env,
            # Optional: a member pod whose Secret is gone still starts (its check then finds
            # no member answering, as on a new cluster) rather than waiting in
            # CreateContainerConfigError; AuthReady says the Secret is missing.
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": key, "optional": True}},
        }
        for env, key in ((ENV_USER, USERNAME_KEY), (ENV_PASSWORD, PASSWORD_KEY))
    ]
