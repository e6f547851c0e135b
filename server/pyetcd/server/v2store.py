"""etcd's v2 store as saved in .snap files, reduced to what membership needs.

etcd 3.4 and 3.5 keep the authoritative member list in the v2 store (``/0/members/<hex id>/
raftAttributes``, ``/0/removed_members/<hex id>``) and persist it as JSON in every Raft snapshot.
Writing it keeps pyetcd's data dirs bootable by upstream etcd; reading it lets pyetcd start from a
data dir that ``etcdctl snapshot restore`` (3.4) wrote, whose backend still lists the old members.
"""

from __future__ import annotations

import json
from typing import Any

from pyetcd.server.membership import Cluster, Member, go_json_string

V2_CLUSTER_PREFIX = "/0"
V2_KEYS_PREFIX = "/1"
V2_STORE_VERSION = 2  # v2store's defaultVersion
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # time.Time{} (v2store.Permanent) in Go JSON


def _v2_node(path: str, index: int, value: str = "", children: dict[str, str] | None = None) -> str:
    """One `v2store.node` as Go's encoding/json writes it (fields in declaration order, map keys
    sorted). A directory has a (possibly empty) `Children` object, a key has `null`."""
    kids = (
        "null"
        if children is None
        else "{" + ",".join(f"{go_json_string(k)}:{children[k]}" for k in sorted(children)) + "}"
    )
    return (
        f'{{"Path":{go_json_string(path)},"CreatedIndex":{index},"ModifiedIndex":{index},'
        f'"ExpireTime":"{_GO_ZERO_TIME}","Value":{go_json_string(value)},"Children":{kids}}}'
    )


def raft_attributes_json(member: Member) -> str:
    """`json.Marshal(m.RaftAttributes)`: `{"peerURLs":[...]}` (+ `"isLearner":true`)."""
    urls = "[" + ",".join(go_json_string(u) for u in member.peer_urls) + "]"
    out = '{"peerURLs":' + (urls if member.peer_urls else "null")
    return out + (',"isLearner":true}' if member.is_learner else "}")


def v2_store_json(cluster: Cluster) -> bytes:
    """The v2 store etcd's restore saves in the `.snap` file: `v2store.New("/0", "/1")`, then
    `Create("/0/members/<hex id>/raftAttributes", ...)` for each member in ID order.

    Each Create takes the next store index and the directories it creates on the way get that
    same index, so member i (1-based) has its directory and key at index i and `/0/members`
    has index 1. `WatcherHub` (event history) and `Stats` are left out: `store.Recovery`
    unmarshals onto a fresh store, whose own empty history and zero stats then stay.
    """
    members_json: dict[str, str] = {}
    index = 0
    for member in cluster.members_in_order():
        index += 1
        mdir = f"{V2_CLUSTER_PREFIX}/members/{member.id:x}"
        attrs = _v2_node(f"{mdir}/raftAttributes", index, raft_attributes_json(member))
        members_json[f"{member.id:x}"] = _v2_node(mdir, index, children={"raftAttributes": attrs})
    cluster_children: dict[str, str] = {}
    if members_json:
        cluster_children["members"] = _v2_node(
            f"{V2_CLUSTER_PREFIX}/members", 1, children=members_json
        )
    root = _v2_node(
        "/",
        0,
        children={
            V2_CLUSTER_PREFIX[1:]: _v2_node(V2_CLUSTER_PREFIX, 0, children=cluster_children),
            V2_KEYS_PREFIX[1:]: _v2_node(V2_KEYS_PREFIX, 0, children={}),
        },
    )
    return (
        f'{{"Root":{root},"CurrentIndex":{index},"CurrentVersion":{V2_STORE_VERSION}}}'
    ).encode()


def members_from_v2_store(data: bytes) -> tuple[list[Member], set[int]] | None:
    """(members, removed ids) recorded in v2 store JSON, or None if ``data`` is not one."""
    try:
        doc: Any = json.loads(data)
        cluster = doc["Root"]["Children"][V2_CLUSTER_PREFIX[1:]]["Children"] or {}
    except (ValueError, KeyError, TypeError):
        return None
    members: list[Member] = []
    for hex_id, node in sorted((cluster.get("members") or {}).get("Children", {}).items()):
        children = node.get("Children") or {}
        raft = json.loads(children.get("raftAttributes", {}).get("Value") or "{}")
        attrs = json.loads(children.get("attributes", {}).get("Value") or "{}")
        members.append(
            Member(
                int(hex_id, 16),
                tuple(raft.get("peerURLs") or ()),
                attrs.get("name", ""),
                tuple(attrs.get("clientURLs") or ()),
                bool(raft.get("isLearner", False)),
            )
        )
    removed = {
        int(hex_id, 16) for hex_id in ((cluster.get("removed_members") or {}).get("Children") or {})
    }
    return members, removed
