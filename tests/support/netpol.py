"""A NetworkPolicy evaluator over rendered manifests, with the semantics of networking.k8s.io/v1.

What the API documents (kubernetes.io/docs/concepts/services-networking/network-policies
and the NetworkPolicySpec reference), and nothing more:

- A pod is isolated for ingress (egress) when any policy of its namespace selects it
  and lists ``Ingress`` (``Egress``) in ``policyTypes`` (absent: ``Ingress``, plus
  ``Egress`` when the policy has egress rules). An isolated pod admits a connection
  when at least one rule of one selecting policy admits it: policies are additive.
- A rule with no ``from``/``to`` admits every peer, one with no ``ports`` every port.
  A peer is an ``ipBlock`` (the address is inside ``cidr`` and outside every
  ``except``), a ``podSelector`` alone (pods of the policy's namespace), a
  ``namespaceSelector`` alone (every pod of the selected namespaces), or both (the
  selected pods of the selected namespaces). Namespaces carry
  ``kubernetes.io/metadata.name``.
- A port matches by number (or container-port name on the destination pod), protocol
  (TCP when absent) and ``endPort`` ranges.
- A connection between two endpoints is allowed when the source's egress and the
  destination's ingress both admit it; endpoints outside the cluster have no policies.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAME_LABEL = "kubernetes.io/metadata.name"
LWS_NAME = "leaderworkerset.sigs.k8s.io/name"
LWS_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"


@dataclass(frozen=True)
class Endpoint:
    """A pod (``namespace`` set) or an address outside the cluster."""

    name: str
    ip: str
    namespace: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)  # container port name -> number

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """LabelSelector semantics: matchLabels and matchExpressions, all of them."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def _in_block(ip: str, block: Mapping[str, Any]) -> bool:
    address = ipaddress.ip_address(ip)
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(address in ipaddress.ip_network(c) for c in block.get("except") or [])


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        return _in_block(other.ip, peer["ipBlock"])
    if not other.is_pod:
        return False
    pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
    if namespaces is None:
        return other.namespace == policy_ns and selects(pods, other.labels)
    ns_labels = {NAME_LABEL: str(other.namespace)}
    return selects(namespaces, ns_labels) and (pods is None or selects(pods, other.labels))


def _port_matches(spec: Mapping[str, Any], port: int, protocol: str, target: Endpoint) -> bool:
    if spec.get("protocol", "TCP") != protocol:
        return False
    wanted = spec.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        wanted = target.ports.get(wanted)
        if wanted is None:
            return False
    end = spec.get("endPort", wanted)
    return int(wanted) <= port <= int(end)


def _types(spec: Mapping[str, Any]) -> list[str]:
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


@dataclass
class Cluster:
    """The NetworkPolicies of a cluster and its endpoints."""

    policies: list[Mapping[str, Any]]
    endpoints: list[Endpoint]

    def _admits(
        self, pod: Endpoint, direction: str, other: Endpoint, port: int, proto: str
    ) -> bool:
        """Does ``pod``'s ``direction`` (Ingress/Egress) admit ``other`` on ``port``?"""
        selecting = [
            p
            for p in self.policies
            if p["metadata"].get("namespace") == pod.namespace
            and selects(p["spec"].get("podSelector", {}), pod.labels)
            and direction in _types(p["spec"])
        ]
        if not selecting:
            return True
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        target = pod if direction == "Ingress" else other
        for policy in selecting:
            ns = policy["metadata"]["namespace"]
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key) or []
                ports = rule.get("ports") or []
                if peers and not any(_peer_matches(p, ns, other) for p in peers):
                    continue
                if ports and not any(_port_matches(s, port, proto, target) for s in ports):
                    continue
                return True
        return False

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, proto: str = "TCP") -> bool:
        out = not src.is_pod or self._admits(src, "Egress", dst, port, proto)
        return out and (not dst.is_pod or self._admits(dst, "Ingress", src, port, proto))

    def flows(
        self, involving: Iterable[str], probes: Sequence[tuple[int, str]]
    ) -> set[tuple[str, str, str]]:
        """Every allowed (source, destination, "port/PROTO") with one end in ``involving``."""
        names = set(involving)
        out = set()
        for src, dst in itertools.permutations(self.endpoints, 2):
            if src.name not in names and dst.name not in names:
                continue
            for port, proto in probes:
                if self.allowed(src, dst, port, proto):
                    out.add((src.name, dst.name, f"{port}/{proto}"))
        return out


def pod_templates(
    obj: Mapping[str, Any],
) -> Iterator[tuple[str, Mapping[str, Any], dict[str, str]]]:
    """(role, pod template, labels the controller adds) of a workload object."""
    kind, spec = obj["kind"], obj.get("spec") or {}
    if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet", "ReplicaSet"):
        yield "", spec["template"], {}
    elif kind == "LeaderWorkerSet":
        group = spec["leaderWorkerTemplate"]
        name = obj["metadata"]["name"]
        yield "leader", group["leaderTemplate"], {LWS_NAME: name, LWS_INDEX: "0"}
        yield "worker", group["workerTemplate"], {LWS_NAME: name, LWS_INDEX: "1"}
    elif kind == "JobSet":
        for job in spec["replicatedJobs"]:
            yield job["name"], job["template"]["spec"]["template"], {}


def rendered_pods(objects: Iterable[Mapping[str, Any]], pod_cidr: str) -> list[Endpoint]:
    """One endpoint per pod template of ``objects``, addressed from ``pod_cidr``; named
    ``<object name>`` (``<name>/<role>`` for multi-template kinds)."""
    hosts = ipaddress.ip_network(pod_cidr).hosts()
    next(hosts)
    pods = []
    for obj in objects:
        for role, template, added in pod_templates(obj):
            containers = [
                *(template["spec"].get("initContainers") or []),
                *template["spec"]["containers"],
            ]
            ports = {
                p["name"]: int(p["containerPort"])
                for c in containers
                for p in c.get("ports") or []
                if p.get("name")
            }
            labels = {**(template.get("metadata") or {}).get("labels", {}), **added}
            name = obj["metadata"]["name"] + (f"/{role}" if role else "")
            pods.append(
                Endpoint(name, str(next(hosts)), obj["metadata"]["namespace"], labels, ports)
            )
    return pods


def network_policies(objects: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]
