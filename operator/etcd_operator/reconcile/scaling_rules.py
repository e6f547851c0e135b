"""The rules of one scaling step, over one ``Scene``: the first rule that applies gives the
step. Pure; the order and the reasons of the rules are in ``reconcile.scaling``'s docstring.
The rules and the scene they share stay in one module (some 320 lines): apart, each rule would
have to be read with the others to see which one wins."""

from __future__ import annotations

from dataclasses import dataclass

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import naming, tls
from etcd_operator.reconcile.actions import (
    AddMember,
    DeletePVC,
    Event,
    MembershipAction,
    MoveLeader,
    PromoteMember,
    RemoveMember,
)
from etcd_operator.reconcile.membership import member_name, ordinal, pvc_ordinal, quorum_without
from etcd_operator.reconcile.observed import EtcdMember, Observed

SCALING_OUT = "ScalingOut"
SCALING_IN = "ScalingIn"


@dataclass(frozen=True)
class ScalePlan:
    """The next scaling step.

    ``replicas``: the member count to render the StatefulSet, the bootstrap ConfigMap and the PDB
    with. ``steps``: etcd membership changes, in order, run before any Kubernetes write.
    ``events``: one per membership change, posted after the steps succeeded. ``deletes``: volume
    claims of removed members, deleted after the children are applied, and their
    ``delete_events``. ``reason``/``message``:
    the Progressing condition while scaling (``reason`` is ``None`` when there is nothing to do).
    ``blocked``: a membership change is needed but the engine cannot make it (Degraded).
    """

    replicas: int
    steps: tuple[MembershipAction, ...] = ()
    events: tuple[Event, ...] = ()
    deletes: tuple[DeletePVC, ...] = ()
    delete_events: tuple[Event, ...] = ()
    reason: str | None = None
    message: str = ""
    blocked: str | None = None


def learner_ready(member: EtcdMember) -> bool:
    """Started and healthy: worth asking etcd to promote (etcd has the last word)."""
    return member.learner and member.started and member.healthy


def unsupported_message(desired: EtcdCluster, members: int) -> str:
    return (
        f"the {desired.spec.engine.value} engine cannot change etcd membership yet "
        f'(etcd answers "not capable"): {members} member(s), spec asks for '
        f"{desired.spec.replicas}"
    )


def _names(members: list[EtcdMember]) -> str:
    return ", ".join(member_name(m) for m in members)


@dataclass(frozen=True)
class Scene:
    """What every scaling rule looks at: a formed cluster whose etcd members are regular
    (ordinals ``0..count-1``, no duplicates), its pods and claims by ordinal, the claims to
    delete, and whether membership changes are blocked."""

    desired: EtcdCluster
    observed: Observed
    settings: OperatorSettings
    blocked: bool
    by_ordinal: dict[int, EtcdMember]
    pods: frozenset[int]
    claims: dict[int, str]

    @property
    def cluster(self) -> str:
        return self.desired.name

    @property
    def count(self) -> int:
        return len(self.by_ordinal)

    @property
    def wanted(self) -> int:
        return self.desired.spec.replicas

    @property
    def top(self) -> EtcdMember:
        return self.by_ordinal[self.count - 1]

    def members(self, *, learners: bool) -> list[EtcdMember]:
        return [
            self.by_ordinal[i]
            for i in sorted(self.by_ordinal)
            if self.by_ordinal[i].learner == learners
        ]

    @property
    def stale(self) -> list[int]:
        """Claims beyond the members whose pod is gone and which the StatefulSet no longer
        covers."""
        sts = self.observed.statefulset
        return sorted(
            i
            for i in self.claims
            if i >= self.count and i not in self.pods and (sts is None or sts.replicas <= i)
        )

    def plan(
        self,
        replicas: int,
        reason: str | None,
        message: str,
        steps: tuple[MembershipAction, ...] = (),
        events: tuple[Event, ...] = (),
    ) -> ScalePlan:
        """A plan with this scene's claim deletions; blocked steps are not asked for."""
        deletes = tuple(DeletePVC(self.claims[i], self.desired.namespace) for i in self.stale)
        delete_events = tuple(
            Event(
                "Normal",
                "VolumeDeleted",
                f"deleted volume claim {self.claims[i]} of removed member "
                f"{naming.member_name(self.cluster, i)}",
            )
            for i in self.stale
        )
        if steps and self.blocked:
            return ScalePlan(
                replicas=self.count,
                deletes=deletes,
                delete_events=delete_events,
                reason=reason,
                message=message,
                blocked=unsupported_message(self.desired, self.count),
            )
        return ScalePlan(
            replicas=replicas,
            steps=steps,
            events=events,
            deletes=deletes,
            delete_events=delete_events,
            reason=reason,
            message=message,
        )


