"""Pod building blocks every model-serving workload shares.

Containers run as non-root, without privilege escalation, with a read-only
root filesystem; accelerators are requested with requests = limits and
scheduled through the sized compute class; a native sidecar warms the FUSE
file cache while the server starts. :class:`ModelServer` puts them together
for every kind that serves a model.

What the node does with it (rehearsed by tests/test_runtime_*.py):

- Weights, data and the compilation cache in Cloud Storage, and the grants to read
  and write them: :mod:`gke_inference.workloads.storage`.
- User names for uids the images do not know, and the servers' preStop
  drain: :mod:`gke_inference.workloads.lifecycle`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    ContainerPortArgs,
    EnvVarArgs,
    HTTPGetActionArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.core.images import PINNED_IMAGES, UPSTREAM_HOSTS, image_tag, with_digest
from gke_inference.inference.cluster_addons import MODEL_SERVER_LABEL
from gke_inference.inference.compute_classes import COMPUTE_CLASS_LABEL
from gke_inference.workloads import attention
from gke_inference.workloads.lifecycle import (
    DRAIN_PROPAGATION_SECONDS,
    RUN_AS,
    drain_hook,
    grace_period_seconds,
    user_env,
)
from gke_inference.workloads.loading import hyperdisk_gib, startup_seconds
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.sizing import (
    MODEL_MOUNT,
    Sizing,
)
from gke_inference.workloads.spec import WorkloadSpec
from gke_inference.workloads.storage import (
    compile_cache_volume,
    fuse_annotations,
    model_location,
    model_volume,
    scratch_volumes,
    server_folders,
    service_account_with_bucket_access,
    serving_buckets,
    weights_claim,
)

SERVER_PORT = 8000
VLLM_VERSION_LABEL = "gke-inference/vllm-version"

PREFETCH_PARALLELISM = 16


# The gke-inference-worker image (worker/, PINNED_IMAGES["worker"]), pushed to the
# platform's Artifact Registry by worker/cloudbuild.yaml; its version is
# worker/pyproject.toml's.
WORKER_UID = 65532  # the image's user


def worker_image(platform: PlatformRef, override: str | None) -> str:
    return override or pinned_image(platform, "worker")


def gcp_labels(spec: WorkloadSpec, environment: str) -> dict[str, str]:
    """Labels for the workload's Google Cloud resources (``environment`` is required by policy)."""
    return {
        "environment": environment,
        "workload": spec.name,
        "workload-kind": spec.kind,
        "managed-by": "pulumi",
    }


def labels_for(name: str, kind: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "gke-inference/workload": name,
        "gke-inference/kind": kind,
    }


def pinned_image(platform: PlatformRef, name: str) -> str:
    """The image pinned under ``name`` (:data:`PINNED_IMAGES`) as this environment pulls it:
    through the platform's pull-through remote of its upstream (scanned, cached, allowed
    by Binary Authorization; the upstream itself when the environment has no such
    remote) or from the team repository, with the platform's digest when it has one."""
    image = PINNED_IMAGES[name]
    if image.source == "team":
        ref = f"{platform.artifact_registry}/{image.ref}"
    elif image.source == "remote" and image.upstream is not None:
        remote = platform.artifact_registry_remotes.get(image.upstream)
        ref = f"{remote}/{image.ref}" if remote else f"{UPSTREAM_HOSTS[image.upstream]}/{image.ref}"
    else:
        ref = image.ref
    return with_digest(ref, platform.image_digests.get(name))


def server_image(spec: WorkloadSpec, platform: PlatformRef) -> tuple[str, str]:
    """The vLLM image to pull (the spec's own, or the pinned one of its server type) and
    its tag (for the version label)."""
    if spec.server.image:
        return spec.server.image, image_tag(spec.server.image)
    return pinned_image(platform, spec.server.type), image_tag(PINNED_IMAGES[spec.server.type].ref)


def cluster_service(
    name: str,
    metadata: ObjectMetaArgs,
    selector: dict[str, str],
    port: int,
    target_port: str,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Service:
    """A ClusterIP Service: the gateway's backend and the in-cluster endpoint."""
    return k8s.core.v1.Service(
        f"{name}-service",
        metadata=metadata,
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector=selector,
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=port, target_port=target_port)],
        ),
        opts=opts,
    )


