"""Can this spec be deployed in that environment? Answered from files alone, before any operation.

The CLI and the service ask here first, so an undeployable spec is a
:class:`~gke_inference.core.errors.SpecError` (exit 2, HTTP 422) and no
operation starts. The compute classes of an environment come from its stack
config exactly as the platform program derives them (the engine's view of
``Pulumi.<env>.yaml``, parsed by the same settings model), so neither Pulumi
nor a deployed platform stack is needed.
"""

from __future__ import annotations

from pathlib import Path

from gke_inference.core.admission import binary_authorization_allowlist
from gke_inference.core.settings import PlatformSettings, parse_settings, project_config
from gke_inference.core.stack_config import load_stack_config, to_engine_config
from gke_inference.inference.compute_classes import enabled_classes, queued_node_pools
from gke_inference.workloads.kinds import Deployment, deployment_for, require_deployable_in
from gke_inference.workloads.spec import WorkloadSpec


def environment_settings(project_dir: Path, environment: str) -> PlatformSettings:
    """The environment's settings, parsed from its stack config as the platform program does.

    Raises :class:`~gke_inference.core.errors.SettingsError` when that config is invalid.
    """
    config = to_engine_config(load_stack_config(project_dir, environment))
    return parse_settings(project_config(config), environment)


def environment_classes(settings: PlatformSettings) -> dict[str, str]:
    """The platform output ``computeClasses`` these settings produce."""
    inference = settings.inference
    return {
        c.key: c.name
        for c in enabled_classes(inference.accelerators, inference.cost_optimized_classes)
    }


def checked_deployment(project_dir: Path, environment: str, spec: WorkloadSpec) -> Deployment:
    """``deployment_for(spec)``, checked against every rule of ``environment`` (its compute
    classes and queued pools, production readiness, its gateway) as the workload program
    will check it."""
    deployment = deployment_for(spec)
    settings = environment_settings(project_dir, environment)
    require_deployable_in(
        deployment,
        environment=settings.environment,
        classes=environment_classes(settings),
        gateway_exposure=settings.inference.gateway.exposure,
        queued_pools=queued_node_pools(settings),
        admission=binary_authorization_allowlist(settings),
        digests_required=settings.image_digests_required,
        region=settings.region,
    )
    return deployment
