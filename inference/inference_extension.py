"""Gateway API inference extension: the API objects model routing builds on.

GKE serves ``InferencePool`` (``inference.networking.k8s.io/v1``) itself when
the Gateway API is enabled. ``InferenceObjective`` (request priority per
objective) and ``InferenceModelRewrite`` (the picker rewrites a request's
``model`` to weighted targets: LoRA adapter rollouts) are alpha and not part of
GKE, so the platform installs their CRDs here, pinned to the API of
gateway-api-inference-extension v1.5.0. The objective's schema below is written
for this project from that API's published fields; the rewrite's is the one
offline validation checks workloads against (``crd-schemas/``), served as is
minus ``additionalProperties: false`` (the API server prunes unknown fields,
and a structural schema may not combine it with ``properties``).

The picker (v1.5.0) looks both kinds up once at start through discovery and
watches each it finds, so every picker's Role reads both
(workloads.inference_pool).
"""

from __future__ import annotations

import json
from importlib import resources
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
REWRITE_KIND = "InferenceModelRewrite"
REWRITE_SCHEMA_FILE = f"crd-schemas/{OBJECTIVE_GROUP}_{OBJECTIVE_VERSION}_{REWRITE_KIND}.json"

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


def _structural(node: Any) -> Any:
    """The schema without ``additionalProperties: false`` (see the module doc)."""
    if isinstance(node, dict):
        return {
            k: _structural(v)
            for k, v in node.items()
            if not (k == "additionalProperties" and v is False)
        }
    if isinstance(node, list):
        return [_structural(v) for v in node]
    return node


def rewrite_schema() -> dict[str, Any]:
    """The InferenceModelRewrite CRD's openAPIV3Schema, from the offline schema's spec."""
    text = resources.files("gke_inference.inference").joinpath(REWRITE_SCHEMA_FILE).read_text()
    spec = json.loads(text)["properties"]["spec"]
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _structural(spec),
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }


def _crd(
    name: str, kind: str, schema: dict[str, Any], opts: pulumi.ResourceOptions
) -> k8s.apiextensions.v1.CustomResourceDefinition:
    plural = f"{kind.lower()}s"
    return k8s.apiextensions.v1.CustomResourceDefinition(
        name,
        metadata=ObjectMetaArgs(
            name=f"{plural}.{OBJECTIVE_GROUP}",
            labels={"gke-inference/api-version": EXTENSION_VERSION},
        ),
        spec=k8s.apiextensions.v1.CustomResourceDefinitionSpecArgs(
            group=OBJECTIVE_GROUP,
            scope="Namespaced",
            names=k8s.apiextensions.v1.CustomResourceDefinitionNamesArgs(
                kind=kind, list_kind=f"{kind}List", plural=plural, singular=kind.lower()
            ),
            versions=[
                k8s.apiextensions.v1.CustomResourceDefinitionVersionArgs(
                    name=OBJECTIVE_VERSION,
                    served=True,
                    storage=True,
                    subresources=k8s.apiextensions.v1.CustomResourceSubresourcesArgs(status={}),
                    schema=k8s.apiextensions.v1.CustomResourceValidationArgs(
                        # A JSON Schema is data; the SDK sends the mapping as is.
                        open_apiv3_schema=cast(Any, schema)
                    ),
                )
            ],
        ),
        opts=opts,
    )


class InferenceExtension(pulumi.ComponentResource):
    """Installs the InferenceObjective and InferenceModelRewrite CRDs (InferencePool
    comes from GKE)."""

    crd: k8s.apiextensions.v1.CustomResourceDefinition
    rewrite_crd: k8s.apiextensions.v1.CustomResourceDefinition

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gke-inference:inference:InferenceExtension", name, None, opts)
        child = child_options(self, opts)
        self.crd = _crd(f"{name}-objectives", "InferenceObjective", OBJECTIVE_SCHEMA, child)
        self.rewrite_crd = _crd(f"{name}-rewrites", REWRITE_KIND, rewrite_schema(), child)
        self.register_outputs(
            {"crd": self.crd.metadata.name, "rewriteCrd": self.rewrite_crd.metadata.name}
        )
