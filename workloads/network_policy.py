"""Network isolation of workload pods: one NetworkPolicy per set of pods, built one way.

GKE Dataplane V2 enforces ``networking.k8s.io/v1`` NetworkPolicies. The platform
denies all ingress and egress in the workload namespace
(``gke_inference.inference.cluster_addons``); every set of pods a kind renders gets
one policy from :func:`isolate` that admits exactly what it needs:

- **in from the gateway** (``served`` ports): the Google load balancers' proxies and
  health checkers (35.191.0.0/16 and 130.211.0.0/22: health checks for every
  gateway class, and the proxies of the global external one) and the region's
  proxy-only subnet (the Envoy proxies of ``gke-l7-rilb`` and the regional external
  class), from the platform output ``networkRanges.proxyOnly``;
- **in from Managed Prometheus** (``scraped`` ports): its collectors, which run in
  ``gmp-system`` (Standard) or ``gke-gmp-system`` (Autopilot);
- **to and from named pods of the namespace** (``peers_in``/``peers_out``): the
  endpoint picker to its pool, a streaming worker to its model server, the pods of
  one LeaderWorkerSet to each other;
- **out**: DNS (Cloud DNS for GKE answers on the metadata address 169.254.169.254;
  NodeLocal DNSCache, where enabled, on 169.254.20.10); with ``google_apis`` the
  metadata server (169.254.169.254:80, and 169.254.169.252:988, where the GKE
  metadata server listens under Workload Identity) and HTTPS to public addresses;
  with ``api_server`` HTTPS to the API server's private endpoint (the control-plane
  range, or the node subnet when the endpoint is a Private Service Connect address).

Why "HTTPS to public addresses" and not a list of Google hosts: the node subnet uses
Private Google Access through Google's default public VIPs, which are not a fixed
range, and the model download Job also fetches from Hugging Face through Cloud NAT.
A NetworkPolicy cannot name hosts; everything private (RFC 1918, link-local,
shared address space) stays excluded, so no pod reaches another pod, node or VPC
service on 443 by this rule.

Traffic from the pod's own node (kubelet probes) is always allowed by Kubernetes
NetworkPolicy semantics, so probes need no rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from gke_inference.workloads.platform_ref import PlatformRef

NP = k8s.networking.v1

#: Google Cloud load balancers: health checkers, and the global external proxies.
LOAD_BALANCER_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
#: Cloud DNS for GKE (on the metadata address) and NodeLocal DNSCache.
DNS_SERVERS = ("169.254.169.254/32", "169.254.20.10/32")
METADATA_SERVER = "169.254.169.254/32"
GKE_METADATA_SERVER = "169.254.169.252/32"
GKE_METADATA_PORT = 988
#: Never reached by the public-HTTPS rule: RFC 1918, link-local, shared address space.
PRIVATE_RANGES = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
)
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

#: (labels of pods in the workload namespace, their ports; empty = every port)
PodPeer = tuple[Mapping[str, str], Sequence[int]]


#: Where Managed Prometheus runs its collectors, by cluster mode.
GMP_NAMESPACE = {"standard": "gmp-system", "autopilot": "gke-gmp-system"}


def _ports(ports: Sequence[int], *protocols: str) -> list[NP.NetworkPolicyPortArgs] | None:
    """The ports for each protocol (TCP when none is named); None (every port) when empty."""
    if not ports:
        return None
    return [
        NP.NetworkPolicyPortArgs(port=port, protocol=protocol)
        for protocol in protocols or ("TCP",)
        for port in ports
    ]


def _cidrs(*cidrs: str, exclude: Sequence[str] = ()) -> list[NP.NetworkPolicyPeerArgs]:
    return [
        NP.NetworkPolicyPeerArgs(ip_block=NP.IPBlockArgs(cidr=c, except_=list(exclude) or None))
        for c in cidrs
    ]


def _pods(labels: Mapping[str, str]) -> list[NP.NetworkPolicyPeerArgs]:
    return [NP.NetworkPolicyPeerArgs(pod_selector=LabelSelectorArgs(match_labels=dict(labels)))]


def _namespace(name: str) -> list[NP.NetworkPolicyPeerArgs]:
    return [
        NP.NetworkPolicyPeerArgs(
            namespace_selector=LabelSelectorArgs(match_labels={NAMESPACE_NAME_LABEL: name})
        )
    ]


def _ranges(platform: PlatformRef, *names: str) -> list[str]:
    return [platform.network_ranges[n] for n in names if platform.network_ranges.get(n)]


def isolate(
    name: str,
    metadata: ObjectMetaArgs,
    selector: Mapping[str, str],
    platform: PlatformRef,
    opts: pulumi.ResourceOptions,
    *,
    served: Sequence[int] = (),
    scraped: Sequence[int] = (),
    peers_in: Sequence[PodPeer] = (),
    peers_out: Sequence[PodPeer] = (),
    google_apis: bool = True,
    api_server: bool = False,
) -> NP.NetworkPolicy:
    """The NetworkPolicy of ``selector``'s pods: ingress and egress exactly as the module
    docstring describes, nothing else."""
    In, Out = NP.NetworkPolicyIngressRuleArgs, NP.NetworkPolicyEgressRuleArgs
    ingress: list[NP.NetworkPolicyIngressRuleArgs] = []
    if served:
        proxies = [*LOAD_BALANCER_RANGES, *_ranges(platform, "proxyOnly")]
        ingress.append(In(from_=_cidrs(*proxies), ports=_ports(served)))
    if scraped:
        collectors = _namespace(GMP_NAMESPACE[platform.mode])
        ingress.append(In(from_=collectors, ports=_ports(scraped)))
    ingress += [In(from_=_pods(labels), ports=_ports(ports)) for labels, ports in peers_in]

    egress = [Out(to=_cidrs(*DNS_SERVERS), ports=_ports([53], "UDP", "TCP"))]
    if google_apis:
        egress += [
            Out(to=_cidrs(METADATA_SERVER), ports=_ports([80])),
            Out(to=_cidrs(GKE_METADATA_SERVER), ports=_ports([GKE_METADATA_PORT])),
            Out(to=_cidrs("0.0.0.0/0", exclude=PRIVATE_RANGES), ports=_ports([443])),
        ]
    if api_server:
        endpoint = _ranges(platform, "controlPlane", "nodes")
        egress.append(Out(to=_cidrs(*endpoint), ports=_ports([443])))
    egress += [Out(to=_pods(labels), ports=_ports(ports)) for labels, ports in peers_out]

    return NP.NetworkPolicy(
        f"{name}-network-policy",
        metadata=metadata,
        spec=NP.NetworkPolicySpecArgs(
            pod_selector=LabelSelectorArgs(match_labels=dict(selector)),
            policy_types=["Ingress", "Egress"],
            ingress=ingress or None,
            egress=egress,
        ),
        opts=opts,
    )
