"""One reconcile pass as an ordered pipeline of small steps, in the style of etcd-druid. Pure.

A step is a function ``(desired, observed, settings, decided) -> StepResult``: it reads the
desired and observed state and what the earlier steps decided (``Decided``), and returns its
actions, what it decided for the steps after it and for the conditions, and whether the pass
stops there. Each concern is one module with one step (bootstrap, scaling, children, volumes;
replacement, rollout, backup schedule and defrag will each be one more), listed once in
``STEPS``: a feature adds a module and a line, not an edit of a central function.

The actions of all steps run in the order the steps come in: etcd membership changes first,
then the children, then the deletion of removed members' volume claims. The executor stops at
the first failure, so no Kubernetes write ever runs ahead of the membership change it depends
on. Running the pipeline again on the world those actions produce yields no more changes: the
pass is idempotent, which is what lets it run on every event and periodically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components.bootstrap import BootstrapState
from etcd_operator.reconcile.actions import Action, AnalyzeKeyspace, Event
from etcd_operator.reconcile.observed import ChildKey, Observed


@dataclass(frozen=True)
class Progress:
    """A step's report for the Progressing condition: work under way (``active``) or held up."""

    reason: str
    message: str
    active: bool = True


@dataclass(frozen=True)
class Decided:
    """What the steps of one pass decided, for the steps after them and for the report.

    ``bootstrap``: the bootstrap state the children are rendered with; ``has_formed``: the
    cluster formed at some point (state ``existing``); ``flipped``: this pass switches it to
    ``existing``. ``replicas``: the member count to render with while scaling (``None``:
    ``spec.replicas``). ``membership_blocked``: membership changes are not to be asked for (etcd
    refused them as "not capable", in this pass or this generation); ``blocked``: why a needed
    change cannot be made. ``progress``: the Progressing report of the step that has work under
    way, in step order (the first one wins). ``creating``: no child existed. ``updated``: existing
    children the pass applies anew because we changed them; ``drifted``: those applied because
    someone else changed them (with the fields). ``rollout``: the pass changes what the members
    run (their pod template): a rollout starts or continues. ``force_new_cluster``: the
    survivor of a quorum-loss recovery under way (``<pod>:<token>``), rendered into the
    bootstrap ConfigMap; ``restore_for_recovery``: the token of a rebuild from a backup under
    way, likewise. ``recovering``: either is. ``hibernating``: ``replicas: 0``, the members are
    stopped (or being stopped) and keep their membership and volumes.
    """

    bootstrap: BootstrapState = BootstrapState.NEW
    has_formed: bool = False
    flipped: bool = False
    replicas: int | None = None
    membership_blocked: bool = False
    blocked: str | None = None
    progress: tuple[Progress, ...] = ()
    creating: bool = False
    updated: tuple[ChildKey, ...] = ()
    drifted: tuple[tuple[ChildKey, tuple[str, ...]], ...] = ()
    rollout: bool = False
    force_new_cluster: str | None = None
    restore_for_recovery: str | None = None
    hibernating: bool = False
    # Room for a step's own findings that only its own later step reads (e.g. the scale plan
    # that the volume cleanup step carries out after the children are applied).
    notes: tuple[tuple[str, object], ...] = field(default=())
    # What a step did in this pass that the report must say even after the world was looked at
    # again (the backup a step created: the status records it so that it is not created twice);
    # kept by ``Steps.seen_again``, unlike ``notes``.
    acted: tuple[tuple[str, object], ...] = field(default=())

    @property
    def recovering(self) -> bool:
        """A quorum-loss recovery is under way: the membership is its own until it ends."""
        return self.force_new_cluster is not None or self.restore_for_recovery is not None

    def note(self, key: str) -> object | None:
        for name, value in self.notes:
            if name == key:
                return value
        return None

    def last_note(self, key: str) -> object | None:
        """The latest note under ``key`` (a later step may supersede an earlier one's)."""
        for name, value in reversed(self.notes):
            if name == key:
                return value
        return None

    def acted_on(self, key: str) -> object | None:
        for name, value in self.acted:
            if name == key:
                return value
        return None


@dataclass(frozen=True)
class StepResult:
    """What one step returns: its actions (in order), its decisions, and whether the pass stops
    after it (``stop``; the pass still reports its status) or ends without a report
    (``silent``: a cluster being deleted has nothing to report to)."""

    actions: tuple[Action, ...] = ()
    decided: Decided | None = None
    stop: bool = False
    silent: bool = False


Step = Callable[[EtcdCluster, Observed, OperatorSettings, Decided], StepResult]


@dataclass(frozen=True)
class Steps:
    """The changes one pass makes, and what its report needs to know about them."""

    actions: tuple[Action, ...]
    decided: Decided

    @property
    def acted(self) -> bool:
        """The steps change etcd or Kubernetes (more than posting events, or handing a keyspace
        analysis to the runtime, which runs it after the pass)."""
        return any(not isinstance(a, Event | AnalyzeKeyspace) for a in self.actions)

    def seen_again(self, fresh: Steps | None) -> Steps:
        """These executed steps, with the decisions of the same pipeline run on a look at the
        world taken after they ran (what comes next: the next scaling step, a formed cluster);
        what only the executed pass knows (it created, flipped, applied) is kept."""
        if fresh is None:
            return self
        done = self.decided
        return Steps(
            self.actions,
            dataclasses.replace(
                fresh.decided,
                creating=done.creating,
                flipped=done.flipped,
                updated=done.updated,
                drifted=done.drifted,
                rollout=done.rollout,
                acted=done.acted,
            ),
        )


def run(
    steps: tuple[Step, ...],
    desired: EtcdCluster,
    observed: Observed,
    settings: OperatorSettings,
) -> Steps | None:
    """Run ``steps`` in order; ``None`` when a step ends the pass silently."""
    decided = Decided(creating=not observed.children)
    actions: list[Action] = []
    for step in steps:
        result = step(desired, observed, settings, decided)
        if result.silent:
            return None
        actions.extend(result.actions)
        if result.decided is not None:
            decided = result.decided
        if result.stop:
            break
    return Steps(tuple(actions), decided)


def with_progress(decided: Decided, progress: Progress) -> Decided:
    return dataclasses.replace(decided, progress=(*decided.progress, progress))
