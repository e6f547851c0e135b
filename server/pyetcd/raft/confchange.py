"""Single-step membership changes (ConfChange v1), as etcd's member APIs make them.

One member at a time: add a voter, add a learner, promote a learner (an AddNode for a learner),
remove a member. Changing one voter at a time keeps any old-configuration majority and any
new-configuration majority overlapping, so no joint consensus is needed (Raft thesis 4.1).
Joint consensus (ConfChangeV2) is not implemented: etcd does not use it.

Changes are computed on copies and returned as ``(Config, ProgressMap)``; the caller
(``Raft.switch_to_config``) installs them, so a rejected change leaves the tracker untouched.
Etcd-level rules (at most one learner, learner must be caught up before promotion,
--strict-reconfig-check) belong to the server, not here.
"""

from __future__ import annotations

from pyetcd.proto.raftpb import raft_pb2
from pyetcd.raft.tracker import Config, Progress, ProgressMap, ProgressTracker


class ConfChangeError(Exception):
    """The change is invalid for the current configuration."""


class Changer:
    """Applies membership changes to a copy of a tracker's configuration."""

    def __init__(self, tracker: ProgressTracker, last_index: int) -> None:
        self.tracker = tracker
        # New members start probing at the leader's last index.
        self.last_index = last_index

    def _copy(self) -> tuple[Config, ProgressMap]:
        return self.tracker.config.clone(), dict(self.tracker.progress)

    def simple(self, cc: raft_pb2.ConfChange) -> tuple[Config, ProgressMap]:
        """Apply one ConfChange; at most one voter is added or removed."""
        cfg, prs = self._copy()
        self._apply(cfg, prs, cc.type, cc.node_id)
        if not cfg.voters:
            raise ConfChangeError("removed all voters")
        changed = cfg.voters ^ self.tracker.config.voters
        if len(changed) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        _check_invariants(cfg, prs)
        return cfg, prs

    def _apply(
        self,
        cfg: Config,
        prs: ProgressMap,
        cc_type: raft_pb2.ConfChangeType.ValueType,
        node_id: int,
    ) -> None:
        if node_id == 0:
            # etcd-io/raft ignores changes for node 0 (used to write a no-op conf entry).
            return
        if cc_type == raft_pb2.ConfChangeAddNode:
            self._make_voter(cfg, prs, node_id)
        elif cc_type == raft_pb2.ConfChangeAddLearnerNode:
            self._make_learner(cfg, prs, node_id)
        elif cc_type == raft_pb2.ConfChangeRemoveNode:
            cfg.voters.discard(node_id)
            cfg.learners.discard(node_id)
            prs.pop(node_id, None)
        elif cc_type == raft_pb2.ConfChangeUpdateNode:
            # Only the member's metadata (carried in the context) changed; Raft has nothing to do.
            pass
        else:
            raise ConfChangeError(f"unexpected conf change type {cc_type}")

    def _init_progress(self, prs: ProgressMap, node_id: int, is_learner: bool) -> None:
        prs[node_id] = Progress(
            match=0,
            next=max(self.last_index, 1),
            inflights=self.tracker.new_inflights(),
            is_learner=is_learner,
            # A new member counts as active, or check-quorum could step the leader down before
            # the member had a chance to answer.
            recent_active=True,
        )

    def _make_voter(self, cfg: Config, prs: ProgressMap, node_id: int) -> None:
        pr = prs.get(node_id)
        if pr is None:
            self._init_progress(prs, node_id, is_learner=False)
        else:
            # Promotion keeps what the leader knows about the learner's log.
            pr = pr.copy()
            pr.is_learner = False
            prs[node_id] = pr
        cfg.learners.discard(node_id)
        cfg.voters.add(node_id)

    def _make_learner(self, cfg: Config, prs: ProgressMap, node_id: int) -> None:
        pr = prs.get(node_id)
        if pr is None:
            self._init_progress(prs, node_id, is_learner=True)
        else:
            if pr.is_learner:
                return
            pr = pr.copy()
            pr.is_learner = True
            prs[node_id] = pr
        cfg.voters.discard(node_id)
        cfg.learners.add(node_id)


def restore(
    tracker: ProgressTracker, last_index: int, cs: raft_pb2.ConfState
) -> tuple[Config, ProgressMap]:
    """Build the configuration a ConfState describes (from a snapshot or at start)."""
    if len(cs.voters_outgoing) or len(cs.learners_next) or cs.auto_leave:
        raise ConfChangeError("joint configurations are not supported")
    changer = Changer(tracker, last_index)
    cfg = Config()
    prs: ProgressMap = {}
    for v in cs.voters:
        changer._make_voter(cfg, prs, v)
    for learner in cs.learners:
        if learner in cfg.voters:
            raise ConfChangeError(f"{learner} is both a voter and a learner")
        changer._make_learner(cfg, prs, learner)
    _check_invariants(cfg, prs)
    return cfg, prs


def _check_invariants(cfg: Config, prs: ProgressMap) -> None:
    for i in cfg.voters | cfg.learners:
        if i not in prs:
            raise ConfChangeError(f"no progress for {i}")
    for i in cfg.learners:
        if i in cfg.voters:
            raise ConfChangeError(f"{i} is in learners and voters")
        if not prs[i].is_learner:
            raise ConfChangeError(f"{i} is in learners, but is not marked as learner")
    for i in cfg.voters:
        if prs[i].is_learner:
            raise ConfChangeError(f"{i} is in voters, but is marked as learner")
    if set(prs) != cfg.voters | cfg.learners:
        raise ConfChangeError("progress for members outside the configuration")
