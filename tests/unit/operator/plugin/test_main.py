"""`kubectl-etcd` as kubectl runs it: flags before or after the subcommand, exit codes, and
failures as one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from etcd_operator.plugin.commands import Session
from etcd_operator.plugin.kubectl import CLUSTERS, Completed, KubectlProcess
from etcd_operator.plugin.main import main, parse_args, session_for

from tests.unit.operator.plugin.fake import FakeClock, FakeKubectl, Run, session
from tests.unit.operator.plugin.objects import cluster, running_status


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "ops", "--context", "staging", "-o", "json", "status", "main"],
        ["status", "main", "-n", "ops", "--context", "staging", "-o", "json"],
        ["--namespace=ops", "status", "--context=staging", "main", "--output=json"],
    ],
)
def test_global_flags_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = parse_args(argv)
    assert (args.command, args.name) == ("status", "main")
    assert (args.namespace, args.context, args.output) == ("ops", "staging", "json")
    assert args.kubeconfig is None


def test_the_session_passes_context_and_kubeconfig_to_kubectl() -> None:
    current = session_for(parse_args(["backups", "main", "--kubeconfig", "/k", "--context", "c"]))
    assert isinstance(current.kube.runner, KubectlProcess)
    assert current.kube.runner.command(["get", "x"]) == [
        "kubectl", "--context=c", "--kubeconfig=/k", "get", "x",
    ]  # fmt: skip
    assert current.kube.namespace is None and current.output == "table"


def test_subcommand_arguments() -> None:
    backup = parse_args(["backup", "main", "--wait", "--timeout", "90s"])
    assert (backup.name, backup.wait, backup.timeout) == ("main", True, "90s")
    assert parse_args(["backup", "main"]).timeout == "10m"
    restore = parse_args(["restore", "main", "--from", "b-1", "--into", "copy", "--dry-run"])
    assert (restore.name, restore.source_backup, restore.new, restore.dry_run) == (
        "main", "b-1", "copy", True,
    )  # fmt: skip
    assert parse_args(["status", "-A"]).all_namespaces is True
    at = parse_args(["restore", "main", "--into", "copy", "--to-time", "2026-12-06T12:00:00Z"])
    assert (at.source_backup, str(at.point)) == (None, "2026-12-06T12:00:00Z")
    assert parse_args(["restore", "main", "--into", "c", "--to-revision", "7"]).point.revision == 7


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status", "main", "-A"],
        ["backup"],
        ["backup", "main", "--timeout", "soon"],
        ["restore", "main", "--into", "copy"],
        ["restore", "main", "--into", "copy", "--to-time", "yesterday"],
        ["restore", "main", "--into", "copy", "--to-time", "2026-12-06T12:00:00"],
        ["restore", "main", "--into", "copy", "--to-revision", "0"],
        ["restore", "main", "--into", "copy", "--to-revision", "5", "--to-time", "x"],
        ["status", "-o", "wide"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_args(argv)
    assert raised.value.code == 2
    assert "usage: kubectl etcd" in capsys.readouterr().err


def run_main(argv: list[str], fake: FakeKubectl) -> tuple[int, Run]:
    made: list[Run] = []

    def factory(args: argparse.Namespace) -> Session:
        made.append(session(fake, FakeClock(), args.output, args.namespace))
        return made[-1].session

    code = main(argv, factory)
    return code, made[0]


def test_a_command_that_works_exits_0() -> None:
    fake = FakeKubectl()
    fake.add(CLUSTERS, cluster(status=running_status()))
    code, run = run_main(["status", "main", "-n", "prod"], fake)
    assert code == 0 and "Leader:     main-1" in run.out.getvalue()


def test_a_missing_cluster_is_one_line_and_exit_1() -> None:
    code, run = run_main(["status", "nope", "-n", "prod"], FakeKubectl())
    assert code == 1
    assert run.err.getvalue() == "kubectl etcd status: no EtcdCluster nope in namespace prod\n"
    assert run.out.getvalue() == ""


def test_rbac_refusals_are_one_line_and_exit_1() -> None:
    fake = FakeKubectl(
        refuse={
            "annotate": Completed(
                1,
                "",
                'Error from server (Forbidden): etcdclusters.etcd.pyetcd.io "main" is forbidden: '
                'User "viewer" cannot patch resource "etcdclusters" in API group '
                '"etcd.pyetcd.io" in the namespace "prod"\n',
            )
        }
    )
    fake.add(CLUSTERS, cluster())
    code, run = run_main(["backup", "main", "--wait"], fake)
    assert code == 1
    assert (
        run.err.getvalue()
        .splitlines()[-1]
        .startswith(
            'kubectl etcd backup: not allowed: etcdclusters.etcd.pyetcd.io "main" is forbidden: '
            'User "viewer" cannot patch'
        )
    )


def test_keyspace_of_a_cluster_without_analysis_exits_2_saying_how_to_enable_it() -> None:
    fake = FakeKubectl()
    fake.add(CLUSTERS, cluster())
    code, run = run_main(["keyspace", "main"], fake)
    assert code == 2
    assert run.err.getvalue().startswith(
        "kubectl etcd keyspace: EtcdCluster main has no keyspace analysis: set spec.analysis"
    )


def test_a_bug_is_still_one_line_without_a_traceback() -> None:
    class Broken(FakeKubectl):
        def run(self, args: object, stdin: str | None = None) -> Completed:
            raise RuntimeError("surprise")

    code, run = run_main(["backups", "main"], Broken())
    assert code == 1
    assert run.err.getvalue() == "kubectl etcd backups: unexpected RuntimeError: surprise\n"


def test_the_module_runs_as_kubectl_etcd_with_kubectl_missing_from_path() -> None:
    """The real entry point end to end, in a process: one line, exit 1, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "etcd_operator.plugin", "status", "main"],
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent", "PYTHONPATH": ":".join(sys.path)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        "kubectl etcd status: kubectl not found on PATH: the plugin runs kubectl to reach the "
        "cluster\n"
    )
    assert done.stdout == ""
