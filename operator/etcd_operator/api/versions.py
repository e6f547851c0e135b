"""Which changes of ``spec.version`` a cluster accepts: forward by patch versions, or to the
next minor version; never backwards, never across a minor. Pure.

etcd supports no downgrade (a member refuses a data dir written by a newer minor, and 3.5's
downgrade support is an experimental, cluster-wide procedure), and upgrades one minor version at
a time: every member on 3.4.x before any runs 3.5. The same rule holds for both engines.

The rule exists twice, held to the same table by the tests: ``refusal`` for the operator and
its tests, and ``VERSION_CHANGE_RULE``, the CEL transition rule the API server runs on every
update, so that a refused change never reaches the operator.
"""

from __future__ import annotations

import re

VERSION_PATTERN = r"^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$"
VERSION_MAX_LENGTH = 64
VERSION_CHANGE_MESSAGE = (
    "version may only move forward: to a later patch of the same minor version, or to the next "
    "minor version (3.4.x -> 3.5.y); etcd supports no downgrade and no skipped minor version"
)


def core(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of ``v3.5.17`` or ``3.5.17-rc.1``."""
    match = re.match(r"^v?([0-9]+)\.([0-9]+)\.([0-9]+)", version)
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def refusal(old: str, new: str) -> str | None:
    """Why ``old`` -> ``new`` is refused, or ``None`` when it is allowed."""
    if old == new:
        return None
    (o_major, o_minor, o_patch), (n_major, n_minor, n_patch) = core(old), core(new)
    if n_major == o_major and (
        n_minor == o_minor + 1 or (n_minor == o_minor and n_patch >= o_patch)
    ):
        return None
    return f"{old} -> {new}: {VERSION_CHANGE_MESSAGE}"


def _cel_core(version: str) -> str:
    """CEL for the list [major, minor, patch] (strings) of the version ``version`` names."""
    bare = f"({version}.startsWith('v') ? {version}.substring(1) : {version})"
    return f"{bare}.split('-')[0].split('+')[0].split('.')"


def _cel_rule() -> str:
    new, old = _cel_core("self.version"), _cel_core("oldSelf.version")

    def part(parts: str, i: int) -> str:
        return f"int({parts}[{i}])"

    return (
        f"self.version == oldSelf.version || ({part(new, 0)} == {part(old, 0)} && "
        f"({part(new, 1)} == {part(old, 1)} + 1 || ({part(new, 1)} == {part(old, 1)} && "
        f"{part(new, 2)} >= {part(old, 2)})))"
    )


# A transition rule on the spec (the version is required, so both sides have one).
VERSION_CHANGE_RULE = (_cel_rule(), VERSION_CHANGE_MESSAGE, ".version")


def skew(target: str, running: list[str]) -> str | None:
    """Why members running ``running`` may not be rolled to ``target`` yet, or ``None``.

    The admission rule sees one change at a time; two minor upgrades asked for in a row
    (3.4 -> 3.5, then 3.5 -> 3.6 before the first finished) would still skip a minor on the
    members. A member may only be restarted onto ``target`` while every member runs its
    minor version or the one before it."""
    major, minor, _ = core(target)
    behind = sorted(
        {v for v in running if core(v)[:2] < (major, minor - 1) or core(v)[0] != major},
        key=core,
    )
    if not behind:
        return None
    if minor == 0:
        return f"members still run {', '.join(behind)}: no upgrade path to {target}"
    return (
        f"members still run {', '.join(behind)}: {target} may only follow a cluster whose "
        f"members all run {major}.{minor - 1}.x or {major}.{minor}.x; the upgrade to "
        f"{major}.{minor - 1} has to finish first"
    )
