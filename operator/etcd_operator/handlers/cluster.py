"""kopf entry points for EtcdCluster: each hands over to the runtime's ``Reconciler``.

create, update and resume react to changes; the operator-wide periodic refresh
(``runtime.refresh``) repeats the pass for every cluster, because etcd changes (a member dies,
the leader moves, a learner catches up) produce no Kubernetes event. The refresh and the rollout
gate learn which clusters exist from a kopf index, which needs no finalizer.

No handler needs kopf's finalizer: no delete handler (owner references collect the children), no
timer and no daemon (kopf makes its finalizer mandatory for those, so an EtcdCluster could not be
deleted while no operator runs). kopf removes its finalizer from clusters that carry it from an
earlier version of the operator, on the first event or listing it sees of them.
"""

from __future__ import annotations

from typing import Any

import kopf

from etcd_operator import metrics
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from etcd_operator.runtime.reconciler import InvalidSpecError, PassFailedError, Reconciler
from etcd_operator.runtime.refresh import ClusterRef, PeriodicRefresh, index_entry, indexed

INDEX = "etcdclusters"
"""The id of the kopf index of EtcdClusters; kopf passes it to handlers under this name."""


def register(
    registry: kopf.OperatorRegistry,
    settings: OperatorSettings,
    reconciler: Reconciler | None = None,
) -> Reconciler:
    """Register the EtcdCluster handlers on ``registry``; returns the reconciler they share."""
    # Events of kopf's handlers go through kopf.event (kopf's handler context posts them).
    reconciler = reconciler or Reconciler(settings, post_event=kopf.event)
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
        try:
            await reconciler.reconcile(body)
        except InvalidSpecError as err:
            raise kopf.PermanentError(str(err)) from err
        except PassFailedError as err:
            raise kopf.TemporaryError(str(err), delay=err.delay) from err

    @kopf.index(*resource, id=INDEX, registry=registry)
    async def clusters(body: kopf.Body, **_: Any) -> dict[tuple[str, str], ClusterRef]:
        return index_entry(body)  # async: kopf would run a plain function in a thread

    @kopf.on.startup(id="start-status-refresh", registry=registry)
    async def start_refresh(**kwargs: Any) -> None:
        index = kwargs[INDEX]  # kopf's live index: filled as kopf lists and watches clusters
        reconciler.rollouts.track(lambda: [ref.uid for ref in indexed(index)])
        refresher.start(lambda: indexed(index))

    @kopf.on.cleanup(id="stop-status-refresh", registry=registry)
    async def stop_refresh(**_: Any) -> None:
        await refresher.stop()
        # Analyses cut short end as interrupted on the next start, and are retried.
        await reconciler.analyses.stop()
        await reconciler.write_samples.stop()
        await reconciler.continuous_backups.stop()

    @kopf.on.event(*resource, id="forget-deleted", registry=registry)
    async def deleted(event: kopf.RawEvent, **_: Any) -> None:
        # Watch events, not a delete handler: a delete handler would add a finalizer, and the
        # cluster has nothing to finalize (owner references collect the children).
        if event.get("type") == "DELETED":
            meta = event["object"].get("metadata") or {}
            metrics.forget_cluster(str(meta.get("namespace")), str(meta.get("name")))
            reconciler.forget(str(meta.get("uid")))

    return reconciler
