"""``member add`` while a member is down follows etcd 3.5's rule
(``isConnectedToQuorumAfterAddingNewMemberSince``): counting the new member as down, the voters
this member has been connected to must still make a quorum. So with 1 of 3 voters down a learner
is refused (2 connected < quorum of 4 = 3), and with 1 of 4 or 1 of 5 down it is added (3 >= 3,
4 >= 4). etcd 3.4 required every voter connected; pyetcd speaks 3.5.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, wait_for
from tools.ports import free_port


@pytest.mark.parametrize(("size", "added"), [(3, False), (4, True), (5, True)])
def test_a_learner_is_added_while_one_voter_is_down_when_a_quorum_stays(
    size: int, added: bool, tmp_path: Path
) -> None:
    cluster = Cluster("pyetcd", tmp_path, size=size)
    try:
        cluster.start()
        survivor, down = cluster.members[0], cluster.members[-1]
        down.kill()
        url = f"http://127.0.0.1:{free_port()}"

        # The survivor notices the lost stream within a heartbeat or two: until then it may
        # still count the killed member as connected, so the refusal is waited for.
        def answer() -> subprocess.CompletedProcess[str] | None:
            done = survivor.etcdctl("member", "add", "new", f"--peer-urls={url}", "--learner")
            if done.returncode == 0 or (not added and "unhealthy cluster" in done.stderr):
                return done
            return None

        done = wait_for("the member add's answer", answer, 10, survivor)
        if added:
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode != 0
            assert "etcdserver: unhealthy cluster" in done.stderr, done.stderr
    finally:
        cluster.stop()
