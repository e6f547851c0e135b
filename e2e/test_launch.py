"""The launcher's mount order (pure): volumes parents first, the checkout bound back when hidden."""

from __future__ import annotations

from e2e.kubelet.launch import mount_plan

CHECKOUT = "/tmp/x"
PYTHON = "/root/.pyenv/versions/3.11.7"


def volume(target: str, source: str = "/pods/v") -> dict[str, object]:
    return {"source": source, "target": target, "readOnly": False}


def targets(plan: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(item["target"], item["keep"]) for item in plan]


def test_a_volume_above_the_checkout_is_followed_by_the_checkout() -> None:
    plan = mount_plan([volume("/tmp"), volume("/etc/hosts")], [CHECKOUT, PYTHON])
    assert targets(plan) == [("/tmp", False), ("/etc/hosts", False), (CHECKOUT, True)]
    assert plan[-1]["source"] == CHECKOUT


def test_volumes_elsewhere_leave_the_checkout_alone() -> None:
    plan = mount_plan([volume("/var/lib/etcd"), volume("/tmpfoo")], [CHECKOUT])
    assert [item["keep"] for item in plan] == [False, False]


def test_a_volume_exactly_on_the_checkout_wins() -> None:
    assert targets(mount_plan([volume(CHECKOUT)], [CHECKOUT])) == [(CHECKOUT, False)]


def test_volumes_inside_the_checkout_come_after_it() -> None:
    plan = mount_plan(
        [volume(f"{CHECKOUT}/data"), volume("/tmp/"), volume("/root")], [CHECKOUT, PYTHON]
    )
    assert targets(plan) == [
        ("/tmp/", False),
        ("/root", False),
        (CHECKOUT, True),
        (f"{CHECKOUT}/data", False),
        (PYTHON, True),
    ]
