"""``etcd-member-init``: the init container of every member pod, from the operator's image.

It does two things before the member's own container starts, for either engine:

1. **Quorum-loss recovery** (issue 11). When the bootstrap ConfigMap names this pod as the
   survivor of a lost quorum (``force-new-cluster: <pod>:<token>``, which the operator sets only
   after the user's consent and after deleting the other members' volumes), it runs etcd's
   ``--force-new-cluster`` on the member's data dir offline (``pyetcdutl force-new-cluster``,
   which reads and writes the data dirs of etcd 3.4 and 3.5 as well as pyetcd's): the log then
   commits the removal of every other member, and the member starts as a one-member cluster with
   every committed write. A marker file on the volume records the token, so that a later restart of
   the pod never does it again: by then the cluster has grown back, and forcing it once more
   would throw the new members out.
2. **The lost-data check.** It refuses to start a member on an empty data dir while its cluster
   lists it as started. pyetcd refuses that itself; etcd 3.4 notices a lost log only when its
   leader still remembers how far it had replicated to the member, and after a leader change the
   empty member rejoins under its old ID, a Raft safety hole nobody can see afterwards. The
   refusal uses etcd's own words ("member <id> has already been bootstrapped"), which the
   operator reads from this container's termination message and replaces the member on.

The check's decision (``decide``):

* the data dir holds a WAL: start (a restart; the engine checks its own data);
* no member of the cluster answered (a new cluster forming, or every member down): start, since
  there is nothing to compare with, and the engine's own checks apply;
* the cluster lists a member with this pod's peer URL and client URLs (it has started before):
  refuse;
* otherwise (a member added and never started, or not listed): start.

It only covers pod starts: an init container does not run again when just the member container
restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

import grpc
from pyetcd.client import EtcdClientError, Member
from pyetcd.fileutil import fsync_dir

from etcd_operator.components.auth import ENV_PASSWORD, ENV_USER, RootCredentials
from etcd_operator.components.tls import ClientCredentials
from etcd_operator.members import connect_etcd

# The bootstrap ConfigMap's key (through this environment variable, optional) that names the
# survivor of a lost quorum: ``<pod>:<token>``.
ENV_FORCE_NEW_CLUSTER = "ETCD_OPERATOR_FORCE_NEW_CLUSTER"
# The member's own --initial-cluster (from the bootstrap ConfigMap), where the peers are found.
ENV_INITIAL_CLUSTER = "ETCD_INITIAL_CLUSTER"
# On the data volume, next to (not in) the data dir: the token of the recovery done.
MARKER_NAME = "force-new-cluster.done"


def pyetcdutl() -> tuple[str, ...]:
    """pyetcdutl of the same installation (next to this interpreter), else from ``PATH``."""
    beside = Path(sys.executable).with_name("pyetcdutl")
    return (str(beside),) if beside.exists() else ("pyetcdutl",)


class RecoveryError(Exception):
    """The offline recovery could not be done; the message says why."""


@dataclass(frozen=True)
class Verdict:
    """Start the member (``start``) or refuse, with the line to print."""

    start: bool
    message: str


def has_wal(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a member's WAL (etcd's ``wal.Exist``: a ``*.wal`` segment)."""
    try:
        return any(p.suffix == ".wal" for p in (data_dir / "member" / "wal").iterdir())
    except OSError:
        return False


def decide(
    *, wal: bool, members: Sequence[Member] | None, peer_url: str, data_dir: Path
) -> Verdict:
    """Whether the member whose peer URL is ``peer_url`` may start; ``members`` is the cluster's
    member list, ``None`` when no member answered."""
    if wal:
        return Verdict(True, f"{data_dir} holds a WAL: starting")
    if members is None:
        return Verdict(True, "no member answered: a new cluster, or all down; starting")
    for member in members:
        if peer_url in member.peer_urls and member.client_urls:
            return Verdict(
                False,
                f"member {member.id_hex} has already been bootstrapped: its data dir {data_dir} "
                "is empty, yet the cluster lists it as started; its data was lost",
            )
    return Verdict(True, "a new member (added, not started yet): starting")


def forced_for(value: str | None, pod: str) -> str | None:
    """The recovery token if ``value`` (``<pod>:<token>``) names ``pod``, else ``None``."""
    if not value:
        return None
    named, _, token = value.partition(":")
    return token if named == pod and token else None


def marker_token(marker: Path) -> str | None:
    try:
        return marker.read_text().strip() or None
    except FileNotFoundError:
        return None


