"""Multi-member clusters on loopback: replication, membership, leadership and failures.

The membership scenario runs the same etcdctl steps against a 3-member upstream etcd and a
3-member pyetcd and compares what etcdctl printed, after replacing what legitimately differs
(member and cluster IDs by member names, ports by member names, versions, sizes, raft terms and
indexes; rows that etcd orders by member ID are sorted). The other tests check pyetcd's own
guarantees: linearizable reads on every member, lease keep-alives through a follower, no
acknowledged write lost when the leader is killed under load and a new leader within two
election timeouts, catching up through a snapshot, a full-cluster restart, the cluster-ID check
of the peer transport, and ``no leader`` once the quorum is gone.

Every process is stopped in a ``finally``; waiting is polling with a deadline.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from pyetcd.proto.etcdserverpb import rpc_pb2, rpc_pb2_grpc

from tests.integration import cluster as cluster_module
from tests.integration.cluster import (
    FAST,
    Cluster,
    Flavour,
    Member,
    Timing,
    status,
    wait_for,
)
from tests.integration.test_durability import Ledger, check_stored
from tools import etcd35
from tools.ports import free_port

pytestmark = pytest.mark.integration

T = TypeVar("T")
DEADLINE = 30.0
# etcd's own defaults for the failover test: ticks long enough that scheduling noise on a busy
# two-core machine is small next to them.
DEFAULT_TIMING = Timing(heartbeat_ms=100, election_ms=1000)


def poll(what: str, fn: Callable[[], T | None], timeout: float = DEADLINE) -> T:
    """Call ``fn`` until it returns something other than None; fail after ``timeout``."""
    return wait_for(what, fn, timeout)


@contextlib.contextmanager
def running_cluster(
    flavour: Flavour,
    workdir: Path,
    *,
    timing: Timing = FAST,
    extra_flags: tuple[str, ...] = (),
) -> Iterator[Cluster]:
    cluster = Cluster(flavour, workdir / flavour, 3, timing=timing, extra_flags=extra_flags)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def member_ids(cluster: Cluster) -> dict[str, int]:
    ids = {}
    for m in cluster.members:
        if m.running:
            st = poll(f"status of {m.name}", lambda m=m: status(m))  # type: ignore[misc]
            ids[m.name] = st.header.member_id
    return ids


def leader(cluster: Cluster, timeout: float = DEADLINE) -> Member:
    """The member every running member names as leader."""

    def agreed() -> Member | None:
        seen = set()
        for m in cluster.members:
            if not m.running:
                continue
            st = status(m)
            if st is None or st.leader == 0:
                return None
            seen.add(st.leader)
        if len(seen) != 1:
            return None
        (lead,) = seen
        for m in cluster.members:
            st = status(m) if m.running else None
            if st is not None and st.header.member_id == lead:
                return m
        return None

    return poll("an agreed leader", agreed, timeout)


def kv_stub(member: Member) -> tuple[grpc.Channel, rpc_pb2_grpc.KVStub]:
    channel = grpc.insecure_channel(member.host_port)
    return channel, rpc_pb2_grpc.KVStub(channel)


def read_prefix(member: Member, prefix: bytes, serializable: bool = False) -> dict[bytes, bytes]:
    end = prefix[:-1] + bytes([prefix[-1] + 1])
    channel, kv = kv_stub(member)
    with channel:
        resp = kv.Range(
            rpc_pb2.RangeRequest(key=prefix, range_end=end, serializable=serializable), timeout=10
        )
    return {item.key: item.value for item in resp.kvs}


# -- replication ---------------------------------------------------------------------------


def test_put_on_one_member_is_read_linearizably_on_each(tmp_path: Path) -> None:
    with running_cluster("pyetcd", tmp_path) as cluster:
        first = cluster.members[0]
        put = first.etcdctl("put", "/replicated", "v1")
        assert put.returncode == 0, put.stderr
        for m in cluster.members:
            got = m.etcdctl("get", "/replicated", "--print-value-only")
            assert got.returncode == 0, got.stderr
            assert got.stdout == "v1\n", m.name
        # A write through a follower (forwarded to the leader), read right away everywhere.
        lead = leader(cluster)
        follower = next(m for m in cluster.members if m is not lead)
        assert follower.etcdctl("put", "/replicated", "v2").returncode == 0
        for m in cluster.members:
            assert m.etcdctl("get", "/replicated", "--print-value-only").stdout == "v2\n"
        # Every member serves the same revision once it has applied everything.
        revisions = {
            m.name: poll("status", lambda m=m: status(m)).header.revision  # type: ignore[misc]
            for m in cluster.members
        }
        assert len(set(revisions.values())) == 1, revisions


def test_five_members_survive_the_loss_of_two(tmp_path: Path) -> None:
    cluster = Cluster("pyetcd", tmp_path / "five", 5)
    try:
        cluster.start()
        lead = leader(cluster)
        # Kill the leader and one follower: three of five are still a quorum.
        victims = [lead, next(m for m in cluster.members if m is not lead)]
        for m in victims:
            m.kill(signal.SIGKILL)
        alive = [m for m in cluster.members if m.running]
        put = alive[0].etcdctl("put", "/five", "still-writable", "--command-timeout=15s")
        assert put.returncode == 0, put.stderr
        for m in alive:
            assert m.etcdctl("get", "/five", "--print-value-only").stdout == "still-writable\n"
        # The two come back and catch up.
        for m in victims:
            m.start_and_wait()
            assert m.etcdctl("get", "/five", "--print-value-only").stdout == "still-writable\n"
    finally:
        cluster.stop()


def test_lease_keep_alive_through_a_follower_reaches_the_leader(tmp_path: Path) -> None:
    with running_cluster("pyetcd", tmp_path) as cluster:
        lead = leader(cluster)
        follower = next(m for m in cluster.members if m is not lead)
        ttl = 2
        with grpc.insecure_channel(follower.host_port) as channel:
            lease = rpc_pb2_grpc.LeaseStub(channel)
            kv = rpc_pb2_grpc.KVStub(channel)
            granted = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=ttl), timeout=5)
            kv.Put(rpc_pb2.PutRequest(key=b"/leased", value=b"x", lease=granted.ID), timeout=5)
            # Keep the lease alive through the follower for three TTLs: only the leader's
            # lessor can extend it, so the keep-alives must reach the leader.
            until = time.monotonic() + 3 * ttl

            def requests() -> Iterator[rpc_pb2.LeaseKeepAliveRequest]:
                while time.monotonic() < until:
                    yield rpc_pb2.LeaseKeepAliveRequest(ID=granted.ID)
                    time.sleep(ttl / 4)  # the client's keep-alive interval, as etcdctl's

            answers = list(lease.LeaseKeepAlive(requests(), timeout=6 * ttl))
            assert answers and {a.TTL for a in answers} == {ttl}, answers
            assert read_prefix(follower, b"/leased") == {b"/leased": b"x"}
            left = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=granted.ID), timeout=5)
            assert 0 < left.TTL <= ttl
        # Without keep-alives the leader revokes it: the key disappears on every member.
        poll(
            "the lease to expire",
            lambda: True if not read_prefix(follower, b"/leased") else None,
            timeout=4 * ttl + 5,
        )
        for m in cluster.members:
            assert read_prefix(m, b"/leased") == {}


# -- membership, side by side with upstream etcd ----------------------------------------------

_ENDPOINT_STATUS_MASK = (
    (2, "<version>"),
    (3, "<size>"),
    (6, "<raft_term>"),
    (7, "<raft_index>"),
    (8, "<raft_index>"),
)


@dataclass
class Transcript:
    """etcdctl runs against one cluster, with what differs between clusters replaced."""

    cluster: Cluster
    names: dict[str, str] = field(default_factory=dict)  # literal -> placeholder
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, member_id in member_ids(self.cluster).items():
            self.name_id(name, member_id)
        st = poll("status", lambda: status(self.cluster.members[0]))
        self.names[f"{st.header.cluster_id:x}"] = "<cluster>"
        for m in self.cluster.members:
            self.name_urls(m)

    def name_id(self, name: str, member_id: int) -> None:
        self.names[f"{member_id:016x}"] = f"<{name}>"
        self.names[f"{member_id:x}"] = f"<{name}>"

    def name_urls(self, member: Member) -> None:
        self.names[member.peer_url] = f"<{member.name}-peer>"
        self.names[member.client_url] = f"<{member.name}-client>"
        self.names[member.host_port] = f"<{member.name}-client>"

    def name_url(self, url: str, placeholder: str) -> None:
        self.names[url] = placeholder

    def literal(self, text: str) -> str:
        for old in sorted(self.names, key=len, reverse=True):
            text = text.replace(old, self.names[old])
        return text

    def normalize(self, args: tuple[str, ...], out: str) -> str:
        # etcdctl prints IDs as %16x: padded with spaces when the ID is shorter.
        out = re.sub(r"(Member|cluster|from|to) +", r"\1 ", self.literal(out))
        lines = out.splitlines()
        if "status" in args:
            masked = []
            for line in lines:
                cells = line.split(", ")
                if len(cells) >= 9:
                    for pos, placeholder in _ENDPOINT_STATUS_MASK:
                        cells[pos] = placeholder
                masked.append(", ".join(cells))
            lines = sorted(masked)
        elif "list" in args:
            lines = sorted(lines)
        result = []
        for line in lines:
            if line.startswith("ETCD_INITIAL_CLUSTER="):
                # Go map order: the entries come out in any order.
                items = line.split("=", 1)[1].strip('"').split(",")
                result.append('ETCD_INITIAL_CLUSTER="' + ",".join(sorted(items)) + '"')
            else:
                result.append(line)
        return "\n".join(result)

    def ctl(self, member: Member, *args: str) -> subprocess.CompletedProcess[str]:
        result = member.etcdctl(*args, "--command-timeout=10s")
        self.record(args, result)
        return result

    def ctl_all(self, *args: str) -> subprocess.CompletedProcess[str]:
        endpoints = ",".join(m.host_port for m in self.cluster.members if m.running)
        result = self.cluster.members[0].etcdctl(
            f"--endpoints={endpoints}", *args, "--command-timeout=10s"
        )
        self.record(args, result)
        return result

    def record(self, args: tuple[str, ...], result: subprocess.CompletedProcess[str]) -> None:
        if args[:2] == ("member", "add") and result.returncode == 0:
            self.name_id(args[2], added_id(result))
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        self.lines.append(f"$ etcdctl {self.literal(' '.join(args))} -> {result.returncode}")
        self.lines.append(self.normalize(args, result.stdout))
        self.lines.extend(self.literal(e) for e in errors)

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def retry(self, member: Member, *args: str, unless: str) -> subprocess.CompletedProcess[str]:
        """Run until the answer is not ``unless`` (a transient refusal), recording the last."""

        def attempt() -> subprocess.CompletedProcess[str] | None:
            result = member.etcdctl(*args, "--command-timeout=10s")
            return None if unless in result.stderr else result

        result = poll(f"etcdctl {' '.join(args)} without {unless!r}", attempt)
        self.record(args, result)
        return result


def added_id(result: subprocess.CompletedProcess[str]) -> int:
    match = re.search(r"Member +([0-9a-f]+) added to cluster", result.stdout)
    assert match, result.stdout + result.stderr
    return int(match.group(1), 16)


def make_leader(cluster: Cluster, member: Member, member_id: int) -> None:
    if leader(cluster) is member:
        return
    endpoints = ",".join(m.host_port for m in cluster.members if m.running)
    moved = member.etcdctl(f"--endpoints={endpoints}", "move-leader", f"{member_id:x}")
    assert moved.returncode == 0, moved.stderr
    poll(f"{member.name} to lead", lambda: True if leader(cluster) is member else None)


def membership_steps(cluster: Cluster) -> list[str]:
    """etcdctl's membership commands, their errors, move-leader and endpoint status."""
    t = Transcript(cluster)
    m0, m1, m2 = cluster.members[:3]
    ids = member_ids(cluster)
    # Whoever won the first election, m0 leads from here on: outputs name the leader.
    make_leader(cluster, m0, ids["m0"])
    t.ctl(m0, "member", "list")
    t.ctl(m0, "endpoint", "status", "--cluster")

    # Refusals: learners, duplicate URLs, promotions, not enough started members.
    urls = {name: f"http://127.0.0.1:{free_port()}" for name in ("l1", "l2", "x", "v1", "v2")}
    for name, url in urls.items():
        t.name_url(url, f"<{name}-peer>")
    # Right after start, both refuse changes until the peers were connected for a while.
    added = t.retry(
        m0, "member", "add", "l1", "--learner", f"--peer-urls={urls['l1']}", unless="unhealthy"
    )
    l1 = added_id(added)
    t.ctl(m0, "member", "add", "l2", "--learner", f"--peer-urls={urls['l2']}")
    # (Two URLs: a new member ID, whatever the clock says, with one URL taken.)
    t.ctl(m0, "member", "add", "x", f"--peer-urls={urls['l1']},{urls['x']}")
    t.ctl(m0, "member", "promote", f"{ids['m1']:x}")
    t.ctl(m0, "member", "promote", f"{l1:x}")
    t.ctl(m0, "member", "remove", f"{l1:x}")
    # A voter that never starts: the next change is refused, since this member is not
    # connected to every voter; removing it is allowed (it is not part of the active quorum).
    v1 = added_id(t.ctl(m0, "member", "add", "v1", f"--peer-urls={urls['v1']}"))
    # etcd 3.5: allowed, since counting v2 as down the 3 connected voters of 5 make a quorum.
    v2 = t.ctl(m0, "member", "add", "v2", f"--peer-urls={urls['v2']}")
    t.ctl(m0, "member", "list")
    t.ctl(m0, "member", "remove", f"{v1:x}")
    if v2.returncode == 0:
        t.ctl(m0, "member", "remove", f"{added_id(v2):x}")
    t.ctl(m0, "member", "update", f"{ids['m2']:x}", f"--peer-urls={m2.peer_url}")

    # A learner joins, serves serializable reads only, catches up and is promoted.
    m3 = cluster.new_member("m3")
    t.name_urls(m3)
    m3_id = added_id(
        t.retry(
            m0, "member", "add", "m3", "--learner", f"--peer-urls={m3.peer_url}", unless="unhealthy"
        )
    )
    m0.etcdctl("put", "/joined", "yes")
    m3.start()
    t.note("m3 started with --initial-cluster-state=existing")
    poll(
        "the learner to serve a serializable read",
        lambda: (
            True
            if m3.etcdctl("get", "/joined", "--consistency=s").stdout == "/joined\nyes\n"
            else None
        ),
    )
    t.ctl(m3, "get", "/joined", "--consistency=s")
    t.ctl(m3, "get", "/joined")
    t.ctl(m3, "put", "/from-learner", "no")
    t.ctl(m3, "member", "list")
    t.ctl(m3, "endpoint", "status")
    t.retry(m0, "member", "promote", f"{m3_id:x}", unless="in sync with leader")
    poll(
        "the promoted member to publish its name",
        lambda: True if ", m3, " in m0.etcdctl("member", "list").stdout else None,
    )
    t.ctl(m0, "member", "list")
    t.ctl(m3, "get", "/joined")
    t.ctl(m0, "endpoint", "status", "--cluster")

    # Leadership moves to whom we say; only the leader may be asked.
    make_leader(cluster, m0, ids["m0"])
    t.ctl_all("move-leader", f"{ids['m1']:x}")
    poll("m1 to lead", lambda: True if leader(cluster) is m1 else None)
    t.ctl(m0, "endpoint", "status", "--cluster")
    t.ctl_all("move-leader", "1234")
    with grpc.insecure_channel(m2.host_port) as channel:
        try:
            rpc_pb2_grpc.MaintenanceStub(channel).MoveLeader(
                rpc_pb2.MoveLeaderRequest(targetID=ids["m0"]), timeout=10
            )
            t.note("MoveLeader on a follower: OK")
        except grpc.RpcError as exc:
            t.note(f"MoveLeader on a follower: {exc.code().name} {exc.details()}")

    # The new member leaves again, and stops by itself once it learns it was removed.
    t.ctl(m0, "member", "remove", f"{m3_id:x}")
    t.ctl(m0, "member", "remove", f"{m3_id:x}")
    t.ctl(m0, "member", "list")
    poll("the removed member to stop", lambda: True if not m3.running else None)
    t.note("m3 stopped")
    t.ctl(m0, "put", "/after-remove", "ok")
    t.ctl(m1, "get", "/after-remove")
    return t.lines


