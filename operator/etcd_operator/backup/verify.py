"""Verify a stored backup: download it, check its structure and hash, restore it into a scratch
directory. No Kubernetes.

The download already checks the object end to end (its sha256 and etcd's trailer; decryption
authenticates every chunk). Then ``pyetcdutl snapshot status`` walks the bbolt file (every page
of every bucket: a broken B+tree fails here) and reports etcd's hash of the key space, the
latest revision and the number of keys, and ``pyetcdutl snapshot restore`` writes a member's
data dir from it into a scratch directory, as a real restore would. Everything is removed
afterwards. pyetcdutl runs as a module of this interpreter (it is installed with this package).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from etcd_operator.backup.download import download_snapshot
from etcd_operator.backup.errors import BackupError
from etcd_operator.backup.store import StoreSettings

# pyetcdutl as a module of this very interpreter: it is installed with this package, and no
# PATH (an image's, or the process kubelet's) has to find its script.
PYETCDUTL = (sys.executable, "-m", "pyetcd.utl")


class VerificationError(BackupError):
    """The backup did not restore or its structure is broken; the message says which step."""

    reason = "VerificationFailed"


@dataclass(frozen=True)
class Verified:
    revision: int
    total_keys: int
    hash: int


def _utl(*args: str) -> str:
    done = subprocess.run([*PYETCDUTL, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise VerificationError(
            f"pyetcdutl {args[0]} {args[1]}: {lines[-1] if lines else done.returncode}"
        )
    return done.stdout


def check_snapshot(path: Path, scratch: Path) -> Verified:
    """Structure and hash of the snapshot file ``path``, then a restore into ``scratch``."""
    status = json.loads(_utl("snapshot", "status", str(path), "-w", "json"))
    _utl(
        "snapshot", "restore", str(path),
        "--name=verify",
        "--initial-cluster=verify=http://127.0.0.1:2380",
        "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        f"--data-dir={scratch / 'data'}",
    )  # fmt: skip
    return Verified(
        revision=int(status["revision"]),
        total_keys=int(status["totalKey"]),
        hash=int(status["hash"]),
    )


async def verify_backup(
    store: StoreSettings, key: str, encryption_key: bytes | None, *, scratch_root: str | None = None
) -> Verified:
    """Download ``key`` and check it (see the module); raises a ``BackupError``."""
    with tempfile.TemporaryDirectory(prefix="etcd-verify-", dir=scratch_root) as scratch:
        path = Path(scratch) / "snapshot.db"
        await download_snapshot(store, key, path, encryption_key)
        return await asyncio.to_thread(check_snapshot, path, Path(scratch))
