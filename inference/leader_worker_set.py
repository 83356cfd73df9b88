"""The LeaderWorkerSet controller (kubernetes-sigs/lws), for replicas that span nodes.

A model too large for one machine is served as a LeaderWorkerSet group
(:mod:`gke_inference.workloads.multihost`). GKE does not ship the controller;
the platform applies the project's released manifests, pinned to
LWS_VERSION, through pulumi-kubernetes (``yaml/v2.ConfigFile``: the
provider reads the file and manages every object in it with server-side
apply, which the CRD's size requires). The release bundles the
LeaderWorkerSet CRD (``leaderworkerset.x-k8s.io/v1``, with the scale
subresource an HPA targets), the controller Deployment in ``lws-system``,
its webhooks and RBAC.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from gke_inference.core.components import child_options

LWS_VERSION = "v0.10.0"
LWS_MANIFESTS_URL = (
    f"https://github.com/kubernetes-sigs/lws/releases/download/{LWS_VERSION}/manifests.yaml"
)


class LeaderWorkerSetController(pulumi.ComponentResource):
    """The released LWS manifests, applied as they are published."""

    manifests: k8s.yaml.v2.ConfigFile

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gke-inference:inference:LeaderWorkerSetController", name, None, opts)
        self.manifests = k8s.yaml.v2.ConfigFile(
            f"{name}-manifests", file=LWS_MANIFESTS_URL, opts=child_options(self, opts)
        )
        self.register_outputs({"version": LWS_VERSION})
