"""kopf entry points for EtcdCluster: thin wrappers that run one reconcile pass.

create, update and resume react to changes; the operator-wide status refresh (``refresh``)
repeats the pass for every cluster at the configured interval, because etcd changes (a member
dies, the leader moves, a learner catches up) produce no Kubernetes event. Every entry point does
the same level-based pass: observe, plan the steps, execute them, then report (the status and
the events of its transitions); a per-cluster lock keeps a refresh pass and an event pass from
interleaving on the same cluster.
A pass whose steps changed etcd or Kubernetes observes again before it reports, so the status
it writes shows the outcome of its own steps (the learner it promoted is a voter, the member it
removed is gone) instead of the world it planned from; an idle pass (the usual refresh) reports
on its single observation.
A pass whose membership change etcd refuses as "not capable" is planned again with that
knowledge, so the status reports it instead of the pass failing and being retried.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import kopf
from pydantic import ValidationError

from etcd_operator import metrics
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    EtcdCluster,
    EtcdClusterStatus,
)
from etcd_operator.handlers.events import post_events
from etcd_operator.handlers.execute import (
    MembershipNotSupportedError,
    PostEvent,
    WriteStatus,
    execute,
)
from etcd_operator.handlers.kube import KubeApi, KubernetesApi
from etcd_operator.handlers.observe import Connect, connect_etcd, membership_endpoints, observe
from etcd_operator.handlers.refresh import ClusterRef, PeriodicRefresh, index_entry, indexed
from etcd_operator.reconcile.observed import Observed
from etcd_operator.reconcile.plan import (
    Action,
    AddMember,
    MoveLeader,
    PromoteMember,
    RemoveMember,
    plan_steps,
    report,
)

log = logging.getLogger(__name__)


class EventPoster(Protocol):
    """``kopf.event``'s shape: post an Event about ``body``."""

    def __call__(self, objs: kopf.Body, /, *, type: str, reason: str, message: str) -> None: ...


def changes_membership(actions: Sequence[Action]) -> bool:
    return any(
        isinstance(a, AddMember | PromoteMember | MoveLeader | RemoveMember) for a in actions
    )


def parse_cluster(body: Mapping[str, Any]) -> EtcdCluster:
    """The EtcdCluster model of a kopf body.

    Metadata is kept whole; status fields the model does not know (kopf's own bookkeeping) are
    dropped, and an unreadable status counts as none: it is recomputed anyway. An invalid spec
    is a permanent error: retrying cannot fix it, only the user can.
    """
    raw_status = dict(body.get("status") or {})
    status: EtcdClusterStatus | None = None
    known = {k: v for k, v in raw_status.items() if k in EtcdClusterStatus.model_fields}
    if known:
        try:
            status = EtcdClusterStatus.model_validate(known)
        except ValidationError:
            status = None
    try:
        return EtcdCluster.model_validate(
            {"metadata": dict(body.get("metadata") or {}), "spec": dict(body.get("spec") or {})}
        ).model_copy(update={"status": status})
    except ValidationError as err:
        raise kopf.PermanentError(f"invalid spec: {err}") from err


def record_metrics(desired: EtcdCluster, status: Mapping[str, Any]) -> None:
    members = status.get("members") or []
    available = any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    metrics.record_cluster(
        desired.namespace,
        desired.name,
        members=len(members),
        healthy=sum(1 for m in members if m.get("healthy")),
        available=available,
    )


def error_reason(err: BaseException) -> str:
    """A short, bounded label for the errors metric."""
    module = type(err).__module__
    if module.startswith("kubernetes") or module.startswith("urllib3"):
        return "kubernetes"
    if module.startswith("pyetcd") or module.startswith("grpc"):
        return "etcd"
    return "unexpected"


