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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gke_inference.core.admission import image_problem
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
    endpoint: bool  # serves live traffic: must survive voluntary disruptions in production
    build: Builder
    # a replica may span nodes (a LeaderWorkerSet group, workloads.multihost); batch
    # Jobs run one pod per shard and cannot
    multi_host: bool = False


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
        WorkloadKind("online", "OnlineInference", True, None, False, True, _online, True),
        WorkloadKind("batch", "BatchInference", True, "batch", False, False, _batch),
        WorkloadKind("streaming", "StreamingInference", True, None, False, True, _streaming, True),
        WorkloadKind("comfyui", "ComfyUI", False, "comfyui", True, False, _comfyui),
    )
}


def deployment_for(spec: WorkloadSpec) -> Deployment:
    """Size ``spec`` (once) and apply every deployability rule; SpecError lists what fails."""
    from gke_inference.workloads.sizing import alternatives, single_device_class, size

    kind = KINDS[spec.kind]
    if not kind.serves_model:
        return Deployment(spec, None, single_device_class(spec))
    sizing = size(spec)
    if sizing.nodes > 1 and not kind.multi_host:
        fits = alternatives(spec)
        raise SpecError(
            f"Workload {spec.name!r} cannot be deployed",
            [
                Problem(
                    "accelerator",
                    f"sizing needs {sizing.pipeline_parallel} nodes of {sizing.shape.machine_type} "
                    f"per replica (pipeline parallelism); {kind.component} runs a replica on one "
                    "node: "
                    + (
                        "shapes that fit one node: " + ", ".join(fits)
                        if fits
                        else "lower contextLength or concurrency"
                    ),
                )
            ],
        )
    problems = scaling_problems(spec, sizing) + capacity_problems(spec)
    if problems:
        raise SpecError(f"Workload {spec.name!r} cannot be deployed", problems)
    return Deployment(spec, sizing, sizing.compute_class)


# Upper bounds of HPA targets that a vLLM pod can reach: kv-cache is a fraction
# (vllm:kv_cache_usage_perc, 0..1); running requests never exceed --max-num-seqs.
KV_CACHE_TARGET_MAX = 1.0
PRODUCTION_ENVIRONMENT = "prod"
PRODUCTION_MIN_REPLICAS = 2


def scaling_problems(spec: WorkloadSpec, sizing: Sizing) -> list[Problem]:
    """HPA targets that the server's own limits make unreachable (they never scale up)."""
    from gke_inference.workloads.latency import scaling_target
    from gke_inference.workloads.serving_spec import LATENCY_HPA_METRICS

    scaling = spec.scaling
    target = scaling_target(spec)
    if scaling.metric in LATENCY_HPA_METRICS:
        return latency_problems(spec, target)
    if scaling.metric == "running-requests" and target > sizing.max_num_seqs:
        return [
            Problem(
                "scaling.target",
                f"{target:g} running requests per pod can never be reached: the server runs at "
                f"most --max-num-seqs={sizing.max_num_seqs} at once; use at most "
                f"{sizing.max_num_seqs} (or metric queue-depth)",
            )
        ]
    if scaling.metric in ("kv-cache", "pool-kv-cache") and target > KV_CACHE_TARGET_MAX:
        return [
            Problem(
                "scaling.target",
                f"{target:g} can never be reached: kv-cache is the used fraction of the KV "
                f"cache (0 to {KV_CACHE_TARGET_MAX:g}); use e.g. 0.8",
            )
        ]
    return []


def latency_problems(spec: WorkloadSpec, target: float) -> list[Problem]:
    """A latency target the recorded quantile can reach, on a histogram the server's
    vLLM version exports (a custom image of unknown version is its owner's business)."""
    from gke_inference.workloads import latency, vllm_metrics
    from gke_inference.workloads.vllm_server import VLLM_IMAGES

    metric = spec.scaling.metric
    problems = []
    why = latency.target_problem(metric, target)
    if why:
        problems.append(Problem("scaling.target", why))
    image = spec.server.image or VLLM_IMAGES[spec.server.type]
    version = vllm_metrics.version_of_image(image)
    histogram = latency.LATENCY_METRICS[metric].histogram
    gone = vllm_metrics.problem(histogram, version) if version is not None else None
    if gone:
        problems.append(Problem("scaling.metric", f"{metric!r} reads {gone} (image {image})"))
    return problems


def capacity_problems(spec: WorkloadSpec) -> list[Problem]:
    """Queued capacity runs on the queued pool itself, never through a compute class."""
    if spec.batch is None or spec.batch.capacity != "queued" or not spec.cost_optimized:
        return []
    return [
        Problem(
            "costOptimized",
            "true asks for the Spot-first compute class, but batch.capacity 'queued' runs "
            "every pod on the queued-provisioning pool (flex-start VMs), not through a class: "
            "set costOptimized to false, or batch.capacity to 'default'",
        )
    ]


