"""Pure helpers of the pod worker: ``$(VAR)`` expansion, the downward API, files, pod phase.

No I/O here except :func:`write_files`, so the rules can be read (and tested) in one place.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

Json = dict[str, Any]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion: ``$(VAR)`` -> its value when defined (else kept as written),
    ``$$`` -> ``$`` (so ``$$(VAR)`` stays a literal ``$(VAR)``)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(replace, text)


def field_ref(pod: Json, path: str, pod_ip: str) -> str:
    """The downward API's ``fieldRef.fieldPath`` of ``pod``."""
    meta = pod["metadata"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": "",
        "status.hostIPs": "",
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ValueError(f"unsupported fieldRef {path!r}")


def resource_ref(container: Json, resource: str, allocatable: dict[str, str]) -> str:
    """``resourceFieldRef``: the container's limit (or request), else the node's allocatable."""
    section, _, name = resource.partition(".")
    value = (container.get("resources") or {}).get(section, {}).get(name)
    if value is None:
        value = allocatable.get(name, "0")
    return str(value)


def decode_data(obj: Json, secret: bool) -> dict[str, bytes]:
    """A ConfigMap's or Secret's keys as bytes."""
    out: dict[str, bytes] = {}
    for key, value in (obj.get("data") or {}).items():
        out[key] = base64.b64decode(value) if secret else str(value).encode()
    for key, value in (obj.get("binaryData") or {}).items():
        out[key] = base64.b64decode(value)
    return out


def select_items(data: dict[str, bytes], items: list[Json] | None) -> dict[str, bytes]:
    """``items`` of a configMap/secret volume (key -> path), or every key."""
    if not items:
        return dict(data)
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def write_files(directory: Path, files: dict[str, bytes], mode: int = 0o644) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(content)
        os.chmod(tmp, mode)
        tmp.replace(path)


def update_files(directory: Path, files: dict[str, bytes], mode: int = 0o644) -> list[str]:
    """Write the ``files`` whose content differs from what ``directory`` holds: all of them
    aside first, then renamed into place back to back. The paths written, in order. A file
    the source no longer has is left alone (a real kubelet removes it: nothing here needs
    that)."""
    changed: list[tuple[Path, Path]] = []
    for relative, content in files.items():
        path = directory / relative
        try:
            if path.read_bytes() == content:
                continue
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".sync")
        tmp.write_bytes(content)
        os.chmod(tmp, mode)
        changed.append((tmp, path))
    for tmp, path in changed:
        tmp.replace(path)
    return [str(path.relative_to(directory)) for _, path in changed]


def hosts_file(pod_ip: str, hostname: str, fqdn: str | None) -> str:
    names = f"{fqdn} {hostname}" if fqdn else hostname
    return (
        "# Kubernetes-managed hosts file (e2e process kubelet).\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{pod_ip}\t{names}\n"
    )


def resolv_conf(namespace: str, domain: str, nameserver: str) -> str:
    return (
        f"search {namespace}.svc.{domain} svc.{domain} {domain}\n"
        f"nameserver {nameserver}\n"
        "options ndots:5\n"
    )


def exit_reason(code: int) -> str:
    return "Completed" if code == 0 else "Error"


def pod_phase(
    restart_policy: str,
    init_failed: bool,
    initialized: bool,
    containers: list[tuple[str, int | None, bool]],
) -> str:
    """The phase from each container's (state, last exit code, has ever started)."""
    if init_failed:
        return "Failed"
    if not initialized or any(not started for _, _, started in containers):
        return "Pending"
    if any(state == "running" for state, _, _ in containers):
        return "Running"
    if restart_policy == "Always" or any(state != "terminated" for state, _, _ in containers):
        return "Running"
    if all(code == 0 for _, code, _ in containers):
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"
