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

The release names its controller image on registry.k8s.io, which Binary
Authorization's allow-list (this project's Artifact Registry) refuses; a
resource transform rewrites it to the platform's registry.k8s.io remote
repository, pinned by the configured digest (``images.digests.lws-controller``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from gke_inference.core.components import child_options
from gke_inference.core.images import PINNED_IMAGES, image_tag

LWS_VERSION = image_tag(PINNED_IMAGES["lws-controller"].ref)
#: The release's controller image (its Deployment ``lws-controller-manager``,
#: container ``manager``, namespace ``lws-system``).
UPSTREAM_CONTROLLER_IMAGE = f"registry.k8s.io/{PINNED_IMAGES['lws-controller'].ref}"
LWS_MANIFESTS_URL = (
    f"https://github.com/kubernetes-sigs/lws/releases/download/{LWS_VERSION}/manifests.yaml"
)


def pin_controller_image(kind: str, props: dict[str, Any], image: str) -> dict[str, Any] | None:
    """``props`` of one object of the release with every container that runs the release's
    controller image switched to ``image``; None when the object runs no such container."""
    if kind != "Deployment":
        return None
    pod = ((props.get("spec") or {}).get("template") or {}).get("spec") or {}
    changed = False
    for group in ("containers", "initContainers"):
        for container in pod.get(group) or []:
            if str(container.get("image", "")).split("@")[0] == UPSTREAM_CONTROLLER_IMAGE:
                container["image"] = image
                changed = True
    return props if changed else None


@dataclass(frozen=True)
class LeaderWorkerSetControllerArgs:
    image: str  # the controller image as the cluster pulls it (remote + digest)


class LeaderWorkerSetController(pulumi.ComponentResource):
    """The released LWS manifests, applied with the controller image the cluster admits."""

    manifests: k8s.yaml.v2.ConfigFile

    def __init__(
        self,
        name: str,
        args: LeaderWorkerSetControllerArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("gke-inference:inference:LeaderWorkerSetController", name, None, opts)

        def pin(transform: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
            if not transform.type_.startswith("kubernetes:apps/v1:"):
                return None
            props = pin_controller_image(
                transform.type_.rsplit(":", 1)[-1], dict(transform.props), args.image
            )
            return None if props is None else pulumi.ResourceTransformResult(props, transform.opts)

        self.manifests = k8s.yaml.v2.ConfigFile(
            f"{name}-manifests",
            file=LWS_MANIFESTS_URL,
            opts=pulumi.ResourceOptions.merge(
                child_options(self, opts), pulumi.ResourceOptions(transforms=[pin])
            ),
        )
        self.register_outputs({"version": LWS_VERSION, "image": args.image})