def test_membership_steps_match_upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compared with etcd 3.5 (``make etcd35``): its membership rules are the ones pyetcd
    speaks (a member add with a voter down counts connected voters against a quorum that
    includes the new member; Debian's 3.4 required every voter connected)."""
    built = etcd35.cached_binary()
    if built is None:
        pytest.fail(
            f"etcd {etcd35.ETCD35_VERSION} is not built in {etcd35.cache_dir()}; {etcd35.HINT}",
            pytrace=False,
        )
    monkeypatch.setattr(cluster_module, "ETCD_BIN", built)
    transcripts = {}
    for flavour in ("etcd", "pyetcd"):
        with running_cluster(flavour, tmp_path) as cluster:
            transcripts[flavour] = membership_steps(cluster)
    expected, actual = transcripts["etcd"], transcripts["pyetcd"]
    diff = "\n".join(difflib.unified_diff(expected, actual, "etcd", "pyetcd", lineterm=""))
    assert actual == expected, diff


def test_not_enough_started_members_matches_upstream(tmp_path: Path) -> None:
    """A single member may grow to two; with the second one never started, a third voter
    would leave fewer started members than a quorum: etcd refuses before proposing."""
    answers = {}
    for flavour in ("etcd", "pyetcd"):
        member = Member(flavour, tmp_path / flavour, name="solo", timing=FAST)
        try:
            member.start_and_wait()
            added = member.etcdctl(
                "member", "add", "a", f"--peer-urls=http://127.0.0.1:{free_port()}"
            )
            assert added.returncode == 0, added.stderr
            refused = member.etcdctl(
                "member", "add", "b", f"--peer-urls=http://127.0.0.1:{free_port()}"
            )
            answers[flavour] = (
                refused.returncode,
                [line for line in refused.stderr.splitlines() if line.startswith("Error:")],
            )
        finally:
            member.stop()
    assert answers["pyetcd"] == answers["etcd"]
    assert answers["etcd"] == (
        1,
        ["Error: etcdserver: re-configuration failed due to not enough started members"],
    )


# -- failures ------------------------------------------------------------------------------

WRITERS = 6
PREFIX = b"/failover/"


def writer(endpoints: list[str], name: str, ledger: Ledger, stop: threading.Event) -> None:
    """Write new keys; on an error, count the key as uncertain and go to the next member."""
    seq = 0
    turn = 0
    while not stop.is_set():
        with grpc.insecure_channel(endpoints[turn % len(endpoints)]) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            while not stop.is_set():
                key = PREFIX + f"{name}/{seq:07d}".encode()
                value = os.urandom(8).hex().encode()
                seq += 1
                try:
                    kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=10)
                except grpc.RpcError:
                    with ledger.lock:
                        ledger.uncertain[key] = value
                    turn += 1
                    break
                with ledger.lock:
                    ledger.acked[key] = value


