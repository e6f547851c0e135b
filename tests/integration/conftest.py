"""pytest fixtures for real server processes: ``upstream``, ``pyetcd``, ``member``, ``members``.

Every process started through these fixtures is stopped in a finalizer, also when the test
fails. A missing pyetcd binary fails the test (with the command that builds it); it is never a
skip. A member that exits early fails the test with the tail of its log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.integration.cluster import (
    FAST,
    FLAVOURS,
    Flavour,
    Member,
    MemberError,
    Timing,
)
from tools.s3server import S3Server, S3ServerError, versitygw_server


class MemberRegistry:
    """Creates members under one test's tmp dir and remembers them to stop them all."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.created: list[Member] = []

    def new(
        self,
        flavour: Flavour,
        *,
        name: str = "default",
        extra_flags: Sequence[str] = (),
        timing: Timing | None = None,
        start: bool = True,
        timeout: float = 30.0,
    ) -> Member:
        workdir = self.base / f"{len(self.created)}-{flavour}-{name}"
        member = Member(flavour, workdir, name=name, extra_flags=extra_flags, timing=timing or FAST)
        self.created.append(member)
        if start:
            start_or_fail(member, timeout)
        return member

    def stop_all(self) -> None:
        errors: list[str] = []
        for member in reversed(self.created):
            try:
                member.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(f"{member}: {exc!r}")
        if errors:
            raise RuntimeError("could not stop members: " + "; ".join(errors))


def start_or_fail(member: Member, timeout: float = 30.0) -> None:
    """Start and wait; turn any start-up problem into a test failure with the explanation."""
    try:
        member.start_and_wait(timeout)
    except MemberError as exc:
        message = str(exc)
    else:
        return
    pytest.fail(message, pytrace=False)  # outside `except`: no chained traceback


@pytest.fixture
def members(tmp_path: Path) -> Iterator[MemberRegistry]:
    """Factory: ``members.new("etcd", extra_flags=[...])``; all are stopped at teardown."""
    registry = MemberRegistry(tmp_path)
    try:
        yield registry
    finally:
        registry.stop_all()


@pytest.fixture
def upstream(members: MemberRegistry) -> Member:
    """A fresh, ready single-member upstream etcd."""
    return members.new("etcd")


@pytest.fixture
def pyetcd(members: MemberRegistry) -> Member:
    """A fresh, ready single-member pyetcd (fails, never skips, if it cannot start)."""
    return members.new("pyetcd")


@pytest.fixture(params=FLAVOURS)
def member(request: pytest.FixtureRequest, members: MemberRegistry) -> Member:
    """A fresh, ready single member of each flavour in turn."""
    flavour: Flavour = request.param
    return members.new(flavour)


@pytest.fixture(scope="module")
def versitygw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A versitygw S3 server for one module (it refuses keys below an object's key, as some
    S3 servers do)."""
    try:
        with versitygw_server(tmp_path_factory.mktemp("versitygw")) as server:
            yield server
    except S3ServerError as err:
        pytest.fail(str(err), pytrace=False)
