"""An in-memory stand-in for the Kubernetes API calls the handlers make (no API server runs in
unit tests; the e2e suite has a real one). Apply stores the manifest as the live object; pods and
volume claims are listed from their own lists."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Json = dict[str, Any]


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Json] = {}
        self.applied: list[Json] = []
        self.pods: list[Json] = []
        self.pvcs: list[Json] = []
        self.deleted: list[tuple[str, str, str]] = []
        self.fail_apply_of: str | None = None

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Json | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[Json]:
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

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        self.deleted.append((kind, namespace, name))
        if kind == "PersistentVolumeClaim":
            before = len(self.pvcs)
            self.pvcs = [p for p in self.pvcs if p["metadata"]["name"] != name]
            return len(self.pvcs) < before
        return self.objects.pop((kind, namespace, name), None) is not None