def check_ledger(member: Member, ledger: Ledger) -> None:
    check_stored(read_prefix(member, PREFIX), ledger, member.name)


def test_kill_9_of_the_leader_under_write_load(tmp_path: Path) -> None:
    with running_cluster("pyetcd", tmp_path, timing=DEFAULT_TIMING) as cluster:
        ledger = Ledger()
        stop = threading.Event()
        endpoints = [m.host_port for m in cluster.members]
        threads = [
            threading.Thread(
                target=writer,
                args=(endpoints[i:] + endpoints[:i], f"w{i}", ledger, stop),
                daemon=True,
            )
            for i in range(WRITERS)
        ]
        for th in threads:
            th.start()
        try:
            poll("writes before the kill", lambda: True if ledger.count() >= 300 else None)
            old = leader(cluster)
            old_id = poll("status", lambda: status(old)).header.member_id
            survivors = [m for m in cluster.members if m is not old]
            old.kill(signal.SIGKILL)
            killed_at = time.monotonic()

            def new_leader() -> int | None:
                for m in survivors:
                    st = status(m, timeout=0.5)
                    if st is not None and st.leader not in (0, old_id):
                        return st.leader
                return None

            poll("a new leader", new_leader, timeout=10)
            failover = time.monotonic() - killed_at
            print(f"failover: a new leader {failover:.3f} s after kill -9 of the leader")
            election = DEFAULT_TIMING.election_ms / 1000
            assert failover < 2 * election, f"new leader after {failover:.2f} s"
            acked_at_kill = ledger.count()
            poll(
                "writes after the failover",
                lambda: True if ledger.count() >= acked_at_kill + 300 else None,
            )
        finally:
            stop.set()
            for th in threads:
                th.join(timeout=30)
        old.start_and_wait()
        for m in cluster.members:
            check_ledger(m, ledger)


