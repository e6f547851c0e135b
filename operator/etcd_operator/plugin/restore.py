"""The manifest of ``kubectl etcd restore NAME --from BACKUP --into NEW``. Pure.

A restore always makes a new cluster (docs/backup.md: ``spec.bootstrap`` only means something
at creation, and the source is never touched). The new cluster is the source's spec (version,
engine, replicas, storage, TLS, auth, backups, ...) with ``spec.bootstrap.backup.name`` set to
the backup, as the docs write it; the restore's other settings keep their defaults (revisions
bumped by 1e9 and marked compacted, the key of ``spec.backup.encryption``).

What the copy must change, because it names the source:

- label selectors in ``podTemplate`` that select the source's members (the docs tell users to
  write ``etcd.pyetcd.io/cluster: <name>`` in topology spread constraints) now select the new
  cluster's, else its pods would spread against the old ones;
- with ``spec.auth`` and the operator's own root Secret, the new cluster names that Secret:
  the restored data has the source's root password, and a new random one would lock the
  operator out.

Only the name and namespace of the metadata are set: the source's labels and annotations may
belong to a tool that manages it (Helm, Argo CD would claim the copy) or ask for actions (a
backup annotation would back the new cluster up at once). What the copy cannot fix (Secrets of
the user's that name the source's hosts, a shared backup prefix) comes back as notes for the
user. The result is checked against the API models before anything is created.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from etcd_operator.api.backup import BootstrapSpec, PointInTime, RestoreSource
from etcd_operator.api.operation import OperationPhase
from etcd_operator.api.times import rfc3339
from etcd_operator.api.v1alpha1 import (
    API_VERSION,
    CLUSTER_NAME_MAX_LENGTH,
    CLUSTER_NAME_PATTERN,
    KIND,
    EtcdCluster,
)
from etcd_operator.components.auth import GENERATED_SUFFIX
from etcd_operator.components.naming import LABEL_CLUSTER, LABEL_INSTANCE
from etcd_operator.plugin.errors import PluginError
from etcd_operator.plugin.views import backup_view
from etcd_operator.reconcile import restore
from etcd_operator.reconcile.backup_records import backup_record

Json = dict[str, Any]

# The labels whose value is the cluster's name on every member pod (naming.selector_labels).
SELECTOR_LABELS = (LABEL_CLUSTER, LABEL_INSTANCE)


class RestoreRefusedError(PluginError):
    """A restore that would not work, refused before anything is created."""


@dataclass(frozen=True)
class RestorePlan:
    manifest: Json
    notes: tuple[str, ...]


def _dict(value: object) -> Json:
    return value if isinstance(value, dict) else {}


def _expression(given: object, old: str, new: str) -> tuple[object, int]:
    """One ``matchExpressions`` item, ``old`` turned into ``new`` where it names the cluster."""
    item = _dict(given)
    values = item.get("values")
    if item.get("key") not in SELECTOR_LABELS or not isinstance(values, list):
        return given, 0
    return {**item, "values": [new if v == old else v for v in values]}, values.count(old)


def _renamed(value: Any, old: str, new: str) -> tuple[Any, int]:
    """``value`` with every label selector's ``old`` cluster turned into ``new``; how many."""
    if isinstance(value, list):
        done = [_renamed(item, old, new) for item in value]
        return [item for item, _ in done], sum(n for _, n in done)
    if not isinstance(value, dict):
        return value, 0
    out: Json = {}
    count = 0
    for key, item in value.items():
        if key == "matchLabels" and isinstance(item, dict):
            hits = [k for k in SELECTOR_LABELS if item.get(k) == old]
            out[key] = {k: new if k in hits else v for k, v in item.items()}
            count += len(hits)
        elif key == "matchExpressions" and isinstance(item, list):
            done = [_expression(given, old, new) for given in item]
            out[key] = [given for given, _ in done]
            count += sum(n for _, n in done)
        else:
            out[key], n = _renamed(item, old, new)
            count += n
    return out, count


def check_new_name(source: str, new: str) -> None:
    if new == source:
        raise RestoreRefusedError(
            f"--into must name a new cluster: a restore never modifies {source} "
            "(spec.bootstrap only acts when a cluster is created)"
        )
    if len(new) > CLUSTER_NAME_MAX_LENGTH or not re.match(CLUSTER_NAME_PATTERN, new):
        raise RestoreRefusedError(
            f"--into {new!r}: a cluster's name is a DNS-1035 label (lower case letters, digits "
            f"and '-', starting with a letter) of at most {CLUSTER_NAME_MAX_LENGTH} characters"
        )


def _check_backup(backup: Json, source: str) -> list[str]:
    view = backup_view(backup)
    if view.cluster != source:
        raise RestoreRefusedError(
            f"EtcdBackup {view.name} is a backup of {view.cluster or 'no cluster'}, not of "
            f"{source}: name the cluster it was taken from"
        )
    if view.phase in (OperationPhase.FAILED, OperationPhase.REJECTED):
        why = f" ({view.reason})" if view.reason else ""
        raise RestoreRefusedError(
            f"EtcdBackup {view.name} is {view.phase}{why}: nothing to restore"
        )
    if not view.succeeded:
        return [
            f"EtcdBackup {view.name} is {view.phase}: the new cluster waits for it to succeed "
            "(Progressing, WaitingForBackup)"
        ]
    return []


