"""Workload components from real offline plans of the shipped example specs.

Every example runs through ``plan_workload`` (the workload stack program on top
of the platform plan of its environment, under the mock runtime), then the
recorded engine inputs are checked: what vLLM gets, how accelerators are
requested and scheduled, how weights are mounted, how it scales and is reached,
and for batch/streaming/ComfyUI/model download their own resources.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.offline.manifests import kubernetes_objects, validate_manifests
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.policy_check import check_plan
from gke_inference.offline.recording import FAKE_PROJECT_NUMBER, Plan, RecordedResource
from gke_inference.workloads.sizing import size
from gke_inference.workloads.spec import load_spec
from tests.support.examples import EXAMPLE_STACKS, EXAMPLES, REPO

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
BACKEND_POLICY = "kubernetes:networking.gke.io/v1:GCPBackendPolicy"
HEALTH_CHECK = "kubernetes:networking.gke.io/v1:HealthCheckPolicy"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
TOPIC = "gcp:pubsub/topic:Topic"
SUBSCRIPTION = "gcp:pubsub/subscription:Subscription"
TOPIC_IAM = "gcp:pubsub/topicIAMMember:TopicIAMMember"
SUBSCRIPTION_IAM = "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember"
SECRET_IAM = "gcp:secretmanager/secretIamMember:SecretIamMember"
COMPUTE_CLASS = "cloud.google.com/compute-class"
WI_POOL = f"principal://iam.googleapis.com/projects/{FAKE_PROJECT_NUMBER}/locations/global/workloadIdentityPools"
PUBSUB_AGENT = f"serviceAccount:service-{FAKE_PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"

_plans: dict[tuple[str, str, tuple[str, ...]], Plan] = {}


def plan(example: str, stack: str | None = None, *overrides: str) -> Plan:
    """Plan an example (or any spec file); cached, each run has its own mocks and loop."""
    path = example if "/" in example else str(EXAMPLES / example)
    stack = stack or EXAMPLE_STACKS[Path(path).name]
    key = (path, stack, overrides)
    if key not in _plans:
        _plans[key] = plan_workload(stack, path, list(overrides), project_dir=REPO)
    return _plans[key]


def write_spec(tmp_path: Path, example: str, **changes: Any) -> str:
    data = yaml.safe_load((EXAMPLES / example).read_text())
    data.update(changes)
    out = tmp_path / example
    out.write_text(yaml.safe_dump(data))
    return str(out)


def pod(resource: RecordedResource) -> dict[str, Any]:
    return dict(resource.inputs["spec"]["template"]["spec"])


def container(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    found = [
        c
        for c in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
        if c["name"] == name
    ]
    assert len(found) == 1, f"container {name}: {found}"
    return dict(found[0])


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def volume(pod_spec: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(v for v in pod_spec["volumes"] if v["name"] == name))


def mount_options(vol: dict[str, Any]) -> list[str]:
    return str(vol["csi"]["volumeAttributes"]["mountOptions"]).split(",")


def parent_name(plan_: Plan, resource: RecordedResource) -> str:
    parent = next(r for r in plan_.resources if r.urn == resource.parent)
    return parent.name


# --------------------------------------------------------------------------- every example


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_STACKS)


@pytest.mark.parametrize("example", sorted(EXAMPLE_STACKS))
def test_example_has_no_mandatory_violation_and_valid_manifests(example: str) -> None:
    p = plan(example)
    report = check_plan(p)
    assert [v.to_json() for v in report.mandatory] == []
    objects = kubernetes_objects(p)
    assert objects
    assert validate_manifests(objects) == []


@pytest.mark.parametrize("example", sorted(EXAMPLE_STACKS))
def test_every_cloud_and_cluster_resource_is_inside_a_component(example: str) -> None:
    p = plan(example)
    components = [r for r in p.resources if r.type.startswith("gke-inference:workloads:")]
    assert components
    stack = p.one("pulumi:pulumi:Stack")
    for r in p.resources:
        if r.type.startswith(("kubernetes:", "gcp:")) and not r.type.startswith(
            "kubernetes:pulumi:"
        ):
            assert r.parent != stack.urn, f"{r.name} is not inside a component"


# --------------------------------------------------------------------------- online (shared pods)


@pytest.mark.parametrize(
    ("example", "resource", "count"),
    [
        ("gemma-3-1b-l4.yaml", "nvidia.com/gpu", "1"),
        ("llama-3-3-70b-h100.yaml", "nvidia.com/gpu", None),
        ("qwen3-32b-tpu-v6e.yaml", "google.com/tpu", None),
    ],
)
def test_online_server_is_sized_scheduled_and_mounted(
    example: str, resource: str, count: str | None
) -> None:
    p = plan(example)
    spec = load_spec(EXAMPLES / example)
    sizing = size(spec)
    deployment = p.one(DEPLOYMENT, f"{spec.name}-server")
    pod_spec = pod(deployment)
    server = container(pod_spec, "server")
    assert server["args"] == [*sizing.vllm_args(8000), "--host=0.0.0.0"]
    requests, limits = server["resources"]["requests"], server["resources"]["limits"]
    assert requests[resource] == limits[resource] == str(sizing.shape.count)
    if count:
        assert requests[resource] == count
    assert pod_spec["nodeSelector"][COMPUTE_CLASS] == sizing.compute_class
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    model = volume(pod_spec, "model")
    assert model["csi"]["driver"] == "gcsfuse.csi.storage.gke.io"
    assert model["csi"]["readOnly"] is True
    assert model["csi"]["volumeAttributes"]["bucketName"].endswith("-models")
    assert f"only-dir:{spec.model.bucket_path}" in mount_options(model)  # type: ignore[union-attr]
    annotations = deployment.inputs["spec"]["template"]["metadata"]["annotations"]
    assert annotations["gke-gcsfuse/volumes"] == "true"
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    # The folder is the mount root (only-dir): the server reads /models/config.json.
    assert "--model=/models" in server["args"]
    assert {"USER", "LOGNAME"} <= set(env(server)) and {"USER", "LOGNAME"} <= set(
        env(container(pod_spec, "prefetch"))
    )
    assert server["lifecycle"]["preStop"]["exec"]["command"][:2] == ["python3", "-c"]


def test_online_hpa_pdb_and_route() -> None:
    p = plan("gemma-3-1b-l4.yaml")
    hpa = p.one(HPA, "gemma-3-1b-hpa").inputs["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "gemma-3-1b",
    }
    # Two replicas: the example is promoted to prod as is, which refuses one (issue 11).
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 4)
    metric = hpa["metrics"][0]["pods"]
    assert metric["metric"]["name"] == "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
    assert metric["target"] == {"type": "AverageValue", "averageValue": "10"}
    assert hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    pdb = p.one(PDB, "gemma-3-1b-pdb").inputs["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == {"app.kubernetes.io/name": "gemma-3-1b"}
    route = p.one(ROUTE, "gemma-3-1b-route").inputs["spec"]
    assert route["parentRefs"] == [{"name": "inference-gateway", "namespace": "gateway"}]
    assert route["rules"][0]["backendRefs"] == [{"name": "gemma-3-1b", "port": 8000}]


# --------------------------------------------------------------------------- batch


def test_batch_is_an_indexed_job_with_bounded_failures() -> None:
    p = plan("batch-llama-8b-l4.yaml")
    job = p.one(JOB, "llama-8b-batch-job")
    spec = job.inputs["spec"]
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"]) == (64, 8)
    assert spec["backoffLimitPerIndex"] == 3
    assert spec["maxFailedIndexes"] == 3  # floor(64 x 0.05)
    rules = spec["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "worker", "operator": "In",
            "values": [2]}} in rules  # fmt: skip
    assert any(r["action"] == "Ignore" and r["onPodConditions"][0]["type"] == "DisruptionTarget"
               for r in rules)  # fmt: skip
    assert job.inputs["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert pod(job)["restartPolicy"] == "Never"


def test_batch_pod_runs_vllm_as_native_sidecar_beside_the_worker() -> None:
    p = plan("batch-llama-8b-l4.yaml")
    sizing = size(load_spec(EXAMPLES / "batch-llama-8b-l4.yaml"))
    pod_spec = pod(p.one(JOB, "llama-8b-batch-job"))
    assert [c["name"] for c in pod_spec["initContainers"]] == ["prefetch", "server"]
    assert [c["name"] for c in pod_spec["containers"]] == ["worker"]
    server = container(pod_spec, "server")
    assert server["restartPolicy"] == "Always"
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert server["args"][: len(sizing.vllm_args())] == sizing.vllm_args()
    gpu = server["resources"]
    assert gpu["requests"]["nvidia.com/gpu"] == gpu["limits"]["nvidia.com/gpu"] == "2"
    assert pod_spec["nodeSelector"] == {COMPUTE_CLASS: "gpu-l4-x2-co"}

    worker = container(pod_spec, "worker")
    assert worker["image"] == (
        "us-east4-docker.pkg.dev/acme-inference-dev/inference/gke-inference-worker:0.1.0"
    )
    assert worker["args"] == ["batch"]
    variables = env(worker)
    assert variables["INPUT_DIR"] == "/data/input"
    assert variables["OUTPUT_DIR"] == "/data/output"
    assert variables["MODEL_ENDPOINT"] == "http://localhost:8000"
    assert variables["MODEL_NAME"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert variables["MAX_CONCURRENCY"] == "16"
    assert variables["MAX_FAILURE_FRACTION"] == "0.05"
    assert "JOB_COMPLETION_INDEX" not in variables  # Kubernetes sets it in Indexed Jobs
    assert worker["securityContext"]["runAsUser"] == 65532
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m for m in worker["volumeMounts"]}
    assert mounts["input"]["readOnly"] is True and "readOnly" not in mounts["output"]

    source, sink = volume(pod_spec, "input"), volume(pod_spec, "output")
    assert source["csi"]["volumeAttributes"]["bucketName"] == "acme-inference-dev-batch"
    assert "only-dir:jobs/2025-06-01/input" in mount_options(source)
    assert source["csi"]["readOnly"] is True
    assert sink["csi"]["readOnly"] is False
    assert {"only-dir:jobs/2025-06-01/output", "uid=65532", "gid=65532"} <= set(mount_options(sink))
    assert volume(pod_spec, "model")["csi"]["readOnly"] is True


def test_batch_service_account_reads_model_and_input_writes_output() -> None:
    p = plan("batch-llama-8b-l4.yaml")
    member = f"{WI_POOL}/acme-inference-dev.svc.id.goog/subject/ns/inference/sa/llama-8b-batch"
    grants = {
        (r.inputs["bucket"], r.inputs["role"])
        for r in p.by_type(BUCKET_IAM)
        if r.inputs["member"] == member
    }
    assert grants == {
        ("acme-inference-dev-inf-dev-models", "roles/storage.objectViewer"),
        ("acme-inference-dev-inf-dev-models", "roles/storage.objectUser"),  # compile cache
        ("acme-inference-dev-batch", "roles/storage.objectViewer"),
        ("acme-inference-dev-batch", "roles/storage.objectUser"),
    }


# --------------------------------------------------------------------------- streaming


def test_streaming_topics_and_subscriptions() -> None:
    p = plan("streaming-gemma-l4.yaml")
    topics = {r.inputs["name"]: r.inputs for r in p.by_type(TOPIC)}
    assert sorted(topics) == [
        "gemma-stream-dead-letter",
        "gemma-stream-input",
        "gemma-stream-output",
    ]
    for topic in topics.values():
        assert topic["labels"]["environment"] == "dev"
        assert topic["project"] == "acme-inference-dev"
        assert topic["messageRetentionDuration"].endswith("s")
    subs = {r.inputs["name"]: r.inputs for r in p.by_type(SUBSCRIPTION)}
    assert sorted(subs) == ["gemma-stream-dead-letter", "gemma-stream-input"]
    sub = subs["gemma-stream-input"]
    assert sub["topic"] == "projects/acme-inference-dev/topics/gemma-stream-input"
    assert sub["ackDeadlineSeconds"] == 300
    assert sub["deadLetterPolicy"] == {
        "deadLetterTopic": "projects/acme-inference-dev/topics/gemma-stream-dead-letter",
        "maxDeliveryAttempts": 5,
    }
    assert sub["retryPolicy"] == {"minimumBackoff": "10s", "maximumBackoff": "300s"}
    assert sub["expirationPolicy"] == {"ttl": ""}
    assert sub["messageRetentionDuration"] == "86400s"
    dead = subs["gemma-stream-dead-letter"]
    assert dead["topic"] == "projects/acme-inference-dev/topics/gemma-stream-dead-letter"
    assert dead["expirationPolicy"] == {"ttl": ""}


def test_streaming_iam_is_scoped_to_its_topics_and_subscription() -> None:
    p = plan("streaming-gemma-l4.yaml")
    worker = f"{WI_POOL}/acme-inference-dev.svc.id.goog/subject/ns/inference/sa/gemma-stream-worker"
    bindings = {
        (
            r.inputs.get("topic") or r.inputs.get("subscription"),
            r.inputs["role"],
            r.inputs["member"],
        )
        for r in [*p.by_type(TOPIC_IAM), *p.by_type(SUBSCRIPTION_IAM)]
    }
    assert bindings == {
        ("gemma-stream-input", "roles/pubsub.subscriber", worker),
        ("gemma-stream-output", "roles/pubsub.publisher", worker),
        ("gemma-stream-dead-letter", "roles/pubsub.publisher", worker),
        ("gemma-stream-dead-letter", "roles/pubsub.publisher", PUBSUB_AGENT),
        ("gemma-stream-input", "roles/pubsub.subscriber", PUBSUB_AGENT),
    }
    # Nothing project-wide: no project IAM of any kind in a workload stack.
    assert not [r for r in p.resources if r.type.startswith("gcp:projects/")]
    assert not [r for r in p.resources if "pubsub" in str(r.inputs.get("role", "")) and
                r.type not in (TOPIC_IAM, SUBSCRIPTION_IAM)]  # fmt: skip


def test_streaming_workers_scale_on_backlog() -> None:
    p = plan("streaming-gemma-l4.yaml")
    hpa = p.one(HPA, "gemma-stream-worker-hpa").inputs["spec"]
    assert hpa["scaleTargetRef"]["name"] == "gemma-stream-worker"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 8)
    external = hpa["metrics"][0]["external"]
    assert hpa["metrics"][0]["type"] == "External"
    assert external["metric"] == {
        "name": "pubsub.googleapis.com|subscription|num_undelivered_messages",
        "selector": {"matchLabels": {"resource.labels.subscription_id": "gemma-stream-input"}},
    }
    assert external["target"] == {"type": "AverageValue", "averageValue": "50"}
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    pdb = p.one(PDB, "gemma-stream-worker-pdb").inputs["spec"]
    assert pdb["selector"]["matchLabels"] == {"app.kubernetes.io/name": "gemma-stream-worker"}


def test_streaming_worker_follows_the_worker_contract() -> None:
    p = plan("streaming-gemma-l4.yaml")
    deployment = p.one(DEPLOYMENT, "gemma-stream-worker")
    pod_spec = pod(deployment)
    worker = container(pod_spec, "worker")
    assert worker["args"] == ["streaming"]
    assert worker["image"].endswith("/gke-inference-worker:0.1.0")
    variables = env(worker)
    assert variables["GOOGLE_CLOUD_PROJECT"] == "acme-inference-dev"
    assert variables["INPUT_SUBSCRIPTION"] == (
        "projects/acme-inference-dev/subscriptions/gemma-stream-input"
    )
    assert variables["OUTPUT_TOPIC"] == "projects/acme-inference-dev/topics/gemma-stream-output"
    assert variables["DEAD_LETTER_TOPIC"] == (
        "projects/acme-inference-dev/topics/gemma-stream-dead-letter"
    )
    assert variables["MODEL_ENDPOINT"] == "http://gemma-stream.inference.svc.cluster.local:8000"
    assert variables["MODEL_NAME"] == "google/gemma-3-4b-it"
    assert variables["MAX_CONCURRENCY"] == "16"
    assert worker["ports"][0]["containerPort"] == int(variables["METRICS_PORT"]) == 9090
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"]["path"] == "/metrics"
    assert pod_spec["terminationGracePeriodSeconds"] > float(variables["SHUTDOWN_GRACE_S"])
    assert pod_spec["securityContext"]["runAsUser"] == 65532
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod_spec["serviceAccountName"] == "gemma-stream-worker"


def test_streaming_model_server_is_an_unexposed_online_child() -> None:
    p = plan("streaming-gemma-l4.yaml")
    online = p.one("gke-inference:workloads:OnlineInference")
    assert parent_name(p, online) == "gemma-stream"
    server = p.one(DEPLOYMENT, "gemma-stream-model-server")
    assert server.parent == online.urn
    assert p.one(HPA, "gemma-stream-model-hpa").parent == online.urn
    assert not p.by_type(ROUTE) and not p.by_type(BACKEND_POLICY)


# --------------------------------------------------------------------------- ComfyUI


#: The ComfyUI image as a production stack must name it: its own registry, by digest.
PROD_COMFYUI_IMAGE = (
    "us-central1-docker.pkg.dev/acme-inference-prod/inference/comfyui:0.3.66-cu128@sha256:"
    + "c0" * 32
)


@pytest.mark.parametrize(("stack", "force_destroy"), [("dev", True), ("prod", False)])
def test_comfyui_buckets(stack: str, force_destroy: bool, tmp_path: Path) -> None:
    spec = "comfyui-l4.yaml"
    if stack == "prod":
        spec = write_spec(tmp_path, spec, comfyui={"image": PROD_COMFYUI_IMAGE, "port": 8188})
    p = plan(spec, stack)
    project = f"acme-inference-{stack}"
    buckets = {r.inputs["name"]: r.inputs for r in p.by_type("gcp:storage/bucket:Bucket")}
    assert sorted(buckets) == [
        f"{project}-{stack}-comfyui-input",
        f"{project}-{stack}-comfyui-output",
    ]
    for bucket in buckets.values():
        assert bucket["uniformBucketLevelAccess"] is True
        assert bucket["publicAccessPrevention"] == "enforced"
        assert bucket["labels"]["environment"] == stack
        assert bucket["forceDestroy"] is force_destroy
    member = f"{WI_POOL}/{project}.svc.id.goog/subject/ns/inference/sa/comfyui"
    grants = {(r.inputs["bucket"], r.inputs["role"]) for r in p.by_type(BUCKET_IAM)
              if r.inputs["member"] == member}  # fmt: skip
    assert grants == {
        (f"{project}-inf-{stack}-models", "roles/storage.objectViewer"),
        (f"{project}-{stack}-comfyui-input", "roles/storage.objectUser"),
        (f"{project}-{stack}-comfyui-output", "roles/storage.objectUser"),
    }


def test_comfyui_pod_mounts_scheduling_and_security() -> None:
    p = plan("comfyui-l4.yaml")
    deployment = p.one(DEPLOYMENT, "comfyui-server")
    pod_spec = pod(deployment)
    assert pod_spec["nodeSelector"] == {COMPUTE_CLASS: "gpu-l4-x1"}
    assert pod_spec["securityContext"]["runAsUser"] == 10000
    assert (
        deployment.inputs["spec"]["template"]["metadata"]["annotations"]["gke-gcsfuse/volumes"]
        == "true"
    )
    ui = container(pod_spec, "comfyui")
    assert (
        ui["resources"]["requests"]["nvidia.com/gpu"]
        == ui["resources"]["limits"]["nvidia.com/gpu"]
        == "1"
    )
    assert ui["readinessProbe"]["httpGet"]["path"] == "/"
    mounts = {m["name"]: m for m in ui["volumeMounts"]}
    assert mounts["model"]["mountPath"] == "/models" and mounts["model"]["readOnly"] is True
    model = volume(pod_spec, "model")
    assert model["csi"]["volumeAttributes"]["bucketName"] == "acme-inference-dev-inf-dev-models"
    assert "only-dir:comfyui" in mount_options(model)
    for name, bucket in [("input", "input"), ("output", "output"), ("user", "output")]:
        vol = volume(pod_spec, name)
        assert vol["csi"]["readOnly"] is False
        assert (
            vol["csi"]["volumeAttributes"]["bucketName"]
            == f"acme-inference-dev-dev-comfyui-{bucket}"
        )
        assert "uid=10000" in mount_options(vol)
        assert "readOnly" not in mounts[name]


def test_comfyui_is_routed_and_health_checked() -> None:
    p = plan("comfyui-l4.yaml")
    route = p.one(ROUTE, "comfyui-route").inputs["spec"]
    assert route["parentRefs"] == [{"name": "inference-gateway", "namespace": "gateway"}]
    assert route["rules"][0]["matches"][0]["path"]["value"] == "/comfyui"
    assert route["rules"][0]["backendRefs"] == [{"name": "comfyui", "port": 8188}]
    check = p.one(HEALTH_CHECK, "comfyui-health-check").inputs["spec"]
    assert check["default"]["config"]["httpHealthCheck"]["requestPath"] == "/"
    assert check["default"]["config"]["httpHealthCheck"]["port"] == 8188
    assert "iap" not in p.one(BACKEND_POLICY).inputs["spec"]["default"]  # internal gateway
    # its NetworkPolicy: tests/test_network_policies.py (flow by flow)


def test_comfyui_turns_on_iap_behind_an_external_gateway() -> None:
    p = plan(
        "comfyui-l4.yaml",
        "dev",
        "inference.gateway.exposure=external",
        "inference.gateway.certificate=inference-dev-cert",
    )
    assert p.one(BACKEND_POLICY).inputs["spec"]["default"]["iap"] == {"enabled": True}


def test_comfyui_refuses_a_class_the_environment_does_not_enable(tmp_path: Path) -> None:
    from gke_inference.core.errors import SpecError

    spec = write_spec(tmp_path, "comfyui-l4.yaml", accelerator="h100-80gb")
    with pytest.raises(SpecError, match="gpu-h100-80gb-x1"):
        plan_workload("dev", spec, project_dir=REPO)


# --------------------------------------------------------------------------- model download


def test_model_download_runs_before_the_server_with_the_token() -> None:
    p = plan("batch-llama-8b-l4.yaml")
    download = p.one("gke-inference:workloads:ModelDownload")
    job = p.one(JOB, "llama-8b-batch-model-download-job")
    assert job.parent == download.urn
    # The serving Job (and everything else of the component) waits for the download Job.
    assert job.urn in p.one(JOB, "llama-8b-batch-job").depends_on
    assert job.urn in p.one("gke-inference:workloads:BatchInference").depends_on

    member = (
        f"{WI_POOL}/acme-inference-dev.svc.id.goog/subject/ns/inference/sa/llama-8b-batch-download"
    )
    grant = p.one(SECRET_IAM).inputs
    assert grant == {
        "project": "acme-inference-dev",
        "secretId": "hugging-face-token",
        "role": "roles/secretmanager.secretAccessor",
        "member": member,
    }
    writes = [r.inputs for r in p.by_type(BUCKET_IAM) if r.inputs["member"] == member]
    assert writes == [
        {
            "bucket": "acme-inference-dev-inf-dev-models",
            "role": "roles/storage.objectUser",
            "member": member,
        }
    ]

    spec = job.inputs["spec"]
    assert spec["backoffLimit"] == 2
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0
    pod_spec = pod(job)
    assert pod_spec["serviceAccountName"] == "llama-8b-batch-download"
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    steps = [c["name"] for c in [*pod_spec["initContainers"], *pod_spec["containers"]]]
    assert steps == ["prepare", "download", "upload"]
    prepare = container(pod_spec, "prepare")
    assert "gcloud secrets versions access latest" in prepare["command"][-1]
    assert env(prepare)["TOKEN_SECRET"] == "hugging-face-token"
    assert env(prepare)["MODEL_PATH"] == "meta-llama/llama-3.1-8b-instruct"
    assert env(prepare)["MODEL_ID"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert "huggingface_hub==" in container(pod_spec, "download")["command"][-1]
    assert "gcloud storage" in container(pod_spec, "upload")["command"][-1]
    for c in [*pod_spec["initContainers"], *pod_spec["containers"]]:
        assert ":" in c["image"].rsplit("/", 1)[-1] and not c["image"].endswith(":latest")
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
    work = volume(pod_spec, "work")["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert work["resources"]["requests"]["storage"].endswith("Gi")


def test_no_download_without_a_token_secret() -> None:
    p = plan("gemma-3-1b-l4.yaml")  # no huggingFaceTokenSecret: weights are staged already
    assert not p.by_type("gke-inference:workloads:ModelDownload")
    assert not p.by_type(JOB) and not p.by_type(SECRET_IAM)
    assert p.one("gke-inference:workloads:OnlineInference").depends_on == []


def test_online_server_waits_for_the_download(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "gemma-3-1b-l4.yaml", huggingFaceTokenSecret="hf-read")
    p = plan_workload("dev", spec, project_dir=REPO)
    job = p.one(JOB, "gemma-3-1b-model-download-job")
    assert env(container(pod(job), "prepare"))["TOKEN_SECRET"] == "hf-read"
    assert p.one(SECRET_IAM).inputs["secretId"] == "hf-read"
    assert job.urn in p.one(DEPLOYMENT, "gemma-3-1b-server").depends_on
    assert job.urn in p.one("gke-inference:workloads:OnlineInference").depends_on


def test_no_download_for_weights_already_in_a_bucket(tmp_path: Path) -> None:
    data = yaml.safe_load((EXAMPLES / "gemma-3-1b-l4.yaml").read_text())
    data["model"]["id"] = "gs://acme-inference-dev-inf-dev-models/google/gemma-3-1b-it"
    data["huggingFaceTokenSecret"] = "hugging-face-token"
    spec = tmp_path / "in-bucket.yaml"
    spec.write_text(yaml.safe_dump(data))
    p = plan_workload("dev", str(spec), project_dir=REPO)
    assert not p.by_type("gke-inference:workloads:ModelDownload")
    assert not p.by_type(JOB) and not p.by_type(SECRET_IAM)
    assert p.one(DEPLOYMENT, "gemma-3-1b-server")
