"""Gateway API inference extension: the API objects model routing builds on.

GKE serves ``InferencePool`` (``inference.networking.k8s.io/v1``) itself when
the Gateway API is enabled. ``InferenceObjective`` (request priority per
objective, alpha) is not part of GKE, so the platform installs its CRD here,
pinned to the API of gateway-api-inference-extension v1.5.0. The schema below
is written for this project from that API's published fields.
"""

from __future__ import annotations

from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.core.components import child_options

EXTENSION_VERSION = "v1.5.0"
OBJECTIVE_GROUP = "inference.networking.x-k8s.io"
OBJECTIVE_VERSION = "v1alpha2"
POOL_GROUP = "inference.networking.k8s.io"  # GKE serves InferencePool itself
POOL_VERSION = "v1"

_DNS_SUBDOMAIN = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

OBJECTIVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["poolRef"],
            "properties": {
                "priority": {
                    "type": "integer",
                    "description": "Relative priority of requests using this objective; higher "
                    "is served first under contention, negative may be shed.",
                },
                "poolRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "group": {"type": "string", "default": POOL_GROUP, "maxLength": 253,
                                  "pattern": _DNS_SUBDOMAIN},
                        "kind": {"type": "string", "default": "InferencePool", "maxLength": 63,
                                 "minLength": 1},
                        "name": {"type": "string", "maxLength": 253, "minLength": 1},
                    },
                },
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}  # fmt: skip


class InferenceExtension(pulumi.ComponentResource):
    """Installs the InferenceObjective CRD (InferencePool comes from GKE)."""

    crd: k8s.apiextensions.v1.CustomResourceDefinition

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gke-inference:inference:InferenceExtension", name, None, opts)
        self.crd = k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-objectives",
            metadata=ObjectMetaArgs(
                name=f"inferenceobjectives.{OBJECTIVE_GROUP}",
                labels={"gke-inference/api-version": EXTENSION_VERSION},
            ),
            spec=k8s.apiextensions.v1.CustomResourceDefinitionSpecArgs(
                group=OBJECTIVE_GROUP,
                scope="Namespaced",
                names=k8s.apiextensions.v1.CustomResourceDefinitionNamesArgs(
                    kind="InferenceObjective",
                    list_kind="InferenceObjectiveList",
                    plural="inferenceobjectives",
                    singular="inferenceobjective",
                ),
                versions=[
                    k8s.apiextensions.v1.CustomResourceDefinitionVersionArgs(
                        name=OBJECTIVE_VERSION,
                        served=True,
                        storage=True,
                        subresources=k8s.apiextensions.v1.CustomResourceSubresourcesArgs(status={}),
                        schema=k8s.apiextensions.v1.CustomResourceValidationArgs(
                            # A JSON Schema is data; the SDK sends the mapping as is.
                            open_apiv3_schema=cast(Any, OBJECTIVE_SCHEMA)
                        ),
                    )
                ],
            ),
            opts=child_options(self, opts),
        )
        self.register_outputs({"crd": self.crd.metadata.name})
