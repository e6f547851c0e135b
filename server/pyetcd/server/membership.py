"""Cluster membership as etcd computes and stores it: member IDs, the cluster ID, member JSON.

Everything here must agree bit for bit with etcd (`server/etcdserver/api/membership`): a member ID
is what peers and clients see (`member list`, response headers), and the member JSON is what the
`members` bucket, the v2-store snapshot and the bootstrap `ConfChange` contexts carry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pyetcd.server.config import URL, ConfigError, ServerConfig

__all__ = [
    "MAX_LEARNERS",
    "MEMBERS_BUCKET",
    "MEMBERS_REMOVED_BUCKET",
    "REMOVED_VALUE",
    "Cluster",
    "Member",
    "MembershipError",
    "change_context",
    "compute_cluster_id",
    "compute_member_id",
    "go_json_string",
    "member_key",
    "parse_member_key",
    "promote_context",
    "ready_to_add_voter",
    "ready_to_promote",
    "ready_to_remove_voter",
    "validate_change",
]

MEMBERS_BUCKET = b"members"
MEMBERS_REMOVED_BUCKET = b"members_removed"
REMOVED_VALUE = b"removed"
"""The value etcd puts under a removed member's key in `members_removed`."""


def compute_member_id(
    peer_urls: Iterable[str | URL], cluster_token: str, now_unix: int | None = None
) -> int:
    """etcd's `computeMemberID`: SHA-1 over sorted peer URLs + token [+ unix seconds], first 8 B.

    `now_unix` is given for members added at runtime (`member add`), so that re-adding the same
    URLs yields a new ID; bootstrap members have none.
    """
    data = "".join(sorted(str(u) for u in peer_urls)) + cluster_token
    if now_unix is not None:
        data += str(now_unix)
    return int.from_bytes(hashlib.sha1(data.encode()).digest()[:8], "big")


def compute_cluster_id(member_ids: Iterable[int]) -> int:
    """etcd's `RaftCluster.genID`: SHA-1 over the sorted member IDs as 8-byte big-endian."""
    data = b"".join(i.to_bytes(8, "big") for i in sorted(member_ids))
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big")


def member_key(member_id: int) -> bytes:
    """Key in the `members` buckets: `types.ID.String()`, lowercase hex without padding."""
    return f"{member_id:x}".encode()


def parse_member_key(key: bytes) -> int:
    return int(key, 16)


def go_json_string(text: str) -> str:
    """A JSON string as Go's `encoding/json` writes it (HTML-safe: `<`, `>`, `&` escaped)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or ch in "<>&" or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_json_strings(values: Sequence[str]) -> str:
    return "[" + ",".join(go_json_string(v) for v in values) + "]"


@dataclass(frozen=True, slots=True)
class Member:
    """etcd's `membership.Member`: `RaftAttributes` (peer URLs, learner) + `Attributes`."""

    id: int
    peer_urls: tuple[str, ...]
    name: str = ""
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    @classmethod
    def new(
        cls,
        name: str,
        peer_urls: Iterable[str | URL],
        cluster_token: str,
        *,
        now_unix: int | None = None,
        is_learner: bool = False,
    ) -> Member:
        """`membership.NewMember` / `NewMemberAsLearner`: ID from the URLs (stored sorted)."""
        urls = tuple(sorted(str(u) for u in peer_urls))
        return cls(
            id=compute_member_id(urls, cluster_token, now_unix),
            peer_urls=urls,
            name=name,
            is_learner=is_learner,
        )

    @property
    def started(self) -> bool:
        """etcd calls a member started once it has published its name (`IsStarted`)."""
        return self.name != ""

    def to_json(self) -> str:
        """The bytes etcd stores under `members/<hex id>`, field order and omitempty as Go's.

        `{"id":N,"peerURLs":[...],"isLearner":true,"name":"...","clientURLs":[...]}` where
        `isLearner`, `name` and `clientURLs` are left out when false/empty; `peerURLs` is never
        left out (an empty list is Go's nil slice: `null`).
        """
        parts = [f'"id":{self.id}']
        parts.append(
            '"peerURLs":' + (_go_json_strings(self.peer_urls) if self.peer_urls else "null")
        )
        if self.is_learner:
            parts.append('"isLearner":true')
        if self.name:
            parts.append('"name":' + go_json_string(self.name))
        if self.client_urls:
            parts.append('"clientURLs":' + _go_json_strings(self.client_urls))
        return "{" + ",".join(parts) + "}"

    @classmethod
    def from_json(cls, data: bytes | str) -> Member:
        obj = json.loads(data)
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), int):
            raise ValueError(f"not an etcd member record: {data!r}")
        return cls(
            id=obj["id"],
            peer_urls=tuple(obj.get("peerURLs") or ()),
            name=obj.get("name") or "",
            client_urls=tuple(obj.get("clientURLs") or ()),
            is_learner=bool(obj.get("isLearner", False)),
        )

    def with_attributes(self, name: str, client_urls: Iterable[str]) -> Member:
        """After the member publishes `Attributes` (name, client URLs) through Raft."""
        return Member(self.id, self.peer_urls, name, tuple(client_urls), self.is_learner)


