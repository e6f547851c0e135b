"""Reconcile passes for every EtcdCluster: observe, plan the steps, execute them, report.

Two ways in: ``reconcile`` for the kopf handlers (the body kopf saw; events through the poster
the handler gives) and ``refresh`` for the operator-wide periodic refresh (the cluster read
afresh; events posted through the API). Either way the pass runs under the cluster's lock and
writes the status itself, before releasing the lock, so a refresh that waited for the lock reads
the status the pass before it wrote.

A pass whose steps changed etcd or Kubernetes observes again before it reports, so the status it
writes shows the outcome of its own steps; an idle pass (the usual refresh) reports on its single
observation. A pass whose membership change etcd refuses as "not capable" is planned again with
that knowledge, so the status reports it instead of the pass failing and being retried.

A pass that fails is made visible: the status gets Degraded True with reason ``ReconcileFailed``
and the error (the API server's own message when it refused a write), a Warning event says it
once per distinct error, and the pass is retried with exponential backoff (``PassFailedError``
carries the delay for kopf; the refresh retries at its interval). The next pass that completes
writes the real conditions again (and a ``Recovered`` event).

No kopf here: the handlers translate ``InvalidSpecError`` and ``PassFailedError`` into kopf's
permanent and temporary errors. The module runs a little over 300 lines on purpose: one pass's
whole course (observe, plan, execute, look again, report, fail) reads in one place; what a pass
uses is elsewhere (``failures``, ``observe``, ``execute``, ``rollouts``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from etcd_operator import metrics
from etcd_operator.api.analysis import WritesStatus
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.times import parse_rfc3339
from etcd_operator.api.v1alpha1 import API_VERSION, KIND, EtcdCluster
from etcd_operator.members import MembershipNotSupportedError
from etcd_operator.reconcile import write_sample
from etcd_operator.reconcile.actions import (
    Action,
    AddMember,
    AddRootRole,
    AddRootUser,
    ChangeRootPassword,
    Defragment,
    DisarmAlarm,
    EnableAuth,
    GrantRootRole,
    MoveLeader,
    PromoteMember,
    RemoveMember,
)
from etcd_operator.reconcile.events import failure_event
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.plan import plan_steps, report
from etcd_operator.reconcile.status import RECONCILE_FAILED, failed_pass
from etcd_operator.runtime.analyses import KeyspaceAnalyses
from etcd_operator.runtime.continuous import ContinuousBackups
from etcd_operator.runtime.events import post_events
from etcd_operator.runtime.execute import PostEvent, WriteStatus, execute
from etcd_operator.runtime.failures import (
    InvalidSpecError,
    PassFailedError,
    describe,
    error_reason,
    parse_cluster,
    parse_status,
    retry_delay,
)
from etcd_operator.runtime.kube import KubeApi, KubernetesApi
from etcd_operator.runtime.observe import Connect, connect_etcd, membership_endpoints, observe
from etcd_operator.runtime.refresh import ClusterRef
from etcd_operator.runtime.rollouts import RolloutGate
from etcd_operator.runtime.write_samples import WriteSamples

__all__ = [
    "EventPoster",
    "InvalidSpecError",
    "PassFailedError",
    "Reconciler",
    "parse_cluster",
    "parse_status",
]

log = logging.getLogger(__name__)


class EventPoster(Protocol):
    """``kopf.event``'s shape: post an Event about ``body`` (the handlers pass ``kopf.event``)."""

    def __call__(self, objs: Any, /, *, type: str, reason: str, message: str) -> None: ...


def no_events(objs: Any, /, *, type: str, reason: str, message: str) -> None:
    """The poster of a reconciler that has no kopf context: events are logged only."""
    log.info("event %s %s: %s", type, reason, message)


def changes_membership(actions: Sequence[Action]) -> bool:
    """The actions talk to etcd: membership changes, maintenance, or turning auth on."""
    return any(
        isinstance(
            a,
            AddMember
            | PromoteMember
            | MoveLeader
            | RemoveMember
            | Defragment
            | DisarmAlarm
            | AddRootUser
            | ChangeRootPassword
            | AddRootRole
            | GrantRootRole
            | EnableAuth,
        )
        for a in actions
    )


