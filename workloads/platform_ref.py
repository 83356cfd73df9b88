"""What a workload stack reads from its environment's platform stack.

The workload program reads the platform stack's outputs once, through a
StackReference, and works with plain values from then on: errors (a compute
class the environment does not enable) are raised before any workload
resource is registered, and the resources' inputs stay plain data instead of
trees of Outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from gke_inference.errors import Problem, SpecError

PLATFORM_PROJECT = "gke-inference"
WORKLOADS_PROJECT = "gke-inference-workloads"

# Outputs contract (DESIGN.md section 4) -> attribute; all required.
_REQUIRED = {
    "projectId": "project_id",
    "region": "region",
    "clusterName": "cluster_name",
    "workloadNamespace": "workload_namespace",
    "modelBucket": "model_bucket",
    "artifactRegistry": "artifact_registry",
    "gatewayName": "gateway_name",
    "gatewayNamespace": "gateway_namespace",
    "computeClasses": "compute_classes",
    "mode": "mode",
}


def platform_stack_name(organization: str, environment: str) -> str:
    return f"{organization}/{PLATFORM_PROJECT}/{environment}"


def workload_stack_name(environment: str, workload: str) -> str:
    return f"{environment}-{workload}"


@dataclass(frozen=True)
class PlatformRef:
    """The platform stack's outputs, resolved."""

    environment: str
    reference: pulumi.StackReference
    project_id: str
    region: str
    cluster_name: str
    kubeconfig: pulumi.Output[str]  # stays a secret Output
    workload_namespace: str
    model_bucket: str
    artifact_registry: str
    gateway_name: str
    gateway_namespace: str
    compute_classes: dict[str, str]
    mode: str
    gateway_exposure: str = "internal"
    artifact_registry_remotes: dict[str, str] = field(default_factory=dict)


async def read_platform(organization: str, environment: str) -> PlatformRef:
    """Read the outputs contract of ``organization/gke-inference/<environment>``."""
    name = platform_stack_name(organization, environment)
    reference = pulumi.StackReference(name)
    values: dict[str, Any] = {}
    missing: list[str] = []
    for key, attribute in _REQUIRED.items():
        details = await reference.get_output_details(key)
        value = details.value if details.value is not None else details.secret_value
        if value is None:
            missing.append(key)
        values[attribute] = value
    if missing:
        raise SpecError(
            f"The platform stack {name!r} cannot serve workloads",
            [
                Problem(
                    "platform outputs",
                    f"missing {', '.join(missing)}; deploy (or upgrade) the platform stack "
                    f"of environment {environment!r} first",
                )
            ],
        )
    exposure = (await reference.get_output_details("gatewayExposure")).value
    remotes = (await reference.get_output_details("artifactRegistryRemotes")).value
    classes = values.pop("compute_classes")
    return PlatformRef(
        environment=environment,
        reference=reference,
        kubeconfig=pulumi.Output.secret(reference.require_output("kubeconfig")).apply(str),
        gateway_exposure=str(exposure or "internal"),
        artifact_registry_remotes={str(k): str(v) for k, v in (remotes or {}).items()},
        compute_classes={str(k): str(v) for k, v in dict(classes).items()},
        **{k: str(v) for k, v in values.items()},
    )
