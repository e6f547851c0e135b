"""``etcd-restore``: the restore init container of a member of a cluster created from a backup.

Before etcd starts, in each founding member: download the backup object, verify it (the sha256
its metadata records, and the one the EtcdBackup recorded when given), decrypt and decompress it
(``backup.download``), then ``pyetcdutl snapshot restore`` it with the member's own name, peer
URL, the cluster's initial cluster and token, bumping revisions and marking them compacted as
asked. With ``--to-revision`` or ``--to-time`` (a point-in-time restore), the events of the
backup's continuous backup up to that point are replayed onto it (``backup.pitr``, ``pyetcdutl
snapshot restore --replay``): every member replays the same events, so they agree. The member
then starts on the restored data dir.

Idempotent and safe to repeat: nothing is done for a member that joins an existing cluster
(``initial-cluster-state existing``: a member added later starts empty and catches up), unless
the cluster is being rebuilt from a backup after losing every member (``RESTORE_FOR_RECOVERY``
set from the bootstrap ConfigMap: every member restores), or whose data dir already holds a
member (a restart after a restore). The data dir appears whole or not
at all: the restore writes a sibling directory, which is renamed into place and the parent
fsynced. The snapshot file is removed afterwards. Any failure exits 1 with one line on stderr
(no traceback, no credential): the container's termination message, which the operator shows
in the cluster's conditions. Secrets come from the environment (``components.restore``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from etcd_operator.backup import (
    BackupError,
    Credentials,
    StoreSettings,
    download_snapshot,
    parse_key,
)
from etcd_operator.backup.download import fsync_dir
from etcd_operator.backup.pitr import Reached, Target, write_chain_log
from etcd_operator.backup.segments import client_for
from etcd_operator.backup.verify import PYETCDUTL
from etcd_operator.components.flags import ENV_INITIAL_CLUSTER, ENV_INITIAL_CLUSTER_STATE
from etcd_operator.components.restore import (
    ENV_ACCESS_KEY_ID,
    ENV_ENCRYPTION_KEY,
    ENV_RESTORE_FOR_RECOVERY,
    ENV_SECRET_ACCESS_KEY,
    ENV_SESSION_TOKEN,
)

SNAPSHOT_NAME = "restore-snapshot.db"
EVENTS_NAME = "restore-events.log"


class RestoreError(Exception):
    """The restore cannot go on; the message is the container's termination message."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="etcd-restore", description=__doc__)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--initial-advertise-peer-urls", required=True)
    parser.add_argument("--initial-cluster-token", required=True)
    parser.add_argument("--location", required=True, help="s3://bucket/key")
    parser.add_argument("--sha256", help="the snapshot's sha256 the EtcdBackup recorded")
    parser.add_argument("--endpoint")
    parser.add_argument("--region")
    parser.add_argument("--force-path-style", action="store_true")
    parser.add_argument("--ca-bundle")
    parser.add_argument("--bump-revision", type=int, default=0)
    parser.add_argument("--mark-compacted", action="store_true")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--to-revision", type=int, help="replay the continuous backup up to this revision"
    )
    target.add_argument("--to-time", help="replay the continuous backup up to this time (RFC 3339)")
    parser.add_argument(
        "--base-revision", type=int, help="the backup's revision, when its EtcdBackup recorded it"
    )
    parser.add_argument("--pyetcdutl", help=argparse.SUPPRESS)  # a path, in tests
    return parser.parse_args(argv)


def split_location(location: str) -> tuple[str, str]:
    if not location.startswith("s3://") or "/" not in location[5:]:
        raise RestoreError(f"--location must be s3://bucket/key, not {location!r}")
    bucket, key = location[5:].split("/", 1)
    return bucket, key


def credentials(env: Mapping[str, str]) -> Credentials | None:
    access, secret = env.get(ENV_ACCESS_KEY_ID), env.get(ENV_SECRET_ACCESS_KEY)
    if not access and not secret:
        return None  # boto3's default chain
    if not access or not secret:
        raise RestoreError("the S3 credentials Secret needs both accessKeyId and secretAccessKey")
    return Credentials(access, secret, env.get(ENV_SESSION_TOKEN) or None)


def encryption_key(env: Mapping[str, str]) -> bytes | None:
    value = env.get(ENV_ENCRYPTION_KEY)
    if value is None:
        return None
    try:
        return parse_key(value)
    except BackupError as err:
        raise RestoreError(f"the backup encryption key is not usable: {err}") from None


