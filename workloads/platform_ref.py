"""What a workload stack reads from its environment's platform stack."""

from __future__ import annotations

import functools
from typing import Any

import pulumi

PLATFORM_PROJECT = "gke-inference"
WORKLOADS_PROJECT = "gke-inference-workloads"


def platform_stack_name(organization: str, environment: str) -> str:
    return f"{organization}/{PLATFORM_PROJECT}/{environment}"


def workload_stack_name(environment: str, workload: str) -> str:
    return f"{environment}-{workload}"


class PlatformRef:
    """Typed access to the platform stack's outputs contract (DESIGN.md section 4)."""

    def __init__(self, organization: str, environment: str) -> None:
        self.environment = environment
        self.reference = pulumi.StackReference(platform_stack_name(organization, environment))

    def _str(self, key: str) -> pulumi.Output[str]:
        # Each property is read once and cached: every Output over the reference
        # is a task the runtime waits on, and workloads read these many times.
        return self.reference.require_output(key).apply(str)

    @functools.cached_property
    def project_id(self) -> pulumi.Output[str]:
        return self._str("projectId")

    @functools.cached_property
    def region(self) -> pulumi.Output[str]:
        return self._str("region")

    @functools.cached_property
    def cluster_name(self) -> pulumi.Output[str]:
        return self._str("clusterName")

    @functools.cached_property
    def kubeconfig(self) -> pulumi.Output[str]:
        return pulumi.Output.secret(self._str("kubeconfig"))

    @functools.cached_property
    def workload_namespace(self) -> pulumi.Output[str]:
        return self._str("workloadNamespace")

    @functools.cached_property
    def model_bucket(self) -> pulumi.Output[str]:
        return self._str("modelBucket")

    @functools.cached_property
    def artifact_registry(self) -> pulumi.Output[str]:
        return self._str("artifactRegistry")

    @functools.cached_property
    def gateway_name(self) -> pulumi.Output[str]:
        return self._str("gatewayName")

    @functools.cached_property
    def gateway_namespace(self) -> pulumi.Output[str]:
        return self._str("gatewayNamespace")

    @functools.cached_property
    def gateway_exposure(self) -> pulumi.Output[str]:
        return self.reference.get_output("gatewayExposure").apply(lambda v: str(v or "internal"))

    @functools.cached_property
    def compute_classes(self) -> pulumi.Output[dict[str, Any]]:
        return self.reference.require_output("computeClasses").apply(lambda v: dict(v or {}))

    @functools.cached_property
    def mode(self) -> pulumi.Output[str]:
        return self._str("mode")