def _auth(spec: Json, source: Json, name: str) -> list[str]:
    auth = spec.get("auth")
    if not isinstance(auth, dict) or auth.get("rootSecretName"):
        return []
    recorded = _dict(_dict(source.get("status")).get("auth")).get("rootSecretName")
    secret = recorded if isinstance(recorded, str) and recorded else f"{name}-{GENERATED_SUFFIX}"
    spec["auth"] = {**auth, "rootSecretName": secret}
    return [
        f"spec.auth.rootSecretName is {secret}: the restored data keeps {name}'s root password, "
        f"which that Secret holds; {name} owns it and deletes it with itself, so copy it under "
        "a name of its own before deleting the old cluster"
    ]


def _tls(spec: Json, new: str, namespace: str) -> list[str]:
    tls = _dict(spec.get("tls"))
    client, peer = _dict(tls.get("client")), _dict(tls.get("peer"))
    notes = []
    if client.get("source") == "Secret":
        notes.append(
            f"spec.tls.client uses your Secret {client.get('serverSecretName')}: its "
            f"certificate must also name {new}'s hosts ({new}-client.{namespace}.svc, "
            f"{new}-N.{new}-peer.{namespace}.svc)"
        )
    if peer.get("source") == "Secret":
        notes.append(
            f"spec.tls.peer uses your Secret {peer.get('secretName')}: its certificate must "
            f"also name {new}'s members ({new}-N.{new}-peer.{namespace}.svc)"
        )
    return notes


def _encryption_key(spec: Json, backup: Json) -> None:
    encrypted = _dict(backup.get("status")).get("encrypted") is True
    has_key = bool(_dict(_dict(spec.get("backup")).get("encryption")).get("keySecret"))
    if encrypted and not has_key:
        name = _dict(backup.get("metadata")).get("name")
        raise RestoreRefusedError(
            f"EtcdBackup {name} is encrypted and the spec copied has no spec.backup.encryption "
            "key: print the manifest with --dry-run, set spec.bootstrap.backup."
            "encryptionKeySecret and create it with kubectl"
        )


def newest_before(items: list[Json], cluster: str, point: PointInTime) -> str:
    """The EtcdBackup a point-in-time restore of ``cluster`` starts from, as the operator picks
    it for a point alone (``reconcile.restore.newest_before``); refused, saying what there is,
    when no backup was taken before the point."""
    records = [
        backup_record(item)
        for item in items
        if _dict(item.get("spec")).get("clusterName") == cluster
    ]
    found = restore.newest_before(records, point)
    if found is not None:
        return found.name
    done = [r for r in records if r.succeeded and r.revision is not None]
    oldest = min(done, key=lambda r: r.revision or 0, default=None)
    since = (
        f"the oldest Succeeded backup is {oldest.name} (revision {oldest.revision}, "
        f"{rfc3339(oldest.time)})"
        if oldest is not None
        else "there is no Succeeded backup"
    )
    raise RestoreRefusedError(f"no backup of {cluster} was taken before {point}: {since}")


def restore_manifest(
    source: Json, backup: Json, new: str, point: PointInTime | None = None
) -> RestorePlan:
    """A new cluster ``new`` with ``source``'s spec, bootstrapping from ``backup`` (the
    EtcdCluster and EtcdBackup objects as kubectl returns them), replayed up to ``point``."""
    metadata = _dict(source.get("metadata"))
    name = str(metadata.get("name", ""))
    namespace = str(metadata.get("namespace") or "default")
    check_new_name(name, new)
    notes = _check_backup(backup, name)
    spec = copy.deepcopy(_dict(source.get("spec")))
    spec.pop("bootstrap", None)
    _encryption_key(spec, backup)
    if "podTemplate" in spec:
        spec["podTemplate"], renamed = _renamed(spec["podTemplate"], name, new)
        if renamed:
            notes.append(
                f"spec.podTemplate: {renamed} label selector value(s) that selected {name}'s "
                f"members now select {new}'s"
            )
    notes += _auth(spec, source, name)
    notes += _tls(spec, new, namespace)
    prefix = _dict(_dict(spec.get("backup")).get("store")).get("prefix")
    if prefix:
        notes.append(
            f"spec.backup.store.prefix {prefix!r} is {name}'s too: {new}'s backups go beside "
            f"its own (their names start with {new}-)"
        )
    if spec.get("replicas") == 0:
        notes.append(f"{name} is hibernated (replicas 0): {new} starts no member until you set it")
    backup_name = str(_dict(backup.get("metadata")).get("name", ""))
    bootstrap = BootstrapSpec(backup=RestoreSource(name=backup_name, pointInTime=point))
    spec["bootstrap"] = bootstrap.model_dump(mode="json", exclude_defaults=True)
    manifest: Json = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": new, "namespace": namespace},
        "spec": spec,
    }
    try:
        EtcdCluster.model_validate(manifest)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RestoreRefusedError(
            f"the new cluster's manifest does not validate ({where}: {first['msg']}); is the "
            "plugin older than the operator's CRD?"
        ) from None
    return RestorePlan(manifest, tuple(notes))
