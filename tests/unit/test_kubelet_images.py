"""The e2e kubelet's image table (``e2e/kubelet/images.py``): upstream etcd's tag picks the release.

``v3.4.x`` (and an image without a tag) runs Debian's etcd 3.4, ``v3.5.x`` the etcd 3.5 that
``tools/etcd35.py`` builds into the e2e cache (here a stand-in build: two scripts and a stamp in
a temporary cache), any other tag is refused with the table of what there is. The images the
operator renders for ``spec.version`` 3.4.x and 3.5.x resolve. Other images ignore their tag.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from etcd_operator.api.settings import OperatorSettings
from etcd_operator.api.v1alpha1 import EtcdCluster
from etcd_operator.components import flags

from e2e.kubelet import images
from e2e.kubelet.images import ImageNotMappedError
from tools import etcd35
from tools.gobuild import STAMP

UPSTREAM = ("gcr.io/etcd-development/etcd", "quay.io/coreos/etcd", "registry.local/etcd", "etcd")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty e2e cache: etcd 3.5 is not built."""
    monkeypatch.setenv("PYETCD_E2E_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def built(cache: Path) -> dict[str, str]:
    """A stand-in etcd 3.5 build in the cache: the binaries and the stamp naming the version."""
    directory = etcd35.cache_dir()
    directory.mkdir(parents=True)
    paths = {}
    for binary in ("etcd", "etcdctl"):
        path = directory / binary
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
        paths[binary] = str(path)
    (directory / STAMP).write_text(json.dumps({"version": etcd35.ETCD35_VERSION}))
    return paths


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("gcr.io/etcd-development/etcd:v3.5.17", "v3.5.17"),
        ("etcd:3.4.23", "3.4.23"),
        ("etcd", None),
        ("localhost:5000/etcd", None),  # a registry port is not a tag
        ("etcd@sha256:0123abcd", None),  # nor is a digest
        ("localhost:5000/etcd:v3.4.23@sha256:0123abcd", "v3.4.23"),
    ],
)
def test_tag_of_an_image_reference(image: str, tag: str | None) -> None:
    assert images.tag(image) == tag


@pytest.mark.parametrize("repository", UPSTREAM)
@pytest.mark.parametrize("tag", [":v3.4.23", ":3.4.30", ":v3.4.0-rc.1", ""])
def test_34_tags_and_no_tag_run_debian_etcd(cache: Path, repository: str, tag: str) -> None:
    row = images.lookup(repository + tag)
    assert row.entrypoint == ("/usr/bin/etcd",)
    assert images.map_command(row, "etcdctl") == "/usr/bin/etcdctl"
    # The operator's command: the image keeps etcd in /usr/local/bin.
    argv = images.resolve(repository + tag, ["/usr/local/bin/etcd"], ["--name=m0"])
    assert argv == ["/usr/bin/etcd", "--name=m0"]


@pytest.mark.parametrize("repository", UPSTREAM)
@pytest.mark.parametrize("tag", ["v3.5.0", "v3.5.17", "3.5.36"])
def test_35_tags_run_the_built_etcd(built: dict[str, str], repository: str, tag: str) -> None:
    image = f"{repository}:{tag}"
    row = images.lookup(image)
    assert row.entrypoint == (built["etcd"],)
    for name in ("etcdctl", "/usr/local/bin/etcdctl", "/usr/bin/etcdctl"):
        assert images.map_command(row, name) == built["etcdctl"]
    assert images.map_command(row, "sh") == "/bin/sh"
    assert images.resolve(image, ["/usr/local/bin/etcd"], ["--name=m0"]) == [
        built["etcd"],
        "--name=m0",
    ]
    assert images.resolve(image, [], ["--version"]) == [built["etcd"], "--version"]


def test_35_tags_without_the_build_say_how_to_build_it(cache: Path) -> None:
    image = "gcr.io/etcd-development/etcd:v3.5.17"
    with pytest.raises(ImageNotMappedError) as caught:
        images.resolve(image, ["/usr/local/bin/etcd"], [])
    message = str(caught.value)
    assert image in message
    assert etcd35.ETCD35_VERSION in message
    assert str(etcd35.cache_dir()) in message
    assert "make etcd35" in message
    assert "python -m tools.etcd35 build" in message


def test_a_partial_35_build_does_not_count(built: dict[str, str]) -> None:
    Path(built["etcdctl"]).unlink()
    with pytest.raises(ImageNotMappedError, match="make etcd35"):
        images.lookup("etcd:v3.5.17")


@pytest.mark.parametrize("tag", ["v3.6.0", "3.6.1", "latest", "v3.3.27", "v3.50.1", "v3"])
def test_other_tags_are_refused_with_the_tags_there_are(built: dict[str, str], tag: str) -> None:
    image = f"gcr.io/etcd-development/etcd:{tag}"
    with pytest.raises(ImageNotMappedError) as caught:
        images.lookup(image)
    message = str(caught.value)
    assert image in message and repr(tag) in message
    assert "v3.4.x -> Debian etcd 3.4.23" in message
    assert f"v3.5.x -> etcd {etcd35.ETCD35_VERSION.removeprefix('v')} built from the Go" in message


def test_available_names_the_version_table() -> None:
    assert images.available(images.ETCD_RELEASES) == (
        "v3.4.x -> Debian etcd 3.4.23, "
        f"v3.5.x -> etcd {etcd35.ETCD35_VERSION.removeprefix('v')} built from the Go module proxy"
    )


@pytest.mark.parametrize(
    ("version", "binary"),
    [("3.4.23", "debian"), ("v3.4.30", "debian"), ("3.5.17", "built"), ("v3.5.0", "built")],
)
def test_the_images_the_operator_renders_resolve(
    built: dict[str, str], version: str, binary: str
) -> None:
    cluster = EtcdCluster.model_validate(
        {
            "apiVersion": "etcd.pyetcd.io/v1alpha1",
            "kind": "EtcdCluster",
            "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"engine": "etcd", "version": version},
        }
    )
    image = flags.image(cluster, OperatorSettings())
    argv = images.resolve(image, flags.command(cluster), ["--name=c-0"])
    assert argv == [built["etcd"] if binary == "built" else "/usr/bin/etcd", "--name=c-0"]


@pytest.mark.parametrize(
    ("image", "entrypoint"),
    [
        ("ghcr.io/pyetcd/pyetcd:3.5.17", "pyetcd"),
        ("ghcr.io/pyetcd/pyetcd:latest", "pyetcd"),
        ("ghcr.io/pyetcd/etcd-operator:0.1.0", "etcd-operator"),
    ],
)
def test_other_images_ignore_the_tag(cache: Path, image: str, entrypoint: str) -> None:
    assert Path(images.lookup(image).entrypoint[0]).name == entrypoint
    assert images.map_command(images.lookup("ghcr.io/pyetcd/pyetcd:3.5.17"), "etcdctl") == (
        "/usr/bin/etcdctl"
    )


def test_an_unknown_image_is_not_mapped() -> None:
    with pytest.raises(ImageNotMappedError, match=r"no local command for image 'nginx:1\.27'"):
        images.lookup("nginx:1.27")