def require_production_ready(deployment: Deployment, environment: str) -> None:
    """A production endpoint keeps serving through voluntary disruptions.

    In ``prod`` an online (or streaming) model server needs
    ``scaling.minReplicas >= 2``: its PodDisruptionBudget (minAvailable
    ``minReplicas - 1``) then lets node drains, upgrades and scale-downs take
    one pod while another serves, and never takes the only one. Call it where
    the environment is known, before any resource is registered.
    """
    spec = deployment.spec
    if environment != PRODUCTION_ENVIRONMENT or not deployment.kind.endpoint:
        return
    if spec.scaling.min_replicas < PRODUCTION_MIN_REPLICAS:
        raise SpecError(
            f"Workload {spec.name!r} cannot be deployed to {environment}",
            [
                Problem(
                    "scaling.minReplicas",
                    f"{spec.scaling.min_replicas} replica cannot serve through a node drain or "
                    f"upgrade; {environment} needs at least {PRODUCTION_MIN_REPLICAS} "
                    "(one may be evicted while the other serves)",
                )
            ],
        )


def require_deployable_in(
    deployment: Deployment,
    *,
    environment: str,
    classes: dict[str, str],
    gateway_exposure: str,
    queued_pools: Mapping[str, Sequence[str]],
    admission: Sequence[str],
    digests_required: bool,
    region: str,
) -> None:
    """Every rule that needs the target environment, before any resource is registered:
    its compute classes, its queued pools, production readiness, the images its cluster
    admits (``admission``: Binary Authorization's allow-list, empty where it is not
    enforced; ``digests_required``: every image by digest), and what its gateway can
    route to."""
    require_enabled_class(deployment, classes)
    require_queued_pool(deployment, queued_pools, environment)
    require_production_ready(deployment, environment)
    require_admitted_images(
        deployment, environment, admission=admission, digests_required=digests_required
    )
    spec = deployment.spec
    disk = spec.model.hyperdisk_ml if spec.model is not None else None
    if disk is not None:
        outside = [
            Problem(f"model.hyperdiskMl.zones[{i}]", f"zone {zone!r} is not in region {region!r}")
            for i, zone in enumerate(disk.zones)
            if not zone.startswith(f"{region}-")
        ]
        if outside:
            raise SpecError(
                f"Workload {spec.name!r} cannot keep its weights in {environment}: the "
                f"cluster runs in {region}",
                outside,
            )
    if spec.routing.mode == "inference-pool" and gateway_exposure == "external":
        # GKE routes to InferencePool backends from its regional Gateway classes
        # (gke-l7-rilb, gke-l7-regional-external-managed); the platform's external
        # gateway is the global class gke-l7-global-external-managed.
        raise SpecError(
            f"Workload {spec.name!r} cannot be routed in {environment}",
            [
                Problem(
                    "routing.mode",
                    "'inference-pool' needs a regional gateway; this environment's gateway "
                    "is external (gke-l7-global-external-managed), which does not route to "
                    "InferencePool backends: use routing.mode 'service' here",
                )
            ],
        )


def spec_images(spec: WorkloadSpec) -> dict[str, str]:
    """The images a spec names itself (field path -> image); the pinned ones the platform
    pins (``images.digests``) and pulls through its own registry."""
    found = {
        "server.image": spec.server.image,
        "batch.workerImage": spec.batch.worker_image if spec.batch else None,
        "streaming.workerImage": spec.streaming.worker_image if spec.streaming else None,
        "comfyui.image": spec.comfyui.image if spec.comfyui else None,
    }
    return {path: image for path, image in found.items() if image}


def require_admitted_images(
    deployment: Deployment, environment: str, *, admission: Sequence[str], digests_required: bool
) -> None:
    """Every image the spec names must be one the environment's cluster admits (its Binary
    Authorization allow-list) and, where required, pinned by digest."""
    problems = [
        Problem(path, why)
        for path, image in spec_images(deployment.spec).items()
        if (why := image_problem(image, admission, digest_required=digests_required))
    ]
    if problems:
        raise SpecError(f"Workload {deployment.spec.name!r} cannot run in {environment}", problems)


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


def require_queued_pool(
    deployment: Deployment, queued_pools: Mapping[str, Sequence[str]], environment: str
) -> None:
    """``batch.capacity: queued`` needs a queued pool of the sized machine type
    (the platform output ``queuedNodePools``: machine type -> pool names)."""
    spec, sizing = deployment.spec, deployment.sizing
    if spec.batch is None or spec.batch.capacity != "queued" or sizing is None:
        return
    machine_type = sizing.shape.machine_type
    if queued_pools.get(machine_type):
        return
    available = ", ".join(
        f"{m} ({', '.join(pools)})" for m, pools in sorted(queued_pools.items()) if pools
    )
    raise SpecError(
        f"Workload {spec.name!r} cannot be scheduled in {environment}",
        [
            Problem(
                "batch.capacity",
                f"'queued' needs a queued-provisioning pool of {machine_type} (the sized "
                f"shape), which this environment does not have; machine types with queued "
                f"pools: {available or 'none'} (add a pool with provisioning 'queued' to "
                "inference.nodePools of the platform stack, or use capacity 'default')",
            )
        ],
    )
