"""Majority quorum maths: the commit index a voter set agrees on, and the outcome of a vote.

Only single (non-joint) majority configurations exist here, since etcd changes membership one
member at a time with ConfChange v1. Learners are never part of a ``voters`` set, so they never
count towards a commit or an election.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping

# An empty voter set agrees on everything: this keeps ``min`` over configurations well defined
# (etcd-io/raft returns math.MaxUint64 for the same reason).
MAX_INDEX = (1 << 64) - 1


class VoteResult(enum.Enum):
    """The outcome of a vote (or of a ReadIndex acknowledgement round)."""

    PENDING = "pending"
    LOST = "lost"
    WON = "won"


def majority(n: int) -> int:
    """The smallest number of voters out of ``n`` that forms a quorum."""
    return n // 2 + 1


def committed_index(voters: Collection[int], acked: Callable[[int], int | None]) -> int:
    """The largest index acknowledged by a majority of ``voters``.

    ``acked(id)`` is the highest index known durable on voter ``id`` (None if unknown, which counts
    as 0). Sorting the acknowledged indexes in descending order, the quorum-th one is durable on at
    least a quorum of voters, and no larger index is.
    """
    if not voters:
        return MAX_INDEX
    indexes = sorted((acked(v) or 0 for v in voters), reverse=True)
    return indexes[majority(len(voters)) - 1]


def vote_result(voters: Collection[int], votes: Mapping[int, bool]) -> VoteResult:
    """WON once a quorum granted, LOST once a quorum can no longer be reached, else PENDING.

    Votes from ids outside ``voters`` (learners, removed members) are ignored.
    """
    if not voters:
        # An empty configuration wins every vote, mirroring committed_index above.
        return VoteResult.WON
    granted = rejected = 0
    for v in voters:
        vote = votes.get(v)
        if vote is None:
            continue
        if vote:
            granted += 1
        else:
            rejected += 1
    q = majority(len(voters))
    if granted >= q:
        return VoteResult.WON
    missing = len(voters) - granted - rejected
    if granted + missing >= q:
        return VoteResult.PENDING
    return VoteResult.LOST
