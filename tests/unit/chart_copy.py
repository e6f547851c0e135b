"""The chart as the chart tests render it: where it is, and its CRD before gencrd has written it."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "etcd-operator"
CRD_FILE = Path("crds") / "etcd.pyetcd.io_etcdclusters.yaml"

PLACEHOLDER_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "etcdclusters.etcd.pyetcd.io"},
    "spec": {
        "group": "etcd.pyetcd.io",
        "names": {"kind": "EtcdCluster", "plural": "etcdclusters", "singular": "etcdcluster"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def copy_chart(into: Path) -> Path:
    """A copy of the chart under ``into``; with a placeholder CRD when the generated one is not
    there yet."""
    copy = into / "etcd-operator"
    shutil.copytree(CHART, copy)
    if not (copy / CRD_FILE).exists():
        (copy / CRD_FILE).parent.mkdir(parents=True, exist_ok=True)
        (copy / CRD_FILE).write_text(yaml.safe_dump(PLACEHOLDER_CRD, sort_keys=False))
    return copy