def condition_labels(status: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(type, status, reason)`` of each condition in a status (or a status patch)."""
    return [
        (str(c.get("type")), str(c.get("status")), str(c.get("reason") or ""))
        for c in status.get("conditions") or []
    ]


def record_metrics(desired: EtcdCluster, status: Mapping[str, Any]) -> None:
    members = status.get("members") or []
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    metrics.record_conditions(desired.namespace, desired.name, condition_labels(status))
    ready = conditions.get("BackupReady")
    last = parse_rfc3339((status.get("backup") or {}).get("lastSuccessfulTime"))
    metrics.record_cluster(
        desired.namespace,
        desired.name,
        members=len(members),
        healthy=sum(1 for m in members if m.get("healthy")),
        available=conditions.get("Available") == "True",
        backup_ready=None if ready is None else ready == "True",
        last_backup=last.timestamp() if last is not None else None,
        members_replaced=int(status.get("membersReplaced") or 0),
    )
    record_keyspace_metrics(desired, status.get("keyspace"))


def record_keyspace_metrics(desired: EtcdCluster, keyspace: Any) -> None:
    """The keyspace gauges from the status a pass wrote: none without an analysis (or without
    spec.analysis); after an operator restart, those of the recorded summary (its five
    prefixes), until the next analysis sets them from its report. An analysis this process
    ran and recorded is left as its runner set it (up to ten prefixes)."""
    namespace, name = desired.namespace, desired.name
    found = keyspace if isinstance(keyspace, Mapping) else {}
    metrics.record_write_rates(namespace, name, write_rates(found.get("writes")))
    analyzed = parse_rfc3339(found.get("analyzedAt"))
    if analyzed is None:
        metrics.record_keyspace(namespace, name, None)
        return
    if metrics.keyspace_recorded_at(namespace, name) == analyzed.timestamp():
        return
    prefixes = [p for p in found.get("prefixes") or [] if isinstance(p, Mapping)]
    metrics.record_keyspace(
        namespace,
        name,
        metrics.KeyspaceGauges(
            analyzed_at=analyzed.timestamp(),
            live_keys=int(found.get("liveKeys") or 0),
            leases_without_keys=int(found.get("leasesWithoutKeys") or 0),
            prefixes=[(str(p.get("prefix")), int(p.get("storedBytes") or 0)) for p in prefixes],
        ),
    )


def write_rates(writes: Any) -> dict[str, float]:
    """The write-rate series of a recorded ``status.keyspace.writes`` (none if it does not
    parse: the next window writes it again)."""
    if not isinstance(writes, Mapping):
        return {}
    try:
        status = WritesStatus.model_validate(writes)
    except ValueError:
        return {}
    return write_sample.rates(status)


class Reconciler:
    """Runs reconcile passes for all clusters with one Kubernetes API and one settings object."""

    def __init__(
        self,
        settings: OperatorSettings,
        kube: KubeApi | None = None,
        post_event: EventPoster = no_events,
        connect: Connect = connect_etcd,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rollouts: RolloutGate | None = None,
        analyses: KeyspaceAnalyses | None = None,
        write_samples: WriteSamples | None = None,
        continuous_backups: ContinuousBackups | None = None,
    ) -> None:
        self.settings = settings
        self._kube = kube
        self._post_event = post_event
        self._connect = connect
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self._failures: dict[str, int] = {}
        self.rollouts = rollouts or RolloutGate(
            settings.max_concurrent_rollouts,
            warmup_seconds=2 * settings.status_interval_seconds,
        )
        # Analyses write status.keyspace under the passes' own lock: a pass that read the
        # status before them would otherwise write it back.
        self.analyses = analyses or KeyspaceAnalyses(
            settings, lambda: self.kube, lock=self.lock, clock=clock
        )
        # The same for the write samples' status.keyspace.writes.
        self.write_samples = write_samples or WriteSamples(
            settings, lambda: self.kube, lock=self.lock, clock=clock, connect=connect
        )
        # And for the continuous backups' status.backup.continuous.
        self.continuous_backups = continuous_backups or ContinuousBackups(
            settings, lambda: self.kube, lock=self.lock, clock=clock, connect=connect
        )

    @property
    def kube(self) -> KubeApi:
        if self._kube is None:
            # Created on first use, inside the operator: importing the module needs no cluster.
            self._kube = KubernetesApi.from_environment()
        return self._kube

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)
        self._failures.pop(uid, None)
        self.rollouts.forget(uid)
        self.write_samples.forget(uid)
        self.continuous_backups.forget(uid)

    def lock(self, uid: str) -> asyncio.Lock:
        """The cluster's lock: a pass holds it from reading the cluster to writing its status."""
        return self._locks.setdefault(uid, asyncio.Lock())

    async def reconcile(self, body: Mapping[str, Any]) -> None:
        """One pass for one cluster kopf delivered (events through the poster); raises
        ``InvalidSpecError`` or ``PassFailedError`` (with the backoff delay).

        The cluster is read again under its lock, as the refresh does: kopf's body may predate
        a status another pass wrote meanwhile (kopf queues events while a pass holds the
        lock), and a pass planned on it would write back the older status, rewinding what the
        status accumulates (the replacement count, the last recovery, the spent consent
        tokens). Skipped when the cluster is gone or is another one of the same name."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid", meta.get("name")))

        def post_event(type_: str, reason: str, message: str) -> None:
            self._post_event(body, type=type_, reason=reason, message=message)

        async with self.lock(uid):
            fresh = await self.kube.get(
                API_VERSION, KIND, str(meta.get("namespace")), str(meta.get("name"))
            )
            if fresh is None or (fresh.get("metadata") or {}).get("uid") != meta.get("uid"):
                return
            await self._guarded(fresh, uid, post_event)

    async def refresh(self, ref: ClusterRef) -> None:
        """One pass of the periodic refresh: the cluster is read under its lock (never a stale
        copy), and skipped when it is gone or is another cluster of the same name. Failures
        raise; the refresh loop logs them and goes on with the other clusters."""
        async with self.lock(ref.uid):
            raw = await self.kube.get(API_VERSION, KIND, ref.namespace, ref.name)
            if raw is None or (raw.get("metadata") or {}).get("uid") != ref.uid:
                self.forget(ref.uid)  # gone: its lock too (its DELETED event may be past)
                return
            posted: list[tuple[str, str, str]] = []

            def post_event(type_: str, reason: str, message: str) -> None:
                posted.append((type_, reason, message))

            try:
                await self._guarded(raw, ref.uid, post_event)
            finally:
                # Also after a failure: the events of the steps that did run, and the failure's.
                await post_events(self.kube, raw, posted, self._clock())

    async def _guarded(self, body: Mapping[str, Any], uid: str, post_event: PostEvent) -> None:
        """One pass with metrics; a failure is reported on the cluster and raised with its
        retry delay."""
        started = time.monotonic()
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        try:
            desired = parse_cluster(body)
            await self._pass(desired, uid, post_event)
        except InvalidSpecError as err:
            metrics.RECONCILES.labels("error").inc()
            metrics.RECONCILE_ERRORS.labels("invalid").inc()
            metrics.record_pass(namespace, name, failed=True)
            await self._report_failure(body, str(err), post_event)
            raise
        except Exception as err:
            metrics.RECONCILES.labels("error").inc()
            metrics.RECONCILE_ERRORS.labels(error_reason(err)).inc()
            metrics.record_pass(namespace, name, failed=True)
            message = describe(err)
            log.warning("reconcile of %s/%s failed: %s", namespace, name, message)
            await self._report_failure(body, message, post_event)
            failures = self._failures[uid] = self._failures.get(uid, 0) + 1
            raise PassFailedError(
                f"reconcile failed: {message}", self.retry_delay(failures)
            ) from err
        else:
            metrics.RECONCILES.labels("success").inc()
            metrics.record_pass(namespace, name, failed=False)
            self._failures.pop(uid, None)
        finally:
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)

    async def _report_failure(
        self, body: Mapping[str, Any], message: str, post_event: PostEvent
    ) -> None:
        """Degraded/ReconcileFailed on the status and one Warning per distinct error; best
        effort, since the API server may be what fails."""
        meta = body.get("metadata") or {}
        previous = parse_status(body)
        generation = meta.get("generation")
        patch = failed_pass(
            previous, int(generation) if generation is not None else None, message, self._clock()
        )
        event = failure_event(previous, message, RECONCILE_FAILED)
        if event is not None:
            post_event(event.type, event.reason, event.message)
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        try:
            written = await self.kube.patch_status(API_VERSION, KIND, namespace, name, patch)
        except Exception as err:
            log.warning("could not report the failed pass on the status: %s", describe(err))
        else:
            if written:
                # The condition gauges say what the status says: Degraded is ReconcileFailed.
                metrics.record_conditions(namespace, name, condition_labels(patch))

    async def _pass(self, desired: EtcdCluster, uid: str, post_event: PostEvent) -> None:
        backup = desired.spec.backup
        if backup is None or backup.continuous is None:
            # Turned off: its recorder stops now, not at its next look at the spec.
            self.continuous_backups.cancel(uid)
        observed = await observe(
            desired, self.kube, self.settings, self._connect, now=self._clock()
        )

        async def write_status(status: dict[str, Any]) -> None:
            # One merge patch; the dict keeps observedGeneration last.
            written = await self.kube.patch_status(
                API_VERSION, KIND, desired.namespace, desired.name, status
            )
            if written:
                record_metrics(desired, status)
            else:
                log.info("%s/%s is gone: status not written", desired.namespace, desired.name)

        try:
            await self._run(desired, uid, observed, post_event, write_status)
        except MembershipNotSupportedError as err:
            # Not a failure to retry: plan the pass again knowing that the engine cannot change
            # membership; its status says so (Degraded) and the following passes of this
            # generation do not ask again.
            log.warning("%s/%s: %s", desired.namespace, desired.name, err)
            refused = dataclasses.replace(observed, membership_unsupported=err.message)
            await self._run(desired, uid, refused, post_event, write_status)

    async def _run(
        self,
        desired: EtcdCluster,
        uid: str,
        observed: Observed,
        post_event: PostEvent,
        write_status: WriteStatus,
    ) -> None:
        """Plan one pass's steps and execute them; then report (events and status) on a fresh
        look at the world if the steps changed it, else on ``observed``."""
        # No await between the slot check, the planning and the claim (see rollouts).
        observed = dataclasses.replace(observed, rollout_slot=self.rollouts.available(uid))
        steps = plan_steps(desired, observed, self.settings)
        if steps is None:
            return
        if steps.decided.rollout:
            self.rollouts.claim(uid)
        await self._execute(desired, observed, steps.actions, post_event, write_status)
        if steps.acted:
            try:
                # etcd is asked again only if it answered before: otherwise the new look would
                # wait for the same deadline again (or, on creation, for members not yet
                # started).
                fresh = await observe(
                    desired,
                    self.kube,
                    self.settings,
                    self._connect,
                    ask_etcd=observed.etcd is not None,
                    now=self._clock(),
                )
            except Exception as err:
                # The actions are done: what the status records of them (a replacement's count
                # and record, a restore) must not be lost with the new look. Report on the look
                # before them; the next pass looks again.
                log.warning(
                    "%s/%s: looking again after acting failed (%s); reporting on the look "
                    "before the actions",
                    desired.namespace,
                    desired.name,
                    describe(err),
                )
            else:
                # What this pass learnt and its own slot carry over to the new look.
                observed = dataclasses.replace(
                    fresh,
                    membership_unsupported=observed.membership_unsupported,
                    rollout_slot=observed.rollout_slot,
                )
        sts = observed.statefulset
        self.rollouts.observe(
            uid, rolling=steps.decided.rollout or (sts is not None and sts.rolling)
        )
        conclusion = report(desired, observed, self.settings, self._clock(), steps)
        await execute(conclusion, self.kube, post_event, write_status)

    async def _execute(
        self,
        desired: EtcdCluster,
        observed: Observed,
        actions: Sequence[Action],
        post_event: PostEvent,
        write_status: WriteStatus,
    ) -> None:
        """Execute ``actions``, with an etcd client (closed afterwards) if they need one."""
        analyze, sample = self.analyses.start, self.write_samples.start
        record = self.continuous_backups.start
        if not changes_membership(actions):
            await execute(
                actions,
                self.kube,
                post_event,
                write_status,
                analyze=analyze,
                sample=sample,
                record=record,
            )
            return
        endpoints = membership_endpoints(desired, self.settings, observed)
        etcd = self._connect(
            endpoints,
            self.settings.etcd_timeout_seconds,
            observed.credentials,
            observed.root_credentials,
        )
        try:
            await execute(
                actions,
                self.kube,
                post_event,
                write_status,
                etcd,
                analyze=analyze,
                sample=sample,
                record=record,
            )
        finally:
            await etcd.close()

    def retry_delay(self, failures: int = 1) -> float:
        """The delay before retrying a cluster after ``failures`` failed passes in a row."""
        return retry_delay(min(10.0, self.settings.status_interval_seconds), failures)

    @property
    def refresh_deadline(self) -> float:
        """The deadline of one cluster's periodic refresh: generous (a pass makes a few
        Kubernetes calls and a few etcd calls, each with its own deadline), but finite, so a
        hung call cannot stall the refresh of every other cluster for good."""
        return max(60.0, 2 * self.settings.status_interval_seconds)
