"""Member ID, cluster ID and stored member JSON agree with a real etcd (Debian's 3.4)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyetcd.server.config import parse_initial_cluster
from pyetcd.server.membership import Cluster, member_key

from tools.ports import free_port

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
TOKEN = "pyetcd-membership-test"


@dataclass
class Etcd:
    name: str
    client_url: str
    peer_url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def ctl(self, *args: str) -> str:
        env = dict(os.environ, ETCDCTL_API="3")
        out = subprocess.run(
            [ETCDCTL, "--endpoints", self.client_url, "--dial-timeout=2s", *args],
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {out.stderr.decode()}")
        return out.stdout.decode()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[Etcd]:
    name = "pyetcd-m1"
    client_url = f"http://127.0.0.1:{free_port()}"
    peer_url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "etcd.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                ETCD,
                f"--name={name}",
                f"--data-dir={tmp_path / 'data'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster={name}={peer_url}",
                f"--initial-cluster-token={TOKEN}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("ETCD_")},
        )
    member = Etcd(name, client_url, peer_url, proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                member.ctl("endpoint", "health")
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise RuntimeError("etcd did not become healthy:\n" + log.read_text()) from None
            try:
                # Waiting on the process doubles as the pause between polls, and notices a crash.
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError("etcd exited early:\n" + log.read_text())
        yield member
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_ids_and_member_json_match_real_etcd(etcd: Etcd, tmp_path: Path) -> None:
    cluster = Cluster.from_urls_map(parse_initial_cluster(f"{etcd.name}={etcd.peer_url}"), TOKEN)
    ours = cluster.member_by_name(etcd.name)
    assert ours is not None

    listed = json.loads(etcd.ctl("member", "list", "-w", "json"))
    assert [m["ID"] for m in listed["members"]] == [ours.id]
    assert listed["header"]["cluster_id"] == cluster.cluster_id

    status = json.loads(etcd.ctl("endpoint", "status", "-w", "json"))
    assert status[0]["Status"]["header"]["member_id"] == ours.id
    assert status[0]["Status"]["header"]["cluster_id"] == cluster.cluster_id

    # The members bucket as etcd wrote it: bbolt keeps keys and values verbatim in leaf pages.
    snapshot = tmp_path / "snap.db"
    etcd.ctl("snapshot", "save", str(snapshot))
    data = snapshot.read_bytes()
    published = ours.with_attributes(etcd.name, [etcd.client_url])
    assert member_key(ours.id) + published.to_json().encode() in data
