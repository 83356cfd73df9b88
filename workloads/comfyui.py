"""ComfyUI: an image-generation UI on one GPU, behind the environment's gateway.

Storage is Cloud Storage through FUSE, nothing on the node survives a restart:

- ``/models`` (read-only): the platform model bucket's ``comfyui/`` prefix, laid
  out like ComfyUI's models folder (``checkpoints/``, ``loras/``, ``vae/``, ...);
  an ``extra_model_paths.yaml`` points ComfyUI there.
- ``/data/input`` (read-write): a bucket of this workload, ``<project>-<env>-<name>-input``.
- ``/data/output`` and ``/data/user`` (read-write): the ``output/`` and ``user/``
  prefixes of ``<project>-<env>-<name>-output`` (generated images; saved
  workflows and settings).

Image contract: the entrypoint runs ComfyUI's ``main.py`` and passes the
container args on (as the common ComfyUI images do), as a non-root user; it
runs here as UID 10000 with a read-only root filesystem.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi_gcp import storage
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    ContainerPortArgs,
    HTTPGetActionArgs,
    ProbeArgs,
    ResourceRequirementsArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.inference.compute_classes import COMPUTE_CLASS_LABEL
from gke_inference.workloads.lifecycle import RUN_AS, user_env
from gke_inference.workloads.network_policy import isolate
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.pods import (
    cluster_service,
    container_security,
    gcp_labels,
    labels_for,
    pod_security,
    service_url,
)
from gke_inference.workloads.routing import expose_on_gateway
from gke_inference.workloads.spec import WorkloadSpec
from gke_inference.workloads.storage import (
    fuse_annotations,
    fuse_volume,
    scratch_volumes,
    service_account_with_bucket_access,
)

MODEL_PREFIX = "comfyui"
BACKEND_TIMEOUT_SECONDS = 600  # long prompts queue behind each other
MODEL_FOLDERS = (
    "checkpoints", "clip", "clip_vision", "configs", "controlnet", "diffusion_models",
    "embeddings", "loras", "style_models", "text_encoders", "unet", "upscale_models", "vae",
)  # fmt: skip
MAX_BUCKET_NAME = 63


def bucket_name(project: str, environment: str, workload: str, suffix: str) -> str:
    """``<project>-<env>-<name>-<suffix>``, shortened with a hash when over 63 characters."""
    name = f"{project}-{environment}-{workload}-{suffix}"
    if len(name) <= MAX_BUCKET_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    tail = f"-{digest}-{suffix}"
    return name[: MAX_BUCKET_NAME - len(tail)].rstrip("-") + tail


def extra_model_paths() -> str:
    return yaml.safe_dump(
        {"gke_inference": {"base_path": "/models", **{f: f"{f}/" for f in MODEL_FOLDERS}}},
        sort_keys=False,
    )


@dataclass
class ComfyUIArgs:
    spec: WorkloadSpec
    compute_class: str  # one device of the spec's GPU (kinds.deployment_for)
    platform: PlatformRef


class ComfyUI(pulumi.ComponentResource):
    input_bucket: pulumi.Output[str]
    output_bucket: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(self, name: str, args: ComfyUIArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gke-inference:workloads:ComfyUI", name, None, opts)
        spec, platform = args.spec, args.platform
        settings = spec.comfyui
        assert settings is not None  # the spec requires it for kind comfyui (kinds.KINDS)
        acc = spec.accelerator_info
        class_name = args.compute_class
        workload, environment = spec.name, platform.environment
        namespace = platform.workload_namespace
        k8s_opts = child_options(self, opts)
        labels = labels_for(workload, "comfyui")
        selector = {"app.kubernetes.io/name": workload}
        port = settings.port

        def bucket(suffix: str) -> storage.Bucket:
            return storage.Bucket(
                f"{name}-{suffix}",
                name=bucket_name(platform.project_id, environment, workload, suffix),
                project=platform.project_id,
                location=platform.region.upper(),
                storage_class="STANDARD",
                uniform_bucket_level_access=True,
                public_access_prevention="enforced",
                labels=gcp_labels(spec, environment),
                force_destroy=environment != "prod",
                opts=child_options(self, opts),
            )

        input_bucket, output_bucket = bucket("input"), bucket("output")
        account = service_account_with_bucket_access(
            name,
            workload,
            platform,
            [
                (platform.model_bucket, "read"),
                (input_bucket.name, "write"),
                (output_bucket.name, "write"),
            ],
            self,
            k8s_opts,
        )
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=ObjectMetaArgs(name=f"{workload}-config", namespace=namespace, labels=labels),
            data={"extra_model_paths.yaml": extra_model_paths()},
            opts=k8s_opts,
        )
        root = HTTPGetActionArgs(path="/", port="http")
        container = ContainerArgs(
            name="comfyui",
            image=settings.image,
            args=[
                "--listen=0.0.0.0",
                f"--port={port}",
                "--input-directory=/data/input",
                "--output-directory=/data/output",
                "--user-directory=/data/user",
                "--temp-directory=/tmp",
                "--extra-model-paths-config=/config/extra_model_paths.yaml",
            ],
            env=[
                *user_env(),  # the image may not know UID 10000 (getpass, torch caches)
                k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),
                k8s.core.v1.EnvVarArgs(
                    name="LD_LIBRARY_PATH", value="/usr/local/nvidia/lib64:/usr/local/cuda/lib64"
                ),
            ],
            ports=[ContainerPortArgs(name="http", container_port=port, protocol="TCP")],
            resources=ResourceRequirementsArgs(
                requests={acc.resource_name: "1", "cpu": "4", "memory": "16Gi"},
                limits={acc.resource_name: "1", "memory": "24Gi"},
            ),
            startup_probe=ProbeArgs(http_get=root, period_seconds=10, failure_threshold=60),
            readiness_probe=ProbeArgs(http_get=root, period_seconds=10, failure_threshold=3),
            liveness_probe=ProbeArgs(
                http_get=root, period_seconds=20, timeout_seconds=5, failure_threshold=3
            ),
            security_context=container_security(RUN_AS),
            volume_mounts=[
                VolumeMountArgs(name="model", mount_path="/models", read_only=True),
                VolumeMountArgs(name="input", mount_path="/data/input"),
                VolumeMountArgs(name="output", mount_path="/data/output"),
                VolumeMountArgs(name="user", mount_path="/data/user"),
                VolumeMountArgs(name="config", mount_path="/config", read_only=True),
                VolumeMountArgs(name="tmp", mount_path="/tmp"),
                VolumeMountArgs(name="dshm", mount_path="/dev/shm"),
            ],
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-server",
            metadata=ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                selector=LabelSelectorArgs(match_labels=selector),
                # One GPU and per-user state: never run two side by side.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=labels, annotations=fuse_annotations()),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=workload,
                        automount_service_account_token=False,
                        termination_grace_period_seconds=30,
                        node_selector={COMPUTE_CLASS_LABEL: class_name},
                        security_context=pod_security(RUN_AS),
                        containers=[container],
                        volumes=[
                            fuse_volume(
                                "model",
                                platform.model_bucket,
                                only_dir=MODEL_PREFIX,
                                read_only=True,
                                cached=True,
                            ),
                            *(
                                fuse_volume(
                                    volume, bucket, only_dir=prefix, read_only=False, uid=RUN_AS
                                )
                                for volume, bucket, prefix in (
                                    ("input", input_bucket.name, ""),
                                    ("output", output_bucket.name, "output"),
                                    ("user", output_bucket.name, "user"),
                                )
                            ),
                            VolumeArgs(
                                name="config",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                    name=f"{workload}-config"
                                ),
                            ),
                            *scratch_volumes(shm_gib=2),
                        ],
                    ),
                ),
            ),
            opts=child_options(self, opts, depends_on=[account, config]),
        )
        cluster_service(
            name,
            ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
            selector,
            port,
            "http",
            child_options(self, opts, depends_on=[deployment]),
        )
        self._expose(name, spec, platform, labels, port, k8s_opts)
        # The gateway's proxies and health checkers only; out: the buckets (FUSE).
        isolate(
            name,
            ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
            selector,
            platform,
            k8s_opts,
            served=[port],
        )
        self.input_bucket = input_bucket.name
        self.output_bucket = output_bucket.name
        self.url = pulumi.Output.from_input(service_url(workload, namespace, port))
        self.register_outputs(
            {"inputBucket": self.input_bucket, "outputBucket": self.output_bucket, "url": self.url}
        )

    def _expose(
        self,
        name: str,
        spec: WorkloadSpec,
        platform: PlatformRef,
        labels: dict[str, str],
        port: int,
        k8s_opts: pulumi.ResourceOptions,
    ) -> None:
        """HTTPRoute on the gateway, IAP on external gateways, health checks on ``/``."""
        workload = spec.name
        prefix = spec.routing.path_prefix or f"/{workload}"
        expose_on_gateway(
            name,
            workload,
            platform,
            labels,
            prefix=prefix,
            backend_kind="Service",
            backend_name=workload,
            port=port,
            health_path="/",
            opts=k8s_opts,
            timeout_seconds=BACKEND_TIMEOUT_SECONDS,
        )
