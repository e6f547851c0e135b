"""A member that lost its state stops; a peer that sends garbage does not stop it.

Raft's safety rests on every voter keeping its votes and the entries it acknowledged. A member
whose data dir was wiped or rolled back must not carry on under its old ID: etcd panics or
refuses to start, and so must pyetcd (issue 11). Faults from outside (a malformed frame on the
peer port) are the other kind: the connection is dropped and the member serves on.

Every scenario runs real processes of both engines on loopback, side by side where both have
the behaviour.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from tests.integration.cluster import Cluster, Flavour, Member, wait_for
from tests.integration.test_cluster3 import leader, member_ids, running_cluster

DEADLINE = 30.0
LOST_LOG = "Was the raft log corrupted, truncated, or lost?"
BOOTSTRAPPED = "has already been bootstrapped"


def put_keys(member: Member, prefix: str, count: int) -> None:
    for i in range(count):
        done = member.etcdctl("put", f"{prefix}{i:03d}", "v")
        assert done.returncode == 0, done.stderr


def exit_code(member: Member) -> int:
    """Wait (with a deadline) until ``member``'s process ends; its exit status."""
    proc = member.proc
    assert proc is not None
    return wait_for(f"{member} to exit", proc.poll, DEADLINE)


def a_follower(cluster: Cluster) -> Member:
    lead = leader(cluster)
    return next(m for m in cluster.members if m is not lead)


def keys_on(member: Member, prefix: str) -> int:
    done = member.etcdctl("get", prefix, "--prefix", "--keys-only", "-w", "json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout).get("count", 0))


def keys_on_serializable(member: Member, prefix: str) -> int:
    """What a learner holds (it serves serializable reads only)."""
    done = member.etcdctl("get", prefix, "--prefix", "--keys-only", "--consistency=s", "-w", "json")
    if done.returncode != 0:
        return -1
    return int(json.loads(done.stdout).get("count", 0))


@pytest.mark.parametrize("state", ["new", "existing"])
@pytest.mark.parametrize("flavour", ["etcd", "pyetcd"])
def test_a_wiped_member_does_not_rejoin_under_its_old_id(
    flavour: Flavour, state: Literal["new", "existing"], tmp_path: Path
) -> None:
    with running_cluster(flavour, tmp_path) as cluster:
        follower = a_follower(cluster)
        put_keys(cluster.members[0], "/k", 20)
        follower.stop()
        follower.wipe()
        follower.initial_cluster_state = state
        follower.start()
        code = exit_code(follower)
        log = follower.log_tail(400)
        assert code != 0, log
        if flavour == "etcd" and state == "existing":
            # etcd 3.4 starts, and panics on the leader's first heartbeat.
            assert code == 2, log
            assert LOST_LOG in log, log
        else:
            # Refused before it writes anything (etcd's isMemberBootstrapped; pyetcd checks it
            # for both states, and says what to do).
            assert code == 1, log
            assert BOOTSTRAPPED in log, log
            assert not (follower.data_dir / "member" / "wal").exists()
        if flavour == "pyetcd":
            assert "its data was lost" in log, log
            assert "etcdctl member remove" in log, log
        # The other two members carry on with every write.
        survivors = [m for m in cluster.members if m is not follower]
        put_keys(survivors[0], "/after", 3)
        assert keys_on(survivors[1], "/") == 23


@pytest.mark.parametrize("flavour", ["etcd", "pyetcd"])
def test_a_member_whose_log_rolled_back_stops(flavour: Flavour, tmp_path: Path) -> None:
    """A data dir put back from an older copy (a restored VM snapshot, a disk image) has a WAL,
    so it restarts normally; the leader then tells it of a commit index past its log's end, a
    broken Raft invariant raised inside the peer message handler. It must stop, not catch up."""
    with running_cluster(flavour, tmp_path) as cluster:
        follower = a_follower(cluster)
        lead = leader(cluster)
        put_keys(lead, "/old", 5)
        follower.stop()
        older = tmp_path / "older-copy"
        shutil.copytree(follower.data_dir, older)
        follower.start_and_wait()
        put_keys(lead, "/new", 30)
        wait_for(
            "the follower to hold every key", lambda: keys_on(follower, "/") == 35 or None, DEADLINE
        )
        follower.stop()
        shutil.rmtree(follower.data_dir)
        shutil.copytree(older, follower.data_dir)
        follower.start()
        code = exit_code(follower)
        log = follower.log_tail(400)
        assert code == 2, log  # etcd's panic status, on both engines
        assert "panic: tocommit(" in log, log
        assert LOST_LOG in log, log
        put_keys(lead, "/after", 1)


def test_a_malformed_peer_frame_closes_the_connection_only(tmp_path: Path) -> None:
    """A fault, not an invariant: garbage on an established peer stream costs that stream."""
    with running_cluster("pyetcd", tmp_path) as cluster:
        target = cluster.members[0]
        # The handshake pyetcd's peers make (transport/peer.py): magic, then length-prefixed
        # JSON; then length-prefixed raftpb.Message frames.
        frame = struct.Struct(">Q")

        def json_frame(obj: dict[str, object]) -> bytes:
            data = json.dumps(obj).encode()
            return frame.pack(len(data)) + data

        def read_json(sock: socket.socket) -> dict[str, object]:
            (n,) = frame.unpack(sock.recv(frame.size, socket.MSG_WAITALL))
            answer: dict[str, object] = json.loads(sock.recv(n, socket.MSG_WAITALL))
            return answer

        host, port = "127.0.0.1", target.peer_port
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"PYETCDP1" + json_frame({"kind": "members"}))
            info = read_json(sock)
        sender = next(
            json.loads(m)["id"]
            for m in info["members"]  # type: ignore[attr-defined]
            if json.loads(m)["id"] != info["member_id"]
        )
        hello = {
            "kind": "stream",
            "cluster_id": info["cluster_id"],
            "from": sender,
            "to": info["member_id"],
        }
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"PYETCDP1" + json_frame(hello))
            assert read_json(sock).get("ok") is True
            garbage = b"\xff" * 64
            sock.sendall(frame.pack(len(garbage)) + garbage)
            # The member closes this connection: recv sees EOF.
            sock.settimeout(DEADLINE)
            assert sock.recv(1) == b""
        target.check_alive()
        assert "peer connection closed" in target.log_tail(400)
        put_keys(target, "/still", 3)
        assert keys_on(cluster.members[1], "/still") == 3


