"""The files under examples/ and the generated CRD, loaded for the tests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[4]
EXAMPLES = ROOT / "examples"
CRD_FILE = ROOT / "crds" / "etcd.pyetcd.io_etcdclusters.yaml"

Json = dict[str, Any]

_EXPECT = re.compile(r"^# expect: (.+)$", re.M)


@dataclass(frozen=True)
class Example:
    path: Path
    body: Json
    expect: str | None

    @property
    def id(self) -> str:
        return str(self.path.relative_to(EXAMPLES))


def load(path: Path) -> Example:
    text = path.read_text(encoding="utf-8")
    body = yaml.safe_load(text)
    assert isinstance(body, dict), path
    match = _EXPECT.search(text)
    return Example(path, body, match.group(1).strip() if match else None)


def valid() -> list[Example]:
    return [load(p) for p in sorted(EXAMPLES.glob("*.yaml"))]


def invalid() -> list[Example]:
    return [load(p) for p in sorted((EXAMPLES / "invalid").glob("*.yaml"))]


def update_pairs() -> list[tuple[Example, Example]]:
    """(old, new) for every NAME.old.yaml / NAME.new.yaml under examples/invalid/updates."""
    updates = EXAMPLES / "invalid" / "updates"
    return [
        (load(old), load(old.with_name(old.name.replace(".old.yaml", ".new.yaml"))))
        for old in sorted(updates.glob("*.old.yaml"))
    ]


def crd() -> Json:
    body = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    assert isinstance(body, dict)
    return body


def openapi_schema() -> Json:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema
