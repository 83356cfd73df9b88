"""The workload stack program: platform outputs in, one model deployment out.

Project ``gke-inference-workloads``, stack ``<env>-<workload>``. The program
reads the platform stack through a StackReference, builds a Kubernetes
provider from its kubeconfig output and deploys the workload's component. It
never touches the cluster's own resources: it only holds what it creates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from gke_inference.errors import Problem, SpecError
from gke_inference.workloads.platform_ref import PlatformRef, read_platform
from gke_inference.workloads.sizing import Sizing, size
from gke_inference.workloads.spec import WorkloadSpec


def require_compute_class(spec: WorkloadSpec, sizing: Sizing, classes: dict[str, Any]) -> str:
    """The sized class must be one the environment enables (platform output computeClasses)."""
    enabled = sorted(str(v) for v in classes.values())
    if sizing.compute_class not in enabled:
        raise SpecError(
            f"Workload {spec.name!r} cannot be scheduled",
            [
                Problem(
                    "accelerator",
                    f"sizing chose compute class {sizing.compute_class!r}, which this environment "
                    f"does not enable; enabled: {', '.join(enabled) or 'none'} (add the machine "
                    "type to inference.accelerators of the platform stack)",
                )
            ],
        )
    return sizing.compute_class


def build_workload(
    spec: WorkloadSpec, platform: PlatformRef, provider: k8s.Provider
) -> pulumi.ComponentResource:
    opts = pulumi.ResourceOptions(providers=[provider])
    if spec.kind != "comfyui":
        from gke_inference.workloads.model_download import model_download_for

        # Weights first: the serving component waits for the download Job to complete.
        download = model_download_for(spec, size(spec), platform, opts)
        if download is not None:
            opts = pulumi.ResourceOptions(providers=[provider], depends_on=[download])
    if spec.kind == "online":
        from gke_inference.workloads.online import OnlineInference, OnlineInferenceArgs

        return OnlineInference(spec.name, OnlineInferenceArgs(spec, size(spec), platform), opts)
    if spec.kind == "batch":
        from gke_inference.workloads.batch import BatchInference, BatchInferenceArgs

        return BatchInference(spec.name, BatchInferenceArgs(spec, size(spec), platform), opts)
    if spec.kind == "streaming":
        from gke_inference.workloads.streaming import StreamingInference, StreamingInferenceArgs

        return StreamingInference(
            spec.name, StreamingInferenceArgs(spec, size(spec), platform), opts
        )
    from gke_inference.workloads.comfyui import ComfyUI, ComfyUIArgs

    return ComfyUI(spec.name, ComfyUIArgs(spec, platform), opts)


def workload_program(
    spec: WorkloadSpec, environment: str, organization: str
) -> Callable[[], Awaitable[None]]:
    """An inline program (for the Automation API and the offline plan)."""

    async def program() -> None:
        sizing = size(spec) if spec.kind != "comfyui" else None  # errors before any resource
        platform = await read_platform(organization, environment)
        if sizing is not None:
            require_compute_class(spec, sizing, platform.compute_classes)
        provider = k8s.Provider(
            "platform-cluster",
            kubeconfig=platform.kubeconfig,
            cluster_identifier=platform.cluster_name,
            enable_server_side_apply=True,
        )
        component = build_workload(spec, platform, provider)
        pulumi.export("workload", spec.name)
        pulumi.export("kind", spec.kind)
        pulumi.export("environment", environment)
        pulumi.export("namespace", platform.workload_namespace)
        if sizing is not None:
            pulumi.export("computeClass", sizing.compute_class)
            pulumi.export("tensorParallel", sizing.tensor_parallel)
            pulumi.export("vllmArgs", sizing.vllm_args())
        url = getattr(component, "url", None)
        if url is not None:
            pulumi.export("url", url)

    return program
