"""The metrics dashboards and alerts read, on upstream etcd 3.5 and on pyetcd alike.

Each engine runs a 3-member cluster and gets the same traffic: puts, a watch held open, a lease.
Then its leader is stopped, and once every survivor counts send failures to it (and has measured
the round trip to its peers), the survivors' /metrics are scraped. Every name in
``tests.monitored.MEMBER_METRICS`` (and the further etcd metrics pyetcd implements, below) must be
on every survivor of both engines with the declared type and label names; histograms must have
the same bucket bounds on both; pyetcd must show no family etcd lacks and no ``_created`` series.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import cluster as cluster_module
from tests.integration.cluster import Cluster, Flavour, Member, wait_for
from tests.monitored import MEMBER_METRICS, Kind
from tools import etcd35

pytestmark = pytest.mark.integration

DEADLINE = 60.0
PUTS = 5

# Not read by the chart, but pyetcd implements them after etcd: held to the same parity.
FURTHER_METRICS: dict[str, tuple[Kind, frozenset[str]]] = {
    "etcd_network_active_peers": ("gauge", frozenset({"Local", "Remote"})),
    "etcd_network_disconnected_peers_total": ("counter", frozenset({"Local", "Remote"})),
    "etcd_network_peer_received_bytes_total": ("counter", frozenset({"From"})),
    "etcd_debugging_mvcc_slow_watcher_total": ("gauge", frozenset()),
    "etcd_debugging_lease_granted_total": ("counter", frozenset()),
    "etcd_debugging_lease_renewed_total": ("counter", frozenset()),
    "etcd_debugging_lease_revoked_total": ("counter", frozenset()),
    "etcd_disk_wal_write_bytes_total": ("gauge", frozenset()),  # a gauge in etcd
    "etcd_cluster_version": ("gauge", frozenset({"cluster_version"})),
    "os_fd_used": ("gauge", frozenset()),
    "os_fd_limit": ("gauge", frozenset()),
    "process_virtual_memory_bytes": ("gauge", frozenset()),
    "process_start_time_seconds": ("gauge", frozenset()),
    "process_virtual_memory_max_bytes": ("gauge", frozenset()),
}
CHECKED = {**MEMBER_METRICS, **FURTHER_METRICS}


def family_name(name: str, kind: Kind) -> str:
    """The name prometheus_client's parser gives the family: counters lose ``_total``."""
    return name.removesuffix("_total") if kind == "counter" else name


class Scrape:
    """One member's /metrics, parsed."""

    def __init__(self, member: Member) -> None:
        with urllib.request.urlopen(member.client_url + "/metrics", timeout=10) as resp:
            self.text: str = resp.read().decode()
        self.families: dict[str, Metric] = {
            f.name: f for f in text_string_to_metric_families(self.text)
        }

    def family(self, name: str) -> Metric | None:
        kind, _ = CHECKED[name]
        return self.families.get(family_name(name, kind))

    def value(self, name: str, **labels: str) -> float | None:
        """The sample of counter or gauge ``name`` with ``labels`` (None: no such series)."""
        family = self.family(name)
        if family is None:
            return None
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
        return None

    def rtt_peers(self) -> set[str]:
        family = self.family("etcd_network_peer_round_trip_time_seconds")
        return set() if family is None else {s.labels["To"] for s in family.samples}


@dataclass
class Observed:
    """What one engine's survivors exposed, and which member got what."""

    flavour: Flavour
    stopped: str  # the stopped leader's id, as etcd prints it
    watched: Member
    survivors: list[Member] = field(default_factory=list)
    scrapes: dict[str, Scrape] = field(default_factory=dict)  # by member name


def member_id(member: Member) -> tuple[int, int]:
    """(this member's id, its leader's id) from ``etcdctl endpoint status``."""
    out = member.etcdctl("endpoint", "status", "-w", "json", timeout=10.0)
    assert out.returncode == 0, out.stderr
    (status,) = json.loads(out.stdout)
    return int(status["Status"]["header"]["member_id"]), int(status["Status"]["leader"])


