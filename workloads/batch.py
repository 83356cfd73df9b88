"""BatchInference: an Indexed Job, one JSONL shard per index, vLLM as a native sidecar.

Each pod runs the sized vLLM server as a native sidecar (an init container
with ``restartPolicy: Always``): the worker container starts only once the
server's startup probe passes, and the Job counts a pod as done when the
worker exits, after which Kubernetes stops the sidecars. Shards are read from
and written to Cloud Storage through FUSE mounts (``batch.input`` read-only,
``batch.output`` read-write); the worker's contract is worker/README.md.

Nodes come through the sized compute class, or with ``batch.capacity:
queued`` from the environment's queued-provisioning pool through a
ProvisioningRequest (:mod:`gke_inference.workloads.queued`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    EnvVarArgs,
    ResourceRequirementsArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.workloads.lifecycle import grace_period_seconds, user_env
from gke_inference.workloads.loading import startup_seconds
from gke_inference.workloads.network_policy import isolate
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.pods import (
    SERVER_PORT,
    WORKER_UID,
    ModelServer,
    container_security,
    vllm_container,
    worker_image,
)
from gke_inference.workloads.queued import QueuedCapacity
from gke_inference.workloads.sizing import Sizing
from gke_inference.workloads.spec import WorkloadSpec
from gke_inference.workloads.storage import fuse_volume, split_gcs

INPUT_DIR = "/data/input"
OUTPUT_DIR = "/data/output"
EXIT_CONFIG = 2  # worker/README.md: configuration error, the same for every index


def as_native_sidecar(container: ContainerArgs) -> ContainerArgs:
    container.restart_policy = "Always"
    return container


def max_failed_indexes(spec: WorkloadSpec) -> int:
    """Whole shards allowed to fail (after their retries) before the Job fails."""
    assert spec.batch is not None
    return math.floor(spec.batch.shards * spec.batch.max_failure_fraction)


@dataclass
class BatchInferenceArgs:
    spec: WorkloadSpec
    sizing: Sizing
    platform: PlatformRef


class BatchInference(pulumi.ComponentResource):
    job_name: str

    def __init__(
        self, name: str, args: BatchInferenceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:workloads:BatchInference", name, None, opts)
        spec, sizing, platform = args.spec, args.sizing, args.platform
        batch = spec.batch
        assert batch is not None  # the spec requires it for kind batch (kinds.KINDS)
        k8s_opts = child_options(self, opts)
        namespace = platform.workload_namespace
        workload = spec.name
        model_server = ModelServer.of(spec, sizing, platform)
        labels = model_server.labels
        input_bucket, input_prefix = split_gcs(batch.input)
        output_bucket, output_prefix = split_gcs(batch.output)

        account = model_server.service_account(
            name, self, k8s_opts, [(input_bucket, "read"), (output_bucket, "write")]
        )
        # Only the worker beside it calls the server: no endpoints to wait out.
        server = as_native_sidecar(
            vllm_container(
                sizing,
                model_server.image,
                model=model_server.model_location,
                propagation_seconds=0,
            )
        )
        # No probes: a Job's worker runs to completion and nothing routes to it. A
        # crash is the pod failure policy's (a retry per shard), a hang is bounded by
        # the worker's own timeouts (MODEL_READY_TIMEOUT_S, per request); its server
        # sidecar has startup, readiness and liveness probes.
        worker = ContainerArgs(
            name="worker",
            image=worker_image(platform, batch.worker_image),
            args=["batch"],
            # JOB_COMPLETION_INDEX is set by Kubernetes in every Indexed Job pod.
            env=[
                EnvVarArgs(name="INPUT_DIR", value=INPUT_DIR),
                EnvVarArgs(name="OUTPUT_DIR", value=OUTPUT_DIR),
                EnvVarArgs(name="MODEL_ENDPOINT", value=f"http://localhost:{SERVER_PORT}"),
                EnvVarArgs(name="MODEL_NAME", value=sizing.served_model_name),
                EnvVarArgs(name="MAX_CONCURRENCY", value=str(spec.concurrency)),
                EnvVarArgs(name="MAX_FAILURE_FRACTION", value=str(batch.max_failure_fraction)),
                # The sidecar's startup probe already waited; this is a safety net.
                EnvVarArgs(name="MODEL_READY_TIMEOUT_S", value=str(startup_seconds(sizing))),
                EnvVarArgs(name="HOME", value="/tmp"),
                *user_env(),
            ],
            resources=ResourceRequirementsArgs(
                requests={"cpu": "1", "memory": "1Gi"}, limits={"memory": "2Gi"}
            ),
            security_context=container_security(WORKER_UID),
            volume_mounts=[
                VolumeMountArgs(name="input", mount_path=INPUT_DIR, read_only=True),
                VolumeMountArgs(name="output", mount_path=OUTPUT_DIR),
                VolumeMountArgs(name="worker-tmp", mount_path="/tmp"),
            ],
        )
        queued = (
            QueuedCapacity.of(
                workload,
                namespace,
                sizing,
                platform.queued_node_pools,
                count=min(batch.parallelism, batch.shards),  # the pods that run at once
            )
            if batch.capacity == "queued"
            else None
        )
        template = model_server.pod(
            containers=[worker],
            sidecars=[server],
            restart_policy="Never",
            termination_grace_seconds=grace_period_seconds(propagation_seconds=0),
            placement=queued.placement(sizing) if queued else None,
            volumes=[
                fuse_volume("input", input_bucket, only_dir=input_prefix, read_only=True),
                fuse_volume(
                    "output",
                    output_bucket,
                    only_dir=output_prefix,
                    read_only=False,
                    uid=WORKER_UID,
                ),
                VolumeArgs(
                    name="worker-tmp",
                    empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="1Gi"),
                ),
            ],
        )
        # The request first, then the Job at once: its pods must be waiting when the
        # nodes come (queued.py).
        requests = [queued.request(name, template, labels, self, opts)] if queued else []
        self.job_name = workload
        k8s.batch.v1.Job(
            f"{name}-job",
            metadata=ObjectMetaArgs(
                name=workload,
                namespace=namespace,
                labels=labels,
                # A batch run takes hours: `pulumi up` creates it and returns.
                annotations={"pulumi.com/skipAwait": "true"},
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                completion_mode="Indexed",
                completions=batch.shards,
                parallelism=batch.parallelism,
                backoff_limit_per_index=batch.retries_per_shard,
                max_failed_indexes=max_failed_indexes(spec),
                pod_failure_policy=k8s.batch.v1.PodFailurePolicyArgs(
                    rules=[
                        # A bad configuration fails every index the same way: stop at once.
                        k8s.batch.v1.PodFailurePolicyRuleArgs(
                            action="FailJob",
                            on_exit_codes=k8s.batch.v1.PodFailurePolicyOnExitCodesRequirementArgs(
                                container_name="worker", operator="In", values=[EXIT_CONFIG]
                            ),
                        ),
                        # Preemption (Spot) or node drains do not use up a shard's retries;
                        # the worker's journal makes the next pod resume.
                        k8s.batch.v1.PodFailurePolicyRuleArgs(
                            action="Ignore",
                            on_pod_conditions=[
                                k8s.batch.v1.PodFailurePolicyOnPodConditionsPatternArgs(
                                    type="DisruptionTarget", status="True"
                                )
                            ],
                        ),
                    ]
                ),
                template=template,
            ),
            opts=child_options(self, opts, depends_on=[account, *requests]),
        )
        # The worker calls its server on localhost (no policy applies inside a pod);
        # Managed Prometheus scrapes the server's /metrics (it carries the model-server
        # label); out: the buckets through FUSE.
        isolate(
            name,
            ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
            {"app.kubernetes.io/name": workload},
            platform,
            k8s_opts,
            scraped=[SERVER_PORT],
        )
        self.register_outputs(
            {"jobName": self.job_name, "input": batch.input, "output": batch.output}
        )