def test_full_cluster_restart_keeps_everything(tmp_path: Path) -> None:
    with running_cluster("pyetcd", tmp_path, extra_flags=("--snapshot-count=50",)) as cluster:
        first = cluster.members[0]
        channel, kv = kv_stub(first)
        with channel:
            for i in range(120):
                kv.Put(rpc_pb2.PutRequest(key=PREFIX + b"%04d" % i, value=b"v%d" % i), timeout=5)
            kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=PREFIX + b"0000"), timeout=5)
            kv.Compact(rpc_pb2.CompactionRequest(revision=50, physical=True), timeout=5)
        before = read_prefix(first, PREFIX)
        revision = poll("status", lambda: status(first)).header.revision
        assert len(before) == 119
        for how in ("stop", "kill -9"):
            for m in cluster.members:
                if how == "stop":
                    m.stop()
                else:
                    m.kill(signal.SIGKILL)
            cluster.start()
            for m in cluster.members:
                assert read_prefix(m, PREFIX) == before, f"{m.name} after {how}"
                st = poll("status", lambda m=m: status(m))  # type: ignore[misc]
                assert st.header.revision == revision, f"{m.name} after {how}"
        # And the cluster takes writes again.
        assert first.etcdctl("put", "/after-restart", "ok").returncode == 0


