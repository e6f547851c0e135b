"""A rolling minor upgrade of upstream etcd, 3.4 -> 3.5, with the real binaries on loopback.

What the operator's ``spec.version`` upgrade does in Kubernetes (the e2e kubelet runs
``etcd:v3.4.x`` images with Debian's etcd 3.4 and ``etcd:v3.5.x`` with the etcd 3.5 that
``tools/etcd35.py`` builds, ``make etcd35``), here without Kubernetes: a 3-member cluster of
Debian's etcd 3.4 gets keys; then one member at a time is stopped with SIGTERM and started again
on the same data dir and URLs with the 3.5 binary, the cluster is waited healthy, and more keys
are written while the member is down and after it is back. While any member still runs 3.4 the
cluster version (``/version``'s ``etcdcluster``) stays 3.4.0; once all run 3.5 the leader moves
it to 3.5.0 (it checks the members' versions every few seconds). At the end etcd 3.5's etcdctl
(``endpoint status -w json``) reports the 3.5 build's version on every member, and every member
serves every key written, with its value.

A missing binary fails the test with how to get it (never a skip). Every process is stopped in a
finalizer.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import (
    ETCD_BIN,
    ETCDCTL_BIN,
    Member,
    MemberError,
    etcdctl_env,
    wait_for,
)
from tools import etcd35
from tools.ports import free_port

pytestmark = pytest.mark.integration

TARGET = etcd35.ETCD35_VERSION.removeprefix("v")  # "3.5.36"
START_TIMEOUT = 20.0
# The leader compares the members' versions every ~4 s (etcd's monitorVersionInterval).
CLUSTER_VERSION_TIMEOUT = 20.0
CMD_TIMEOUT = 15.0
PREFIX = "/upgrade/"
KEYS_PER_STEP = 3


class UpgradableMember(Member):
    """A Debian etcd member whose next start may use another server binary (the 3.5 build)."""

    binary: Path | None = None

    def command(self) -> list[str]:
        argv = super().command()
        if self.binary is not None:
            argv[0] = str(self.binary)
        return argv


def binaries() -> tuple[Path, Path]:
    """The 3.5 server and etcdctl; fails the test (with how to get them) when one is missing."""
    missing = [str(p) for p in (ETCD_BIN, ETCDCTL_BIN) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"missing Debian etcd 3.4 binaries: {', '.join(missing)}; run `make system-deps` "
            "(apt-get install etcd-server etcd-client)",
            pytrace=False,
        )
    etcd, etcdctl = etcd35.cached_binary(), etcd35.cached_etcdctl()
    if etcd is None or etcdctl is None:
        pytest.fail(
            f"etcd {etcd35.ETCD35_VERSION} (etcd and etcdctl) is not built in "
            f"{etcd35.cache_dir()}; {etcd35.HINT}",
            pytrace=False,
        )
    return etcd, etcdctl


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[UpgradableMember]]:
    """Three Debian etcd 3.4 members, not started; all are stopped at teardown."""
    names = ["m0", "m1", "m2"]
    peer_ports = [free_port() for _ in names]
    initial = ",".join(f"{n}=http://127.0.0.1:{p}" for n, p in zip(names, peer_ports, strict=True))
    members = [
        UpgradableMember(
            "etcd",
            tmp_path / name,
            name=name,
            peer_port=port,
            initial_cluster=initial,
            cluster_token="minor-upgrade",
        )
        for name, port in zip(names, peer_ports, strict=True)
    ]
    try:
        yield members
    finally:
        for member in members:
            member.stop()


def versions(member: Member) -> dict[str, str] | None:
    """The member's ``/version`` (``etcdserver``, ``etcdcluster``); None while it is silent."""
    try:
        with urllib.request.urlopen(f"{member.client_url}/version", timeout=1.0) as response:
            got: dict[str, str] = json.load(response)
            return got
    except (OSError, ValueError):
        return None


