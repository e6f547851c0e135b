"""The version rule: forward by patches or to the next minor, never back, never across a
minor; the operator's copy and the CRD's CEL transition rule held to the same table."""

from __future__ import annotations

import pytest
from etcd_operator.api.versions import VERSION_CHANGE_MESSAGE, core, refusal

from tests.unit.operator.api import examples
from tests.unit.operator.api.kube_schema import admit

SCHEMA = examples.openapi_schema()

ALLOWED = [
    ("3.5.17", "3.5.17"),
    ("3.5.16", "3.5.17"),
    ("3.5.1", "3.5.10"),  # numbers, not strings: 10 > 1
    ("v3.4.23", "v3.5.0"),
    ("3.4.23", "v3.5.17"),
    ("3.4.9", "3.5.0"),  # the next minor from any patch
    ("3.5.17", "3.5.17-rc.1"),
    ("3.5.17+build.2", "3.5.18"),
]
REFUSED = [
    ("3.5.17", "3.5.16"),
    ("3.5.10", "3.5.9"),
    ("3.5.0", "3.4.23"),
    ("v3.4.23", "v3.6.0"),
    ("3.5.17", "4.0.0"),
    ("3.5.17", "2.3.8"),
]


def body(version: str) -> dict[str, object]:
    return {
        "apiVersion": "etcd.pyetcd.io/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "versions", "namespace": "ns"},
        "spec": {"version": version},
    }


@pytest.mark.parametrize(("old", "new"), ALLOWED)
def test_forward_by_patches_or_to_the_next_minor_is_allowed(old: str, new: str) -> None:
    assert refusal(old, new) is None
    assert admit(SCHEMA, body(new), old=body(old)) == []


@pytest.mark.parametrize(("old", "new"), REFUSED)
def test_back_or_across_a_minor_is_refused_on_both_sides(old: str, new: str) -> None:
    why = refusal(old, new)
    assert why is not None and why.startswith(f"{old} -> {new}: ")
    errors = admit(SCHEMA, body(new), old=body(old))
    assert len(errors) == 1 and VERSION_CHANGE_MESSAGE in errors[0], errors


def test_core_reads_the_numbers() -> None:
    assert core("v3.5.17-rc.1+b") == (3, 5, 17)
    with pytest.raises(ValueError, match="not a version"):
        core("latest")