def service_url(service: str, namespace: str, port: int) -> str:
    """The in-cluster URL of a Service's ``http`` port."""
    return f"http://{service}.{namespace}.svc.cluster.local:{port}"


def pod_security(uid: int = RUN_AS, fs_group: bool = True) -> k8s.core.v1.PodSecurityContextArgs:
    """Non-root as ``uid`` with the default seccomp profile (and volumes owned by it)."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        fs_group=uid if fs_group else None,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def container_security(uid: int | None = None) -> k8s.core.v1.SecurityContextArgs:
    """No privilege, no escalation, no capabilities, read-only root; optionally pin the user."""
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=uid,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
    )


def accelerator_resources(sizing: Sizing) -> ResourceRequirementsArgs:
    """Accelerators with requests = limits; CPU and memory scale with the device count."""
    devices = sizing.devices_per_pod
    resource = sizing.accelerator.resource_name
    requests = {
        resource: str(devices),
        "cpu": str(4 * devices),
        "memory": f"{16 * devices}Gi",
        "ephemeral-storage": "10Gi",
    }
    limits = {resource: str(devices), "memory": f"{16 * devices}Gi", "ephemeral-storage": "20Gi"}
    return ResourceRequirementsArgs(requests=requests, limits=limits)


def tpu_selector(sizing: Sizing) -> dict[str, str]:
    """The TPU slice a pod needs, as node labels (none for GPUs)."""
    if sizing.accelerator.kind != "tpu":
        return {}
    return {
        "cloud.google.com/gke-tpu-accelerator": sizing.accelerator.gke_label,
        "cloud.google.com/gke-tpu-topology": str(sizing.shape.topology),
    }


def node_selector(sizing: Sizing) -> dict[str, str]:
    return {COMPUTE_CLASS_LABEL: sizing.compute_class, **tpu_selector(sizing)}


@dataclass(frozen=True)
class Placement:
    """Where a model server's pods run when not through their compute class (queued
    capacity, :mod:`gke_inference.workloads.queued`): selector, tolerations, annotations."""

    node_selector: dict[str, str]
    tolerations: list[k8s.core.v1.TolerationArgs]
    annotations: dict[str, str]


def server_env(sizing: Sizing) -> list[EnvVarArgs]:
    env = [
        *user_env(),
        EnvVarArgs(name="HOME", value="/tmp/home"),
        EnvVarArgs(name="XDG_CACHE_HOME", value="/tmp/cache"),
        EnvVarArgs(name="HF_HOME", value="/tmp/hf"),
        EnvVarArgs(name="HF_HUB_OFFLINE", value="1"),  # weights come from the bucket only
        EnvVarArgs(name="VLLM_NO_USAGE_STATS", value="1"),
    ]
    if sizing.accelerator.kind == "gpu":
        env.append(
            EnvVarArgs(
                name="LD_LIBRARY_PATH", value="/usr/local/nvidia/lib64:/usr/local/cuda/lib64"
            )
        )
    cache = sizing.compile_cache
    if cache is not None:
        env.append(EnvVarArgs(name=cache.env, value=cache.mount_path))
    if sizing.attention.pinned:
        env.append(EnvVarArgs(name=attention.ENV, value=sizing.attention.backend))
    return env


def compile_cache_mounts(sizing: Sizing) -> list[VolumeMountArgs]:
    """The persisted compile cache, where the server's env points (read-write)."""
    cache = sizing.compile_cache
    return (
        [] if cache is None else [VolumeMountArgs(name=cache.volume, mount_path=cache.mount_path)]
    )


