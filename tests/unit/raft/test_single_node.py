"""The one-voter Raft: entries are committed once persisted, and handed out exactly once."""

from pyetcd.raft.single_node import HardState, SingleNodeRaft


def new_node(last_index: int = 0, applied: int = 0, term: int = 1) -> SingleNodeRaft:
    return SingleNodeRaft(
        7, HardState(term=term, vote=0, commit=last_index), last_index, term, applied
    )


def test_campaign_starts_a_new_term_with_an_empty_entry() -> None:
    node = new_node(last_index=3, applied=3, term=2)
    node.campaign()
    assert node.is_leader and node.term == 3
    rd = node.ready()
    assert [(e.Index, e.Term, e.Data) for e in rd.entries] == [(4, 3, b"")]
    assert rd.must_sync
    assert rd.hard_state == HardState(term=3, vote=7, commit=3)


def test_an_entry_is_committed_only_after_it_is_persisted() -> None:
    node = new_node()
    node.campaign()
    node.advance(node.ready())
    idx = node.propose(b"put")
    rd = node.ready()
    assert [e.Index for e in rd.entries] == [idx]
    assert [e.Index for e in rd.committed_entries] == [1]  # the campaign's empty entry
    assert node.commit == 1
    node.advance(rd)
    assert node.commit == idx
    rd2 = node.ready()
    assert rd2.entries == []
    assert [e.Data for e in rd2.committed_entries] == [b"put"]
    assert not rd2.must_sync  # only the commit index moved
    node.advance(rd2)
    assert node.applied == idx
    assert not node.has_ready()


def test_proposals_during_a_persist_share_the_next_ready() -> None:
    node = new_node()
    node.campaign()
    rd = node.ready()
    node.propose(b"a")  # arrives while rd is being persisted
    node.propose(b"b")
    node.advance(rd)
    rd2 = node.ready()
    assert [e.Data for e in rd2.entries] == [b"a", b"b"]


def test_restart_does_not_hand_out_already_applied_entries() -> None:
    node = new_node(last_index=10, applied=10, term=4)
    node.campaign()
    rd = node.ready()
    assert rd.committed_entries == []
    assert rd.entries[0].Index == 11