def point_in_time(opts: argparse.Namespace) -> Target | None:
    if opts.to_revision is not None:
        if opts.to_revision < 1:
            raise RestoreError(f"--to-revision must be a revision, not {opts.to_revision}")
        return Target(revision=opts.to_revision)
    if opts.to_time is not None:
        try:
            when = datetime.fromisoformat(opts.to_time)
        except ValueError:
            raise RestoreError(
                f"--to-time must be an RFC 3339 time, not {opts.to_time!r}"
            ) from None
        if when.tzinfo is None:
            raise RestoreError(f"--to-time needs a time zone (Z or +hh:mm): {opts.to_time!r}")
        return Target(unix_ms=int(when.timestamp() * 1000))
    return None


def restore(opts: argparse.Namespace, env: Mapping[str, str]) -> str:
    """Restore the member's data dir; returns what was done, raises ``RestoreError``."""
    state = env.get(ENV_INITIAL_CLUSTER_STATE, "")
    recovery = env.get(ENV_RESTORE_FOR_RECOVERY, "")
    if state != "new" and not recovery:
        return f"initial-cluster-state is {state or 'unset'}: the member joins, nothing to restore"
    data_dir: Path = opts.data_dir
    if (data_dir / "member").exists():
        return f"{data_dir} holds a member already: restored before"
    initial_cluster = env.get(ENV_INITIAL_CLUSTER)
    if not initial_cluster:
        raise RestoreError(f"{ENV_INITIAL_CLUSTER} is not set: the member's bootstrap is missing")
    bucket, key = split_location(opts.location)
    target = point_in_time(opts)
    store = StoreSettings(
        bucket=bucket,
        endpoint=opts.endpoint,
        region=opts.region,
        force_path_style=opts.force_path_style,
        credentials=credentials(env),
        ca_bundle=opts.ca_bundle,
    )
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    snapshot = parent / SNAPSHOT_NAME
    events = parent / EVENTS_NAME
    staging = parent / f".{data_dir.name}.restoring"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        secret_key = encryption_key(env)
        result = asyncio.run(download_snapshot(store, key, snapshot, secret_key))
        if opts.sha256 and result.sha256 != opts.sha256:
            raise RestoreError(
                f"{opts.location} holds a snapshot with sha256 {result.sha256}, but its "
                f"EtcdBackup recorded {opts.sha256}: the object was replaced or tampered with"
            )
        reached = None
        if target is not None:
            base = opts.base_revision or result.metadata.snapshot.revision
            reached = asyncio.run(
                _chain_log(store, key, target, events, base=base, secret=secret_key)
            )
        utl = [opts.pyetcdutl] if opts.pyetcdutl else list(PYETCDUTL)
        command = [
            *utl, "snapshot", "restore", str(snapshot),
            f"--name={opts.name}",
            f"--initial-cluster={initial_cluster}",
            f"--initial-cluster-token={opts.initial_cluster_token}",
            f"--initial-advertise-peer-urls={opts.initial_advertise_peer_urls}",
            f"--data-dir={staging}",
        ]  # fmt: skip
        if opts.bump_revision:
            command.append(f"--bump-revision={opts.bump_revision}")
        if opts.mark_compacted:
            command.append("--mark-compacted")
        if reached is not None:
            command.append(f"--replay={events}")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            raise RestoreError(f"pyetcdutl snapshot restore failed: {why[-1] if why else done}")
        if data_dir.exists():
            data_dir.rmdir()  # empty (no member dir): a fresh volume's mount point
        staging.rename(data_dir)
        fsync_dir(parent)
    except BackupError as err:
        raise RestoreError(str(err)) from None
    finally:
        snapshot.unlink(missing_ok=True)
        events.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    revision = f", revisions bumped by {opts.bump_revision}" if opts.bump_revision else ""
    replayed = ""
    if reached is not None:
        replayed = (
            f", then {reached.events} events of its continuous backup to revision "
            f"{reached.revision} (asked: {target})"
        )
    return (
        f"restored {result.location} (sha256 {result.sha256}){replayed} into {data_dir}{revision}"
    )


async def _chain_log(
    store: StoreSettings,
    key: str,
    target: Target,
    out: Path,
    *,
    base: int | None,
    secret: bytes | None,
) -> Reached:
    s3 = await client_for(store)
    return await write_chain_log(s3, store, key, target, out, base=base, encryption_key=secret)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    opts = parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        print(restore(opts, env), flush=True)
    except (RestoreError, OSError) as err:
        print(f"restore failed: {err}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