def test_a_member_far_behind_catches_up_through_a_snapshot(tmp_path: Path) -> None:
    flags = ("--snapshot-count=100", "--experimental-snapshot-catchup-entries=10")
    with running_cluster("pyetcd", tmp_path, extra_flags=flags) as cluster:
        lagging = cluster.members[2]
        lagging.stop()
        channel, kv = kv_stub(cluster.members[0])
        with channel:
            for i in range(600):
                kv.Put(rpc_pb2.PutRequest(key=PREFIX + b"%04d" % i, value=b"x" * 64), timeout=5)
        lagging.start_and_wait()
        expected = read_prefix(cluster.members[0], PREFIX)
        assert len(expected) == 600
        assert read_prefix(lagging, PREFIX) == expected
        log = lagging.log_tail(400)
        assert "applied snapshot at index" in log, log
        # The received backend replaced the old one: no .snap.db is left behind.
        snap_dir = lagging.data_dir / "member" / "snap"
        assert not list(snap_dir.glob("*.snap.db"))
        # It serves (and stays in the cluster) after a restart from the installed snapshot.
        lagging.restart()
        assert read_prefix(lagging, PREFIX) == expected


def test_a_member_of_another_cluster_is_refused(tmp_path: Path) -> None:
    with running_cluster("pyetcd", tmp_path) as cluster:
        target = cluster.members[0]
        # A member of another cluster (another token, other IDs) that lists the target's peer
        # URL as one of its own peers: the target must not take its messages.
        stranger = Member(
            "pyetcd",
            tmp_path / "stranger",
            name="s0",
            timing=FAST,
            cluster_token="another-cluster",
        )
        stranger.initial_cluster = f"s0={stranger.peer_url},s1={target.peer_url}"
        try:
            stranger.start()
            poll(
                "the refusal in both logs",
                lambda: (
                    True
                    if "cluster ID mismatch" in target.log_tail(400)
                    and "cluster ID mismatch" in stranger.log_tail(400)
                    else None
                ),
            )
        finally:
            stranger.stop()
        assert "request cluster ID mismatch" in target.log_tail(400)
        assert "ignored by remote peer due to cluster ID mismatch" in stranger.log_tail(400)
        # The cluster was not disturbed.
        assert target.etcdctl("put", "/still", "fine").returncode == 0
        assert len(member_ids(cluster)) == 3


