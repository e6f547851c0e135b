"""Majority maths: the commit index of a voter set and the result of a vote."""

from __future__ import annotations

from pyetcd.raft.quorum import MAX_INDEX, VoteResult, committed_index, vote_result


def test_the_commit_index_is_the_highest_index_held_by_a_majority() -> None:
    acked = {1: 5, 2: 3, 3: 1}
    assert committed_index({1, 2, 3}, acked.get) == 3
    acked5 = {1: 9, 2: 9, 3: 4, 4: 2, 5: 7}
    assert committed_index(set(acked5), acked5.get) == 7


def test_an_even_voter_set_needs_more_than_half() -> None:
    acked = {1: 5, 2: 4, 3: 3, 4: 2}
    assert committed_index(set(acked), acked.get) == 3


def test_a_voter_without_progress_counts_as_holding_nothing() -> None:
    acked = {1: 5}
    assert committed_index({1, 2, 3}, acked.get) == 0


def test_an_empty_configuration_commits_everything() -> None:
    assert committed_index(set(), lambda i: None) == MAX_INDEX
    assert vote_result(set(), {}) == VoteResult.WON


def test_a_vote_is_won_lost_or_pending() -> None:
    voters = {1, 2, 3}
    assert vote_result(voters, {1: True}) == VoteResult.PENDING
    assert vote_result(voters, {1: True, 2: True}) == VoteResult.WON
    assert vote_result(voters, {1: True, 2: False}) == VoteResult.PENDING
    assert vote_result(voters, {1: False, 2: False}) == VoteResult.LOST


def test_votes_of_non_voters_are_ignored() -> None:
    # A learner (4) or a removed member (5) granting cannot make up a quorum.
    assert vote_result({1, 2, 3}, {1: True, 4: True, 5: True}) == VoteResult.PENDING
