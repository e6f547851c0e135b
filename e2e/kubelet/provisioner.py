"""A dynamic provisioner backing PersistentVolumeClaims with directories.

It creates the StorageClass ``local-dir`` (the default class; ``WaitForFirstConsumer``, so the
scheduler picks the node first and writes it in the claim's ``volume.kubernetes.io/selected-node``
annotation). For each claim of that class with a selected node, it creates a ``local``
PersistentVolume pinned to that node, backed by ``<root>/<pv-name>``, pre-bound to the claim; the
PV controller completes the binding. A Released volume of the class (its claim deleted, reclaim
policy ``Delete``) loses its directory and its PV object.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from e2e.kubelet.api import Api, ApiError, Json

log = logging.getLogger(__name__)

STORAGE_CLASS = "local-dir"
PROVISIONER = "e2e.pyetcd.io/local-dir"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def storage_class() -> Json:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def volume_for(claim: Json, root: Path) -> Json:
    """The PersistentVolume that backs ``claim`` on its selected node."""
    meta = claim["metadata"]
    name = f"pvc-{meta['uid']}"
    node = meta["annotations"][SELECTED_NODE]
    size = claim["spec"].get("resources", {}).get("requests", {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": claim["spec"].get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "local": {"path": str(root / name)},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [node],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }


class Provisioner:
    """Watches claims and volumes; one per kubelet process."""

    def __init__(self, api: Api, root: Path) -> None:
        self.api = api
        self.root = root

    async def install(self) -> None:
        try:
            await self.api.request(
                "POST", "/apis/storage.k8s.io/v1/storageclasses", storage_class()
            )
        except ApiError as exc:
            if exc.status != 409:
                raise

    async def run(self) -> None:
        await asyncio.gather(self._claims(), self._volumes())

    async def _claims(self) -> None:
        async for kind, obj in self.api.watch("/api/v1/persistentvolumeclaims"):
            claims = obj["items"] if kind == "SYNC" else [obj] if kind != "DELETED" else []
            for claim in claims:
                try:
                    await self._provision(claim)
                except ApiError as exc:
                    log.warning("provisioning %s failed: %s", claim["metadata"]["name"], exc)

    async def _provision(self, claim: Json) -> None:
        meta = claim["metadata"]
        annotations = meta.get("annotations") or {}
        if claim["spec"].get("storageClassName") != STORAGE_CLASS:
            return
        if claim["spec"].get("volumeName") or SELECTED_NODE not in annotations:
            return
        if meta.get("deletionTimestamp"):
            return
        volume = volume_for(claim, self.root)
        Path(volume["spec"]["local"]["path"]).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        try:
            await self.api.request("POST", "/api/v1/persistentvolumes", volume)
            log.info("provisioned %s for %s/%s", volume["metadata"]["name"], *_ns_name(meta))
        except ApiError as exc:
            if exc.status != 409:
                raise

    async def _volumes(self) -> None:
        async for kind, obj in self.api.watch("/api/v1/persistentvolumes"):
            volumes = obj["items"] if kind == "SYNC" else [obj] if kind != "DELETED" else []
            for volume in volumes:
                annotations = volume["metadata"].get("annotations") or {}
                if annotations.get(PROVISIONED_BY) != PROVISIONER:
                    continue
                if (volume.get("status") or {}).get("phase") != "Released":
                    continue
                path = Path(volume["spec"]["local"]["path"])
                if path.is_relative_to(self.root):
                    shutil.rmtree(path, ignore_errors=True)
                name = volume["metadata"]["name"]
                try:
                    await self.api.request("DELETE", f"/api/v1/persistentvolumes/{name}")
                except ApiError as exc:
                    if exc.status != 404:
                        log.warning("deleting %s: %s", name, exc)


def _ns_name(meta: Json) -> tuple[str, str]:
    return meta["namespace"], meta["name"]
