"""NetworkPolicy ingress, evaluated: who may open a TCP connection to which pod and port. Pure.

The process kubelet enforces NetworkPolicy as a network plugin would (:mod:`e2e.kubelet.enforcer`
does the I/O); this module holds the decisions, with Kubernetes' semantics:

- a pod selected by no policy whose ``policyTypes`` include Ingress admits everything;
- a selected pod admits the union of the ingress rules of every policy selecting it (a policy
  with no rules admits nothing);
- a rule admits a source when its ``from`` is empty or one of its peers matches, on a port when
  its ``ports`` is empty or one of them matches (TCP, by number, by the destination pod's named
  container port, or a range with ``endPort``);
- a peer: ``podSelector`` alone is pods of the policy's namespace, ``namespaceSelector`` alone
  every pod of the matching namespaces, both together pods matching one in namespaces matching
  the other, ``ipBlock`` a CIDR less its ``except``;
- the node itself (the bridge's address, where probes and the ClusterIP proxy come from) is
  always admitted, as network plugins admit the host.

:func:`tc_batch` turns a pod's admitted sources into the ``tc`` commands that enforce them on
its veth: only new connections (TCP SYN without ACK) are judged, so replies to the pod's own
connections pass, as a stateful firewall would let them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# The widest port range that becomes one filter per port; a wider one is enforced on ClusterIP
# traffic only (never met in these scenarios, and logged).
MAX_RANGE = 64


@dataclass(frozen=True)
class Pod:
    """What the policies look at: where the pod is, its labels, its address and named ports."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None
    ports: Mapping[str, int] = field(default_factory=dict)  # TCP container ports by name

    @classmethod
    def from_api(cls, obj: Json) -> Pod:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        ports = {
            p["name"]: int(p["containerPort"])
            for c in spec.get("containers") or []
            for p in c.get("ports") or []
            if p.get("name") and p.get("protocol", "TCP") == "TCP"
        }
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            labels=dict(meta.get("labels") or {}),
            ip=status.get("podIP") or None,
            ports=ports,
        )


@dataclass(frozen=True)
class World:
    """The NetworkPolicies, the pods and the namespaces (name -> labels) of the cluster."""

    policies: tuple[Json, ...] = ()
    pods: tuple[Pod, ...] = ()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    node_ips: frozenset[str] = frozenset()

    def pod_at(self, ip: str) -> Pod | None:
        return next((p for p in self.pods if p.ip == ip), None)

    def namespace_labels(self, name: str) -> Mapping[str, str]:
        # Every namespace carries its name as a label; a namespace not seen yet has that much.
        return {NAMESPACE_NAME_LABEL: name, **self.namespaces.get(name, {})}


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a metav1.LabelSelector selects ``labels`` (``{}`` selects everything)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator = requirement["key"], requirement["operator"]
        values = requirement.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _ingress_policy(policy: Json) -> bool:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if types is None:  # defaulted by the API server; Ingress unless it says Egress only
        return True
    return "Ingress" in types


def policies_for(world: World, pod: Pod) -> list[Json]:
    """The Ingress policies that select ``pod``."""
    return [
        p
        for p in world.policies
        if _ingress_policy(p)
        and p["metadata"]["namespace"] == pod.namespace
        and selects((p.get("spec") or {}).get("podSelector") or {}, pod.labels)
    ]


def isolated(world: World, pod: Pod) -> bool:
    """Whether any Ingress policy selects ``pod`` (it then admits only what they allow)."""
    return bool(policies_for(world, pod))


