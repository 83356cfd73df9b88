"""The workload kinds, in one registry: what each needs, how it is checked, what it builds.

A spec becomes a :class:`Deployment` once (:func:`deployment_for`): validated
(the spec model asks :data:`KINDS` which sections a kind requires), sized when
the kind serves a model, and checked against every rule that would otherwise
fail half-way through a deployment. The CLI, the offline plan, the service and
the workload program all start from that one Deployment, so a spec that
cannot be deployed is a :class:`~gke_inference.core.errors.SpecError` (exit 2,
HTTP 422) before any stack operation starts, and sizing runs once per plan.

Component modules are imported when a kind is built, not when specs are
validated: the service checks specs without loading the Kubernetes SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gke_inference.core.errors import Problem, SpecError

if TYPE_CHECKING:
    import pulumi

    from gke_inference.workloads.platform_ref import PlatformRef
    from gke_inference.workloads.sizing import Sizing
    from gke_inference.workloads.spec import WorkloadSpec

Builder = Callable[
    ["Deployment", "PlatformRef", "pulumi.ResourceOptions"], "pulumi.ComponentResource"
]


@dataclass(frozen=True)
class WorkloadKind:
    name: str
    component: str  # the ComponentResource it builds (for messages and docs)
    serves_model: bool  # runs vLLM on `model`: sized, may download weights first
    section: str | None  # spec section the kind requires (None: optional or none)
    gpu_only: bool
    build: Builder


@dataclass(frozen=True)
class Deployment:
    """A spec that can be deployed, with its one sizing result."""

    spec: WorkloadSpec
    sizing: Sizing | None  # None for kinds that do not serve a model
    compute_class: str

    @property
    def kind(self) -> WorkloadKind:
        return KINDS[self.spec.kind]

    def require_sizing(self) -> Sizing:
        if self.sizing is None:  # pragma: no cover - deployment_for sizes serving kinds
            raise TypeError(f"kind {self.spec.kind!r} is not sized")
        return self.sizing


def _online(
    d: Deployment, platform: PlatformRef, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    from gke_inference.workloads.online import OnlineInference, OnlineInferenceArgs

    return OnlineInference(
        d.spec.name, OnlineInferenceArgs(d.spec, d.require_sizing(), platform), opts
    )


def _batch(
    d: Deployment, platform: PlatformRef, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    from gke_inference.workloads.batch import BatchInference, BatchInferenceArgs

    return BatchInference(
        d.spec.name, BatchInferenceArgs(d.spec, d.require_sizing(), platform), opts
    )


def _streaming(
    d: Deployment, platform: PlatformRef, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    from gke_inference.workloads.streaming import StreamingInference, StreamingInferenceArgs

    args = StreamingInferenceArgs(d.spec, d.require_sizing(), platform)
    return StreamingInference(d.spec.name, args, opts)


def _comfyui(
    d: Deployment, platform: PlatformRef, opts: pulumi.ResourceOptions
) -> pulumi.ComponentResource:
    from gke_inference.workloads.comfyui import ComfyUI, ComfyUIArgs

    return ComfyUI(d.spec.name, ComfyUIArgs(d.spec, d.compute_class, platform), opts)


KINDS: dict[str, WorkloadKind] = {
    kind.name: kind
    for kind in (
        WorkloadKind("online", "OnlineInference", True, None, False, _online),
        WorkloadKind("batch", "BatchInference", True, "batch", False, _batch),
        WorkloadKind("streaming", "StreamingInference", True, None, False, _streaming),
        WorkloadKind("comfyui", "ComfyUI", False, "comfyui", True, _comfyui),
    )
}


def deployment_for(spec: WorkloadSpec) -> Deployment:
    """Size ``spec`` (once) and apply every deployability rule; SpecError lists what fails."""
    from gke_inference.workloads.sizing import single_device_class, size

    kind = KINDS[spec.kind]
    if not kind.serves_model:
        return Deployment(spec, None, single_device_class(spec))
    sizing = size(spec)
    if sizing.pipeline_parallel > 1:
        # Every component runs a replica on one node (no multi-host serving yet).
        raise SpecError(
            f"Workload {spec.name!r} cannot be deployed",
            [
                Problem(
                    "accelerator",
                    f"sizing needs {sizing.pipeline_parallel} nodes of {sizing.shape.machine_type} "
                    f"per replica (pipeline parallelism); {kind.component} runs a replica on one "
                    "node: choose a larger accelerator, lower precision, or a smaller "
                    "context/concurrency",
                )
            ],
        )
    return Deployment(spec, sizing, sizing.compute_class)


def require_enabled_class(deployment: Deployment, classes: dict[str, str]) -> None:
    """The deployment's compute class must be one the environment enables."""
    enabled = sorted(set(classes.values()))
    if deployment.compute_class not in enabled:
        spec = deployment.spec
        raise SpecError(
            f"Workload {spec.name!r} cannot be scheduled",
            [
                Problem(
                    "accelerator",
                    f"{deployment.kind.component} needs compute class "
                    f"{deployment.compute_class!r}, which this environment does not enable; "
                    f"enabled: {', '.join(enabled) or 'none'} (add the machine type to "
                    "inference.accelerators of the platform stack)",
                )
            ],
        )
