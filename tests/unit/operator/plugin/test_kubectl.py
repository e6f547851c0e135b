"""The kubectl boundary: the real subprocess runner (on a stand-in binary that reports its argv
and stdin), and kubectl's failures turned into one line each."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from etcd_operator.plugin.errors import (
    AlreadyExistsError,
    ForbiddenError,
    KubectlMissingError,
    NotFoundError,
    PluginError,
)
from etcd_operator.plugin.kubectl import (
    BACKUPS,
    CLUSTERS,
    Completed,
    Kube,
    KubectlProcess,
    classify,
)

from tests.unit.operator.plugin.fake import FakeKubectl


def stand_in(tmp_path: Path) -> Path:
    """A `kubectl` that prints its arguments and its input as JSON."""
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        'printf \'{"argv": ["%s"\' "$1"; shift\n'
        'for a in "$@"; do printf \', "%s"\' "$a"; done\n'
        'printf \'], "stdin": "%s"}\' "$(cat)"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_context_and_kubeconfig_are_passed_to_kubectl_with_the_input(tmp_path: Path) -> None:
    runner = KubectlProcess(str(stand_in(tmp_path)), context="staging", kubeconfig="/k/config")
    done = runner.run(["create", "--filename=-"], stdin="manifest")
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout) == {
        "argv": ["--context=staging", "--kubeconfig=/k/config", "create", "--filename=-"],
        "stdin": "manifest",
    }
    plain = KubectlProcess(str(stand_in(tmp_path))).run(["get", "pods"])
    assert json.loads(plain.stdout)["argv"] == ["get", "pods"]


def test_a_missing_kubectl_is_one_line(tmp_path: Path) -> None:
    runner = KubectlProcess(str(tmp_path / "no-kubectl"))
    with pytest.raises(KubectlMissingError, match="not found on PATH"):
        runner.run(["get", CLUSTERS])


@pytest.mark.parametrize(
    ("stderr", "error", "message"),
    [
        (
            'Error from server (NotFound): etcdclusters.etcd.pyetcd.io "x" not found\n',
            NotFoundError,
            'etcdclusters.etcd.pyetcd.io "x" not found',
        ),
        (
            'Error from server (Forbidden): etcdclusters.etcd.pyetcd.io "x" is forbidden: User '
            '"bob" cannot get resource "etcdclusters" in API group "etcd.pyetcd.io" in the '
            'namespace "prod"\n',
            ForbiddenError,
            'not allowed: etcdclusters.etcd.pyetcd.io "x" is forbidden: User "bob" cannot get',
        ),
        (
            'Error from server (AlreadyExists): error when creating "STDIN": '
            'etcdclusters.etcd.pyetcd.io "copy" already exists\n',
            AlreadyExistsError,
            'etcdclusters.etcd.pyetcd.io "copy" already exists',
        ),
        (
            'error: the server doesn\'t have a resource type "etcdclusters"\n',
            PluginError,
            "CRDs are not installed",
        ),
        (
            "Warning: v1 ComponentStatus is deprecated\n"
            "error: You must be logged in to the server (Unauthorized)\n",
            PluginError,
            "kubectl get failed: You must be logged in to the server (Unauthorized)",
        ),
        (
            "The connection to the server localhost:8080 was refused - did you specify the "
            "right host or port?\n",
            PluginError,
            "kubectl get failed: The connection to the server localhost:8080 was refused",
        ),
        ("", PluginError, "kubectl get failed: exit code 1"),
    ],
)
def test_kubectls_failures_become_one_line(
    stderr: str, error: type[PluginError], message: str
) -> None:
    found = classify(["get", CLUSTERS, "x"], Completed(1, "", stderr))
    assert type(found) is error
    assert message in str(found)
    assert "\n" not in str(found)


def test_verbs_name_the_resource_with_its_group_and_the_namespace_when_given() -> None:
    fake = FakeKubectl()
    kube = Kube(fake, "prod")
    assert kube.find(CLUSTERS, "x") is None
    assert kube.items(BACKUPS) == []
    assert kube.items(BACKUPS, all_namespaces=True) == []
    assert fake.calls == [
        ["get", "etcdclusters.etcd.pyetcd.io", "x", "--namespace=prod", "--output=json"],
        ["get", "etcdbackups.etcd.pyetcd.io", "--namespace=prod", "--output=json"],
        ["get", "etcdbackups.etcd.pyetcd.io", "--all-namespaces", "--output=json"],
    ]
    Kube(fake).items(CLUSTERS)  # kubectl's current namespace: no flag
    assert fake.calls[-1] == ["get", "etcdclusters.etcd.pyetcd.io", "--output=json"]


def test_not_found_names_the_kind_and_the_namespace() -> None:
    with pytest.raises(NotFoundError, match=r"^no EtcdCluster x in namespace prod$"):
        Kube(FakeKubectl(), "prod").get(CLUSTERS, "x")
    with pytest.raises(NotFoundError, match=r"^no EtcdBackup b in the current namespace$"):
        Kube(FakeKubectl(), None).get(BACKUPS, "b")
    with pytest.raises(NotFoundError, match=r"^no EtcdCluster x in namespace prod$"):
        Kube(FakeKubectl(), "prod").annotate(CLUSTERS, "x", "k", "v")


def test_output_that_is_not_an_object_is_an_error() -> None:
    class Garbled:
        def run(self, args: object, stdin: str | None = None) -> Completed:
            return Completed(0, "<html>proxy login</html>", "")

    with pytest.raises(PluginError, match="kubectl get returned no JSON"):
        Kube(Garbled()).get(CLUSTERS, "x")