def write_marker(marker: Path, token: str) -> None:
    """Record ``token`` durably: written aside, fsynced, renamed into place, directory fsynced."""
    tmp = marker.with_name(marker.name + ".tmp")
    with tmp.open("w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(marker)
    fsync_dir(marker.parent)


def force_new_cluster(
    data_dir: Path, marker: Path, token: str, utl: Sequence[str] | None = None
) -> str:
    """The offline ``--force-new-cluster`` of recovery ``token``, once; the line to print."""
    if marker_token(marker) == token:
        return f"force-new-cluster {token} was done before on this volume: starting"
    if not has_wal(data_dir):
        raise RecoveryError(f"{data_dir}: no WAL: this member has no data to rebuild from")
    done = subprocess.run(
        [*(utl or pyetcdutl()), "force-new-cluster", f"--data-dir={data_dir}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        why = done.stderr.strip().splitlines()
        raise RecoveryError(why[-1] if why else f"pyetcdutl exited {done.returncode}")
    write_marker(marker, token)
    return f"force-new-cluster {token}: {done.stdout.strip()}"


async def member_list(
    endpoints: Sequence[str],
    deadline: float,
    tls: ClientCredentials | None = None,
    auth: RootCredentials | None = None,
) -> list[Member] | None:
    """The cluster's members from the first endpoint that answers within ``deadline`` seconds
    (all are asked at once: a member that is gone must not use up the time); ``None`` if none
    does. ``tls``: the client certificate, for members that require one; ``auth``: root's
    credentials, for a cluster with auth on (etcd 3.5 and pyetcd then list members only to a
    user: without them no member would seem to answer, and the check would let an emptied
    member start)."""
    client = connect_etcd(endpoints, deadline, tls, auth)

    async def ask(endpoint: str) -> list[Member]:
        return list((await client.member_list(endpoint)).members)

    tasks = [asyncio.ensure_future(ask(e)) for e in endpoints]
    try:
        for next_done in asyncio.as_completed(tasks, timeout=deadline):
            try:
                return await next_done
            except (EtcdClientError, grpc.RpcError, OSError):
                continue
    except TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
    return None


def peer_endpoints(
    initial_cluster: str, me: str, client_port: int, client_scheme: str = "http"
) -> list[str]:
    """The other members' client URLs, from ``--initial-cluster`` (``name=peerURL,...``): the
    peer URL's host with the client port and ``client_scheme`` (the peer URL's scheme says
    nothing about the client port's: either plane may have TLS without the other). Asked
    directly, not through the client Service, which lists only Ready members: a member without
    a leader is not Ready, yet answers its member list, and that is exactly when a wiped member
    must not slip in."""
    endpoints = []
    for item in initial_cluster.split(","):
        name, _, url = item.partition("=")
        if not url or name.strip() == me:
            continue
        parts = urlsplit(url.strip())
        if parts.hostname:
            endpoints.append(f"{client_scheme}://{parts.hostname}:{client_port}")
    return endpoints


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="etcd-member-init", description=__doc__)
    parser.add_argument("--name", required=True, help="this member's (pod's) name")
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--peer-url", required=True, help="this member's peer URL")
    parser.add_argument(
        "--endpoints", default="", help="comma-separated client URLs to ask (the client Service)"
    )
    parser.add_argument(
        "--initial-cluster",
        default=os.environ.get(ENV_INITIAL_CLUSTER, ""),
        help=f"name=peerURL,...: the other members are asked too (default: ${ENV_INITIAL_CLUSTER})",
    )
    parser.add_argument("--client-port", type=int, default=2379)
    parser.add_argument(
        "--client-scheme", choices=("http", "https"), default="http", help="of the client URLs"
    )
    # etcdctl's names: the client certificate, when the members require one.
    parser.add_argument("--cacert", default="", help="the CA of the members' certificates")
    parser.add_argument("--cert", default="", help="the client certificate")
    parser.add_argument("--key", default="", help="its key")
    parser.add_argument(
        "--force-new-cluster",
        default=os.environ.get(ENV_FORCE_NEW_CLUSTER, ""),
        help=f"<pod>:<token> of a quorum-loss recovery (default: ${ENV_FORCE_NEW_CLUSTER})",
    )
    parser.add_argument("--timeout", type=float, default=3.0)
    return parser.parse_args(argv)


def client_credentials(cacert: str, cert: str, key: str) -> ClientCredentials | None:
    """The client certificate files, read; ``None`` when none is given."""
    if not (cacert or cert or key):
        return None
    return ClientCredentials(
        Path(cacert).read_bytes(), Path(cert).read_bytes(), Path(key).read_bytes()
    )


def root_credentials(env: Mapping[str, str]) -> RootCredentials | None:
    """Root's credentials from the environment (the root Secret's, with spec.auth)."""
    user, password = env.get(ENV_USER, ""), env.get(ENV_PASSWORD, "")
    if not user or not password:
        return None
    return RootCredentials(user, password)


def fail(message: str) -> NoReturn:
    # The last line of the output is the container's termination message
    # (FallbackToLogsOnError), which the operator reads.
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    opts = parse_args(argv)
    data_dir: Path = opts.data_dir
    token = forced_for(opts.force_new_cluster, opts.name)
    if token is not None:
        try:
            print(force_new_cluster(data_dir, data_dir.parent / MARKER_NAME, token), flush=True)
        except (RecoveryError, OSError) as err:
            fail(f"force-new-cluster {token} failed: {err}")
        return
    wal = has_wal(data_dir)
    members = None
    if not wal:
        endpoints = peer_endpoints(
            opts.initial_cluster, opts.name, opts.client_port, opts.client_scheme
        )
        endpoints += [e for e in opts.endpoints.split(",") if e]
        try:
            tls = client_credentials(opts.cacert, opts.cert, opts.key)
        except OSError as err:
            fail(f"cannot read the client certificate: {err}")
        auth = root_credentials(os.environ)
        members = (
            asyncio.run(member_list(endpoints, opts.timeout, tls, auth)) if endpoints else None
        )
    verdict = decide(wal=wal, members=members, peer_url=opts.peer_url, data_dir=data_dir)
    if not verdict.start:
        fail(verdict.message)
    print(verdict.message, flush=True)


if __name__ == "__main__":
    main()