def member_list(member: Member) -> list[dict[str, object]]:
    done = member.etcdctl("member", "list", "-w", "json")
    assert done.returncode == 0, done.stderr
    members: list[dict[str, object]] = json.loads(done.stdout)["members"]
    return members


def member_init(member: Member, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's member-init container's command, run on ``member``'s data dir."""
    tool = Path(sys.executable).with_name("etcd-member-init")
    assert tool.exists(), f"{tool} is missing: install the project (make install)"
    return subprocess.run(
        [
            str(tool),
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--peer-url={member.peer_url}",
            f"--endpoints={member.client_url}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@pytest.mark.parametrize("how", ["flag", "offline"])
@pytest.mark.parametrize("flavour", ["etcd", "pyetcd"])
def test_force_new_cluster_rebuilds_from_a_survivor(
    flavour: Flavour, how: Literal["flag", "offline"], tmp_path: Path
) -> None:
    """Two of three members gone for good: the survivor, restarted with --force-new-cluster
    (or with the operator's offline surgery and then a plain start), is a one-member cluster
    with the same IDs and every committed write, stays one across a plain restart, and grows
    again through a learner."""
    with running_cluster(flavour, tmp_path) as cluster:
        survivor = a_follower(cluster)
        put_keys(survivor, "/k", 25)
        before = member_ids(cluster)
        for m in cluster.members:
            if m is not survivor:
                m.kill()
        survivor.stop()
        if how == "flag":
            survivor.extra_flags = (*survivor.extra_flags, "--force-new-cluster")
        else:
            done = member_init(survivor, f"--force-new-cluster={survivor.name}:t1")
            assert done.returncode == 0, done.stderr
            assert "continues alone" in done.stdout and "removed members: " in done.stdout
            # Once per token: the same token again changes nothing.
            again = member_init(survivor, f"--force-new-cluster={survivor.name}:t1")
            assert again.returncode == 0 and "done before" in again.stdout, again.stdout
        survivor.start_and_wait()
        listed = member_list(survivor)
        assert [int(str(m["ID"])) for m in listed] == [before[survivor.name]]
        assert keys_on(survivor, "/k") == 25
        put_keys(survivor, "/forced", 2)
        # A plain restart keeps the one-member configuration.
        survivor.extra_flags = tuple(f for f in survivor.extra_flags if f != "--force-new-cluster")
        survivor.restart()
        assert len(member_list(survivor)) == 1
        put_keys(survivor, "/plain", 2)
        assert keys_on(survivor, "/") == 29
        # Grow back: a new member joins as a learner and catches up.
        joiner = cluster.new_member("m9")
        joiner.initial_cluster = f"{survivor.name}={survivor.peer_url},m9={joiner.peer_url}"
        added = survivor.etcdctl(
            "member", "add", "m9", "--learner", f"--peer-urls={joiner.peer_url}"
        )
        assert added.returncode == 0, added.stderr
        joiner.start()  # a learner is not "ready" to linearizable probes: wait on its data
        wait_for(
            "the learner to catch up",
            lambda: keys_on_serializable(joiner, "/") == 29 or None,
            DEADLINE,
            joiner,
        )


@pytest.mark.parametrize("flavour", ["etcd", "pyetcd"])
def test_member_init_refuses_a_wiped_member_and_starts_the_others(
    flavour: Flavour, tmp_path: Path
) -> None:
    """The operator's member-init check, against a live cluster: a member with its WAL starts,
    the same member wiped is refused in etcd's words (etcd 3.4 itself would rejoin after a
    leader change), a member added but not started yet starts."""
    with running_cluster(flavour, tmp_path) as cluster:
        follower = a_follower(cluster)
        others = ",".join(m.client_url for m in cluster.members if m is not follower)
        kept = member_init(follower, f"--endpoints={others}")
        assert kept.returncode == 0 and "holds a WAL" in kept.stdout, kept.stderr
        joiner = cluster.new_member("m9")
        lead = leader(cluster)

        def add() -> bool | None:
            # etcd refuses a membership change until its peers have been connected for 5 s.
            peer = f"--peer-urls={joiner.peer_url}"
            done = lead.etcdctl("member", "add", "m9", "--learner", peer)
            assert done.returncode == 0 or "unhealthy cluster" in done.stderr, done.stderr
            return done.returncode == 0 or None

        wait_for("the learner to be added", add, DEADLINE, lead)
        fresh = member_init(joiner, f"--endpoints={others}")
        assert fresh.returncode == 0 and "a new member" in fresh.stdout, fresh.stderr
        follower.stop()
        follower.wipe()
        # A gone member among the endpoints (an address nothing answers) costs no time.
        refused = member_init(follower, f"--endpoints=http://10.255.255.1:2379,{others}")
        assert refused.returncode == 1, refused.stdout
        assert BOOTSTRAPPED in refused.stderr.strip().splitlines()[-1], refused.stderr