def test_no_leader_once_the_quorum_is_gone(tmp_path: Path) -> None:
    with running_cluster("pyetcd", tmp_path) as cluster:
        last = cluster.members[0]
        for m in cluster.members[1:]:
            m.kill(signal.SIGKILL)

        def no_leader() -> grpc.RpcError | None:
            channel, kv = kv_stub(last)
            with channel:
                try:
                    kv.Put(rpc_pb2.PutRequest(key=b"/k", value=b"v"), timeout=10)
                except grpc.RpcError as exc:
                    if exc.details() == "etcdserver: no leader":
                        return exc
            return None

        err = poll("etcdserver: no leader", no_leader)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        st = poll("status", lambda: status(last))
        assert st.leader == 0
        assert "etcdserver: no leader" in st.errors
        health = last.etcdctl("endpoint", "health", "--command-timeout=3s")
        assert health.returncode != 0


@pytest.mark.parametrize("flavour", ["etcd", "pyetcd"])
def test_require_leader_watches_end_when_the_quorum_is_gone(
    flavour: Flavour, tmp_path: Path
) -> None:
    # clientv3.WithRequireLeader: a watch opened with the metadata hasleader=true ends with
    # "no leader" a few election timeouts after its member lost the leader, so that the client
    # moves to a member that still has one; a plain watch on the same member stays open.
    with running_cluster(flavour, tmp_path) as cluster:
        last = cluster.members[0]
        channel = grpc.insecure_channel(last.host_port)
        with channel:
            watch = rpc_pb2_grpc.WatchStub(channel)
            create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"/w"))
            hold = threading.Event()

            def requests() -> Iterator[rpc_pb2.WatchRequest]:
                yield create
                hold.wait(60)  # keep the request side open, as a watching client does

            guarded = watch.Watch(requests(), metadata=(("hasleader", "true"),))
            plain = watch.Watch(requests())
            assert next(guarded).created
            assert next(plain).created
            killed_at = time.monotonic()
            for m in cluster.members[1:]:
                m.kill(signal.SIGKILL)
            with pytest.raises(grpc.RpcError) as ended:
                next(guarded)
            elapsed = time.monotonic() - killed_at
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert ended.value.details() == "etcdserver: no leader"
            # etcd waits 3 election timeouts without a leader (at most ~5 with detection).
            assert elapsed < 10 * FAST.election_ms / 1000 + 2.0
            assert plain.is_active()
            plain.cancel()
            hold.set()
