"""Randomized fault injection over many seeds: safety holds whatever the schedule.

Each seed runs a cluster through a random schedule of ticks, partial and delayed deliveries,
drops, duplicates, partitions, crashes, restarts, compactions and proposals. The network checks
election safety, leader completeness, leader append-only and state machine safety on every Ready;
log matching is checked periodically. At the end the faults stop, and the cluster must converge:
every member applies the same history, which contains every entry any member ever applied.
"""

from __future__ import annotations

import random

import pytest

from tests.unit.raft.network import Network

SEEDS = range(100)


def run_schedule(seed: int, steps: int = 1200) -> Network:
    rng = random.Random(seed)
    size = rng.choice([3, 3, 5])
    ids = list(range(1, size + 1))
    net = Network(
        ids,
        seed=seed,
        pre_vote=rng.random() < 0.7,
        check_quorum=rng.random() < 0.7,
        max_size_per_msg=rng.choice([0, 64, 1 << 20]),
        max_inflight_msgs=rng.choice([1, 4, 256]),
        election_tick=rng.choice([5, 10]),
    )
    net.reorder = True
    net.drop_rate = rng.choice([0.0, 0.02, 0.1])
    net.dup_rate = rng.choice([0.0, 0.02, 0.1])
    proposals = 0
    actions = ["tick", "deliver", "process", "propose", "partition", "heal", "crash", "restart"]
    weights = [20, 35, 30, 15, 0.6, 2, 0.5, 2]
    for step in range(steps):
        action = rng.choices([*actions, "compact"], weights=[*weights, 1.5])[0]
        alive = [m.id for m in net.alive()]
        if action == "tick":
            net.tick()
        elif action == "deliver":
            net.deliver_some(rng.randint(1, 16))
        elif action == "process":
            for i in rng.sample(ids, rng.randint(1, size)):
                net.process(i)
        elif action == "propose" and alive:
            proposals += 1
            net.propose(rng.choice(alive), f"s{seed}-p{proposals}".encode())
        elif action == "partition":
            shuffled = rng.sample(ids, size)
            cut = rng.randint(1, size - 1)
            net.partition(shuffled[:cut], shuffled[cut:])
        elif action == "heal":
            net.heal()
        elif action == "crash" and len(alive) > 1:
            net.crash(rng.choice(alive))
        elif action == "restart":
            crashed = [i for i in ids if not net[i].alive]
            if crashed:
                net.restart(rng.choice(crashed))
        elif action == "compact" and alive:
            net.compact(rng.choice(alive), keep=rng.randint(0, 3))
        if step % 50 == 0:
            net.check_log_matching()
            net.check_applied_prefixes()
    return net


def converge(net: Network) -> None:
    net.heal()
    net.drop_rate = net.dup_rate = 0.0
    for m in list(net.members.values()):
        if not m.alive:
            net.restart(m.id)
    net.stabilize()
    lead = net.tick_until_leader(max_ticks=1000)
    for _ in range(100):
        if net.propose(lead, b"final"):
            break
        net.tick_and_stabilize()
        lead = net.tick_until_leader(max_ticks=1000)
    for _ in range(200):
        histories = {len(m.applied) for m in net.members.values()}
        if len(histories) == 1 and any(b"final" in m.applied_data() for m in net.members.values()):
            break
        net.tick_and_stabilize()


@pytest.mark.parametrize("seed", SEEDS)
def test_random_faults_never_break_safety_and_the_cluster_converges(seed: int) -> None:
    net = run_schedule(seed)
    net.check_log_matching()
    net.check_applied_prefixes()
    converge(net)
    net.check_log_matching()
    histories = [m.applied for m in net.members.values()]
    assert all(h == histories[0] for h in histories), "members did not converge"
    assert b"final" in net[1].applied_data()
    # No committed entry is lost: everything any member ever applied is in the final history.
    final = histories[0]
    for index, entry in net.committed.items():
        assert final[index - 1] == entry
