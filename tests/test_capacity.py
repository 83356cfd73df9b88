"""Capacity that can be used: every static pool is reachable, NAP ceilings fit the classes,
and queued (DWS) pools get nodes through a batch Job's ProvisioningRequest."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.automation.deployability import checked_deployment
from gke_inference.cli import main
from gke_inference.core.contract import PlatformOutputs
from gke_inference.core.errors import SettingsError, SpecError
from gke_inference.inference import catalog
from gke_inference.offline.manifests import kubernetes_objects, validate_manifests
from gke_inference.offline.planning import plan_platform
from gke_inference.offline.policy_check import check_plan
from gke_inference.offline.recording import Plan
from gke_inference.workloads.kinds import deployment_for
from gke_inference.workloads.spec import load_spec
from tests.conftest import SHIPPED_STACKS
from tests.support.examples import EXAMPLES, REPO
from tests.test_inference_layer import NODE_POOL, classes
from tests.test_workload_components import JOB, plan, pod

CLASS_LABEL = "cloud.google.com/compute-class"
QUEUED_TAINT = {"key": "cloud.google.com/gke-queued", "value": "true", "effect": "NO_SCHEDULE"}
PROVISIONING_REQUEST = "kubernetes:autoscaling.x-k8s.io/v1:ProvisioningRequest"
POD_TEMPLATE = "kubernetes:core/v1:PodTemplate"
BATCH = "batch-llama-8b-l4.yaml"


def pools(plan_: Plan) -> dict[str, dict[str, Any]]:
    return {
        p.inputs["name"]: p.inputs for p in plan_.by_type(NODE_POOL) if p.inputs["name"] != "system"
    }


def listed_in(plan_: Plan) -> dict[str, list[str]]:
    """Pool name -> the classes whose priorities name it in a ``nodepools`` rule."""
    found: dict[str, list[str]] = {}
    for name, inputs in classes(plan_).items():
        for rule in inputs["spec"]["priorities"]:
            for pool in rule.get("nodepools", []):
                found.setdefault(pool, []).append(name)
    return found


# --------------------------------------------------------------------------- static pools


@pytest.mark.parametrize("stack", SHIPPED_STACKS)
def test_every_static_pool_is_reachable(plan_of: Any, stack: str) -> None:
    p = plan_of(stack)
    found, listed = pools(p), listed_in(p)
    assert found  # both shipped stacks configure pools
    for name, pool in found.items():
        config = pool["nodeConfig"]
        if pool.get("queuedProvisioning", {}).get("enabled"):
            # Only a ProvisioningRequest gets its nodes: no class names it or labels it ...
            assert name not in listed and CLASS_LABEL not in config["labels"]
            assert config["taints"] == [QUEUED_TAINT] and config["flexStart"] is True
            # ... and the workloads learn about it from the platform outputs.
            assert name in p.outputs["queuedNodePools"][config["machineType"]]
            continue
        compute_class = config["labels"][CLASS_LABEL]
        taint = {"key": CLASS_LABEL, "value": compute_class, "effect": "NO_SCHEDULE"}
        assert config["taints"] == [taint], name
        assert listed.get(name) == [compute_class], name  # exactly the class it is labelled for
        assert _machine(classes(p)[compute_class]) == config["machineType"]


def test_static_pools_come_before_the_declarative_rules(plan_of: Any) -> None:
    prod = classes(plan_of("prod"))
    h100 = prod["gpu-h100-80gb-x8"]["spec"]["priorities"]
    assert h100[0] == {"nodepools": ["h100-reserved"]}  # the reservation first
    assert all("nodepools" not in rule for rule in h100[1:])
    assert "nodepools" not in prod["gpu-h100-80gb-x8-co"]["spec"]["priorities"][0]
    # Spot pools belong to the Spot-first variant ...
    dev = classes(plan_of("dev"))
    assert dev["gpu-l4-x2-co"]["spec"]["priorities"][0] == {"nodepools": ["l4-spot"]}
    assert "nodepools" not in dev["gpu-l4-x2"]["spec"]["priorities"][0]
    # ... or to the base class where there is no variant.
    base_only = plan_of("dev", "inference.costOptimizedClasses=false")
    assert listed_in(base_only) == {"l4-spot": ["gpu-l4-x2"]}
    assert pools(base_only)["l4-spot"]["nodeConfig"]["labels"][CLASS_LABEL] == "gpu-l4-x2"


def test_pools_of_every_kind_are_ordered_within_their_class(plan_of: Any) -> None:
    p = plan_of(
        "prod",
        "inference.nodePools[2].name=h100-on-demand",
        "inference.nodePools[2].machineType=a3-highgpu-8g",
        "inference.nodePools[3].name=h100-spot",
        "inference.nodePools[3].machineType=a3-highgpu-8g",
        "inference.nodePools[3].provisioning=spot",
        "inference.napMaxDevices.h100-80gb=160",  # the four pools hold 96 + 2 x 32
    )
    found = classes(p)
    rules = found["gpu-h100-80gb-x8"]["spec"]["priorities"]
    assert rules[:2] == [{"nodepools": ["h100-reserved"]}, {"nodepools": ["h100-on-demand"]}]
    assert found["gpu-h100-80gb-x8-co"]["spec"]["priorities"][0] == {"nodepools": ["h100-spot"]}
    assert validate_manifests(kubernetes_objects(p)) == []


def test_autopilot_classes_name_no_pools(plan_of: Any) -> None:
    p = plan_of("prod", "cluster.mode=autopilot")
    assert listed_in(p) == {}
    assert p.outputs["queuedNodePools"] == {}


# --------------------------------------------------------------------------- NAP ceilings


def test_a_ceiling_below_one_node_is_a_settings_error() -> None:
    with pytest.raises(SettingsError) as info:
        plan_platform("dev", ["inference.accelerators[4]=a3-highgpu-8g"], project_dir=REPO)
    text = str(info.value)
    assert "gke-inference:inference.napMaxDevices.h100-80gb: 0 is below the 8 devices" in text
    assert "one a3-highgpu-8g node" in text and "set at least 8" in text
    # Autopilot has no NAP limits to check.
    plan_platform(
        "dev",
        ["inference.accelerators[4]=a3-highgpu-8g", "cluster.mode=autopilot"],
        project_dir=REPO,
    )


def test_a_ceiling_below_what_the_static_pools_hold_is_a_settings_error() -> None:
    # prod's pools may hold 4 x 8 + 8 x 8 = 96 H100s; the limits count every pool's nodes
    with pytest.raises(SettingsError) as info:
        plan_platform("prod", ["inference.napMaxDevices.h100-80gb=64"], project_dir=REPO)
    (line,) = [x for x in str(info.value).splitlines() if "napMaxDevices" in x]
    assert "napMaxDevices.h100-80gb: 64 is below the 96 devices the static pools" in line
    assert "h100-reserved 4 x 8, h100-dws 8 x 8" in line and "set at least 96" in line
    plan_platform("prod", ["inference.napMaxDevices.h100-80gb=96"], project_dir=REPO)


def test_accelerators_no_class_uses_get_ceiling_zero(plan_of: Any) -> None:
    for stack in SHIPPED_STACKS:
        p = plan_of(stack)
        limits = {
            limit["resourceType"]: limit["maximum"]
            for limit in p.one("gcp:container/cluster:Cluster").inputs["clusterAutoscaling"][
                "resourceLimits"
            ]
        }
        enabled = [catalog.lookup(m) for m in _enabled(p)]
        unused = [a for a in catalog.CATALOG if a.key not in {acc.key for acc, _ in enabled}]
        assert any(a.default_max_devices > 0 for a in unused)  # a default would have applied
        for acc in unused:
            assert limits[acc.nap_resource] == 0, (stack, acc.key)
        for acc, shape in enabled:  # every enabled shape gets at least one node
            assert limits[acc.nap_resource] >= shape.count, (stack, shape.machine_type)
    with pytest.raises(SettingsError, match=r"napMaxDevices\.a100-40gb: 8 has no effect"):
        plan_platform("dev", ["inference.napMaxDevices.a100-40gb=8"], project_dir=REPO)


def _machine(compute_class: dict[str, Any]) -> str:
    return str(compute_class["spec"]["priorities"][-1]["machineType"])


def _enabled(p: Plan) -> set[str]:
    return {_machine(c) for c in classes(p).values()}


# --------------------------------------------------------------------------- queued batch


def queued_spec(tmp_path: Path, **changes: Any) -> str:
    """The batch example on 8 H100s, from the queued pool: prod's h100-dws is a3-highgpu-8g."""
    data = yaml.safe_load((EXAMPLES / BATCH).read_text())
    data.update(
        name="llama-70b-batch",
        model={"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"},
        accelerator="h100-80gb",
        contextLength=32768,
        concurrency=32,
        costOptimized=False,
    )
    data["batch"].update(
        input="gs://acme-inference-prod-batch/in", output="gs://acme-inference-prod-batch/out"
    )
    data["batch"]["capacity"] = "queued"
    data.update(changes)
    out = tmp_path / "queued.yaml"
    out.write_text(yaml.safe_dump(data))
    return str(out)


