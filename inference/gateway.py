"""The environment's Gateway: one entry point for every model's HTTPRoute."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.core.settings import GatewaySettings
from gke_inference.inference.cluster_addons import GATEWAY_ACCESS_LABEL
from gke_inference.inference.inference_extension import POOL_GROUP

GATEWAY_CLASSES = {
    "internal": "gke-l7-rilb",  # regional internal Application Load Balancer
    "external": "gke-l7-global-external-managed",
}


@dataclass
class InferenceGatewayArgs:
    settings: GatewaySettings
    namespace: pulumi.Resource


class InferenceGateway(pulumi.ComponentResource):
    """Routes are accepted only from namespaces labelled for gateway access."""

    def __init__(
        self, name: str, args: InferenceGatewayArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:inference:InferenceGateway", name, None, opts)
        s = args.settings
        allowed = {
            "namespaces": {
                "from": "Selector",
                "selector": {"matchLabels": {GATEWAY_ACCESS_LABEL: "true"}},
            }
        }
        if s.exposure == "internal":
            listeners = [{"name": "http", "protocol": "HTTP", "port": 80, "allowedRoutes": allowed}]
            annotations = None
        else:
            listeners = [
                {"name": "https", "protocol": "HTTPS", "port": 443, "allowedRoutes": allowed}
            ]
            annotations = {"networking.gke.io/pre-shared-certs": s.certificate or ""}
        k8s.apiextensions.CustomResource(
            f"{name}-gateway",
            api_version="gateway.networking.k8s.io/v1",
            kind="Gateway",
            metadata=ObjectMetaArgs(name=s.name, namespace=s.namespace, annotations=annotations),
            spec={"gatewayClassName": GATEWAY_CLASSES[s.exposure], "listeners": listeners},
            opts=child_options(self, opts, depends_on=[args.namespace]),
        )
        self.register_outputs({"name": s.name, "namespace": s.namespace})


def backend_policy_spec(
    target_kind: str, target_name: str, timeout_seconds: int, iap: bool
) -> dict[str, object]:
    """GCPBackendPolicy spec for a model backend: long timeouts for streamed tokens."""
    group = POOL_GROUP if target_kind == "InferencePool" else ""
    default: dict[str, object] = {
        "timeoutSec": timeout_seconds,
        "logging": {"enabled": True, "sampleRate": 100000},
        "connectionDraining": {"drainingTimeoutSec": 60},
    }
    if iap:
        default["iap"] = {"enabled": True}
    return {
        "default": default,
        "targetRef": {"group": group, "kind": target_kind, "name": target_name},
    }
