"""The linearizability run: a 3-member cluster, recording clients, fault rounds, one check.

Each round starts fresh clients on fresh keys (``/lin/r<round>/k<i>``), lets them complete some
operations, injects one fault under that load, waits until the cluster serves again and the
clients completed more operations, then stops them. The faults rotate through kill -9 and
restart, SIGSTOP pause and a cut of inbound peer traffic (every member's peer port sits behind a
:class:`PeerProxy`), of the leader or of a random member. All rounds go into one history file
that the porcupine checker checks per key. Usable from pytest (:func:`run`) and by hand::

    python -m tests.linearizability.harness pyetcd 20 [--kinds kill-leader,...] [--seed N]
    python -m tests.linearizability.harness pyetcd 20 --direct  # no proxies, no cuts
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.integration.cluster import Cluster, Flavour, Timing, as_flavour
from tests.linearizability.checker_build import Verdict, build_checker, check_history
from tests.linearizability.faults import FaultLog, heal, inject, schedule
from tests.linearizability.proxy import PeerProxy
from tests.linearizability.recorder import History, Load

CLIENTS = 6
KEYS = ("k0", "k1", "k2")
# Operations each round must complete before and after its fault (a progress goal, polled with
# a deadline: the round fails loudly if the cluster never serves again).
OPS_BEFORE = 60
OPS_AFTER = 60
PROGRESS_DEADLINE = 30.0
TIMING = Timing(heartbeat_ms=50, election_ms=500)


@dataclass
class Result:
    """A finished run: the verdict, the sizes, the faults."""

    verdict: Verdict
    operations: int
    history: History
    faults: FaultLog
    rounds: int
    seconds: float
    history_path: Path
    html_path: Path

    def summary(self) -> str:
        s = self.history.stats
        return (
            f"{self.rounds} rounds, {self.operations} operations checked "
            f"({s.ok} answered, {s.timed_out} timed out, {s.refused} refused, "
            f"{s.reads_lost} failed reads dropped) in {self.seconds:.1f}s: "
            f"{self.verdict.stdout.strip().splitlines()[0] if self.verdict.stdout else '?'}\n"
            f"faults: {'; '.join(self.faults.entries)}\nhistory: {self.history_path}"
        )


class ProgressTimeoutError(RuntimeError):
    """The clients did not complete enough operations before the deadline."""


def wait_progress(history: History, load: Load, count: int, what: str) -> None:
    """Poll until ``count`` more operations were answered, or fail at the deadline."""
    with history.lock:
        target = history.stats.ok + count
    deadline = time.monotonic() + PROGRESS_DEADLINE
    while True:
        with history.lock:
            done = history.stats.ok
        if done >= target:
            return
        for client in load.clients:
            if client.error is not None:
                raise client.error
        if time.monotonic() >= deadline:
            raise ProgressTimeoutError(f"{what}: {done}/{target} answered operations by deadline")
        time.sleep(0.02)  # poll interval


def with_peer_proxies(cluster: Cluster) -> dict[str, PeerProxy]:
    """Put a :class:`PeerProxy` in front of every member's peer port (before it starts).

    Each member still listens on its own peer port but advertises its proxy's URL, and
    ``--initial-cluster`` names the proxies, so all peer traffic into a member crosses its proxy.
    (Both servers take the last of repeated flags, so the appended flag wins.)
    """
    proxies = {m.name: PeerProxy(m.peer_port) for m in cluster.members}
    initial = ",".join(f"{name}={proxy.url}" for name, proxy in proxies.items())
    for member in cluster.members:
        member.initial_cluster = initial
        member.extra_flags = (
            *member.extra_flags,
            f"--initial-advertise-peer-urls={proxies[member.name].url}",
        )
    return proxies


def run(
    flavour: Flavour,
    workdir: Path,
    checker: Path,
    rounds: int,
    *,
    seed: int = 1,
    network_faults: bool = True,
    kinds: Sequence[str] | None = None,
) -> Result:
    started = time.monotonic()
    rng = random.Random(seed)
    history = History()
    faults = FaultLog([])
    cluster = Cluster(flavour, workdir / flavour, 3, timing=TIMING, cluster_token="lin")
    plan = schedule(rounds, kinds, network_faults)
    proxies = with_peer_proxies(cluster) if network_faults else {}
    try:
        cluster.start()
        endpoints = [m.host_port for m in cluster.members]
        for n, kind in enumerate(plan):
            load = Load(
                endpoints,
                history,
                clients=CLIENTS,
                keys=KEYS,
                prefix=f"/lin/r{n}/",
                seed=seed * 10_000 + n,
                client_offset=n * CLIENTS,
            )
            load.start()
            try:
                wait_progress(history, load, OPS_BEFORE, f"round {n} before the fault")
                inject(kind, cluster, rng, faults, proxies)
                wait_progress(history, load, OPS_AFTER, f"round {n} after the fault")
            finally:
                heal(cluster, proxies)
                load.stop()
    finally:
        heal(cluster, proxies)
        try:
            cluster.stop()
        finally:
            for proxy in proxies.values():
                proxy.close()
    history_path = workdir / "history.jsonl"
    html_path = workdir / "history.html"
    operations = history.write(history_path)
    verdict = check_history(checker, history_path, html=html_path)
    return Result(
        verdict,
        operations,
        history,
        faults,
        rounds,
        time.monotonic() - started,
        history_path,
        html_path,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="record and check a history under faults")
    parser.add_argument("flavour", nargs="?", default="pyetcd", choices=["etcd", "pyetcd"])
    parser.add_argument("rounds", nargs="?", type=int, default=20)
    parser.add_argument("--kinds", help="comma-separated fault kinds to cycle (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--direct",
        action="store_true",
        help="no peer proxies (members talk directly; no network cuts)",
    )
    args = parser.parse_args(argv[1:])
    workdir = Path(tempfile.mkdtemp(prefix=f"pyetcd-lin-{args.flavour}-"))
    print(f"work dir: {workdir}", flush=True)
    result = run(
        as_flavour(args.flavour),
        workdir,
        build_checker(),
        args.rounds,
        kinds=args.kinds.split(",") if args.kinds else None,
        seed=args.seed,
        network_faults=not args.direct,
    )
    print(result.summary())
    print(result.verdict.stdout, result.verdict.stderr, sep="\n")
    return result.verdict.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
