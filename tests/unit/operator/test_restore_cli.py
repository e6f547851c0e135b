"""etcd-restore's decisions that need no S3: when there is nothing to restore, and how it fails
(one line, exit 1); and how the operator reads a failed restore off the pod. The download and
the restore themselves run against a real S3 server in e2e/test_backups.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from etcd_operator.restore import RestoreError, main, parse_args, restore
from etcd_operator.runtime.observe import restore_failure


def opts(tmp_path: Path, *extra: str) -> Any:
    return parse_args(
        [
            f"--data-dir={tmp_path / 'data'}",
            "--name=m-0",
            "--initial-advertise-peer-urls=http://m-0:2380",
            "--initial-cluster-token=t",
            "--location=s3://bucket/key",
            *extra,
        ]
    )


def test_a_joining_member_restores_nothing(tmp_path: Path) -> None:
    done = restore(opts(tmp_path), {"ETCD_INITIAL_CLUSTER_STATE": "existing"})
    assert "nothing to restore" in done
    assert not (tmp_path / "data").exists()


def test_a_rebuild_from_a_backup_restores_a_member_of_an_existing_cluster(tmp_path: Path) -> None:
    """With the recovery's key, a member of an existing cluster restores (here it gets as far
    as the credentials check, before any download); without it, it joins."""
    env = {
        "ETCD_INITIAL_CLUSTER_STATE": "existing",
        "ETCD_INITIAL_CLUSTER": "m-0=http://m-0:2380",
        "RESTORE_FOR_RECOVERY": "token-1",
        "RESTORE_ACCESS_KEY_ID": "AKIA",
    }
    with pytest.raises(RestoreError, match="needs both accessKeyId and secretAccessKey"):
        restore(opts(tmp_path), env)
    (tmp_path / "data" / "member").mkdir(parents=True)
    assert "restored before" in restore(opts(tmp_path), env)


def test_a_member_restored_before_restores_nothing(tmp_path: Path) -> None:
    (tmp_path / "data" / "member").mkdir(parents=True)
    done = restore(opts(tmp_path), {"ETCD_INITIAL_CLUSTER_STATE": "new"})
    assert "restored before" in done


def test_half_credentials_are_refused_before_any_download(tmp_path: Path) -> None:
    env = {
        "ETCD_INITIAL_CLUSTER_STATE": "new",
        "ETCD_INITIAL_CLUSTER": "m-0=http://m-0:2380",
        "RESTORE_ACCESS_KEY_ID": "AKIA",
    }
    with pytest.raises(RestoreError, match="needs both accessKeyId and secretAccessKey"):
        restore(opts(tmp_path), env)


def test_a_failure_is_one_line_on_stderr_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        f"--data-dir={tmp_path / 'data'}", "--name=m-0", "--initial-advertise-peer-urls=u",
        "--initial-cluster-token=t", "--location=not-s3",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        main(argv, {"ETCD_INITIAL_CLUSTER_STATE": "new", "ETCD_INITIAL_CLUSTER": "m-0=u"})
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "restore failed: --location must be s3://bucket/key" in err


def test_the_operator_reads_the_failed_restore_off_the_pod() -> None:
    failed = {"exitCode": 1, "message": "starting\nrestore failed: sha256 mismatch\n"}
    pod = {
        "status": {
            "initContainerStatuses": [
                {
                    "name": "restore",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": failed},
                }
            ]
        }
    }
    assert restore_failure(pod) == "restore failed: sha256 mismatch"
    running = {"status": {"initContainerStatuses": [{"name": "restore", "state": {"running": {}}}]}}
    assert restore_failure(running) is None
    assert restore_failure({"status": {}}) is None


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("--to-time=yesterday", "--to-time must be an RFC 3339 time, not 'yesterday'"),
        ("--to-time=2026-12-06T10:00:00", "--to-time needs a time zone"),
        ("--to-revision=0", "--to-revision must be a revision, not 0"),
    ],
)
def test_a_point_in_time_that_is_no_point_is_refused_before_any_download(
    tmp_path: Path, target: str, said: str
) -> None:
    env = {"ETCD_INITIAL_CLUSTER_STATE": "new", "ETCD_INITIAL_CLUSTER": "m-0=http://m-0:2380"}
    with pytest.raises(RestoreError, match=said):
        restore(opts(tmp_path, target), env)
    assert not (tmp_path / "data").exists()


def test_a_revision_and_a_time_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--data-dir=d", "--name=n", "--initial-advertise-peer-urls=u",
                    "--initial-cluster-token=t", "--location=s3://b/k",
                    "--to-revision=5", "--to-time=2026-12-06T10:00:00Z"])  # fmt: skip
    assert "not allowed with argument" in capsys.readouterr().err
