"""An in-memory stand-in for the Kubernetes API calls the handlers make (no API server runs in
unit tests; the e2e suite has a real one). Apply stores the manifest as the live object; pods and
volume claims are listed from their own lists; a status patch is merged into the live object
(when there is one) and recorded; created objects (Events) are recorded."""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

Json = dict[str, Any]


class AlreadyExistsError(Exception):
    """What the API server answers a create of a taken name with (409)."""

    status = 409


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Json] = {}
        self.applied: list[Json] = []
        self.pods: list[Json] = []
        self.pvcs: list[Json] = []
        self.deleted: list[tuple[str, str, str]] = []
        self.forced: list[tuple[str, str, str]] = []
        self.status_patches: list[tuple[str, str, Json]] = []
        self.created: list[Json] = []
        self.fail_apply_of: str | None = None
        # Lists fail once something was applied (an API server that stops answering mid-pass).
        self.fail_lists_after_apply = False

    def put(self, obj: Mapping[str, Any]) -> None:
        """Store a live object as it is (e.g. the EtcdCluster itself)."""
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta["namespace"], meta["name"])] = copy.deepcopy(dict(obj))

    def live(self, obj: Mapping[str, Any]) -> Json:
        """The stored object (with the status passes wrote), stored from ``obj`` if absent."""
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        if key not in self.objects:
            self.put(obj)
        return copy.deepcopy(self.objects[key])

    @property
    def last_status(self) -> Json:
        assert self.status_patches, "no status was written"
        return self.status_patches[-1][2]

    def events(self) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the created Events, in order."""
        return [
            (e["type"], e["reason"], e["message"]) for e in self.created if e["kind"] == "Event"
        ]

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Json | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Json]:
        if self.fail_lists_after_apply and self.applied:
            raise TimeoutError("injected: the API server did not answer")
        if kind in ("EtcdBackup", "EtcdDefrag"):
            assert selector == ""
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in self.objects.items()
                if (k, ns) == (kind, namespace)
            ]
        assert kind in ("Pod", "PersistentVolumeClaim")
        wanted = dict(pair.split("=", 1) for pair in selector.split(","))
        return [
            copy.deepcopy(p)
            for p in (self.pods if kind == "Pod" else self.pvcs)
            if p["metadata"]["namespace"] == namespace
            and wanted.items() <= p["metadata"]["labels"].items()
        ]

    async def apply(self, manifest: Mapping[str, Any]) -> Json:
        if manifest["kind"] == self.fail_apply_of:
            raise RuntimeError(f"injected failure applying {manifest['kind']}")
        meta = manifest["metadata"]
        obj = copy.deepcopy(dict(manifest))
        self.objects[(manifest["kind"], meta["namespace"], meta["name"])] = obj
        self.applied.append(obj)
        return obj

    async def delete(
        self, api_version: str, kind: str, namespace: str, name: str, *, force: bool = False
    ) -> bool:
        self.deleted.append((kind, namespace, name))
        if force:
            self.forced.append((kind, namespace, name))
        if kind == "PersistentVolumeClaim":
            before = len(self.pvcs)
            self.pvcs = [p for p in self.pvcs if p["metadata"]["name"] != name]
            return len(self.pvcs) < before
        return self.objects.pop((kind, namespace, name), None) is not None

    async def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> bool:
        self.status_patches.append((namespace, name, copy.deepcopy(dict(status))))
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return False
        merged = {**(obj.get("status") or {}), **copy.deepcopy(dict(status))}
        obj["status"] = {k: v for k, v in merged.items() if v is not None}
        return True

    async def create(self, manifest: Mapping[str, Any]) -> Json:
        obj = copy.deepcopy(dict(manifest))
        # As the API server: a Secret's stringData is stored base64-encoded under data.
        for key, value in (obj.pop("stringData", None) or {}).items():
            obj.setdefault("data", {})[key] = base64.b64encode(value.encode()).decode()
        if obj["kind"] != "Event":
            key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
            if key in self.objects:
                raise AlreadyExistsError(f"{key} exists")
            obj["metadata"].setdefault("creationTimestamp", "2026-12-06T10:00:00Z")
            self.objects[key] = obj
        self.created.append(obj)
        return obj