def drive_and_observe(flavour: Flavour, workdir: Path) -> Observed:
    cluster = Cluster(flavour, workdir, 3)
    watches = []
    try:
        cluster.start()
        ids = {m.name: member_id(m) for m in cluster.members}
        leader_id = next(iter(ids.values()))[1]
        leader = next(m for m in cluster.members if ids[m.name][0] == leader_id)
        survivors = [m for m in cluster.members if m is not leader]
        watched = survivors[0]
        for i in range(PUTS):
            put = watched.etcdctl("put", f"k{i}", f"v{i}")
            assert put.returncode == 0, put.stderr
        grant = watched.etcdctl("lease", "grant", "600")
        assert grant.returncode == 0, grant.stderr
        # A call that fails (NotFound): counted under grpc-go's name of its code.
        revoke = watched.etcdctl("lease", "revoke", "1")
        assert revoke.returncode != 0 and "lease not found" in revoke.stderr, revoke.stderr
        watches.append(watched.etcdctl_popen("watch", "w"))

        def ready_to_stop() -> bool | None:
            # The watch is registered, and every member has measured the round trip to both
            # peers (etcd records the first RTT 5 s after it learns of a peer, pyetcd probes
            # every 5 s): the stopped member's RTT series exists on both engines.
            if (Scrape(watched).value("etcd_debugging_mvcc_watcher_total") or 0) < 1:
                return None
            if any(len(Scrape(m).rtt_peers()) < 2 for m in cluster.members):
                return None
            return True

        wait_for(f"{flavour}: a watch and RTTs", ready_to_stop, DEADLINE, *cluster.members)
        observed = Observed(flavour, f"{leader_id:x}", watched, survivors)
        leader.stop()

        def settled() -> bool | None:
            scrapes = {m.name: Scrape(m) for m in survivors}
            sent_failures = "etcd_network_peer_sent_failures_total"
            if not all(s.value(sent_failures, To=observed.stopped) for s in scrapes.values()):
                return None
            observed.scrapes = scrapes
            return True

        wait_for(
            f"{flavour}: every survivor to count send failures to the stopped leader",
            settled,
            DEADLINE,
            *survivors,
        )
        return observed
    finally:
        for watch in watches:
            watch.kill()
            watch.wait(timeout=10)
            for pipe in (watch.stdout, watch.stderr):
                if pipe is not None:
                    pipe.close()
        cluster.stop()


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Flavour, Observed]]:
    built = etcd35.cached_binary()
    if built is None:
        pytest.fail(f"etcd {etcd35.ETCD35_VERSION} is not built; {etcd35.HINT}", pytrace=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cluster_module, "ETCD_BIN", built)
        base = tmp_path_factory.mktemp("member-metrics")
        # One cluster at a time: two cores, and the engines must not compete for them.
        yield {
            flavour: drive_and_observe(flavour, base / flavour) for flavour in ("etcd", "pyetcd")
        }


def label_names(family: Metric) -> set[frozenset[str]]:
    return {frozenset(k for k in s.labels if k != "le") for s in family.samples}


