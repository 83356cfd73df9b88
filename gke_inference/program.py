"""The platform stack's program: settings -> BasePlatform -> outputs contract.

The root ``__main__.py`` calls :func:`platform_program`; the offline plan runs
the very same file, so what is tested is what ``pulumi up`` runs.
"""

from __future__ import annotations

from typing import Any

import pulumi

from gke_inference.core import sdk_internals
from gke_inference.core.admission import binary_authorization_allowlist
from gke_inference.core.contract import export_platform_outputs
from gke_inference.core.settings import PlatformSettings, parse_settings, project_config
from gke_inference.inference.capacity import nap_limits
from gke_inference.inference.compute_classes import queued_node_pools
from gke_inference.inference.gateway import BackendProtection
from gke_inference.inference.platform import InferencePlatform, InferencePlatformArgs
from gke_inference.platform.base import BasePlatform, BasePlatformArgs
from gke_inference.platform.cluster import ResourceLimit

# Generous ceilings for general-purpose node auto-provisioning; accelerator
# ceilings come from the inference layer's catalog (one per accelerator).
CPU_LIMIT = ResourceLimit("cpu", maximum=10_000)
MEMORY_LIMIT_GB = ResourceLimit("memory", maximum=100_000)


def load_settings() -> PlatformSettings:
    """Parse the stack config once; raises SettingsError before any resource exists."""
    return parse_settings(project_config(sdk_internals.engine_config()), pulumi.get_stack())


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
    """The outputs contract (gke_inference.core.contract) that workload stacks read."""
    inf = settings.inference
    values: dict[str, Any] = {
        "project_id": settings.project,
        "region": settings.region,
        "environment": settings.environment,
        "mode": settings.cluster.mode,
        "cluster_name": base.cluster.name,
        "cluster_location": base.cluster.location,
        "cluster_endpoint": base.cluster.endpoint,
        "cluster_ca_certificate": base.cluster.ca_certificate,
        "workload_identity_pool": settings.workload_pool,
        "artifact_registry": base.registry.url,
        "artifact_registry_remotes": base.registry.remote_urls,
        "node_service_account": base.node_identity.email,
        "network": base.network.network_id,
        "subnetwork": base.network.subnetwork_id,
        "workload_namespace": inf.workload_namespace,
        "model_bucket": inference.model_bucket.name,
        "gateway_name": inf.gateway.name,
        "gateway_namespace": inf.gateway.namespace,
        "gateway_exposure": inf.gateway.exposure,
        "gateway_backend_timeout_seconds": inf.gateway.backend_timeout_seconds,
        "gateway_backend_protection": BackendProtection.of(inf.gateway).to_output(),
        "compute_classes": inference.compute_classes,
        "network_ranges": settings.network_ranges,
        "queued_node_pools": queued_node_pools(settings),
        "binary_authorization_allowlist": binary_authorization_allowlist(settings),
        "image_digests": settings.image_digests,
        "image_digests_required": settings.image_digests_required,
    }
    export_platform_outputs(pulumi.export, values, {"kubeconfig": base.kubeconfig})
