"""Drift: whether a live child still holds every field of the manifest we would apply. Pure.

Two checks decide that a child needs applying (see ``children``): its fingerprint annotation
differs from the manifest's (we changed what we apply, including fields we no longer set, which
only an apply removes), or the live object no longer holds what we applied (someone else changed
it: ``kubectl scale statefulset``, ``kubectl edit``). This module is the second check.

The comparison is a subset match: every field of the manifest must be in the live object with an
equal value, and fields the API server or other controllers added are ignored. Two things the API
server does to what it stores are accounted for: it canonicalises quantities (``0.5`` becomes
``500m``, ``1024Mi`` becomes ``1Gi``), and it leaves out zero values (``false``, ``0``, ``""``,
empty maps and lists: Go's ``omitempty``), so a field we set to one of them may be absent. Lists
are compared item by item in order, as the API server keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

# Kubernetes' quantity grammar (resource.Quantity): a number with a binary or decimal suffix, or
# an exponent.
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def quantity(value: object) -> Decimal | None:
    """The value of a Kubernetes quantity (``"500m"``, ``"1Gi"``, ``2``), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value)
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        base = Decimal(number)
        if suffix[:1] in ("e", "E"):
            return base * Decimal(10) ** int(suffix[1:])
        return base * _SUFFIX[suffix]
    except (InvalidOperation, KeyError, ValueError):
        return None


def _empty(value: object) -> bool:
    """A zero value, which the API server leaves out of what it returns (``omitempty``)."""
    if value is None or value is False or value == "":
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 0
    return isinstance(value, Mapping | list) and not value


def _scalar_equal(want: object, live: object) -> bool:
    if want == live and type(want) is type(live):
        return True
    a, b = quantity(want), quantity(live)
    return a is not None and b is not None and a == b


def holds(live: object, want: object) -> bool:
    """Whether ``live`` holds every field of ``want`` with an equal value (see module doc)."""
    if isinstance(want, Mapping):
        if not isinstance(live, Mapping):
            return _empty(want) and live is None
        return all(
            holds(live.get(key), value) if key in live else _empty(value)
            for key, value in want.items()
        )
    if isinstance(want, list):
        if not isinstance(live, list):
            return not want and live is None
        return len(want) == len(live) and all(
            holds(item, wanted) for item, wanted in zip(live, want, strict=True)
        )
    return _scalar_equal(want, live)


def drifted(manifest: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    """The top-level paths of ``manifest`` (``metadata.labels``, ``spec.replicas``, ...) that
    ``live`` no longer holds; empty when it holds them all. For event messages and logs."""
    paths: list[str] = []
    for section in ("metadata", "spec", "data"):
        want = manifest.get(section)
        if not isinstance(want, Mapping):
            continue
        have = live.get(section)
        for key, value in want.items():
            if key == "annotations" or key in ("name", "namespace"):
                # Our only annotation is the fingerprint, checked on its own; other annotations
                # on the object are someone else's.
                continue
            if not isinstance(have, Mapping) or key not in have:
                if not _empty(value):
                    paths.append(f"{section}.{key}")
            elif not holds(have[key], value):
                paths.append(f"{section}.{key}")
    return paths