def _scale_in(scene: Scene) -> ScalePlan | None:
    """The highest ordinal goes first: a learner at once; a voter only if the remaining voters
    are a healthy quorum, the leader after handing over leadership."""
    count, wanted, top = scene.count, scene.wanted, scene.top
    if not (wanted < count and count > 1):
        return None
    top_name = member_name(top)
    progress = f"removing member {top_name} ({count} members, {wanted} desired)"
    if top.learner:
        return scene.plan(
            count - 1,
            SCALING_IN,
            progress,
            (RemoveMember(top.id, top_name),),
            (Event("Normal", "MemberRemoved", f"removed learner {top_name} from etcd"),),
        )
    healthy, remaining, need = quorum_without(scene.members(learners=False), top.id)
    assert scene.observed.etcd is not None
    if scene.observed.etcd.leader is None:
        return scene.plan(count, SCALING_IN, f"{progress}: waiting for a leader")
    if healthy < need:
        return scene.plan(
            count,
            SCALING_IN,
            f"{progress}: waiting, the remaining voting members would be "
            f"{healthy} healthy of {remaining}, {need} needed",
        )
    steps: tuple[MembershipAction, ...] = ()
    events: tuple[Event, ...] = ()
    if top.leader:
        heir = next(v for v in scene.members(learners=False) if v.id != top.id and v.healthy)
        steps += (MoveLeader(top.id, heir.id, member_name(heir)),)
        events += (
            Event(
                "Normal",
                "LeaderMoved",
                f"moved leadership from {top_name} to {member_name(heir)} "
                f"before removing {top_name}",
            ),
        )
    steps += (RemoveMember(top.id, top_name),)
    events += (Event("Normal", "MemberRemoved", f"removed member {top_name} from etcd"),)
    return scene.plan(count - 1, SCALING_IN, progress, steps, events)


def _promote(scene: Scene) -> ScalePlan | None:
    """A pending learner: promote it once it is ready; nothing else is added meanwhile."""
    learners = scene.members(learners=True)
    if not learners:
        return None
    learner = learners[0]
    name = member_name(learner)
    if learner_ready(learner):
        return scene.plan(
            scene.count,
            SCALING_OUT,
            f"promoting learner {name} once it has caught up with the leader",
            (PromoteMember(learner.id, name),),
        )
    return scene.plan(scene.count, SCALING_OUT, f"waiting for learner {name} to start and catch up")


def _kubernetes_tail(scene: Scene) -> ScalePlan | None:
    """The StatefulSet still has to follow an earlier membership step."""
    sts, count = scene.observed.statefulset, scene.count
    if sts is not None and sts.replicas < count:
        starting = naming.member_name(scene.cluster, count - 1)
        return scene.plan(count, SCALING_OUT, f"starting member {starting}")
    beyond = sorted(i for i in scene.pods if i >= count)
    if (sts is not None and sts.replicas > count) or beyond:
        name = naming.member_name(scene.cluster, beyond[-1] if beyond else count)
        return scene.plan(count, SCALING_IN, f"stopping removed member {name}")
    return None


def _scale_out(scene: Scene) -> ScalePlan | None:
    """Add the next ordinal as a learner once every member is healthy, there is a leader and
    no claim of a removed member is left at that ordinal."""
    count, wanted = scene.count, scene.wanted
    if wanted <= count:
        return None
    name = naming.member_name(scene.cluster, count)
    progress = f"adding member {name} ({count} members, {wanted} desired)"
    if count in scene.claims:
        return scene.plan(
            count,
            SCALING_OUT,
            f"{progress}: waiting for the old volume claim {scene.claims[count]} to be deleted",
        )
    unhealthy = [m for m in scene.by_ordinal.values() if not m.healthy]
    if unhealthy:
        return scene.plan(
            count,
            SCALING_OUT,
            f"{progress}: waiting for every member to be healthy ({_names(unhealthy)} not)",
        )
    assert scene.observed.etcd is not None
    if scene.observed.etcd.leader is None:
        return scene.plan(count, SCALING_OUT, f"{progress}: waiting for a leader")
    peer = naming.peer_url(
        scene.cluster,
        scene.desired.namespace,
        count,
        scene.settings.cluster_domain,
        secure=tls.peer_secure(scene.desired),
    )
    return scene.plan(
        count + 1,
        SCALING_OUT,
        progress,
        (AddMember(name, peer),),
        (Event("Normal", "MemberAdded", f"added {name} to etcd as a learner ({peer})"),),
    )


def _claims_left(scene: Scene) -> ScalePlan | None:
    stale = scene.stale
    if not stale:
        return None
    name = naming.member_name(scene.cluster, stale[0])
    return scene.plan(
        scene.count, SCALING_IN, f"deleting the volume claim of removed member {name}"
    )


RULES = (_scale_in, _promote, _kubernetes_tail, _scale_out, _claims_left)
"""The scaling rules in the order the module docstring gives; the first that applies wins."""


def regular_members(cluster: str, observed: Observed) -> dict[int, EtcdMember] | None:
    """etcd's members by ordinal, or ``None`` when the membership is irregular (a gap, a
    duplicate, a foreign name) or unknown."""
    if observed.etcd is None:
        return None
    by_ordinal: dict[int, EtcdMember] = {}
    for m in observed.etcd.members:
        index = ordinal(cluster, member_name(m))
        if index is None or index in by_ordinal:
            return None
        by_ordinal[index] = m
    if not by_ordinal or set(by_ordinal) != set(range(len(by_ordinal))):
        return None
    return by_ordinal


def last_rendered(desired: EtcdCluster, observed: Observed) -> int:
    """The member count the children were last rendered with: the bootstrap ConfigMap's (not
    the StatefulSet's replicas, which may have been changed by hand: that drift is put back),
    else the StatefulSet's, else the spec's."""
    if observed.rendered_members is not None:
        return observed.rendered_members
    sts = observed.statefulset
    return sts.replicas if sts is not None else desired.spec.replicas


def decide(
    desired: EtcdCluster, observed: Observed, settings: OperatorSettings, *, blocked: bool
) -> ScalePlan:
    """The next step for a cluster that has formed (bootstrap state ``existing``)."""
    cluster = desired.name
    by_ordinal = regular_members(cluster, observed)
    if by_ordinal is None:
        # No count to decide on: keep the membership last rendered. A learner the replacement
        # step added into a gap is still promoted here (promotions are this step's), or a
        # second gap (a cluster growing back after a lost quorum) would wait for it forever.
        rendered = last_rendered(desired, observed)
        etcd = observed.etcd
        learner = next((m for m in etcd.learners if learner_ready(m)), None) if etcd else None
        if learner is None or blocked:
            return ScalePlan(replicas=rendered)
        name = member_name(learner)
        return ScalePlan(
            replicas=rendered,
            steps=(PromoteMember(learner.id, name),),
            reason=SCALING_OUT,
            message=f"promoting learner {name} once it has caught up with the leader",
        )
    scene = Scene(
        desired=desired,
        observed=observed,
        settings=settings,
        blocked=blocked,
        by_ordinal=by_ordinal,
        pods=frozenset(i for p in observed.pods if (i := ordinal(cluster, p.name)) is not None),
        claims={i: n for n in observed.pvcs if (i := pvc_ordinal(cluster, n)) is not None},
    )
    for rule in RULES:
        found = rule(scene)
        if found is not None:
            return found
    return scene.plan(scene.count, None, "")
