"""Carry out the actions of a plan, in order: membership changes, children, claims, events, status.

The executor makes no decisions. It stops at the first failed call and lets the error propagate:
the status (always the last action) is then not written, so it never claims a pass that did not
complete, and the next pass plans again from what actually happened. Membership changes go
through ``members.change_membership`` (which raises ``MembershipNotSupportedError`` for an engine
that cannot change membership).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from etcd_operator.api.v1alpha1 import API_VERSION
from etcd_operator.components import auth, pki, tls
from etcd_operator.members import EtcdConnection, change_auth, change_membership, maintain
from etcd_operator.reconcile.actions import (
    Action,
    AddMember,
    AddRootRole,
    AddRootUser,
    AnalyzeKeyspace,
    Apply,
    ChangeRootPassword,
    CreateBackup,
    CreateRootSecret,
    Defragment,
    DeleteChild,
    DeleteOperation,
    DeletePod,
    DeletePVC,
    DisarmAlarm,
    EnableAuth,
    Event,
    GrantRootRole,
    IssueCertificate,
    MoveLeader,
    PatchOperationStatus,
    PatchStatus,
    PromoteMember,
    RecordContinuously,
    RemoveMember,
    SampleWrites,
    SetBootstrapState,
)
from etcd_operator.runtime.kube import KubeApi, already_exists

log = logging.getLogger(__name__)

PostEvent = Callable[[str, str, str], None]
"""(type, reason, message) -> None: posts a Kubernetes Event on the EtcdCluster."""
WriteStatus = Callable[[dict[str, Any]], Awaitable[None] | None]
"""Writes the status merge patch (the handlers patch the status subresource directly)."""
StartAnalysis = Callable[[AnalyzeKeyspace], object]
"""Hands a keyspace analysis to the runtime's runner (``KeyspaceAnalyses.start``)."""
StartSample = Callable[[SampleWrites], object]
"""Hands a write sample to the runtime's runner (``WriteSamples.start``)."""
StartRecorder = Callable[[RecordContinuously], object]
"""Keeps a continuous backup's recorder running (``ContinuousBackups.start``)."""


async def execute(
    actions: Iterable[Action],
    kube: KubeApi,
    post_event: PostEvent,
    write_status: WriteStatus,
    etcd: EtcdConnection | None = None,
    *,
    analyze: StartAnalysis | None = None,
    sample: StartSample | None = None,
    record: StartRecorder | None = None,
) -> None:
    """Run ``actions`` in order; ``etcd`` is required when they change the membership or
    maintain members, ``analyze`` when they hand over a keyspace analysis and ``sample`` a
    write sample (each only starts it: it runs after the pass)."""
    for action in actions:
        match action:
            case AddMember() | PromoteMember() | MoveLeader() | RemoveMember():
                if etcd is None:
                    raise RuntimeError(f"{action} needs an etcd client")
                await change_membership(etcd, action)
            case Defragment() | DisarmAlarm():
                if etcd is None:
                    raise RuntimeError(f"{action} needs an etcd client")
                await maintain(etcd, action)
            case (
                AddRootUser()
                | ChangeRootPassword()
                | AddRootRole()
                | GrantRootRole()
                | EnableAuth()
            ):
                if etcd is None:
                    raise RuntimeError(f"{type(action).__name__} needs an etcd client")
                await change_auth(etcd, action)
            case CreateRootSecret(manifest=manifest):
                await create_root_secret(kube, manifest)
            case Apply(manifest=manifest) | SetBootstrapState(manifest=manifest):
                # The ConfigMap switch is an apply too: the manifest carries the new state and
                # its fingerprint, so the next pass sees it as up to date.
                await kube.apply(manifest)
            case DeleteChild(api_version=api_version, kind=kind, name=name, namespace=namespace):
                if not await kube.delete(api_version, kind, namespace, name):
                    log.info("%s %s/%s was already deleted", kind, namespace, name)
            case DeletePVC(name=name, namespace=namespace):
                if not await kube.delete("v1", "PersistentVolumeClaim", namespace, name):
                    log.info("volume claim %s/%s was already deleted", namespace, name)
            case DeletePod(name=name, namespace=namespace, force=force):
                if not await kube.delete("v1", "Pod", namespace, name, force=force):
                    log.info("pod %s/%s was already deleted", namespace, name)
            case CreateBackup(manifest=manifest):
                try:
                    await kube.create(manifest)
                except Exception as err:
                    if not already_exists(err):
                        raise
                    # Made by this very decision in a pass that did not get to record it.
                    log.info("EtcdBackup %s exists already", manifest["metadata"]["name"])
            case DeleteOperation(kind=kind, name=name, namespace=namespace):
                if not await kube.delete(API_VERSION, kind, namespace, name):
                    log.info("%s %s/%s was already deleted", kind, namespace, name)
            case PatchOperationStatus(kind=kind, name=name, namespace=namespace, status=status):
                if not await kube.patch_status(API_VERSION, kind, namespace, name, status):
                    log.info("%s %s/%s is gone: status not written", kind, namespace, name)
            case AnalyzeKeyspace():
                if analyze is None:
                    log.info("%s/%s: no keyspace analyses here", action.namespace, action.name)
                else:
                    analyze(action)
            case SampleWrites():
                if sample is None:
                    log.info("%s/%s: no write samples here", action.namespace, action.name)
                else:
                    sample(action)
            case RecordContinuously():
                if record is None:
                    log.info("%s/%s: no continuous backups here", action.namespace, action.name)
                else:
                    record(action)
            case IssueCertificate():
                await issue_certificate(kube, action)
            case Event(type=type_, reason=reason, message=message):
                post_event(type_, reason, message)
            case PatchStatus(status=status):
                written = write_status(status)
                if written is not None:
                    await written


# Root's password: 32 random bytes, URL-safe (43 characters), as etcdctl takes it on a command
# line without quoting.
PASSWORD_BYTES = 32


async def create_root_secret(kube: KubeApi, manifest: dict[str, Any]) -> None:
    """Create the root Secret with a new random password, unless it exists: a password is made
    once, and one already in a Secret (maybe already root's in etcd) is never replaced."""
    meta = manifest["metadata"]
    try:
        await kube.create(auth.with_password(manifest, secrets.token_urlsafe(PASSWORD_BYTES)))
    except Exception as err:
        if not already_exists(err):
            raise
        log.info("Secret %s/%s exists already", meta["namespace"], meta["name"])
        return
    log.info("created the root Secret %s/%s", meta["namespace"], meta["name"])


async def issue_certificate(kube: KubeApi, action: IssueCertificate) -> None:
    """Make the key and certificate of ``action`` and write them into its Secret: a CA signs
    itself; any other certificate is signed by the CA read from its Secret just now (which an
    earlier action of the same pass may have written)."""
    meta = action.manifest["metadata"]
    if action.ca_secret is None:
        pair = pki.issue(action.request, action.now)
        ca = pair.cert
    else:
        raw = await kube.get("v1", "Secret", meta["namespace"], action.ca_secret)
        data = tls.secret_data(raw)
        cert, key = data.get(pki.CERT_KEY), data.get(pki.PRIVATE_KEY_KEY)
        if not cert or not key:
            raise RuntimeError(f"the CA Secret {action.ca_secret} holds no CA to issue with")
        ca = cert
        pair = pki.issue(action.request, action.now, pki.KeyPair(cert, key))
    await kube.apply(tls.with_keys(action.manifest, pair, ca))
    log.info("issued %s/%s: %s", meta["namespace"], meta["name"], action.reason)