def _in_block(block: Mapping[str, Any], ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if address not in ipaddress.ip_network(block["cidr"], strict=False):
        return False
    return not any(
        address in ipaddress.ip_network(e, strict=False) for e in block.get("except") or []
    )


def peer_admits(world: World, peer: Mapping[str, Any], namespace: str, ip: str) -> bool:
    """Whether ``peer`` (of a policy in ``namespace``) matches the source address ``ip``."""
    if "ipBlock" in peer:
        return _in_block(peer["ipBlock"], ip)
    source = world.pod_at(ip)
    if source is None:
        return False
    ns_selector = peer.get("namespaceSelector")
    if ns_selector is None:
        if source.namespace != namespace:
            return False
    elif not selects(ns_selector, world.namespace_labels(source.namespace)):
        return False
    pod_selector = peer.get("podSelector")
    return pod_selector is None or selects(pod_selector, source.labels)


def rule_ports(rule: Mapping[str, Any], destination: Pod) -> list[int] | None:
    """The TCP ports of ``destination`` a rule opens; ``None``: every port."""
    ports = rule.get("ports")
    if not ports:
        return None
    out: list[int] = []
    for entry in ports:
        if entry.get("protocol", "TCP") != "TCP":
            continue
        port = entry.get("port")
        if port is None:
            return None  # every port of the protocol
        if isinstance(port, str) and not port.isdigit():
            if port in destination.ports:
                out.append(destination.ports[port])
            continue  # a name the pod does not have opens nothing on it
        first = int(port)
        last = int(entry.get("endPort") or first)
        out.extend(range(first, last + 1))
    return out


def admits(world: World, source_ip: str, destination: Pod, port: int) -> bool:
    """Whether a TCP connection from ``source_ip`` to ``destination``:``port`` is allowed."""
    if source_ip in world.node_ips:
        return True
    policies = policies_for(world, destination)
    if not policies:
        return True
    for policy in policies:
        namespace = policy["metadata"]["namespace"]
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            ports = rule_ports(rule, destination)
            if ports is not None and port not in ports:
                continue
            peers = rule.get("from") or []
            if not peers or any(peer_admits(world, p, namespace, source_ip) for p in peers):
                return True
    return False


@dataclass(frozen=True, order=True)
class Allow:
    """One admitted (source network, destination port); ``port`` ``None``: every port."""

    source: str  # a CIDR ("10.244.1.5/32", "0.0.0.0/0")
    port: int | None = None


def allowed(world: World, destination: Pod) -> list[Allow] | None:
    """What ``destination`` admits, as source networks and ports for the packet filter;
    ``None`` when no policy selects it (everything is admitted). ``ipBlock`` ``except`` lists
    become the pods' own addresses outside them (sources that are not pods are then refused)."""
    policies = policies_for(world, destination)
    if not policies:
        return None
    out: set[Allow] = {Allow(f"{ip}/32") for ip in sorted(world.node_ips)}
    for policy in policies:
        namespace = policy["metadata"]["namespace"]
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            ports = rule_ports(rule, destination)
            if ports is not None and not ports:
                continue
            if ports is not None and len(ports) > MAX_RANGE:
                continue
            for source in _sources(world, rule.get("from") or [], namespace):
                for port in ports if ports is not None else [None]:
                    out.add(Allow(source, port))
    return sorted(out, key=lambda a: (a.source, -1 if a.port is None else a.port))


def _sources(world: World, peers: list[Json], namespace: str) -> Iterable[str]:
    if not peers:
        yield "0.0.0.0/0"
        return
    for peer in peers:
        block = peer.get("ipBlock")
        if block is not None and not block.get("except"):
            yield str(ipaddress.ip_network(block["cidr"], strict=False))
            continue
        for pod in world.pods:
            if pod.ip and peer_admits(world, peer, namespace, pod.ip):
                yield f"{pod.ip}/32"


def tc_batch(veth: str, allows: list[Allow] | None, blackhole: str) -> list[str]:
    """``tc -batch`` lines that make ``veth`` (the pod's port on the bridge) pass only the new
    connections in ``allows``; ``None``: remove the filter (everything passes).

    The filters sit on the clsact egress hook of the bridge side (the way into the pod). In
    order: each admitted (source, port) classifies the packet and ends the search (passes);
    then a TCP SYN without ACK, a new connection nobody admitted, is redirected to
    ``blackhole`` (a veth whose peer is down: it drops everything; this kernel has no drop
    action); everything else passes. Offsets assume IP headers without options, which Linux
    never sends on TCP: the destination port at byte 22, the TCP flags at byte 33.
    """
    if allows is None:
        return [f"qdisc del dev {veth} clsact"]
    lines = [f"qdisc replace dev {veth} clsact", f"filter del dev {veth} egress"]
    tcp = "match ip protocol 6 0xff"
    for allow in allows:
        port = f" match ip dport {allow.port} 0xffff" if allow.port is not None else ""
        lines.append(
            f"filter add dev {veth} egress prio 2 protocol ip u32 {tcp} "
            f"match ip src {allow.source}{port} classid 1:1"
        )
    lines.append(
        f"filter add dev {veth} egress prio 3 protocol ip u32 {tcp} match u8 0x02 0x12 at 33 "
        f"action mirred egress redirect dev {blackhole}"
    )
    return lines
