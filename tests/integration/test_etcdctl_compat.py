"""etcdctl compatibility suite: the same etcdctl sequences against two servers, outputs compared.

By default the two flavours are upstream etcd and pyetcd (``COMPAT_FLAVOURS=etcd,pyetcd``);
``COMPAT_FLAVOURS=etcd,etcd`` runs upstream against itself, which proves that the scenarios
are deterministic and that normalisation (``normalize.py``) removes only what legitimately
differs between two fresh servers. Each scenario runs on a fresh member of each flavour, one
after the other (never in parallel: the machine has two cores).

A difference is either fixed in the server or explained in ``ALLOWED_DIFFERENCES`` with a reason
(keyed by scenario and step title). Keep that list short and honest: an entry whose step no
longer differs fails the test too.

Not covered here, on purpose: ``txn`` compares on ``lease(...)`` (etcdctl 3.4 panics parsing
them: ``mustInt64orLeaseID``; covered by the aetcd suite with a raw Compare), ``get
--count-only`` (not in etcdctl 3.4), nested txns (etcdctl cannot express them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest

from tests.integration import cluster as cluster_module
from tests.integration.cluster import Flavour, as_flavour
from tests.integration.compat import Run, Runner, Scenario, Until, Watch, compare
from tests.integration.conftest import MemberRegistry
from tools import etcd35

pytestmark = pytest.mark.integration

#: (scenario name, step title) -> why the difference is acceptable. Empty: none accepted yet.
ALLOWED_DIFFERENCES: dict[tuple[str, str], str] = {}


def compat_flavours() -> tuple[Flavour, Flavour]:
    raw = os.environ.get("COMPAT_FLAVOURS", "etcd,pyetcd")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if len(names) != 2:
        raise ValueError(f"COMPAT_FLAVOURS must name two flavours, got {raw!r}")
    return as_flavour(names[0]), as_flavour(names[1])


def R(
    *args: str,
    stdin: str | None = None,
    fails: bool = False,
    capture: Mapping[str, str] | None = None,
    label: str = "",
) -> Run:
    """A Run step from positional args (keeps the scenario tables compact)."""
    return Run(tuple(args), stdin=stdin, fails=fails, capture=capture or {}, label=label)


SORT_TARGETS = ("KEY", "VERSION", "CREATE", "MODIFY", "VALUE")

KV = Scenario(
    "kv",
    (
        R("put", "/k/a", "1"),
        R("put", "/k/b", "3"),
        R("put", "/k/c", "2"),
        R("put", "/k/a", "4"),
        R("put", "/k/d/x", "5"),
        R("put", "/k/d/y", "0"),
        R("put", "/k/e", ""),
        R("put", "--prev-kv", "/k/b", "33"),
        R("put", "--prev-kv", "/k/new", "v", label="put --prev-kv on a new key"),
        R("put", "--prev-kv", "-w", "json", "/k/c", "22"),
        R("put", "--ignore-value", "/k/c"),
        R("put", "--ignore-value", "/k/none", fails=True),
        R("put", "-w", "fields", "/k/f", "f"),
        R("put", "-w", "protobuf", "--prev-kv", "/k/f", "f2"),
        R("put", "/k/f", "f"),
        R("get", "/k/a"),
        R("get", "/k/a", "-w", "json"),
        R("get", "/k/a", "-w", "fields"),
        R("get", "/k/a", "-w", "protobuf"),
        R("get", "/k/missing"),
        R("get", "/k/missing", "-w", "json"),
        R("get", "--prefix", "/k/"),
        R("get", "--prefix", "/k/", "-w", "json"),
        R("get", "--prefix", "/k/d/"),
        R("get", "/k/b", "/k/d"),
        R("get", "/k/b", "/k/d", "-w", "json"),
        R("get", "--from-key", "/k/c"),
        R("get", "--from-key", "/k/d", "--keys-only"),
        R("get", "--prefix", "/k/", "--limit", "2"),
        R("get", "--prefix", "/k/", "--limit", "2", "-w", "json"),
        R("get", "--prefix", "/k/", "--limit", "2", "-w", "fields"),
        *(
            R("get", "--prefix", "/k/", f"--sort-by={target}", f"--order={order}")
            for target in SORT_TARGETS
            for order in ("ASCEND", "DESCEND")
        ),
        R("get", "--prefix", "/k/", "--sort-by=MODIFY", "--limit", "3", "-w", "json"),
        R("get", "--prefix", "/k/", "--order=DESCEND", "--limit", "2"),
        R("get", "--prefix", "/k/", "--keys-only"),
        R("get", "--prefix", "/k/", "--keys-only", "-w", "json"),
        R("get", "--prefix", "/k/", "--print-value-only"),
        R("get", "--prefix", "/k/", "--consistency=s"),
        R("get", "--prefix", "/k/", "--hex"),
        R("get", "/k/a", "--rev={base+1}"),
        R("get", "/k/a", "--rev={base+1}", "-w", "json"),
        R("get", "--prefix", "/k/", "--rev={base+3}"),
        R("get", "--prefix", "/k/", "--rev={base+5}", "-w", "json"),
        R("get", "--prefix", "/k/", "--rev={base+8}", "--keys-only"),
    ),
)

DELETE = Scenario(
    "delete",
    (
        *(R("put", f"/d/{k}", f"v{k}") for k in ("a", "b", "c", "d/1", "d/2", "e", "f")),
        R("put", "/other", "o"),
        R("del", "/d/a"),
        R("del", "/d/a", label="del an already deleted key"),
        R("del", "/d/none", "-w", "json"),
        R("del", "--prev-kv", "/d/b"),
        R("del", "--prefix", "/d/d/", "-w", "json"),
        R("get", "--prefix", "/d/"),
        R("del", "/d/c", "/d/f", "-w", "protobuf", "--prev-kv"),
        R("get", "--prefix", "/d/", "-w", "json"),
        R("put", "/d/a", "again"),
        R("get", "/d/a", "-w", "json", label="recreated key: version 1, new create_revision"),
        R("del", "--from-key", "/d/", "--prev-kv", "-w", "json"),
        R("get", "--from-key", ""),
        R("get", "/d/b", "--rev={base+2}", label="deleted key at an old revision"),
    ),
)

TXN = Scenario(
    "txn",
    (
        R("put", "/t/k", "v1"),
        R("put", "/t/n", "5"),
        R(
            "txn",
            stdin='value("/t/k") = "v1"\n\nput /t/k v2\nget /t/k\n\nput /t/k fail\n\n',
            label="txn value = (success)",
        ),
        R(
            "txn",
            stdin='value("/t/k") = "v1"\n\nput /t/k v3\n\nput /t/k else\nget /t/k\n\n',
            label="txn value = (failure branch)",
        ),
        R(
            "txn",
            "-w",
            "json",
            stdin='value("/t/k") != "zzz"\nvalue("/t/n") > "4"\n\nput /t/x 1\ndel /t/n\n\n\n',
            label="txn value != and > -w json",
        ),
        R(
            "txn",
            stdin='value("/t/k") < "a"\n\nput /t/x lt\n\nget /t/x\n\n',
            label="txn value <",
        ),
        R(
            "txn",
            stdin='version("/t/k") = "3"\n\nget /t/k\n\n\n',
            label="txn version =",
        ),
        R(
            "txn",
            stdin='version("/t/k") > "5"\n\n\nget /t/k\n\n',
            label="txn version > (failure)",
        ),
        R(
            "txn",
            "-w",
            "json",
            stdin='create("/t/new") = "0"\n\nput /t/new created\n\n\n',
            label="txn create = 0 (key absent)",
        ),
        R(
            "txn",
            stdin='create("/t/k") = "{base+1}"\n\nget /t/k\n\n\n',
            label="txn create = revision",
        ),
        R(
            "txn",
            stdin='mod("/t/k") = "{base+4}"\n\nput /t/k mod-ok\n\n\n',
            label="txn mod =",
        ),
        R(
            "txn",
            stdin='mod("/t/k") < "{base+2}"\n\nput /t/k never\n\nget /t/k\n\n',
            label="txn mod < (failure)",
        ),
        R(
            "txn",
            "-w",
            "fields",
            stdin='mod("/t/k") > "0"\n\nget --prefix /t/\n\n\n',
            label="txn get --prefix -w fields",
        ),
        R(
            "txn",
            stdin="\nput /t/a 1\nput /t/b 2\ndel /t/x\n\n\n",
            label="txn with no compares",
        ),
        R(
            "txn",
            stdin="\nput /t/a 1\nput /t/a 2\n\n\n",
            fails=True,
            label="txn duplicate key",
        ),
        R(
            "txn",
            stdin="\nput /t/dup 1\ndel /t/dup\n\n\n",
            fails=True,
            label="txn put and delete of the same key",
        ),
        R("get", "--prefix", "/t/", "-w", "json"),
    ),
)

WATCH = Scenario(
    "watch",
    (
        R("put", "/w/a", "1"),
        R("put", "/x/outside", "x"),
        Watch(
            ("--prefix", "/w/", "--rev={base+1}"),
            during=(
                R("put", "/w/b", "2"),
                R("del", "/w/a"),
                R("put", "/x/outside", "y"),
                R("put", "/w/b", "3"),
            ),
            lines=12,
            label="watch --prefix from an old revision",
        ),
        Watch(
            ("--prefix", "/w/", "--rev={base+1}", "-w", "json"),
            during=(),
            lines=1,
            label="watch -w json replays history",
        ),
        Watch(
            ("/w/b", "--prev-kv", "--rev={base+3}"),
            during=(R("put", "/w/b", "4"),),
            lines=13,
            label="watch --prev-kv on one key",
        ),
        Watch(
            ("/w/c", "/w/z", "--rev={base+4}"),
            during=(
                R("put", "/w/d", "in-range"),
                R("put", "/w/zz", "out-of-range"),
                R("put", "/w/e", "in-range-too"),
            ),
            lines=6,
            label="watch a key range",
        ),
        R("compaction", "{base+6}"),
        Watch(
            ("--prefix", "/w/", "--rev={base+2}"),
            during=(),
            lines=0,
            exits=True,
            label="watch from a compacted revision",
        ),
    ),
)

LEASE = Scenario(
    "lease",
    (
        R("lease", "grant", "600", capture={"lease": r"lease ([0-9a-f]+) granted"}),
        R("lease", "grant", "300", "-w", "json", capture={"lease2_dec": r'"ID":(\d+)'}),
        R("put", "--lease={lease}", "/l/a", "1"),
        R("put", "--lease={lease}", "/l/b", "2"),
        R("get", "/l/a", "-w", "json"),
        R("lease", "timetolive", "{lease}"),
        R("lease", "timetolive", "--keys", "{lease}"),
        R("lease", "timetolive", "--keys", "{lease}", "-w", "json"),
        R("lease", "keep-alive", "--once", "{lease}"),
        R("lease", "keep-alive", "--once", "{lease}", "-w", "json"),
        R("lease", "list"),
        R("lease", "list", "-w", "json"),
        R("put", "--ignore-lease", "/l/a", "updated"),
        R("get", "/l/a", "-w", "json", label="ignore-lease keeps the lease"),
        R("put", "/l/a", "no-lease"),
        R("lease", "timetolive", "--keys", "{lease}", label="key detached from the lease"),
        R("lease", "revoke", "{lease}"),
        R("get", "--prefix", "/l/", label="revoked lease deleted its keys"),
        R("lease", "timetolive", "{lease}", label="timetolive of a revoked lease"),
        R("lease", "keep-alive", "--once", "{lease}", fails=True, label="keep-alive revoked"),
        R("lease", "revoke", "{lease}", fails=True, label="revoke twice"),
        R("put", "--lease={lease}", "/l/c", "3", fails=True, label="put with revoked lease"),
        R("put", "--lease=1234abcd", "/l/c", "3", fails=True, label="put with unknown lease"),
        R("put", "--ignore-lease", "/l/none", "v", fails=True, label="ignore-lease no key"),
        R("lease", "grant", "2", capture={"short": r"lease ([0-9a-f]+) granted"}),
        R("put", "--lease={short}", "/l/short", "x"),
        Until(
            R("get", "/l/short", "--print-value-only"),
            pattern=r"^$",
            label="key of a 2s lease disappears when the lease expires",
        ),
        R("lease", "timetolive", "{short}", label="timetolive of an expired lease"),
        R("lease", "list"),
    ),
)

MAINTENANCE = Scenario(
    "maintenance",
    (
        *(R("put", f"/m/{i}", f"value-{i}") for i in range(6)),
        R("put", "/m/0", "overwritten"),
        R("del", "/m/1"),
        R("endpoint", "health"),
        R("endpoint", "health", "-w", "json"),
        R("endpoint", "health", "-w", "table"),
        R("endpoint", "status"),
        R("endpoint", "status", "-w", "json"),
        R("endpoint", "status", "-w", "table"),
        R("endpoint", "status", "-w", "fields"),
        R("endpoint", "hashkv"),
        R("endpoint", "hashkv", "-w", "json"),
        R("endpoint", "hashkv", "-w", "table"),
        R("member", "list"),
        R("member", "list", "-w", "json"),
        R("member", "list", "-w", "table"),
        R("member", "list", "-w", "fields"),
        R("alarm", "list"),
        R("alarm", "list", "-w", "json"),
        R("alarm", "disarm"),
        R("compaction", "{base+3}"),
        R("get", "/m/0", "--rev={base+2}", fails=True, label="get at a compacted revision"),
        R("get", "/m/0", "--rev={base+3}", label="get at the compaction revision"),
        R("compaction", "{base+3}", fails=True, label="compact the same revision again"),
        R("compaction", "{base+2}", fails=True, label="compact an older revision"),
        R("compaction", "{base+100}", fails=True, label="compact a future revision"),
        R("endpoint", "hashkv", "-w", "json", label="hashkv after compaction"),
        R("compaction", "--physical", "{base+7}"),
        R("get", "--prefix", "/m/", "--rev={base+6}", fails=True),
        R("get", "--prefix", "/m/", "--rev={base+7}", "-w", "json"),
        R("endpoint", "hashkv", "-w", "json", label="hashkv after physical compaction"),
        R("defrag"),
        R("endpoint", "hashkv", "-w", "json", label="hashkv unchanged by defrag"),
        R("get", "--prefix", "/m/", "-w", "json", label="data intact after defrag"),
        R("snapshot", "save", "{dir}/snapshot.db"),
        R("snapshot", "status", "{dir}/snapshot.db"),
        R("snapshot", "status", "{dir}/snapshot.db", "-w", "json"),
        R("snapshot", "status", "{dir}/snapshot.db", "-w", "table"),
    ),
)

BIG = "x" * 700_000

NOSPACE = Scenario(
    "nospace",
    (
        R("put", "/big/1", stdin=BIG, label="put 700 kB (quota 1 MB)"),
        Until(
            R("endpoint", "status", "-w", "json"),
            pattern=r'"dbSize":(?:[7-9]\d{5}|\d{7,})',
            label="backend size reaches 700 kB",
        ),
        R("put", "/big/2", stdin=BIG, fails=True, label="put beyond the quota"),
        R("alarm", "list"),
        R("alarm", "list", "-w", "json"),
        R("endpoint", "status", "-w", "json", label="status lists the alarm in errors"),
        R("put", "/small", "1", fails=True, label="small put while NOSPACE is raised"),
        R("get", "/big/1", "--keys-only", label="reads still work"),
        R("del", "/big/1", label="deletes still work"),
        R("compaction", "--physical", "{base+2}"),
        R("defrag"),
        R("alarm", "disarm"),
        R("alarm", "list", label="no alarm after disarm"),
        R("put", "/small", "1", label="writes work again"),
    ),
    flags=("--quota-backend-bytes=1000000",),
)

ERRORS = Scenario(
    "errors",
    (
        R("put", "/e/a", "1"),
        R("get", "/e/a", "--rev={base+50}", fails=True, label="get at a future revision"),
        R("get", "", fails=True, label="get with an empty key"),
        R("put", "", "v", fails=True, label="put with an empty key"),
        R("del", "", fails=True, label="del with an empty key"),
        R("lease", "revoke", "abcdef", fails=True, label="revoke an unknown lease"),
        R("lease", "timetolive", "abcdef", label="timetolive of an unknown lease"),
        R("lease", "keep-alive", "--once", "abcdef", fails=True, label="keep-alive unknown"),
        R("lease", "grant", "9000000001", fails=True, label="lease TTL too large"),
        R("compaction", "{base+50}", fails=True, label="compact a future revision"),
        R("get", "/e/a", "--rev={base+1}", label="get at the current revision"),
    ),
)

ROOT = ("--user", "root:rootpw")
ALICE = ("--user", "alice:apw")
BOB = ("--user", "bob:bpw")

AUTH = Scenario(
    "auth",
    (
        # Before auth is on: management works for anyone, and the root user must exist.
        R("auth", "enable", fails=True, label="enable without a root user"),
        R("user", "add", "root:rootpw"),
        R("user", "add", "root:again", fails=True, label="add an existing user"),
        R("user", "add", ":pw", fails=True, label="add a user with an empty name"),
        R("user", "grant-role", "root", "root"),
        R("user", "grant-role", "root", "root", label="grant a role held already"),
        R("role", "add", "rw-app"),
        R("role", "add", "rw-app", fails=True, label="add an existing role"),
        R("role", "add", "ro-cfg"),
        R("role", "add", "w-log"),
        R("role", "grant-permission", "rw-app", "readwrite", "/app/", "--prefix"),
        R("role", "grant-permission", "ro-cfg", "read", "/cfg/a", "/cfg/m"),
        R("role", "grant-permission", "w-log", "write", "/log"),
        R("role", "grant-permission", "w-log", "readwrite", "/log", label="update a permission"),
        R("role", "grant-permission", "ro-cfg", "read", "/z", "--from-key"),
        R("role", "grant-permission", "nope", "read", "/x", fails=True, label="unknown role"),
        R("role", "grant-permission", "ro-cfg", "read", "/b", "/a", fails=True, label="bad range"),
        R("role", "get", "rw-app"),
        R("role", "get", "ro-cfg", "-w", "json"),
        R("role", "get", "w-log"),
        R("role", "list"),
        R("role", "list", "-w", "json"),
        R("user", "add", "alice:apw"),
        R("user", "add", "bob:bpw"),
        R("user", "grant-role", "alice", "rw-app"),
        R("user", "grant-role", "alice", "ro-cfg"),
        R("user", "grant-role", "bob", "w-log"),
        R("user", "grant-role", "bob", "nope", fails=True, label="grant an unknown role"),
        R("user", "grant-role", "carol", "w-log", fails=True, label="grant to an unknown user"),
        R("user", "get", "alice"),
        R("user", "get", "alice", "--detail"),
        R("user", "get", "alice", "-w", "json"),
        R("user", "list"),
        R("user", "list", "-w", "json"),
        R("put", "/app/x", "1"),
        R("put", "/cfg/b", "2"),
        R("put", "/other", "3"),
        R("auth", "status"),
        R("auth", "enable"),
        R("auth", "enable", *ROOT, label="enable again"),
        R("auth", "status", *ROOT),
        R("auth", "status", "-w", "json", *ROOT),
        R("auth", "status", *ALICE, fails=True, label="auth status for a non-root user"),
        # With auth on: who may do what.
        R("get", "/app/x", fails=True, label="no user"),
        R("put", "/app/x", "2", fails=True, label="put with no user"),
        R("get", "/app/x", "--user", "alice:wrong", fails=True, label="wrong password"),
        R("get", "/app/x", "--user", "nobody:pw", fails=True, label="unknown user"),
        R("put", "/app/x", "2", *ALICE),
        R("get", "/app/", "--prefix", *ALICE),
        R("get", "/app/x", "-w", "json", *ALICE),
        R("get", "/cfg/b", *ALICE),
        R("get", "/cfg/a", "/cfg/m", *ALICE, label="read the whole granted range"),
        R("get", "/cfg/a", "/cfg/n", *ALICE, fails=True, label="read past the granted range"),
        R("get", "/cfg/", "--prefix", *ALICE, fails=True, label="read a wider prefix"),
        R("get", "/zz", "--from-key", *ALICE, label="read an open-ended grant"),
        R("put", "/cfg/b", "x", *ALICE, fails=True, label="write a read-only key"),
        R("get", "/other", *ALICE, fails=True, label="read an ungranted key"),
        R("del", "/app/x", "--prev-kv", *ALICE),
        # From revision 1, so that no event races the watch's start: two puts and a delete
        # (three lines each).
        Watch(("/app/", "--prefix", "--rev=1", *ALICE), during=(), lines=9),
        Watch(("/other", *ALICE), during=(), lines=0, exits=True, label="watch an ungranted key"),
        R("put", "/log", "entry", *BOB),
        R("get", "/log", *BOB),
        R("del", "/log", *BOB),
        R("put", "/log/sub", "x", *BOB, fails=True, label="a single-key grant is not a prefix"),
        R("txn", *ALICE, stdin='mod("/app/y") = "0"\n\nput /app/y 1\n\nget /app/y\n\n'),
        R(
            "txn",
            *ALICE,
            stdin='mod("/app/y") > "0"\n\nput /other 1\n\n\n',
            fails=True,
            label="txn writing an ungranted key",
        ),
        R(
            "txn",
            *ALICE,
            stdin='value("/other") = "3"\n\nget /app/y\n\n\n',
            fails=True,
            label="txn comparing an ungranted key",
        ),
        R("lease", "grant", "600", *ROOT, capture={"lease": r"lease ([0-9a-f]+) granted"}),
        R("put", "--lease={lease}", "/other", "leased", *ROOT),
        R(
            "put",
            "--lease={lease}",
            "/app/z",
            "1",
            *ALICE,
            fails=True,
            label="attach a lease holding an ungranted key",
        ),
        R("lease", "revoke", "{lease}", *ALICE, fails=True, label="revoke such a lease"),
        R("lease", "timetolive", "--keys", "{lease}", *ALICE, fails=True, label="its keys"),
        R("lease", "timetolive", "--keys", "{lease}", *ROOT),
        R("lease", "list", *ALICE, fails=True, label="list leases holding ungranted keys"),
        R("lease", "revoke", "{lease}", *ROOT),
        R("endpoint", "status", *ALICE, label="status for any user"),
        R("endpoint", "status", fails=True, label="status with no user"),
        R("endpoint", "hashkv", *ALICE, fails=True, label="hashkv for a non-root user"),
        R("alarm", "list", *ALICE),
        # etcdctl disarms only the alarms it lists: none here, so nothing is refused.
        R("alarm", "disarm", *ALICE, label="disarm with no alarm, non-root user"),
        R("defrag", *ALICE, fails=True, label="defrag for a non-root user"),
        R("snapshot", "save", "{dir}/s.db", *ALICE, fails=True, label="snapshot non-root"),
        R("compaction", "1", *ALICE, fails=True, label="compaction for a non-root user"),
        R(
            "member",
            "list",
            *ALICE,
            capture={"member_id": r"([0-9a-f]+), started"},
            label="member list for a non-root user",
        ),
        R("member", "list", fails=True, label="member list with no user"),
        R(
            "member",
            "update",
            "{member_id}",
            "--peer-urls=http://127.0.0.1:1",
            *ALICE,
            fails=True,
            label="member update for a non-root user",
        ),
        R("user", "get", "alice", *ALICE, label="a user reads itself"),
        R("user", "get", "bob", *ALICE, fails=True, label="a user reads another"),
        R("role", "get", "rw-app", *ALICE, label="a user reads its role"),
        R("role", "get", "w-log", *ALICE, fails=True, label="a user reads another role"),
        R("user", "list", *ALICE, fails=True, label="user list for a non-root user"),
        R("role", "list", *ALICE, fails=True, label="role list for a non-root user"),
        R("user", "add", "carol:cpw", *ALICE, fails=True, label="user add for a non-root user"),
        R("auth", "disable", *ALICE, fails=True, label="disable for a non-root user"),
        R("user", "delete", "root", *ROOT, fails=True, label="delete root while enabled"),
        R("user", "revoke-role", "root", "root", *ROOT, fails=True, label="revoke root's role"),
        R("role", "delete", "root", *ROOT, fails=True, label="delete the root role"),
        # Changes take effect at once.
        R("role", "revoke-permission", "ro-cfg", "/cfg/a", "/cfg/m", *ROOT),
        R("role", "revoke-permission", "ro-cfg", "/cfg/a", *ROOT, fails=True, label="not granted"),
        R("get", "/cfg/b", *ALICE, fails=True, label="read after the grant was revoked"),
        R("user", "revoke-role", "alice", "rw-app", *ROOT),
        R("user", "revoke-role", "alice", "rw-app", *ROOT, fails=True, label="revoke again"),
        R("put", "/app/x", "3", *ALICE, fails=True, label="write after the role was revoked"),
        R("user", "passwd", "bob", "--interactive=false", *ROOT, stdin="newpw\n"),
        R("get", "/log", *BOB, fails=True, label="the old password after passwd"),
        R("put", "/log", "again", "--user", "bob:newpw", label="the new password"),
        R("role", "delete", "w-log", *ROOT),
        R("user", "get", "bob", *ROOT, label="a deleted role leaves its users"),
        R("put", "/log", "x", "--user", "bob:newpw", fails=True, label="after role delete"),
        R("user", "delete", "bob", *ROOT),
        R("user", "delete", "bob", *ROOT, fails=True, label="delete an unknown user"),
        R("get", "/log", "--user", "bob:newpw", fails=True, label="a deleted user"),
        R("user", "list", *ROOT),
        R("role", "list", *ROOT),
        R("get", "", "--from-key", *ROOT, label="root reads everything"),
        R("auth", "disable", *ROOT),
        R("auth", "disable", label="disable again"),
        R("auth", "status", label="status after disable"),
        R("get", "", "--from-key", label="everything readable again"),
        R("user", "list"),
    ),
    etcd35=True,
)

SCENARIOS = (KV, DELETE, TXN, WATCH, LEASE, MAINTENANCE, NOSPACE, ERRORS, AUTH)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_etcdctl_compat(
    scenario: Scenario, members: MemberRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    flavours = compat_flavours()
    if scenario.etcd35:
        built = etcd35.cached_binary()
        if built is None:
            pytest.fail(
                f"etcd {etcd35.ETCD35_VERSION} is not built in {etcd35.cache_dir()}; {etcd35.HINT}",
                pytrace=False,
            )
        monkeypatch.setattr(cluster_module, "ETCD_BIN", built)
        # And its etcdctl, which has the 3.5 commands (``auth status``).
        monkeypatch.setattr(cluster_module, "ETCDCTL_BIN", etcd35.cached_etcdctl())
    runs = []
    for flavour in flavours:
        member = members.new(flavour, name="compat", extra_flags=scenario.flags)
        runs.append(Runner(member).run_scenario(scenario))
        member.stop()  # one server at a time on two cores
    problems = compare(scenario.name, flavours, runs[0], runs[1], ALLOWED_DIFFERENCES)
    assert not problems, f"{len(problems)} difference(s):\n\n" + "\n\n".join(problems)