@dataclass(slots=True)
class Cluster:
    """The members of one cluster by ID, and the cluster ID derived from them at bootstrap."""

    cluster_id: int
    members: dict[int, Member] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)

    @classmethod
    def from_urls_map(cls, urls_map: Mapping[str, Sequence[str | URL]], token: str) -> Cluster:
        """`membership.NewClusterFromURLsMap` + `genID`."""
        members: dict[int, Member] = {}
        for name, urls in urls_map.items():
            m = Member.new(name, urls, token)
            if m.id in members:
                raise ConfigError(f"member exists with identical ID {m.id:x}")
            if m.id == 0:
                raise ConfigError("cannot use 0 as member id")
            members[m.id] = m
        return cls(cluster_id=compute_cluster_id(members), members=members)

    @classmethod
    def from_initial_cluster(cls, config: ServerConfig) -> Cluster:
        """The bootstrap cluster of `--initial-cluster` and `--initial-cluster-token`."""
        return cls.from_urls_map(config.initial_cluster, config.initial_cluster_token)

    def member_by_name(self, name: str) -> Member | None:
        for m in self.members.values():
            if m.name == name:
                return m
        return None

    def members_in_order(self) -> list[Member]:
        """Members sorted by ID: the order of etcd's bootstrap ConfChange entries."""
        return [self.members[i] for i in sorted(self.members)]

    def member_ids(self) -> list[int]:
        return sorted(self.members)

    def voter_ids(self) -> list[int]:
        return sorted(i for i, m in self.members.items() if not m.is_learner)

    def learner_ids(self) -> list[int]:
        return sorted(i for i, m in self.members.items() if m.is_learner)

    def add(self, member: Member) -> None:
        self.members[member.id] = member

    def remove(self, member_id: int) -> None:
        self.members.pop(member_id, None)
        self.removed.add(member_id)

    def is_removed(self, member_id: int) -> bool:
        return member_id in self.removed

    def generate_cluster_id(self) -> int:
        """Recompute the cluster ID from the current members (only meaningful at bootstrap)."""
        self.cluster_id = compute_cluster_id(self.members)
        return self.cluster_id

    def backend_records(self) -> list[tuple[bytes, bytes, bytes]]:
        """`(bucket, key, value)` rows for the `members` and `members_removed` buckets."""
        rows = [
            (MEMBERS_BUCKET, member_key(i), self.members[i].to_json().encode())
            for i in self.member_ids()
        ]
        rows += [
            (MEMBERS_REMOVED_BUCKET, member_key(i), REMOVED_VALUE) for i in sorted(self.removed)
        ]
        return rows


# --------------------------------------------------------------------------------------------
# Validating a membership change at apply time (etcd's RaftCluster.ValidateConfigurationChange)

MAX_LEARNERS = 1
"""etcd's `maxLearners`: at most one learner at a time."""