def bucket_bounds(family: Metric) -> list[float]:
    return sorted({float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")})


def test_every_monitored_metric_has_etcds_name_type_labels_and_buckets(
    engines: dict[Flavour, Observed],
) -> None:
    problems: list[str] = []
    bounds: dict[str, dict[Flavour, list[float]]] = {}
    for flavour, observed in engines.items():
        for member_name, scrape in observed.scrapes.items():
            where = f"{flavour} {member_name}"
            for name, (kind, labels) in CHECKED.items():
                family = scrape.family(name)
                if family is None:
                    problems.append(f"{name}: missing on {where}")
                    continue
                if family.type != kind:
                    problems.append(f"{name}: a {family.type} on {where}, declared a {kind}")
                if label_names(family) != {labels}:
                    problems.append(
                        f"{name}: labels {sorted(map(sorted, label_names(family)))} on {where}, "
                        f"declared {sorted(labels)}"
                    )
                if kind == "histogram":
                    bounds.setdefault(name, {})[flavour] = bucket_bounds(family)
    for name, by_flavour in bounds.items():
        if by_flavour.get("etcd") != by_flavour.get("pyetcd"):
            problems.append(f"{name}: buckets differ: {by_flavour}")
    assert not problems, "\n".join(problems)


def sample_name(line: str) -> str:
    return line.split("{", 1)[0].split(" ", 1)[0]


def test_pyetcd_shows_nothing_etcd_would_not(engines: dict[Flavour, Observed]) -> None:
    etcd_families = {
        (f.name, f.type) for s in engines["etcd"].scrapes.values() for f in s.families.values()
    }
    for member_name, scrape in engines["pyetcd"].scrapes.items():
        lines = [line for line in scrape.text.splitlines() if line and not line.startswith("#")]
        created = [line for line in lines if sample_name(line).endswith("_created")]
        assert not created, f"pyetcd {member_name}: {created[:5]}"
        foreign = {(f.name, f.type) for f in scrape.families.values()} - etcd_families
        assert not foreign, f"pyetcd {member_name} has families etcd 3.5 lacks: {sorted(foreign)}"


def test_the_counts_follow_the_traffic_on_both_engines(engines: dict[Flavour, Observed]) -> None:
    for flavour, observed in engines.items():
        watched = observed.scrapes[observed.watched.name]
        assert (watched.value("etcd_network_client_grpc_received_bytes_total") or 0) > 0, flavour
        assert (watched.value("etcd_network_client_grpc_sent_bytes_total") or 0) > 0, flavour
        assert (watched.value("etcd_debugging_mvcc_watcher_total") or 0) >= 1, flavour
        assert (watched.value("etcd_debugging_mvcc_watch_stream_total") or 0) >= 1, flavour
        assert watched.value("etcd_cluster_version", cluster_version="3.5") == 1.0, flavour
        for member_name, scrape in observed.scrapes.items():
            where = f"{flavour} {member_name}"
            assert (scrape.value("etcd_debugging_mvcc_keys_total") or 0) >= PUTS, where
            assert (scrape.value("etcd_debugging_lease_granted_total") or 0) >= 1, where
            assert (scrape.value("etcd_disk_wal_write_bytes_total") or 0) > 0, where
            failures = scrape.value("etcd_network_peer_sent_failures_total", To=observed.stopped)
            assert (failures or 0) > 0, where
            peers = scrape.rtt_peers()
            assert observed.stopped in peers, f"{where}: RTT measured to {sorted(peers)}"
            assert len(peers) == 2, f"{where}: RTT measured to {sorted(peers)}"
            assert all(p == p.lower() and int(p, 16) for p in peers), peers


def handled_codes(scrape: Scrape, method: str) -> dict[str, float]:
    family = scrape.family("grpc_server_handled_total")
    assert family is not None
    return {
        s.labels["grpc_code"]: float(s.value)
        for s in family.samples
        if s.name == "grpc_server_handled_total" and s.labels.get("grpc_method") == method
    }


def test_rpcs_are_counted_by_grpc_gos_code_names_every_one_from_the_start(
    engines: dict[Flavour, Observed],
) -> None:
    """go-grpc-prometheus registers all 17 codes of every method up front (a failure rate is 0,
    not "no data", before the first failure) and names them as grpc-go does (FailedPrecondition,
    not FAILED_PRECONDITION): the alerts and dashboards select them by those names."""
    codes: dict[Flavour, set[str]] = {}
    for flavour, observed in engines.items():
        watched = observed.scrapes[observed.watched.name]
        revoked = handled_codes(watched, "LeaseRevoke")
        assert revoked.get("NotFound", 0) >= 1, (flavour, revoked)
        ranges = handled_codes(watched, "Range")
        assert len(ranges) == 17, (flavour, sorted(ranges))
        codes[flavour] = set(ranges)
    assert codes["pyetcd"] == codes["etcd"]
