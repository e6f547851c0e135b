"""The few Kubernetes API calls a reconcile pass makes, behind a small protocol.

``KubernetesApi`` implements them with the official ``kubernetes`` client's generic request path
(``param_serialize`` and ``call_api``, one code path for every kind), run in a worker thread
because that client blocks. The REST path of each kind comes from ``RESOURCES``, the kinds the
operator manages with their plurals as the API server names them: a kind missing there is an
error, never a guessed plural. Manifests are written with server-side apply as field manager
``etcd-operator``, so fields set by users or other controllers are left alone and conflicts over
our own fields are resolved in our favour (``force``), as a controller's apply should.

Why this client: it is already a dependency (kopf's piggy-backed credentials come from the same
configuration), and the alternatives did not remove code here. lightkube 1.0 would replace the
paths and the thread, but needs typed models per Kubernetes version (our manifests are plain
dicts), a new HTTP stack (httpx2, msgspec) and its own configuration loading; kubernetes_asyncio
is the same generated client, async, with the same generic request path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Protocol

FIELD_MANAGER = "etcd-operator"
Json = dict[str, Any]


class KubeApi(Protocol):
    """What the handlers need from the Kubernetes API."""

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Json | None:
        """The object, or ``None`` when it does not exist."""
        ...

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Json]:
        """Objects of a kind in a namespace matching a label selector."""
        ...

    async def apply(self, manifest: Mapping[str, Any]) -> Json:
        """Server-side apply of a namespaced manifest; returns the live object."""
        ...

    async def delete(
        self, api_version: str, kind: str, namespace: str, name: str, *, force: bool = False
    ) -> bool:
        """Delete an object; ``False`` when it did not exist (already deleted). ``force``: with
        grace period 0 (a pod on a node that is gone, which no kubelet will confirm)."""
        ...

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> bool:
        """A JSON merge patch of the object's status subresource; ``False`` when the object
        does not exist (deleted meanwhile)."""
        ...

    async def create(self, manifest: Mapping[str, Any]) -> Json:
        """Create a namespaced object (an Event); returns the created object."""
        ...


def describe_kube_error(err: BaseException) -> str | None:
    """The API server's own message of a refused request (``Status.message``), with its code;
    ``None`` for anything else."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(err, ApiException):
        return None
    message = None
    try:
        message = json.loads(err.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    detail = message or err.body
    answer = f"the API server answered {err.status} {err.reason}"
    return f"{answer}: {detail}" if detail else answer


def already_exists(err: BaseException) -> bool:
    """The API server refused a create because the name is taken (409 AlreadyExists)."""
    return getattr(err, "status", None) == 409


# (apiVersion, kind) -> the resource's plural, for every kind the operator reads or writes.
RESOURCES: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Node"): "nodes",
    ("v1", "PersistentVolume"): "persistentvolumes",
    ("v1", "Event"): "events",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("v1", "Pod"): "pods",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("etcd.pyetcd.io/v1alpha1", "EtcdCluster"): "etcdclusters",
    ("etcd.pyetcd.io/v1alpha1", "EtcdBackup"): "etcdbackups",
    ("etcd.pyetcd.io/v1alpha1", "EtcdDefrag"): "etcddefrags",
}


class UnknownKindError(KeyError):
    """A kind the operator does not manage: add it to ``RESOURCES`` (and to the chart's RBAC)."""


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """The REST path of an object (or collection) of a kind in ``RESOURCES``; ``namespace``
    ``""`` for a cluster-scoped kind (Node, PersistentVolume)."""
    plural = RESOURCES.get((api_version, kind))
    if plural is None:
        raise UnknownKindError(f"{api_version} {kind} is not a kind the operator manages")
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


class KubernetesApi:
    """``KubeApi`` over the official client, given a configured ``kubernetes.client.ApiClient``."""

    def __init__(self, api_client: Any, request_timeout: float = 30.0) -> None:
        self._api = api_client
        self._timeout = request_timeout

    @classmethod
    def from_environment(cls) -> KubernetesApi:
        """In-cluster service account credentials, else the local kubeconfig (as kopf does)."""
        from kubernetes import client, config

        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        return cls(client.ApiClient())

    def _call(
        self,
        path: str,
        method: str,
        *,
        query_params: list[tuple[str, str]] | None = None,
        header_params: dict[str, str] | None = None,
        body: str | Json | None = None,
    ) -> Json:
        """One request; the decoded JSON answer, or ``ApiException`` for a non-2xx status.

        ``body``: text is sent as it is (apply's YAML); a dict is JSON-encoded by the client,
        which it does for every JSON content type (so JSON must not be passed as text). The
        client's generated API (34 and later: ``param_serialize``, then ``call_api`` returning
        the raw response) is used without its per-kind response models: we keep plain dicts.
        """
        from kubernetes.client.exceptions import ApiException

        headers = {"Accept": "application/json", **(header_params or {})}

        method_, url, headers_, body_ = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query_params or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )[:4]
        response = self._api.call_api(
            method_, url, header_params=headers_, body=body_, _request_timeout=self._timeout
        )
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return dict(json.loads(response.data) if response.data else {})

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Json | None:
        from kubernetes.client.exceptions import ApiException

        path = resource_path(api_version, kind, namespace, name)
        try:
            return await asyncio.to_thread(self._call, path, "GET")
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Json]:
        path = resource_path(api_version, kind, namespace)
        found = await asyncio.to_thread(
            self._call, path, "GET", query_params=[("labelSelector", selector)]
        )
        return [dict(item) for item in found.get("items") or []]

    async def apply(self, manifest: Mapping[str, Any]) -> Json:
        meta = manifest["metadata"]
        path = resource_path(
            manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"]
        )
        return await asyncio.to_thread(
            self._call,
            path,
            "PATCH",
            # A JSON string is valid YAML; passing text keeps the client from re-encoding it.
            body=json.dumps(manifest),
            header_params={
                "Content-Type": "application/apply-patch+yaml",
                "Accept": "application/json",
            },
            query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        )

    async def delete(
        self, api_version: str, kind: str, namespace: str, name: str, *, force: bool = False
    ) -> bool:
        from kubernetes.client.exceptions import ApiException

        path = resource_path(api_version, kind, namespace, name)
        try:
            await asyncio.to_thread(
                self._call,
                path,
                "DELETE",
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                body={"gracePeriodSeconds": 0} if force else None,
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> bool:
        from kubernetes.client.exceptions import ApiException

        path = resource_path(api_version, kind, namespace, name) + "/status"
        try:
            await asyncio.to_thread(
                self._call,
                path,
                "PATCH",
                body={"status": dict(status)},
                header_params={"Content-Type": "application/merge-patch+json"},
            )
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True

    async def create(self, manifest: Mapping[str, Any]) -> Json:
        path = resource_path(
            manifest["apiVersion"], manifest["kind"], manifest["metadata"]["namespace"]
        )
        return await asyncio.to_thread(
            self._call,
            path,
            "POST",
            body=dict(manifest),
            header_params={"Content-Type": "application/json"},
        )