def wait_healthy(members: list[UpgradableMember], timeout: float = START_TIMEOUT) -> None:
    """Every member serves a linearizable read (``etcdctl endpoint health``) before the deadline."""
    deadline = time.monotonic() + timeout
    for member in members:
        member.wait_ready(deadline)


def wait_version(
    members: list[UpgradableMember], field: str, expected: str, timeout: float
) -> None:
    """Until ``/version``'s ``field`` is ``expected`` on each of ``members`` (a deadline)."""

    def reported() -> bool | None:
        seen = [versions(m) for m in members]
        return True if all(v is not None and v.get(field) == expected for v in seen) else None

    names = ", ".join(m.name for m in members)
    wait_for(f"{field} {expected} on {names}", reported, timeout, *members)


def run(argv: list[str]) -> str:
    result = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CMD_TIMEOUT,
        env=etcdctl_env(),
        check=False,
    )
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr or result.stdout}"
    return result.stdout


def writer(members: list[UpgradableMember], written: dict[str, str]) -> Callable[[str], None]:
    """``write(step)`` puts a few keys through Debian's etcdctl at the running members."""

    def write(step: str) -> None:
        endpoints = ",".join(m.host_port for m in members if m.running)
        for i in range(KEYS_PER_STEP):
            key, value = f"{PREFIX}{step}/{i}", f"{step}-value-{i}"
            run([str(ETCDCTL_BIN), f"--endpoints={endpoints}", "put", key, value])
            written[key] = value

    return write


def served(etcdctl: Path, member: Member) -> dict[str, str]:
    """Every key under PREFIX as ``member`` serves it (a linearizable read)."""
    out = json.loads(
        run([str(etcdctl), f"--endpoints={member.host_port}", "get", PREFIX, "--prefix", "-w=json"])
    )
    return {
        base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
        for kv in out.get("kvs", [])
    }


def test_rolling_upgrade_from_debian_34_to_built_35(cluster: list[UpgradableMember]) -> None:
    etcd_35, etcdctl_35 = binaries()
    for member in cluster:
        member.start()
    try:
        wait_healthy(cluster)
    except MemberError as exc:
        pytest.fail(str(exc), pytrace=False)
    before = {m.name: versions(m) for m in cluster}
    for name, seen in before.items():
        assert seen is not None and seen["etcdserver"].startswith("3.4."), (name, seen)
        assert seen["etcdcluster"] == "3.4.0", (name, seen)

    written: dict[str, str] = {}
    write = writer(cluster, written)
    write("initial")

    for step, member in enumerate(cluster):
        code = member.stop(grace=10.0)
        # Stopped by SIGTERM on its own (etcd re-raises it), not SIGKILLed after the grace.
        assert code in (0, -signal.SIGTERM), f"{member} exited with {code} on SIGTERM"
        write(f"{member.name}-down")  # two of three members keep the quorum
        member.binary = etcd_35
        try:
            member.start()
            wait_healthy(cluster)
        except MemberError as exc:
            pytest.fail(str(exc), pytrace=False)
        wait_version([member], "etcdserver", TARGET, START_TIMEOUT)
        if step < len(cluster) - 1:
            # One member still runs 3.4: the cluster as a whole stays 3.4.
            for other in cluster:
                seen = versions(other)
                assert seen is not None and seen["etcdcluster"] == "3.4.0", (other, seen)
        write(f"{member.name}-upgraded")

    status = json.loads(
        run(
            [
                str(etcdctl_35),
                f"--endpoints={','.join(m.host_port for m in cluster)}",
                "endpoint",
                "status",
                "-w",
                "json",
            ]
        )
    )
    reported = {entry["Endpoint"]: entry["Status"]["version"] for entry in status}
    assert reported == {m.host_port: TARGET for m in cluster}, reported

    wait_version(cluster, "etcdcluster", "3.5.0", CLUSTER_VERSION_TIMEOUT)
    write("final")
    for member in cluster:
        assert served(etcdctl_35, member) == written, member
    assert len(written) == KEYS_PER_STEP * (2 + 2 * len(cluster))
