"""The platform stack's program: settings -> BasePlatform -> outputs contract.

The root ``__main__.py`` calls :func:`platform_program`; the offline plan runs
the very same file, so what is tested is what ``pulumi up`` runs.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.runtime.config import CONFIG, get_config_env

from gke_inference.inference.capacity import nap_limits
from gke_inference.inference.platform import InferencePlatform, InferencePlatformArgs
from gke_inference.platform.base import BasePlatform, BasePlatformArgs
from gke_inference.platform.cluster import ResourceLimit
from gke_inference.settings import PlatformSettings, parse_settings, project_config

# Generous ceilings for general-purpose node auto-provisioning; accelerator
# ceilings come from the inference layer's catalog (one per accelerator).
CPU_LIMIT = ResourceLimit("cpu", maximum=10_000)
MEMORY_LIMIT_GB = ResourceLimit("memory", maximum=100_000)


def current_config() -> dict[str, Any]:
    """Every config value the engine handed to this program (env and explicit)."""
    return {**get_config_env(), **CONFIG.get()}


def load_settings() -> PlatformSettings:
    """Parse the stack config once; raises SettingsError before any resource exists."""
    return parse_settings(project_config(current_config()), pulumi.get_stack())


def platform_program() -> None:
    settings = load_settings()
    base = BasePlatform(
        "base",
        BasePlatformArgs(
            settings=settings,
            nap_limits=[CPU_LIMIT, MEMORY_LIMIT_GB, *nap_limits(settings)],
        ),
    )
    inference = InferencePlatform("inference", InferencePlatformArgs(settings, base))
    export_outputs(settings, base, inference)


def export_outputs(
    settings: PlatformSettings, base: BasePlatform, inference: InferencePlatform
) -> None:
    """The outputs contract (DESIGN.md section 4) that workload stacks read."""
    pulumi.export("projectId", settings.project)
    pulumi.export("region", settings.region)
    pulumi.export("environment", settings.environment)
    pulumi.export("mode", settings.cluster.mode)
    pulumi.export("clusterName", base.cluster.name)
    pulumi.export("clusterLocation", base.cluster.location)
    pulumi.export("clusterEndpoint", base.cluster.endpoint)
    pulumi.export("clusterCaCertificate", base.cluster.ca_certificate)
    pulumi.export("kubeconfig", base.kubeconfig)
    pulumi.export("workloadIdentityPool", settings.workload_pool)
    pulumi.export("artifactRegistry", base.registry.url)
    pulumi.export("artifactRegistryRemotes", base.registry.remote_urls)
    pulumi.export("nodeServiceAccount", base.node_identity.email)
    pulumi.export("network", base.network.network_id)
    pulumi.export("subnetwork", base.network.subnetwork_id)
    inf = settings.inference
    pulumi.export("workloadNamespace", inf.workload_namespace)
    pulumi.export("modelBucket", inference.model_bucket.name)
    pulumi.export("gatewayName", inf.gateway.name)
    pulumi.export("gatewayNamespace", inf.gateway.namespace)
    pulumi.export("gatewayExposure", inf.gateway.exposure)
    pulumi.export("computeClasses", inference.compute_classes)
