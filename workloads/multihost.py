"""Multi-host serving: a replica that spans nodes is one LeaderWorkerSet group.

Sizing gives a replica ``nodes`` pods when no single machine holds the model
(``Sizing.pipeline_parallel`` > 1: tensor parallelism inside each node,
pipeline stages across nodes). Those pods must start, fail and scale
together, which is what LeaderWorkerSet (kubernetes-sigs/lws, installed by the
platform from its released manifests) is for:

- **One group = one replica.** ``leaderWorkerTemplate.size`` is the node
  count; every pod requests a whole node's devices, so the scheduler puts one
  pod per node. ``restartPolicy: RecreateGroupOnPodRestart``: a Ray cluster
  or an NCCL group cannot lose a member and go on, so any restart recreates
  the group.
- **Startup.** The leader starts a Ray head (``ray start --head``), waits
  until ``LWS_GROUP_SIZE`` nodes have joined, then execs the same vLLM server
  as a single-node replica with ``--distributed-executor-backend=ray``;
  vLLM places one worker per GPU through Ray. Workers wait (bounded) for the
  head's port at ``$LWS_LEADER_ADDRESS`` (the leader's stable DNS name LWS
  injects), then run ``ray start --block``. ``startupPolicy: LeaderCreated``:
  ``LeaderReady`` would deadlock, since the leader is ready only once the
  workers have joined. The leader's startup probe gets the single-node
  budget plus GROUP_ASSEMBLY_SECONDS.
- **Routing and scaling.** Only leaders serve HTTP: the Service (and an
  InferencePool) select ``leaderworkerset.sigs.k8s.io/worker-index: "0"``.
  The HPA targets the LeaderWorkerSet's scale subresource, whose selector
  (``status.hpaPodSelector``) is the leaders, so vLLM's per-pod metrics are
  averaged over replicas, not over workers that export none.
- **Disruption.** The PDB covers every pod of the set with
  ``maxUnavailable: 1``: evicting one pod takes its whole group down, and
  while that group's pods are not ready no other pod may be evicted, so at
  most one replica is ever out for voluntary disruptions.

Every pod of a group mounts the model the same way (each stage reads its
layers) and runs under the same identity and security context as a
single-node server.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    EnvVarArgs,
    EnvVarSourceArgs,
    ObjectFieldSelectorArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.workloads.pods import (
    ModelServer,
    accelerator_resources,
    compile_cache_mounts,
    container_security,
    server_env,
    vllm_container,
)
from gke_inference.workloads.sizing import MODEL_MOUNT, Sizing
from gke_inference.workloads.spec import WorkloadSpec

LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"
LWS_KIND = "LeaderWorkerSet"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_WORKER_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
RAY_PORT = 6379  # the Ray head's GCS port
RAY_OBJECT_STORE_BYTES = 2 * 1024**3  # fits the pod's /dev/shm (2 GiB per device)
GROUP_ASSEMBLY_SECONDS = 600  # workers scheduled on their nodes, images pulled, Ray joined
RAY_JOIN_POLL_SECONDS = 5

# Runs as ``sh -c LEADER_SCRIPT vllm <vLLM flags>``: the flags stay the
# container's args, exactly what a single-node server is given.
LEADER_SCRIPT = """\
set -e
ray start --head --port={port} --node-ip-address="$POD_IP" --include-dashboard=false \
--disable-usage-stats --object-store-memory={store}
python3 -c '
import os, time, ray
ray.init(address="auto", logging_level="ERROR")
want = int(os.environ["LWS_GROUP_SIZE"])
deadline = time.monotonic() + {assembly}
while True:
    alive = sum(1 for node in ray.nodes() if node["Alive"])
    if alive >= want:
        break
    if time.monotonic() > deadline:
        raise SystemExit(f"only {{alive}} of {{want}} Ray nodes joined in {assembly} s")
    print(f"waiting for Ray nodes: {{alive}} of {{want}}", flush=True)
    time.sleep({poll})
'
exec python3 -m vllm.entrypoints.openai.api_server "$@"
"""

WORKER_SCRIPT = """\
deadline=$(( $(date +%s) + {assembly} ))
until python3 -c 'import os, socket; socket.create_connection((os.environ["LWS_LEADER_ADDRESS"], {port}), 3).close()' 2>/dev/null; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "Ray head $LWS_LEADER_ADDRESS:{port} unreachable for {assembly} s" >&2
    exit 1
  fi
  sleep {poll}