def vllm_container(
    sizing: Sizing,
    image: pulumi.Input[str],
    *,
    model: str,
    propagation_seconds: int = DRAIN_PROPAGATION_SECONDS,
    command: list[str] | None = None,
    extra_env: list[EnvVarArgs] | None = None,
    extra_startup_seconds: int = 0,
) -> ContainerArgs:
    """The vLLM OpenAI-compatible server with sized flags, load-aware probes and a drain.

    ``model``: where the server reads the weights (``ModelServer.model_location``).
    ``propagation_seconds``: how long endpoints take to stop sending before the
    drain counts requests (0 when only a container of the same pod calls it).
    ``command`` replaces the server's entrypoint (a launcher that ends by exec'ing
    it with the same args: the multi-host leader), ``extra_startup_seconds`` adds
    to the startup probe's budget what that launcher waits for.
    """
    health = HTTPGetActionArgs(path="/health", port=SERVER_PORT)
    startup_failures = math.ceil((startup_seconds(sizing) + extra_startup_seconds) / 10)
    mounts = [
        VolumeMountArgs(name="tmp", mount_path="/tmp"),
        VolumeMountArgs(name="dshm", mount_path="/dev/shm"),
    ]
    if sizing.loader != "streamer":
        mounts.insert(0, VolumeMountArgs(name="model", mount_path=MODEL_MOUNT, read_only=True))
    mounts += [
        VolumeMountArgs(name=folder.volume, mount_path=folder.mount_path, read_only=True)
        for folder in server_folders(sizing)
    ]
    mounts += compile_cache_mounts(sizing)
    return ContainerArgs(
        name="server",
        image=image,
        image_pull_policy="IfNotPresent",
        command=command or ["python3", "-m", "vllm.entrypoints.openai.api_server"],
        args=[*sizing.vllm_args(SERVER_PORT, model), "--host=0.0.0.0"],
        ports=[ContainerPortArgs(name="metrics", container_port=SERVER_PORT, protocol="TCP")],
        env=[*server_env(sizing), *(extra_env or [])],
        resources=accelerator_resources(sizing),
        security_context=container_security(),
        # Loading weights can take many minutes: the startup probe gives it the
        # sized budget, then readiness and liveness take over.
        startup_probe=ProbeArgs(
            http_get=health, period_seconds=10, failure_threshold=startup_failures
        ),
        readiness_probe=ProbeArgs(
            http_get=health, period_seconds=5, timeout_seconds=2, failure_threshold=3
        ),
        liveness_probe=ProbeArgs(
            http_get=health, period_seconds=15, timeout_seconds=5, failure_threshold=4
        ),
        # Kubernetes runs preStop before SIGTERM, on which vLLM stops serving at once.
        lifecycle=drain_hook(propagation_seconds, SERVER_PORT),
        volume_mounts=mounts,
    )


def prefetch_sidecar(image: pulumi.Input[str], sizing: Sizing) -> ContainerArgs:
    """A native sidecar that reads the weights once so they land in the FUSE file cache.

    It starts before the server and keeps running (restartPolicy Always), so
    the server's first read of each shard is a cache hit.

    No probes, on purpose: a readiness probe on a native sidecar gates the pod's
    readiness (the server would wait for the whole cache to warm, though it can
    serve while it does: a miss reads from the bucket), and its liveness is its
    process (after the reads it only sleeps; if it exits, the kubelet restarts it).
    """
    path = MODEL_MOUNT
    script = (
        f"find {path} -name '*.safetensors' -type f | "
        f"xargs -r -P {PREFETCH_PARALLELISM} -I {{}} dd if={{}} of=/dev/null bs=16M status=none; "
        "echo prefetched; exec sleep infinity"
    )
    return ContainerArgs(
        name="prefetch",
        image=image,
        command=["/bin/sh", "-c", script],
        restart_policy="Always",
        env=user_env(),
        resources=ResourceRequirementsArgs(
            requests={"cpu": "250m", "memory": "128Mi"}, limits={"memory": "256Mi"}
        ),
        security_context=container_security(),
        volume_mounts=[VolumeMountArgs(name="model", mount_path=MODEL_MOUNT, read_only=True)],
    )


