"""The workload stack program: platform outputs in, one model deployment out.

Project ``gke-inference-workloads``, stack ``<env>-<workload>``. The program
reads the platform stack through a StackReference, builds a Kubernetes
provider from its kubeconfig output and deploys the workload's component. It
never touches the cluster's own resources: it only holds what it creates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pulumi

from gke_inference.platform.kubeconfig import kubernetes_provider
from gke_inference.workloads.hyperdisk import hyperdisk_weights_for
from gke_inference.workloads.kinds import Deployment, require_deployable_in
from gke_inference.workloads.model_download import (
    model_download_for,
    needs_download,
    weights_location,
)
from gke_inference.workloads.platform_ref import PlatformRef, read_platform
from gke_inference.workloads.storage import model_location


def build_workload(
    deployment: Deployment, platform: PlatformRef, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    """Weights first (when the spec downloads them, then onto Hyperdisk ML when it reads
    them from there), then the kind's component."""
    download = model_download_for(deployment, platform, opts)
    if download is not None:
        # What follows waits for the download Job to complete.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[download]))
    disk = hyperdisk_weights_for(deployment, platform, opts)
    if disk is not None:
        # The serving component waits for the filled, restored volume to bind.
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[disk]))
    return deployment.kind.build(deployment, platform, opts)


def workload_program(
    deployment: Deployment, environment: str, organization: str
) -> Callable[[], Awaitable[None]]:
    """An inline program (for the Automation API and the offline plan)."""

    async def program() -> None:
        platform = await read_platform(organization, environment)
        require_deployable_in(  # before any resource
            deployment,
            environment=platform.environment,
            classes=platform.compute_classes,
            gateway_exposure=platform.gateway_exposure,
            queued_pools=platform.queued_node_pools,
            admission=platform.binary_authorization_allowlist,
            digests_required=platform.image_digests_required,
            region=platform.region,
        )
        provider = kubernetes_provider(
            "platform-cluster", platform.cluster_name, platform.kubeconfig
        )
        component = build_workload(
            deployment, platform, pulumi.ResourceOptions(providers=[provider])
        )
        spec, sizing = deployment.spec, deployment.sizing
        pulumi.export("workload", spec.name)
        pulumi.export("kind", spec.kind)
        pulumi.export("environment", environment)
        pulumi.export("namespace", platform.workload_namespace)
        weights = weights_location(spec, platform.model_bucket)
        if weights is not None:  # where the server reads them (a download Job may fetch them)
            pulumi.export("weights", weights)
            pulumi.export("downloadsWeights", needs_download(deployment))
        if sizing is not None:
            pulumi.export("computeClass", sizing.compute_class)
            pulumi.export("tensorParallel", sizing.tensor_parallel)
            # what the server is started with (the streamer reads the weights' gs:// folder)
            pulumi.export("vllmArgs", sizing.vllm_args(model=model_location(platform, sizing)))
        url = getattr(component, "url", None)
        if url is not None:
            pulumi.export("url", url)

    return program
