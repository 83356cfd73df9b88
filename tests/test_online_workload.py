"""OnlineInference and the workload stack program, planned on top of the platform plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gke_inference.cli import main
from gke_inference.core.errors import SpecError
from gke_inference.offline.manifests import kubernetes_objects, validate_manifests
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.policy_check import check_resources
from gke_inference.offline.recording import Plan

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "workloads" / "examples"
_cache: dict[tuple[str, str], Plan] = {}


def workload_plan(stack: str, example: str) -> Plan:
    key = (stack, example)
    if key not in _cache:
        _cache[key] = plan_workload(stack, str(EXAMPLES / example), project_dir=REPO)
    return _cache[key]


def pod_spec(plan: Plan) -> dict[str, Any]:
    deployment = next(
        d for d in plan.by_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["labels"].get("gke-inference/model-server") == "vllm"
    )  # fmt: skip
    return dict(deployment.inputs["spec"]["template"]["spec"])


def server(plan: Plan) -> dict[str, Any]:
    return dict(pod_spec(plan)["containers"][0])


def test_workload_stack_reads_the_platform_stack() -> None:
    plan = workload_plan("dev", "gemma-3-1b-l4.yaml")
    assert plan.project == "gke-inference-workloads" and plan.stack == "dev-gemma-3-1b"
    ref = plan.one("pulumi:pulumi:StackReference")
    assert ref.read and ref.name == "organization/gke-inference/dev"
    provider = plan.one("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == "[secret]"
    assert provider.inputs["clusterIdentifier"] == "inf-dev"
    for r in plan.resources:
        if r.type.startswith("kubernetes:") and r.custom:
            assert r.provider == provider.urn


def test_sized_vllm_server_on_its_compute_class() -> None:
    plan = workload_plan("prod", "llama-3-3-70b-h100.yaml")
    container = server(plan)
    assert "--tensor-parallel-size=4" in container["args"]
    assert "--kv-cache-dtype=fp8" in container["args"]
    assert "--max-model-len=16384" in container["args"]
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "4"
    assert pod_spec(plan)["nodeSelector"] == {"cloud.google.com/compute-class": "gpu-h100-80gb-x4"}
    assert container["image"].startswith(
        "us-central1-docker.pkg.dev/acme-inference-prod/docker-hub/vllm/"
    )
    assert plan.outputs["computeClass"] == "gpu-h100-80gb-x4"


def test_model_weights_come_through_tuned_gcs_fuse() -> None:
    plan = workload_plan("dev", "gemma-3-1b-l4.yaml")
    spec = pod_spec(plan)
    annotations = plan.one("kubernetes:apps/v1:Deployment").inputs["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["gke-gcsfuse/volumes"] == "true"
    model = next(v for v in spec["volumes"] if v["name"] == "model")
    assert model["csi"]["driver"] == "gcsfuse.csi.storage.gke.io"
    attributes = model["csi"]["volumeAttributes"]
    assert attributes["bucketName"] == "acme-inference-dev-inf-dev-models"
    options = attributes["mountOptions"].split(",")
    assert "file-cache:enable-parallel-downloads:true" in options
    assert "only-dir:google/gemma-3-1b-it" in options
    prefetch = spec["initContainers"][0]
    assert prefetch["restartPolicy"] == "Always" and "safetensors" in prefetch["command"][-1]
    grants = plan.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    (read,) = [g.inputs for g in grants if "condition" not in g.inputs]
    assert read["role"] == "roles/storage.objectViewer"
    assert read["member"].endswith("/subject/ns/inference/sa/gemma-3-1b")
    # the other grant is the compile cache's prefix (test_gpu_pods_may_write_...)
    assert [g.inputs["role"] for g in grants if "condition" in g.inputs] == [
        "roles/storage.objectUser"
    ]


def test_hardened_pod_and_load_aware_probes() -> None:
    plan = workload_plan("dev", "gemma-3-1b-l4.yaml")
    spec, container = pod_spec(plan), server(plan)
    assert spec["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    # 120 s margin + 1.86 GiB at 0.25 GiB/s (8 s) + 180 s GPU warm-up = 308 s -> 31 checks
    assert container["startupProbe"]["failureThreshold"] == 31
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert spec["priorityClassName"] == "high"


def test_hpa_pdb_and_route() -> None:
    plan = workload_plan("prod", "llama-3-3-70b-h100.yaml")
    hpa = plan.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"]
    metric = hpa["metrics"][0]["pods"]
    assert metric["metric"]["name"] == "prometheus.googleapis.com|vllm:kv_cache_usage_perc|gauge"
    assert metric["target"] == {"type": "AverageValue", "averageValue": "800m"}
    # A prod endpoint keeps two replicas (issue 11: one replica could be drained away).
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 4)
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    pdb = plan.one("kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    # minAvailable 1 of 2: one pod may go, never the last (was maxUnavailable 1).
    assert pdb["minAvailable"] == 1 and "maxUnavailable" not in pdb
    route = plan.one("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute").inputs["spec"]
    assert route["parentRefs"] == [{"name": "inference-gateway", "namespace": "gateway"}]
    assert route["rules"][0]["matches"][0]["path"]["value"] == "/llama-70b"
    policy = plan.one("kubernetes:networking.gke.io/v1:GCPBackendPolicy").inputs["spec"]
    assert policy["default"]["timeoutSec"] == 3600
    assert policy["targetRef"] == {"group": "", "kind": "Service", "name": "llama-70b"}


def test_tpu_workload_selects_topology() -> None:
    plan = workload_plan("prod", "qwen3-32b-tpu-v6e.yaml")
    selector = pod_spec(plan)["nodeSelector"]
    assert selector == {
        "cloud.google.com/compute-class": "tpu-v6e-2x4",
        "cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice",
        "cloud.google.com/gke-tpu-topology": "2x4",
    }
    limits = server(plan)["resources"]["limits"]
    assert limits["google.com/tpu"] == "8"


@pytest.mark.parametrize(
    ("stack", "example"),
    [
        ("dev", "gemma-3-1b-l4.yaml"),
        ("prod", "llama-3-3-70b-h100.yaml"),
        ("prod", "qwen3-32b-tpu-v6e.yaml"),
    ],
)
def test_online_examples_pass_policy_and_strict_schemas(stack: str, example: str) -> None:
    plan = workload_plan(stack, example)
    assert validate_manifests(kubernetes_objects(plan)) == []
    report = check_resources(plan.resources, None, source="default")
    assert report.mandatory == []


def test_inference_pool_routing_option(tmp_path: Path) -> None:
    spec = (EXAMPLES / "gemma-3-1b-l4.yaml").read_text() + "routing:\n  mode: inference-pool\n"
    file = tmp_path / "pool.yaml"
    file.write_text(spec)
    plan = plan_workload("dev", str(file), project_dir=REPO)
    pool = plan.one("kubernetes:inference.networking.k8s.io/v1:InferencePool").inputs["spec"]
    assert pool["targetPorts"] == [{"number": 8000}]
    assert pool["endpointPickerRef"]["name"] == "gemma-3-1b-epp"
    route = plan.one("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute").inputs["spec"]
    assert route["rules"][0]["backendRefs"][0]["kind"] == "InferencePool"
    epp = next(d for d in plan.by_type("kubernetes:apps/v1:Deployment") if d.name.endswith("-epp"))
    image = epp.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == (
        "us-east4-docker.pkg.dev/acme-inference-dev/registry-k8s/"
        "gateway-api-inference-extension/epp:v1.5.0"
    )
    assert validate_manifests(kubernetes_objects(plan)) == []


def test_class_not_enabled_in_the_environment_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SpecError) as info:
        plan_workload("dev", str(EXAMPLES / "llama-3-3-70b-h100.yaml"), project_dir=REPO)
    assert "gpu-h100-80gb-x4" in str(info.value) and "enabled: gpu-l4-x1" in str(info.value)
    code = main(["plan", "--stack", "dev", "--workload", str(EXAMPLES / "llama-3-3-70b-h100.yaml")])
    assert code == 2
    assert "does not enable" in capsys.readouterr().err


def test_workload_json_keeps_the_plan_contract(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert (
        main(
            [
                "plan",
                "--stack",
                "dev",
                "--workload",
                str(EXAMPLES / "gemma-3-1b-l4.yaml"),
                "--format",
                "json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["project"] == "gke-inference-workloads"
    assert any(r["type"] == "pulumi:pulumi:StackReference" for r in doc["resources"])
    assert doc["policy"]["violations"] == [] or all(
        v["level"] == "advisory" for v in doc["policy"]["violations"]
    )


def test_missing_platform_outputs_stop_before_any_workload_resource() -> None:
    from gke_inference.offline.recording import PlanMocks, RecordingMonitor, run_offline
    from gke_inference.workloads.kinds import deployment_for
    from gke_inference.workloads.program import workload_program
    from gke_inference.workloads.spec import load_spec

    spec = deployment_for(load_spec(EXAMPLES / "gemma-3-1b-l4.yaml"))
    monitor = RecordingMonitor(PlanMocks("acme-inference-dev", stack_outputs={}))
    with pytest.raises(SpecError) as info:
        run_offline(workload_program(spec, "dev", "organization"), project="gke-inference-workloads",
                    stack="dev-gemma-3-1b", config={}, monitor=monitor)  # fmt: skip
    assert "deploy (or upgrade) the platform stack" in str(info.value)
    assert {r.type for r in monitor.records.values()} <= {
        "pulumi:pulumi:Stack", "pulumi:pulumi:StackReference",
    }  # fmt: skip


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_prod_images_come_through_artifact_registry(example: str) -> None:
    # Binary Authorization in prod allows this project's registry only: every
    # vendor image must come through a remote repository (Docker Hub,
    # registry.k8s.io), the worker image from the team's repository.
    from gke_inference.offline.manifests import kubernetes_objects

    stack = "prod" if "h100" in example or "tpu-v6e" in example else "dev"
    plan = workload_plan(stack, example)
    project = "acme-inference-prod" if stack == "prod" else "acme-inference-dev"
    region = "us-central1" if stack == "prod" else "us-east4"
    images = [c["image"] for obj in kubernetes_objects(plan) for c in _containers(obj)]
    assert images
    for image in images:
        assert image.startswith(f"{region}-docker.pkg.dev/{project}/"), image


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    templates = [spec.get("template", {})]
    templates += [spec.get("jobTemplate", {}).get("spec", {}).get("template", {})]
    out: list[dict[str, Any]] = []
    for template in templates:
        pod = template.get("spec", {})
        out += pod.get("containers", []) + pod.get("initContainers", [])
    return out


# --------------------------------------------------------------------------- issue 11


def _variant(tmp_path: Path, example: str, **changes: Any) -> str:
    import yaml

    data = yaml.safe_load((EXAMPLES / example).read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    file = tmp_path / example
    file.write_text(yaml.safe_dump(data))
    return str(file)


@pytest.mark.parametrize("example", ["llama-3-3-70b-h100.yaml", "qwen3-32b-tpu-v6e.yaml"])
def test_a_single_replica_prod_endpoint_is_refused(tmp_path: Path, example: str) -> None:
    spec = _variant(tmp_path, example, scaling={"minReplicas": 1})
    with pytest.raises(SpecError) as info:
        plan_workload("prod", spec, project_dir=REPO)
    (problem,) = info.value.problems
    assert problem.path == "scaling.minReplicas" and "at least 2" in problem.message


def test_dev_keeps_one_pod_at_a_time_and_unready_pods_never_block_drains() -> None:
    pdb = workload_plan("dev", "gemma-3-1b-l4.yaml").one(
        "kubernetes:policy/v1:PodDisruptionBudget"
    ).inputs["spec"]  # fmt: skip
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_a_gs_model_in_another_bucket_is_read_from_that_bucket(tmp_path: Path) -> None:
    spec = _variant(tmp_path, "gemma-3-1b-l4.yaml", model={"id": "gs://team-b-models/ckpt/gemma"})
    plan = plan_workload("dev", spec, project_dir=REPO)
    model = next(v for v in pod_spec(plan)["volumes"] if v["name"] == "model")
    assert model["csi"]["volumeAttributes"]["bucketName"] == "team-b-models"
    assert "only-dir:ckpt/gemma" in model["csi"]["volumeAttributes"]["mountOptions"].split(",")
    grants = {
        (r.inputs["bucket"], r.inputs["role"])
        for r in plan.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    }
    assert grants == {
        ("team-b-models", "roles/storage.objectViewer"),
        # the compile cache is in the platform bucket: listed, and written on its prefix
        ("acme-inference-dev-inf-dev-models", "roles/storage.objectViewer"),
        ("acme-inference-dev-inf-dev-models", "roles/storage.objectUser"),
    }
    assert validate_manifests(kubernetes_objects(plan)) == []


def test_tpu_pods_may_write_their_xla_cache_prefix_only() -> None:
    plan = workload_plan("prod", "qwen3-32b-tpu-v6e.yaml")
    grants = plan.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    writes = [r.inputs for r in grants if r.inputs["role"] == "roles/storage.objectUser"]
    (write,) = writes
    assert write["bucket"] == "acme-inference-prod-inf-prod-models"
    assert write["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/acme-inference-prod-inf-prod-models'
        '/objects/xla-cache/qwen--qwen3-32b/v0.11.1/2x4/")'
    )
    reads = [r.inputs for r in grants if r.inputs["role"] == "roles/storage.objectViewer"]
    assert [r["bucket"] for r in reads] == ["acme-inference-prod-inf-prod-models"]


def test_gpu_pods_may_write_their_compile_cache_prefix_only() -> None:
    plan = workload_plan("prod", "llama-3-3-70b-h100.yaml")
    grants = plan.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    (write,) = [r.inputs for r in grants if r.inputs["role"] == "roles/storage.objectUser"]
    assert write["bucket"] == "acme-inference-prod-inf-prod-models"
    assert write["condition"]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/acme-inference-prod-inf-prod-models'
        '/objects/vllm-cache/meta-llama--llama-3.3-70b-instruct/v0.11.2/a3-highgpu-4g-tp4/")'
    )


def test_a_server_with_its_compile_cache_in_the_pod_writes_nothing(tmp_path: Path) -> None:
    for example in ("gemma-3-1b-l4.yaml", "qwen3-32b-tpu-v6e.yaml"):
        spec = _variant(tmp_path, example, server={"compileCache": "pod"})
        plan = plan_workload("prod", spec, project_dir=REPO)
        roles = {
            r.inputs["role"] for r in plan.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
        }
        assert roles == {"roles/storage.objectViewer"}, example
        pod = pod_spec(plan)
        assert {v["name"] for v in pod["volumes"]} & {"vllm-cache", "xla-cache"} == set()
        env = {e["name"] for e in server(plan)["env"]}
        assert env & {"VLLM_CACHE_ROOT", "VLLM_XLA_CACHE_PATH"} == set(), example


def test_a_tpu_model_from_another_bucket_can_still_list_its_xla_cache(tmp_path: Path) -> None:
    # The cache's write grant is conditioned on object names, which a listing is
    # not: the pod also needs a plain read grant on the platform bucket.
    spec = _variant(tmp_path, "qwen3-32b-tpu-v6e.yaml", model={"id": "gs://team-b-models/qwen3"})
    grants = {
        (r.inputs["bucket"], r.inputs["role"], "condition" in r.inputs)
        for r in plan_workload("prod", spec, project_dir=REPO).by_type(
            "gcp:storage/bucketIAMMember:BucketIAMMember"
        )
    }
    assert grants == {
        ("team-b-models", "roles/storage.objectViewer", False),
        ("acme-inference-prod-inf-prod-models", "roles/storage.objectViewer", False),
        ("acme-inference-prod-inf-prod-models", "roles/storage.objectUser", True),
    }


def test_a_single_replica_prod_endpoint_registers_nothing(tmp_path: Path) -> None:
    # The production rule runs with the class check, before the Kubernetes
    # provider or any workload resource is registered.
    from gke_inference.offline.planning import plan_platform
    from gke_inference.offline.recording import PlanMocks, RecordingMonitor, run_offline
    from gke_inference.workloads.kinds import deployment_for
    from gke_inference.workloads.program import workload_program
    from gke_inference.workloads.spec import load_spec

    spec = load_spec(_variant(tmp_path, "llama-3-3-70b-h100.yaml", scaling={"minReplicas": 1}))
    platform = plan_platform("prod", project_dir=REPO)
    ref = "organization/gke-inference/prod"
    mocks = PlanMocks(
        "acme-inference-prod", stack_outputs={ref: (platform.outputs, platform.secret_outputs)}
    )
    monitor = RecordingMonitor(mocks)
    with pytest.raises(SpecError, match="minReplicas"):
        run_offline(workload_program(deployment_for(spec), "prod", "organization"),
                    project="gke-inference-workloads", stack="prod-llama-3-3-70b",
                    config={}, monitor=monitor)  # fmt: skip
    assert {r.type for r in monitor.records.values()} <= {
        "pulumi:pulumi:Stack", "pulumi:pulumi:StackReference",
    }  # fmt: skip
