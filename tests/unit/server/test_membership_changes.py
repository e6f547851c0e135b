"""Membership changes as etcd checks them: at apply time (ValidateConfigurationChange) and before
proposing (--strict-reconfig-check: enough started members)."""

from __future__ import annotations

import pytest
from pyetcd.server.membership import (
    MAX_LEARNERS,
    Member,
    MembershipError,
    change_context,
    promote_context,
    ready_to_add_voter,
    ready_to_promote,
    ready_to_remove_voter,
    validate_change,
)

A = Member(1, ("http://a:2380",), "a", ("http://a:2379",))
B = Member(2, ("http://b:2380",), "b", ("http://b:2379",))
C = Member(3, ("http://c:2380",), "c", ("http://c:2379",))
LEARNER = Member(4, ("http://l:2380",), is_learner=True)
UNSTARTED = Member(5, ("http://u:2380",))


def members(*ms: Member) -> dict[int, Member]:
    return {m.id: m for m in ms}


def refused(
    ms: dict[int, Member],
    kind: str,
    node_id: int,
    context: Member | None = None,
    *,
    promote: bool = False,
    removed: tuple[int, ...] = (),
) -> str | None:
    try:
        validate_change(
            ms,
            removed,
            change_type=kind,
            node_id=node_id,
            context=context,
            is_promote=promote,
        )
    except MembershipError as exc:
        return exc.reason
    return None


def test_adding_a_new_member_with_new_urls_is_accepted() -> None:
    new = Member(9, ("http://n:2380",))
    assert refused(members(A, B), "add", new.id, new) is None
    assert refused(members(A, B), "add_learner", new.id, new) is None


def test_an_existing_id_or_a_taken_peer_url_is_refused() -> None:
    assert refused(members(A, B), "add", A.id, A) == "member ID already exist"
    taken = Member(9, ("http://z:2380", "http://b:2380"))
    assert refused(members(A, B), "add", taken.id, taken) == "Peer URLs already exists"


def test_a_removed_id_never_comes_back() -> None:
    again = Member(7, ("http://n:2380",))
    assert refused(members(A), "add", 7, again, removed=(7,)) == "member already removed"
    assert refused(members(A), "remove", 7, removed=(7,)) == "member already removed"


def test_at_most_one_learner() -> None:
    assert MAX_LEARNERS == 1
    second = Member(9, ("http://n:2380",), is_learner=True)
    assert (
        refused(members(A, LEARNER), "add_learner", second.id, second)
        == "too many learner members in cluster"
    )
    # A voter may still be added next to the learner.
    voter = Member(10, ("http://v:2380",))
    assert refused(members(A, LEARNER), "add", voter.id, voter) is None


def test_only_an_existing_learner_can_be_promoted() -> None:
    assert refused(members(A, LEARNER), "add", LEARNER.id, promote=True) is None
    assert (
        refused(members(A, LEARNER), "add", A.id, promote=True)
        == "can only promote a learner member"
    )
    assert refused(members(A), "add", 42, promote=True) == "member not found"


def test_remove_and_update_need_an_existing_member() -> None:
    assert refused(members(A, B), "remove", B.id) is None
    assert refused(members(A, B), "remove", 42) == "member not found"
    moved = Member(B.id, ("http://b2:2380",))
    assert refused(members(A, B), "update", B.id, moved) is None
    assert refused(members(A, B), "update", 42, moved) == "member not found"
    clash = Member(B.id, ("http://a:2380",))
    assert refused(members(A, B), "update", B.id, clash) == "Peer URLs already exists"


def test_promotion_context_round_trips() -> None:
    member, is_promote = change_context(promote_context(LEARNER))
    assert is_promote
    assert member is not None and member.id == LEARNER.id and not member.is_learner
    member, is_promote = change_context(A.to_json().encode())
    assert member == A and not is_promote
    assert change_context(b"") == (None, False)
    assert change_context(b"not json") == (None, False)


@pytest.mark.parametrize(
    ("ms", "ready"),
    [
        # One started member may always grow to two.
        (members(A), True),
        # Two started of three after the add: a quorum.
        (members(A, B), True),
        # One started, one never started: a third voter would leave 1 of 3 started.
        (members(A, UNSTARTED), False),
        (members(A, B, C, UNSTARTED), True),
        # Learners do not count.
        (members(A, LEARNER), True),
    ],
)
def test_ready_to_add_voter(ms: dict[int, Member], ready: bool) -> None:
    assert ready_to_add_voter(ms) is ready


def test_ready_to_remove_and_promote() -> None:
    assert ready_to_remove_voter(members(A, B, C), C.id)
    assert ready_to_remove_voter(members(A, B, UNSTARTED), UNSTARTED.id)
    # Removing a started member of {A, B, unstarted} leaves 1 started of 2: no quorum.
    assert not ready_to_remove_voter(members(A, B, UNSTARTED), B.id)
    assert ready_to_promote(members(A, B, LEARNER), LEARNER.id)
    assert not ready_to_promote(members(A, UNSTARTED, Member(6, ("x",)), LEARNER), LEARNER.id)
