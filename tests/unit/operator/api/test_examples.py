"""examples/ against the generated CRD: valid ones pass the schema and every CEL rule, invalid
ones fail with the message they announce, immutable fields refuse the update pairs, and the
pydantic models agree with the CRD on all of them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from etcd_operator.api.v1alpha1 import EtcdCluster
from pydantic import ValidationError

from tests.unit.operator.api import examples
from tests.unit.operator.api.examples import Example
from tests.unit.operator.api.kube_schema import admit, apply_defaults, pruned_fields

SCHEMA = examples.openapi_schema()
VALID = examples.valid()
INVALID = examples.invalid()
UPDATES = examples.update_pairs()


def _ids(items: list[Example]) -> list[str]:
    return [item.id for item in items]


def _without_empty(value: Any) -> Any:
    """Drop empty objects: ``podTemplate: {}`` and an absent podTemplate mean the same."""
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v != {}}
    return value


def test_the_examples_are_there() -> None:
    assert _ids(VALID) == [
        "etcdcluster-dev.yaml",
        "etcdcluster-etcd.yaml",
        "etcdcluster-pyetcd.yaml",
        "etcdcluster-tls.yaml",
    ]
    assert len(INVALID) >= 30
    assert len(UPDATES) >= 3


def test_every_object_has_its_own_name() -> None:
    # e2e applies them all into one namespace; an update pair shares one name.
    names = [e.body["metadata"]["name"] for e in VALID + INVALID]
    names += [old.body["metadata"]["name"] for old, _ in UPDATES]
    assert len(names) == len(set(names))
    for old, new in UPDATES:
        assert old.body["metadata"] == new.body["metadata"]


@pytest.mark.parametrize("example", VALID, ids=_ids(VALID))
def test_valid_example_is_admitted(example: Example) -> None:
    assert example.expect is None
    assert pruned_fields(SCHEMA, example.body) == [], "misspelt fields would be dropped silently"
    assert admit(SCHEMA, example.body) == []


@pytest.mark.parametrize("example", VALID, ids=_ids(VALID))
def test_valid_example_round_trips_through_the_models(example: Example) -> None:
    cluster = EtcdCluster.model_validate(example.body)
    dumped = cluster.model_dump(mode="json", exclude_none=True, by_alias=True)
    assert pruned_fields(SCHEMA, dumped) == []
    assert admit(SCHEMA, dumped) == []
    # The models' defaults and the CRD's agree: what the server stores is what Python sees.
    server_view = apply_defaults(SCHEMA, example.body)["spec"]
    assert _without_empty(server_view) == _without_empty(dumped["spec"])


@pytest.mark.parametrize("example", VALID, ids=_ids(VALID))
def test_no_op_update_of_a_valid_example_is_admitted(example: Example) -> None:
    assert admit(SCHEMA, example.body, old=example.body) == []


@pytest.mark.parametrize("example", VALID, ids=_ids(VALID))
def test_day_2_changes_are_admitted(example: Example) -> None:
    changed = copy.deepcopy(example.body)
    changed["spec"]["replicas"] = 5
    changed["spec"]["version"] = "3.5.18"
    changed["spec"].setdefault("storage", {})["size"] = "16Gi"
    changed["spec"].setdefault("etcd", {})["quotaBackendBytes"] = 4 * 1024**3
    assert admit(SCHEMA, changed, old=example.body) == []


def test_an_even_member_count_is_admitted() -> None:
    # Allowed on purpose: the operator warns with an event rather than refusing.
    body = copy.deepcopy(VALID[0].body)
    body["spec"]["replicas"] = 4
    assert admit(SCHEMA, body) == []


def _unknown_field(example: Example) -> bool:
    return example.expect is not None and example.expect.startswith("unknown field ")


@pytest.mark.parametrize("example", INVALID, ids=_ids(INVALID))
def test_invalid_example_is_refused_with_its_message(example: Example) -> None:
    assert example.expect, "an invalid example says what the API server answers: # expect: ..."
    # A misspelt field is the reason of its example, and must be the only one elsewhere.
    unknown = pruned_fields(SCHEMA, example.body)
    assert len(unknown) == (1 if _unknown_field(example) else 0), unknown
    errors = admit(SCHEMA, example.body)
    # One reason per file: the example shows exactly the rule it is named after.
    assert len(errors) == 1, errors
    assert example.expect in errors[0]


@pytest.mark.parametrize(
    "example",
    [e for e in INVALID if _unknown_field(e)],
    ids=_ids([e for e in INVALID if _unknown_field(e)]),
)
def test_unknown_fields_are_refused_by_strict_field_validation_only(example: Example) -> None:
    # kubectl asks for fieldValidation=Strict; a client that does not gets the field pruned
    # (with a warning) and the rest admitted: what the schema cannot refuse, Strict does.
    assert admit(SCHEMA, example.body, strict=False) == []


@pytest.mark.parametrize("example", INVALID, ids=_ids(INVALID))
def test_models_refuse_what_the_crd_refuses(example: Example) -> None:
    if example.path.stem.startswith("name-"):
        # metadata.name is the API server's to check: the models also parse bodies without
        # metadata (tests, kopf's partial bodies), so they accept these.
        assert example.expect is not None and "metadata.name" in example.expect
        EtcdCluster.model_validate(example.body)
        return
    with pytest.raises(ValidationError):
        EtcdCluster.model_validate(example.body)


@pytest.mark.parametrize(("old", "new"), UPDATES, ids=[new.id for _, new in UPDATES])
def test_immutable_field_update_is_refused(old: Example, new: Example) -> None:
    assert new.expect, "the refused update says what the API server answers: # expect: ..."
    assert admit(SCHEMA, old.body) == []
    assert admit(SCHEMA, new.body) == [], "the new object alone is valid: only the change is not"
    errors = admit(SCHEMA, new.body, old=old.body)
    assert len(errors) == 1, errors
    assert new.expect in errors[0]


@pytest.mark.parametrize(("old", "new"), UPDATES, ids=[new.id for _, new in UPDATES])
def test_no_op_updates_are_admitted(old: Example, new: Example) -> None:
    assert admit(SCHEMA, old.body, old=old.body) == []
    assert admit(SCHEMA, new.body, old=new.body) == []


def test_update_examples_are_the_only_refused_updates() -> None:
    # Every file under invalid/updates is part of a pair.
    updates = examples.EXAMPLES / "invalid" / "updates"
    files = {p.name for p in updates.glob("*.yaml")}
    paired = {e.path.name for pair in UPDATES for e in pair}
    assert files == paired


def test_tls_planes_are_fixed_for_life_and_only_the_lifetime_may_change() -> None:
    (created,) = [e for e in VALID if e.id == "etcdcluster-tls.yaml"]
    longer = copy.deepcopy(created.body)
    longer["spec"]["tls"]["certificateValidityHours"] = 24
    assert admit(SCHEMA, longer, old=created.body) == []
    user_secrets = {"source": "Secret", "serverSecretName": "s", "clientSecretName": "c"}
    for path, value in (
        (("tls", "peer"), None),  # back to http between members
        (("tls",), None),  # plaintext
        (("tls", "client"), user_secrets),  # another source of certificates
    ):
        changed = copy.deepcopy(created.body)
        parent = changed["spec"]
        for key in path[:-1]:
            parent = parent[key]
        if value is None:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value
        errors = admit(SCHEMA, changed, old=created.body)
        assert len(errors) == 1 and "tls.client and tls.peer are immutable" in errors[0], errors
    # And a plaintext cluster does not become a TLS one.
    (plain,) = [e for e in VALID if e.id == "etcdcluster-pyetcd.yaml"]
    with_tls = copy.deepcopy(plain.body)
    with_tls["spec"]["tls"] = {"client": {}}
    assert any("immutable" in e for e in admit(SCHEMA, with_tls, old=plain.body))


def test_auth_may_be_added_but_never_removed_nor_moved_to_another_secret() -> None:
    (plain,) = [e for e in VALID if e.id == "etcdcluster-pyetcd.yaml"]
    with_auth = copy.deepcopy(plain.body)
    with_auth["spec"]["auth"] = {}
    assert admit(SCHEMA, with_auth, old=plain.body) == []  # turning auth on is a day-2 change
    named = copy.deepcopy(plain.body)
    named["spec"]["auth"] = {"rootSecretName": "etcd-root"}
    assert admit(SCHEMA, named, old=plain.body) == []
    for old, new, message in (
        (with_auth, plain.body, "auth cannot be removed"),
        (named, plain.body, "auth cannot be removed"),
        (with_auth, named, "auth.rootSecretName is immutable"),
        (named, with_auth, "auth.rootSecretName is immutable"),
    ):
        errors = admit(SCHEMA, new, old=old)
        assert len(errors) == 1 and message in errors[0], errors
    assert admit(SCHEMA, named, old=named) == []