done
exec ray start --address="$LWS_LEADER_ADDRESS:{port}" --node-ip-address="$POD_IP" \
--disable-usage-stats --object-store-memory={store} --block
"""


def _render(script: str, port: int, assembly: int, poll: int) -> str:
    return script.format(port=port, store=RAY_OBJECT_STORE_BYTES, assembly=assembly, poll=poll)


def leader_script(
    port: int = RAY_PORT, assembly: int = GROUP_ASSEMBLY_SECONDS, poll: int = RAY_JOIN_POLL_SECONDS
) -> str:
    return _render(LEADER_SCRIPT, port, assembly, poll)


def worker_script(
    port: int = RAY_PORT, assembly: int = GROUP_ASSEMBLY_SECONDS, poll: int = RAY_JOIN_POLL_SECONDS
) -> str:
    return _render(WORKER_SCRIPT, port, assembly, poll)


def group_env() -> list[EnvVarArgs]:
    """Ray, vLLM and NCCL bind to the pod's address on its one interface (eth0)."""
    pod_ip = EnvVarSourceArgs(field_ref=ObjectFieldSelectorArgs(field_path="status.podIP"))
    return [
        EnvVarArgs(name="POD_IP", value_from=pod_ip),
        EnvVarArgs(name="VLLM_HOST_IP", value_from=pod_ip),
        EnvVarArgs(name="NCCL_SOCKET_IFNAME", value="eth0"),
        EnvVarArgs(name="GLOO_SOCKET_IFNAME", value="eth0"),
    ]


def leader_container(sizing: Sizing, image: pulumi.Input[str]) -> ContainerArgs:
    """The vLLM server of a single-node replica, started behind the group's Ray head."""
    return vllm_container(
        sizing,
        image,
        model=MODEL_MOUNT,  # a replica across nodes reads through FUSE (workloads.loading)
        command=["/bin/sh", "-c", leader_script(), "vllm"],
        extra_env=group_env(),
        extra_startup_seconds=GROUP_ASSEMBLY_SECONDS,
    )


def worker_container(sizing: Sizing, image: pulumi.Input[str]) -> ContainerArgs:
    """A Ray node holding one pipeline stage's GPUs; vLLM's workers run inside it.

    No probes: nothing routes to a worker, and the group is one unit. Its liveness
    is its process (``ray start --block`` exits when its raylet dies or the head goes
    away, and RecreateGroupOnPodRestart recreates the group); the group's readiness
    is its leader's, which passes only once vLLM answers across every worker, and
    the leader's unreadiness is what the set's PDB (maxUnavailable 1) counts.
    """
    return ContainerArgs(
        name="worker",
        image=image,
        image_pull_policy="IfNotPresent",
        command=["/bin/sh", "-c", worker_script()],
        env=[*server_env(sizing), *group_env()],
        resources=accelerator_resources(sizing),
        security_context=container_security(),
        volume_mounts=[
            VolumeMountArgs(name="model", mount_path=MODEL_MOUNT, read_only=True),
            VolumeMountArgs(name="tmp", mount_path="/tmp"),
            VolumeMountArgs(name="dshm", mount_path="/dev/shm"),
            # each stage compiles its own ranks (rank_<r>_0) into the shared cache
            *compile_cache_mounts(sizing),
        ],
    )


def leader_selector(workload: str) -> dict[str, str]:
    """The pods that serve HTTP: group leaders (worker index 0) of the set."""
    return {LWS_NAME_LABEL: workload, LWS_WORKER_INDEX_LABEL: "0"}


def leader_worker_set(
    name: str,
    spec: WorkloadSpec,
    sizing: Sizing,
    server: ModelServer,
    metadata: ObjectMetaArgs,
    opts: pulumi.ResourceOptions,
) -> k8s.apiextensions.CustomResource:
    """``spec.scaling.minReplicas`` groups of ``sizing.nodes`` pods (see the module doc)."""
    leader = server.pod(
        containers=[leader_container(sizing, server.image)], priority_class_name="high"
    )
    worker = server.pod(
        containers=[worker_container(sizing, server.image)], priority_class_name="high"
    )
    body: dict[str, Any] = {
        "replicas": spec.scaling.min_replicas,
        "startupPolicy": "LeaderCreated",
        "leaderWorkerTemplate": {
            "size": sizing.nodes,
            "restartPolicy": "RecreateGroupOnPodRestart",
            "leaderTemplate": leader,
            "workerTemplate": worker,
        },
        # One more group while the old ones serve, as the single-node Deployment surges.
        "rolloutStrategy": {
            "type": "RollingUpdate",
            "rollingUpdateConfiguration": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "networkConfig": {"subdomainPolicy": "Shared"},
    }
    return k8s.apiextensions.CustomResource(
        f"{name}-server",
        api_version=LWS_API_VERSION,
        kind=LWS_KIND,
        metadata=metadata,
        spec=body,
        opts=opts,
    )
