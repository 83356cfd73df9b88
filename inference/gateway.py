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

PRE_SHARED_CERTS = "networking.gke.io/pre-shared-certs"
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
            # Gateway API requires tls on an HTTPS listener; GKE takes pre-shared
            # certificates in its options (not as a Gateway annotation).
            listeners = [
                {
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "tls": {
                        "mode": "Terminate",
                        "options": {PRE_SHARED_CERTS: s.certificate or ""},
                    },
                    "allowedRoutes": allowed,
                }
            ]
            annotations = None
        k8s.apiextensions.CustomResource(
            f"{name}-gateway",
            api_version="gateway.networking.k8s.io/v1",
            kind="Gateway",
            metadata=ObjectMetaArgs(name=s.name, namespace=s.namespace, annotations=annotations),
            spec={"gatewayClassName": GATEWAY_CLASSES[s.exposure], "listeners": listeners},
            opts=child_options(self, opts, depends_on=[args.namespace]),
        )
        self.register_outputs({"name": s.name, "namespace": s.namespace})


@dataclass(frozen=True)
class BackendProtection:
    """What stands in front of a route's backend (the GCPBackendPolicy's ``iap`` and
    ``securityPolicy``): on an external gateway, IAP and/or Cloud Armor; nothing on an
    internal one, which only the VPC reaches."""

    iap: bool = False
    iap_client_id: str | None = None
    iap_client_secret: str | None = None  # a Secret (key client_secret) beside the policy
    security_policy: str | None = None

    @classmethod
    def of(cls, settings: GatewaySettings) -> BackendProtection:
        if settings.exposure != "external":
            return cls()
        return cls(
            settings.iap,
            settings.iap_oauth_client_id,
            settings.iap_oauth_client_secret,
            settings.security_policy,
        )

    def to_output(self) -> dict[str, str]:
        """The platform output ``gatewayBackendProtection``."""
        out = {"iap": "true" if self.iap else "false"}
        for key, value in (
            ("iapClientId", self.iap_client_id),
            ("iapClientSecret", self.iap_client_secret),
            ("securityPolicy", self.security_policy),
        ):
            if value:
                out[key] = value
        return out

    @classmethod
    def from_output(cls, output: dict[str, str], exposure: str) -> BackendProtection:
        """Read back ``gatewayBackendProtection``; an older platform stack exports none,
        which meant IAP with the Google-managed client on external gateways."""
        if exposure != "external":
            return cls()
        if not output:
            return cls(iap=True)
        return cls(
            output.get("iap") == "true",
            output.get("iapClientId"),
            output.get("iapClientSecret"),
            output.get("securityPolicy"),
        )


def backend_policy_spec(
    target_kind: str, target_name: str, timeout_seconds: int, protection: BackendProtection
) -> dict[str, object]:
    """GCPBackendPolicy spec for a model backend: long timeouts for streamed tokens, and
    the environment's protection."""
    group = POOL_GROUP if target_kind == "InferencePool" else ""
    default: dict[str, object] = {
        "timeoutSec": timeout_seconds,
        "logging": {"enabled": True, "sampleRate": 100000},
        "connectionDraining": {"drainingTimeoutSec": 60},
    }
    if protection.iap:
        iap: dict[str, object] = {"enabled": True}
        if protection.iap_client_id and protection.iap_client_secret:
            iap["clientID"] = protection.iap_client_id
            iap["oauth2ClientSecret"] = {"name": protection.iap_client_secret}
        default["iap"] = iap
    if protection.security_policy:
        default["securityPolicy"] = protection.security_policy
    return {
        "default": default,
        "targetRef": {"group": group, "kind": target_kind, "name": target_name},
    }