def test_a_queued_batch_plans_a_provisioning_request_its_pods_consume(tmp_path: Path) -> None:
    path = queued_spec(tmp_path)
    spec = load_spec(path)
    assert deployment_for(spec).require_sizing().shape.machine_type == "a3-highgpu-8g"
    p = plan(path, "prod")
    request, template, job = (
        p.one(PROVISIONING_REQUEST),
        p.one(POD_TEMPLATE),
        p.one(JOB, "llama-70b-batch-job"),
    )
    metadata = request.inputs["metadata"]
    assert (metadata["name"], metadata["namespace"]) == ("llama-70b-batch", "inference")
    assert metadata["annotations"] == {"pulumi.com/skipAwait": "true"}  # granted hours later
    assert request.inputs["spec"] == {
        "provisioningClassName": "queued-provisioning.gke.io",
        "parameters": {"maxRunDurationSeconds": "604800"},
        "podSets": [{"count": 8, "podTemplateRef": {"name": "llama-70b-batch"}}],  # parallelism
    }
    assert template.inputs["metadata"]["name"] == "llama-70b-batch"
    assert template.inputs["metadata"]["namespace"] == "inference"
    assert template.inputs["metadata"]["labels"]["cloud.google.com/apply-warden-policies"] == "true"
    # What the scheduler reads is the same in the template and in the Job's pods.
    assert template.inputs["template"] == job.inputs["spec"]["template"]
    annotations = job.inputs["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.x-k8s.io/consume-provisioning-request"] == "llama-70b-batch"
    assert (
        annotations["autoscaling.x-k8s.io/provisioning-class-name"] == "queued-provisioning.gke.io"
    )
    pod_spec = pod(job)
    assert pod_spec["nodeSelector"] == {
        "cloud.google.com/gke-nodepool": "h100-dws",
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
    }
    assert {"key": "cloud.google.com/gke-queued", "operator": "Equal", "value": "true",
            "effect": "NoSchedule"} in pod_spec["tolerations"]  # fmt: skip
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec[
        "tolerations"
    ]
    assert request.urn in job.depends_on and template.urn in request.depends_on
    assert [v.to_json() for v in check_plan(p).mandatory] == []
    assert validate_manifests(kubernetes_objects(p)) == []