class Reconciler:
    """Runs reconcile passes for all clusters with one Kubernetes API and one settings object.

    Two ways in: ``reconcile`` for kopf's handlers (the body kopf saw; events through
    ``kopf.event``) and ``refresh`` for the periodic status refresh (the cluster read afresh;
    events posted through the API, as ``kopf.event`` needs kopf's handler context). Either
    way the pass runs under the cluster's lock and writes the status itself, before releasing
    the lock, so a refresh that waited for the lock reads the status the pass before it wrote.
    """

    def __init__(
        self,
        settings: OperatorSettings,
        kube: KubeApi | None = None,
        post_event: EventPoster = kopf.event,
        connect: Connect = connect_etcd,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._kube = kube
        self._post_event = post_event
        self._connect = connect
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def kube(self) -> KubeApi:
        if self._kube is None:
            # Created on first use, inside the operator: importing the module needs no cluster.
            self._kube = KubernetesApi.from_environment()
        return self._kube

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)

    def _lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    async def reconcile(self, body: kopf.Body) -> None:
        """One pass for one cluster, as kopf delivered it; failures become
        ``kopf.TemporaryError`` (kopf retries later)."""
        desired = parse_cluster(body)

        def post_event(type_: str, reason: str, message: str) -> None:
            self._post_event(body, type=type_, reason=reason, message=message)

        async with self._lock(str(desired.metadata.get("uid", desired.name))):
            await self._pass(desired, post_event)

    async def refresh(self, ref: ClusterRef) -> None:
        """One pass of the periodic status refresh: the cluster is read under its lock (never
        a stale copy), and skipped when it is gone or is another cluster of the same name.
        Failures raise; the refresh loop logs them and goes on with the other clusters."""
        async with self._lock(ref.uid):
            raw = await self.kube.get(API_VERSION, KIND, ref.namespace, ref.name)
            if raw is None or (raw.get("metadata") or {}).get("uid") != ref.uid:
                self.forget(ref.uid)  # gone: its lock too (its DELETED event may be past)
                return
            desired = parse_cluster(raw)
            posted: list[tuple[str, str, str]] = []

            def post_event(type_: str, reason: str, message: str) -> None:
                posted.append((type_, reason, message))

            try:
                await self._pass(desired, post_event)
            finally:
                # Also after a failure: the events of the steps that did run.
                await post_events(self.kube, raw, posted, self._clock())

    async def _pass(self, desired: EtcdCluster, post_event: PostEvent) -> None:
        """Observe, plan, execute, report, with metrics; errors become ``kopf.TemporaryError``."""
        started = time.monotonic()
        try:
            observed = await observe(desired, self.kube, self.settings, self._connect)

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
                await self._run(desired, observed, post_event, write_status)
            except MembershipNotSupportedError as err:
                # Not a failure to retry: plan the pass again knowing that the engine
                # cannot change membership; its status says so (Degraded) and the
                # following passes of this generation do not ask again.
                log.warning("%s/%s: %s", desired.namespace, desired.name, err)
                refused = dataclasses.replace(observed, membership_unsupported=err.message)
                await self._run(desired, refused, post_event, write_status)
        except kopf.PermanentError:
            metrics.RECONCILES.labels("error").inc()
            metrics.RECONCILE_ERRORS.labels("invalid").inc()
            raise
        except Exception as err:
            metrics.RECONCILES.labels("error").inc()
            metrics.RECONCILE_ERRORS.labels(error_reason(err)).inc()
            log.warning("reconcile of %s/%s failed: %s", desired.namespace, desired.name, err)
            raise kopf.TemporaryError(f"reconcile failed: {err}", delay=self.retry_delay) from err
        else:
            metrics.RECONCILES.labels("success").inc()
        finally:
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started)

    async def _run(
        self,
        desired: EtcdCluster,
        observed: Observed,
        post_event: PostEvent,
        write_status: WriteStatus,
    ) -> None:
        """Plan one pass's steps and execute them; then report (events and status) on a fresh
        look at the world if the steps changed it, else on ``observed``."""
        steps = plan_steps(desired, observed, self.settings)
        if steps is None:
            return
        await self._execute(desired, observed, steps.actions, post_event, write_status)
        if steps.acted:
            # etcd is asked again only if it answered before: otherwise the new look would
            # wait for the same deadline again (or, on creation, for members not yet started).
            observed = await observe(
                desired,
                self.kube,
                self.settings,
                self._connect,
                ask_etcd=observed.etcd is not None,
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
        if not changes_membership(actions):
            await execute(actions, self.kube, post_event, write_status)
            return
        endpoints = membership_endpoints(desired, self.settings, observed)
        etcd = self._connect(endpoints, self.settings.etcd_timeout_seconds)
        try:
            await execute(actions, self.kube, post_event, write_status, etcd)
        finally:
            await etcd.close()

    @property
    def retry_delay(self) -> float:
        return min(10.0, self.settings.status_interval_seconds)

    @property
    def refresh_deadline(self) -> float:
        """The deadline of one cluster's periodic refresh: generous (a pass makes a few
        Kubernetes calls and a few etcd calls, each with its own deadline), but finite, so a
        hung call cannot stall the refresh of every other cluster for good."""
        return max(60.0, 2 * self.settings.status_interval_seconds)


INDEX = "etcdclusters"
"""The id of the kopf index of EtcdClusters; kopf passes it to handlers under this name."""


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> Reconciler:
    """Register the EtcdCluster handlers on ``registry``; returns the reconciler they share.

    No handler needs kopf's finalizer: no delete handler (owner references collect the
    children), no timer and no daemon (kopf makes its finalizer mandatory for those, so an
    EtcdCluster could not be deleted while no operator runs). The periodic refresh is one task
    for the operator, started and stopped with it, over an index of the clusters. kopf removes
    its finalizer from clusters that carry it from an earlier version of the operator, on the
    first event or listing it sees of them, since no handler requires it any more.
    """
    reconciler = Reconciler(settings)
    refresher = PeriodicRefresh(
        reconciler.refresh,
        settings.status_interval_seconds,
        deadline=reconciler.refresh_deadline,
    )
    resource = (GROUP, VERSION, PLURAL)

    # Explicit ids: kopf keys its progress annotations by handler id.
    @kopf.on.resume(*resource, id="resume", registry=registry)
    @kopf.on.create(*resource, id="create", registry=registry)
    @kopf.on.update(*resource, id="update", registry=registry)
    async def changed(body: kopf.Body, **_: Any) -> None:
        await reconciler.reconcile(body)

    @kopf.index(*resource, id=INDEX, registry=registry)
    async def clusters(body: kopf.Body, **_: Any) -> dict[tuple[str, str], ClusterRef]:
        return index_entry(body)  # async: kopf would run a plain function in a thread

    @kopf.on.startup(id="start-status-refresh", registry=registry)
    async def start_refresh(**kwargs: Any) -> None:
        index = kwargs[INDEX]  # kopf's live index: filled as kopf lists and watches clusters
        refresher.start(lambda: indexed(index))

    @kopf.on.cleanup(id="stop-status-refresh", registry=registry)
    async def stop_refresh(**_: Any) -> None:
        await refresher.stop()

    @kopf.on.event(*resource, id="forget-deleted", registry=registry)
    async def deleted(event: kopf.RawEvent, **_: Any) -> None:
        # Watch events, not a delete handler: a delete handler would add a finalizer, and the
        # cluster has nothing to finalize (owner references collect the children).
        if event.get("type") == "DELETED":
            meta = event["object"].get("metadata") or {}
            metrics.forget_cluster(str(meta.get("namespace")), str(meta.get("name")))
            reconciler.forget(str(meta.get("uid")))

    return reconciler
