"""What a workload stack reads from its environment's platform stack."""

from __future__ import annotations

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
        return self.reference.require_output(key).apply(str)

    @property
    def project_id(self) -> pulumi.Output[str]:
        return self._str("projectId")

    @property
    def region(self) -> pulumi.Output[str]:
        return self._str("region")

    @property
    def cluster_name(self) -> pulumi.Output[str]:
        return self._str("clusterName")

    @property
    def kubeconfig(self) -> pulumi.Output[str]:
        return pulumi.Output.secret(self._str("kubeconfig"))

    @property
    def workload_namespace(self) -> pulumi.Output[str]:
        return self._str("workloadNamespace")

    @property
    def model_bucket(self) -> pulumi.Output[str]:
        return self._str("modelBucket")

    @property
    def artifact_registry(self) -> pulumi.Output[str]:
        return self._str("artifactRegistry")

    @property
    def gateway_name(self) -> pulumi.Output[str]:
        return self._str("gatewayName")

    @property
    def gateway_namespace(self) -> pulumi.Output[str]:
        return self._str("gatewayNamespace")

    @property
    def gateway_exposure(self) -> pulumi.Output[str]:
        return self.reference.get_output("gatewayExposure").apply(lambda v: str(v or "internal"))

    @property
    def compute_classes(self) -> pulumi.Output[dict[str, Any]]:
        return self.reference.require_output("computeClasses").apply(lambda v: dict(v or {}))

    @property
    def mode(self) -> pulumi.Output[str]:
        return self._str("mode")
