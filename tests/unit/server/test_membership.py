"""Member IDs, cluster IDs and member JSON, checked against bytes taken from real etcd."""

from __future__ import annotations

import pytest
from pyetcd.server.config import ConfigError, ServerConfig, parse_initial_cluster, parse_url
from pyetcd.server.membership import (
    MEMBERS_BUCKET,
    MEMBERS_REMOVED_BUCKET,
    Cluster,
    Member,
    compute_cluster_id,
    compute_member_id,
    go_json_string,
    member_key,
    parse_member_key,
)

# etcd's own fixture (reference §3.5): member infra1 of token "etcd-cluster-1".
FIXTURE_JSON = (
    '{"id":9372538179322589801,"peerURLs":["http://127.0.0.1:12380"],"name":"infra1",'
    '"clientURLs":["http://127.0.0.1:2379"]}'
)


def test_member_id_of_etcd_fixture() -> None:
    member_id = compute_member_id(["http://127.0.0.1:12380"], "etcd-cluster-1")
    assert member_id == 9372538179322589801
    assert member_key(member_id) == b"8211f1d0f64f3269"
    assert parse_member_key(b"8211f1d0f64f3269") == member_id


def test_member_id_and_cluster_id_seen_from_etcd_3_4() -> None:
    # Read from a real etcd 3.4.23 (`member list -w json`) started with
    # --initial-cluster s1=http://127.0.0.1:23801 --initial-cluster-token tok.
    member_id = compute_member_id([parse_url("http://127.0.0.1:23801")], "tok")
    assert member_id == 4627081221937520288
    assert compute_cluster_id([member_id]) == 2478302587001825083


def test_peer_urls_are_sorted_before_hashing() -> None:
    a = compute_member_id(["http://b:2380", "http://a:2380"], "t")
    b = compute_member_id(["http://a:2380", "http://b:2380"], "t")
    assert a == b
    assert compute_member_id(["http://a:2380http://b:2380"], "t") == a  # plain concatenation


def test_runtime_added_member_mixes_in_the_time() -> None:
    urls = ["http://10.0.0.4:2380"]
    assert compute_member_id(urls, "tok", 1700000000) != compute_member_id(urls, "tok")
    assert compute_member_id(urls, "tok", 1700000000) == compute_member_id(
        ["http://10.0.0.4:2380"], "tok1700000000"
    )


def test_cluster_id_ignores_member_order() -> None:
    assert compute_cluster_id([3, 1, 2]) == compute_cluster_id([1, 2, 3])
    assert compute_cluster_id([1, 2]) != compute_cluster_id([1, 3])


def test_member_json_matches_etcd_fixture() -> None:
    m = Member.new("infra1", ["http://127.0.0.1:12380"], "etcd-cluster-1").with_attributes(
        "infra1", ["http://127.0.0.1:2379"]
    )
    assert m.to_json() == FIXTURE_JSON
    assert Member.from_json(FIXTURE_JSON.encode()) == m


@pytest.mark.parametrize(
    ("member", "text"),
    [
        (Member(1, ("http://a:1",)), '{"id":1,"peerURLs":["http://a:1"]}'),
        (Member(2, ()), '{"id":2,"peerURLs":null}'),
        (
            Member(3, ("http://a:1", "http://b:1"), is_learner=True),
            '{"id":3,"peerURLs":["http://a:1","http://b:1"],"isLearner":true}',
        ),
        (
            Member(4, ("http://a:1",), name="n", is_learner=True),
            '{"id":4,"peerURLs":["http://a:1"],"isLearner":true,"name":"n"}',
        ),
        (
            Member(18446744073709551615, ("http://a:1",), client_urls=("http://c:2",)),
            '{"id":18446744073709551615,"peerURLs":["http://a:1"],"clientURLs":["http://c:2"]}',
        ),
    ],
)
def test_member_json_field_order_and_omitempty(member: Member, text: str) -> None:
    assert member.to_json() == text
    assert Member.from_json(text) == member


def test_go_json_escapes_like_encoding_json() -> None:
    assert (
        go_json_string('a<b>&"\\\n\t\x01\u2028é')
        == '"a\\u003cb\\u003e\\u0026\\"\\\\\\n\\t\\u0001\\u2028é"'
    )


def test_cluster_from_initial_cluster() -> None:
    config = ServerConfig(
        name="m2",
        initial_cluster=parse_initial_cluster(
            "m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380,m2=http://10.0.0.2:12380"
        ),
        initial_advertise_peer_urls=(
            parse_url("http://10.0.0.2:12380"),
            parse_url("http://10.0.0.2:2380"),
        ),
        initial_cluster_token="tok",
    )
    config.validate()
    cluster = Cluster.from_initial_cluster(config)
    m2 = cluster.member_by_name("m2")
    assert m2 is not None
    assert m2.peer_urls == ("http://10.0.0.2:12380", "http://10.0.0.2:2380")
    assert m2.id == compute_member_id(["http://10.0.0.2:2380", "http://10.0.0.2:12380"], "tok")
    assert cluster.cluster_id == compute_cluster_id(cluster.members)
    assert [m.id for m in cluster.members_in_order()] == sorted(cluster.members)
    assert cluster.voter_ids() == sorted(cluster.members)
    assert cluster.learner_ids() == []
    assert cluster.member_by_name("nope") is None


def test_identical_members_are_refused() -> None:
    with pytest.raises(ConfigError, match="member exists with identical ID"):
        Cluster.from_urls_map({"a": ["http://x:1"], "b": ["http://x:1"]}, "tok")


def test_backend_records_and_removal() -> None:
    cluster = Cluster.from_urls_map({"a": ["http://x:1"], "b": ["http://y:1"]}, "tok")
    b = cluster.member_by_name("b")
    assert b is not None
    cluster.remove(b.id)
    assert cluster.is_removed(b.id)
    rows = cluster.backend_records()
    a = cluster.member_by_name("a")
    assert a is not None
    assert rows == [
        (MEMBERS_BUCKET, member_key(a.id), a.to_json().encode()),
        (MEMBERS_REMOVED_BUCKET, member_key(b.id), b"removed"),
    ]
