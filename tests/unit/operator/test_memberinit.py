"""The member-init container's decisions: the lost-data check and the once-per-token recovery."""

from __future__ import annotations

from pathlib import Path

import pytest
from etcd_operator.components.auth import RootCredentials
from etcd_operator.memberinit import (
    RecoveryError,
    decide,
    force_new_cluster,
    forced_for,
    has_wal,
    marker_token,
    peer_endpoints,
    root_credentials,
    write_marker,
)
from pyetcd.client import Member

PEER = "http://demo-1.demo-peer.ns.svc.cluster.local:2380"
DATA = Path("/var/lib/etcd/data")


def started(member_id: int, peer: str) -> Member:
    return Member(member_id, "demo-1", (peer,), ("http://demo-1:2379",), False)


def test_a_data_dir_with_a_wal_starts(tmp_path: Path) -> None:
    assert not has_wal(tmp_path)
    (tmp_path / "member" / "wal").mkdir(parents=True)
    assert not has_wal(tmp_path)
    (tmp_path / "member" / "wal" / "0000000000000000-0000000000000000.wal").write_bytes(b"")
    assert has_wal(tmp_path)
    assert decide(wal=True, members=[started(1, PEER)], peer_url=PEER, data_dir=DATA).start


def test_an_empty_data_dir_of_a_started_member_is_refused_with_etcds_words() -> None:
    verdict = decide(wal=False, members=[started(0xABC, PEER)], peer_url=PEER, data_dir=DATA)
    assert not verdict.start
    assert verdict.message.startswith("member abc has already been bootstrapped")


def test_a_new_member_or_no_answer_starts() -> None:
    added = Member(0xABC, "", (PEER,), (), True)
    assert decide(wal=False, members=[added], peer_url=PEER, data_dir=DATA).start
    assert decide(wal=False, members=None, peer_url=PEER, data_dir=DATA).start
    other = started(0xDEF, "http://demo-0.demo-peer.ns.svc.cluster.local:2380")
    assert decide(wal=False, members=[other], peer_url=PEER, data_dir=DATA).start


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("demo-1:abc", "abc"),
        ("demo-1:a:b", "a:b"),
        ("demo-2:abc", None),
        ("demo-1:", None),
        ("demo-1", None),
        ("", None),
        (None, None),
    ],
)
def test_the_recovery_runs_only_on_the_pod_it_names(value: str | None, token: str | None) -> None:
    assert forced_for(value, "demo-1") == token


def test_the_marker_is_written_durably_and_read_back(tmp_path: Path) -> None:
    marker = tmp_path / "force-new-cluster.done"
    assert marker_token(marker) is None
    write_marker(marker, "t1")
    assert marker_token(marker) == "t1"
    assert not marker.with_name(marker.name + ".tmp").exists()


def test_a_token_done_before_is_not_done_again(tmp_path: Path) -> None:
    marker = tmp_path / "force-new-cluster.done"
    write_marker(marker, "t1")
    # No WAL at all: had it run again, it would have failed.
    assert "done before" in force_new_cluster(tmp_path / "data", marker, "t1")


def test_a_survivor_without_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecoveryError, match="no WAL"):
        force_new_cluster(tmp_path / "data", tmp_path / "m", "t2")
    assert marker_token(tmp_path / "m") is None


def test_the_other_members_are_asked_directly_from_the_initial_cluster() -> None:
    initial = (
        "demo-0=http://demo-0.demo-peer.ns.svc.cluster.local:2380,"
        "demo-1=http://demo-1.demo-peer.ns.svc.cluster.local:2380,"
        "demo-2=http://demo-2.demo-peer.ns.svc.cluster.local:2380"
    )
    assert peer_endpoints(initial, "demo-1", 2379) == [
        "http://demo-0.demo-peer.ns.svc.cluster.local:2379",
        "http://demo-2.demo-peer.ns.svc.cluster.local:2379",
    ]
    assert peer_endpoints("", "demo-1", 2379) == []


def test_the_client_scheme_is_the_client_planes_whatever_the_peer_urls_say() -> None:
    # Peer TLS alone: https peer URLs, plaintext client port (and the other way round).
    initial = "a=https://a.p.ns.svc:2380,b=https://b.p.ns.svc:2380"
    assert peer_endpoints(initial, "a", 2379) == ["http://b.p.ns.svc:2379"]
    plain = "a=http://a.p.ns.svc:2380,b=http://b.p.ns.svc:2380"
    assert peer_endpoints(plain, "a", 2379, "https") == ["https://b.p.ns.svc:2379"]


def test_roots_credentials_come_from_the_environment_only_when_both_are_set() -> None:
    both = {"ETCDCTL_USER": "root", "ETCDCTL_PASSWORD": "pw"}
    assert root_credentials(both) == RootCredentials("root", "pw")
    assert root_credentials({"ETCDCTL_USER": "root"}) is None
    assert root_credentials({"ETCDCTL_USER": "root", "ETCDCTL_PASSWORD": ""}) is None
    assert root_credentials({}) is None