@dataclass(frozen=True)
class ModelServer:
    """One workload's vLLM server: its image, labels, identity and pod, built one way
    for every kind that serves a model."""

    workload: str
    kind: str
    sizing: Sizing
    platform: PlatformRef
    image: str
    tag: str  # the vLLM version, from the image tag
    weights_claim: str | None = None  # the Hyperdisk ML claim (workloads.hyperdisk)

    @classmethod
    def of(cls, spec: WorkloadSpec, sizing: Sizing, platform: PlatformRef) -> ModelServer:
        image, tag = server_image(spec, platform)
        claim = weights_claim(spec.name, sizing, hyperdisk_gib(spec, sizing))
        return cls(spec.name, spec.kind, sizing, platform, image, tag, claim)

    @property
    def labels(self) -> dict[str, str]:
        return server_labels(self.workload, self.kind, self.tag)

    @property
    def model_location(self) -> str:
        """``--model`` of this server (:func:`~gke_inference.workloads.storage.model_location`)."""
        return model_location(self.platform, self.sizing)

    def service_account(
        self,
        name: str,
        parent: pulumi.Resource,
        opts: pulumi.ResourceOptions,
        extra_buckets: list[tuple[pulumi.Input[str], str]] | None = None,
    ) -> k8s.core.v1.ServiceAccount:
        """Read the weights (and ``extra_buckets``); write the compile cache's prefix."""
        sizing, platform = self.sizing, self.platform
        return service_account_with_bucket_access(
            name,
            self.workload,
            platform,
            [*serving_buckets(platform, sizing), *(extra_buckets or [])],
            parent,
            opts,
            write_prefix=(
                (platform.model_bucket, sizing.compile_cache.prefix(self.tag))
                if sizing.compile_cache is not None
                else None
            ),
        )

    def pod(self, **options: Any) -> k8s.core.v1.PodTemplateSpecArgs:
        """:func:`model_server_pod` of this server (``options`` as it takes them)."""
        return model_server_pod(
            self.workload,
            self.labels,
            self.sizing,
            self.platform,
            self.image,
            vllm_version=self.tag,
            weights_claim=self.weights_claim,
            **options,
        )


def model_server_pod(
    workload: str,
    labels: dict[str, str],
    sizing: Sizing,
    platform: PlatformRef,
    image: pulumi.Input[str],
    *,
    containers: list[ContainerArgs],
    sidecars: list[ContainerArgs] | None = None,
    volumes: list[VolumeArgs] | None = None,
    restart_policy: str | None = None,
    priority_class_name: str | None = None,
    vllm_version: str = "unknown",
    termination_grace_seconds: int | None = None,
    placement: Placement | None = None,
    weights_claim: str | None = None,
) -> k8s.core.v1.PodTemplateSpecArgs:
    """A pod on the sized compute class (or at ``placement``) with ``sidecars``, ``volumes``
    and scratch space. With the FUSE loader it reads the model through the mount, after
    the prefetch sidecar (first); with Hyperdisk ML it mounts ``weights_claim``
    read-only; it mounts the compile cache; the streamer needs no model volume
    (workloads.loading). The grace period outlasts the servers' drain."""
    fuse = sizing.loader == "fuse"
    own = [model_volume(platform, sizing, weights_claim)] if sizing.loader != "streamer" else []
    own += [folder.volume_args() for folder in server_folders(sizing)]
    if sizing.compile_cache is not None:
        own.append(compile_cache_volume(platform, sizing.compile_cache, vllm_version))
    uses_fuse = any(v.csi is not None for v in [*own, *(volumes or [])])
    annotations = {
        **(fuse_annotations() if uses_fuse else {}),
        **(placement.annotations if placement else {}),
    }
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=ObjectMetaArgs(labels=labels, annotations=annotations or None),
        spec=k8s.core.v1.PodSpecArgs(
            service_account_name=workload,
            automount_service_account_token=False,
            restart_policy=restart_policy,
            priority_class_name=priority_class_name,
            termination_grace_period_seconds=termination_grace_seconds or grace_period_seconds(),
            node_selector=placement.node_selector if placement else node_selector(sizing),
            tolerations=placement.tolerations if placement else None,
            security_context=pod_security(),
            init_containers=[
                *([prefetch_sidecar(image, sizing)] if fuse else []),
                *(sidecars or []),
            ]
            or None,
            containers=containers,
            volumes=[
                *own,
                *(volumes or []),
                *scratch_volumes(shm_gib=max(1, 2 * sizing.devices_per_pod), fuse=uses_fuse),
            ],
        ),
    )


def server_labels(name: str, kind: str, image_tag: str) -> dict[str, str]:
    return {**labels_for(name, kind), MODEL_SERVER_LABEL: "vllm", VLLM_VERSION_LABEL: image_tag}