class MembershipError(Exception):
    """A conf change that etcd refuses at apply time; ``reason`` names etcd's error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


ID_EXISTS = "member ID already exist"
PEER_URL_EXISTS = "Peer URLs already exists"
ID_NOT_FOUND = "member not found"
ID_REMOVED = "member already removed"
NOT_LEARNER = "can only promote a learner member"
TOO_MANY_LEARNERS = "too many learner members in cluster"


def change_context(data: bytes) -> tuple[Member | None, bool]:
    """The member JSON a conf change carries, and whether it is a promotion (etcd 3.5's
    ConfigChangeContext adds ``"isPromote":true`` to the member JSON)."""
    if not data:
        return None, False
    try:
        obj = json.loads(data)
        member = Member.from_json(data)
    except ValueError:
        return None, False
    return member, bool(isinstance(obj, dict) and obj.get("isPromote"))


def promote_context(member: Member) -> bytes:
    """The context of a promotion: the member as a voter, marked ``isPromote``."""
    voter = Member(member.id, member.peer_urls, member.name, member.client_urls, False)
    return (voter.to_json()[:-1] + ',"isPromote":true}').encode()


def validate_change(
    members: Mapping[int, Member],
    removed: Iterable[int],
    *,
    change_type: str,
    node_id: int,
    context: Member | None,
    is_promote: bool,
) -> None:
    """Raise MembershipError if etcd would refuse this change; ``change_type`` is one of
    ``add``, ``add_learner``, ``remove``, ``update``."""
    if node_id in set(removed):
        raise MembershipError(ID_REMOVED)
    if change_type in ("add", "add_learner"):
        if is_promote:
            current = members.get(node_id)
            if current is None:
                raise MembershipError(ID_NOT_FOUND)
            if not current.is_learner:
                raise MembershipError(NOT_LEARNER)
            return
        if node_id in members:
            raise MembershipError(ID_EXISTS)
        urls = set(context.peer_urls) if context is not None else set()
        for m in members.values():
            if urls & set(m.peer_urls):
                raise MembershipError(PEER_URL_EXISTS)
        learners = sum(1 for m in members.values() if m.is_learner)
        if change_type == "add_learner" and learners >= MAX_LEARNERS:
            raise MembershipError(TOO_MANY_LEARNERS)
        return
    if change_type == "remove":
        if node_id not in members:
            raise MembershipError(ID_NOT_FOUND)
        return
    if change_type == "update":
        if node_id not in members:
            raise MembershipError(ID_NOT_FOUND)
        urls = set(context.peer_urls) if context is not None else set()
        for m in members.values():
            if m.id != node_id and urls & set(m.peer_urls):
                raise MembershipError(PEER_URL_EXISTS)


def ready_to_add_voter(members: Mapping[int, Member]) -> bool:
    """etcd's IsReadyToAddVotingMember: the started voters stay a quorum once one is added."""
    voters = [m for m in members.values() if not m.is_learner]
    nmembers = 1 + len(voters)
    nstarted = sum(1 for m in voters if m.started)
    if nstarted == 1 and nmembers == 2:
        # A single-member cluster may always grow to two (etcd's special case).
        return True
    return nstarted >= nmembers // 2 + 1


def ready_to_remove_voter(members: Mapping[int, Member], node_id: int) -> bool:
    """etcd's IsReadyToRemoveVotingMember: the started voters left are still a quorum."""
    voters = [m for m in members.values() if not m.is_learner and m.id != node_id]
    nstarted = sum(1 for m in voters if m.started)
    return nstarted >= len(voters) // 2 + 1


def ready_to_promote(members: Mapping[int, Member], node_id: int) -> bool:
    """etcd's IsReadyToPromoteMember: the started voters stay a quorum once it votes."""
    voters = [m for m in members.values() if not m.is_learner]
    nmembers = 1 + len(voters)
    nstarted = 1 + sum(1 for m in voters if m.started)
    if nstarted == 2 and nmembers == 2:
        return True
    return nstarted >= nmembers // 2 + 1