def test_default_capacity_plans_no_request() -> None:
    p = plan(BATCH)
    assert p.by_type(PROVISIONING_REQUEST) == [] and p.by_type(POD_TEMPLATE) == []
    pod_spec = pod(p.one(JOB, "llama-8b-batch-job"))
    assert "tolerations" not in pod_spec and CLASS_LABEL in pod_spec["nodeSelector"]


def test_queued_without_a_queued_pool_of_the_shape_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # dev has no queued pool at all
    data = yaml.safe_load((EXAMPLES / BATCH).read_text())
    data["costOptimized"] = False
    data["batch"]["capacity"] = "queued"
    dev_spec = tmp_path / "dev.yaml"
    dev_spec.write_text(yaml.safe_dump(data))
    assert main(["plan", "--stack", "dev", "--workload", str(dev_spec)]) == 2
    err = capsys.readouterr().err
    assert "batch.capacity: 'queued' needs a queued-provisioning pool of g2-standard-24" in err
    assert "machine types with queued pools: none" in err
    # prod has one, of a3-highgpu-8g; a spec sized to four H100s cannot use it
    four = queued_spec(tmp_path, contextLength=4096, concurrency=16)
    with pytest.raises(SpecError) as info:
        checked_deployment(REPO, "prod", load_spec(four))
    problem = info.value.problems[0]
    assert problem.path == "batch.capacity"
    assert "pool of a3-highgpu-4g" in problem.message
    assert "machine types with queued pools: a3-highgpu-8g (h100-dws)" in problem.message
    assert checked_deployment(REPO, "prod", load_spec(queued_spec(tmp_path))).spec.batch


def test_queued_capacity_is_not_cost_optimized(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        deployment_for(load_spec(queued_spec(tmp_path, costOptimized=True)))
    assert info.value.problems[0].path == "costOptimized"


def test_workloads_read_the_queued_pools_back(plan_of: Any) -> None:
    outputs = plan_of("prod").outputs

    async def value_of(key: str) -> object:
        return outputs.get(key)

    read = asyncio.run(PlatformOutputs.read(value_of, stack="prod", environment="prod"))
    assert read.queued_node_pools == {"a3-highgpu-8g": ["h100-dws"]}

    async def older(key: str) -> object:  # a platform deployed before the output existed
        return None if key == "queuedNodePools" else outputs.get(key)

    assert (
        asyncio.run(PlatformOutputs.read(older, stack="prod", environment="prod")).queued_node_pools
        == {}
    )
