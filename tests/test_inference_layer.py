"""The inference layer: catalog, capacity, compute classes, add-ons, outputs contract."""

from __future__ import annotations

from typing import Any

import pytest

from gke_inference.core.errors import SettingsError
from gke_inference.core.settings import parse_settings
from gke_inference.inference import catalog
from gke_inference.inference.compute_classes import COST_OPTIMIZED_CHAIN, DEFAULT_CHAIN
from gke_inference.offline.recording import SECRET_MASK, Plan

COMPUTE_CLASS = "kubernetes:cloud.google.com/v1:ComputeClass"
NODE_POOL = "gcp:container/nodePool:NodePool"

# Machine type -> (GKE accelerator label, devices per node), from Google's machine docs.
KNOWN_SHAPES = {
    "g2-standard-8": ("nvidia-l4", 1),
    "g2-standard-24": ("nvidia-l4", 2),
    "g2-standard-48": ("nvidia-l4", 4),
    "g2-standard-96": ("nvidia-l4", 8),
    "a2-highgpu-1g": ("nvidia-tesla-a100", 1),
    "a2-highgpu-8g": ("nvidia-tesla-a100", 8),
    "a2-ultragpu-4g": ("nvidia-a100-80gb", 4),
    "a3-highgpu-1g": ("nvidia-h100-80gb", 1),
    "a3-highgpu-8g": ("nvidia-h100-80gb", 8),
    "a3-megagpu-8g": ("nvidia-h100-mega-80gb", 8),
    "a3-ultragpu-8g": ("nvidia-h200-141gb", 8),
    "g4-standard-48": ("nvidia-rtx-pro-6000", 1),
    "g4-standard-384": ("nvidia-rtx-pro-6000", 8),
    "ct5lp-hightpu-4t": ("tpu-v5-lite-podslice", 4),
    "ct6e-standard-8t": ("tpu-v6e-slice", 8),
}


@pytest.mark.parametrize(("machine_type", "expected"), sorted(KNOWN_SHAPES.items()))
def test_catalog_maps_machine_types(machine_type: str, expected: tuple[str, int]) -> None:
    acc, shape = catalog.lookup(machine_type)
    assert (acc.gke_label, shape.count) == expected


def test_catalog_covers_the_supported_offerings() -> None:
    labels = {a.gke_label for a in catalog.CATALOG}
    assert {
        "nvidia-l4", "nvidia-tesla-a100", "nvidia-a100-80gb", "nvidia-h100-80gb",
        "nvidia-h200-141gb", "nvidia-rtx-pro-6000", "tpu-v5-lite-podslice", "tpu-v6e-slice",
    } <= labels  # fmt: skip
    for acc in catalog.CATALOG:
        assert acc.memory_gib > 0 and acc.bandwidth_gbps > 0
        counts = [s.count for s in acc.shapes]
        assert all(c >= 1 for c in counts)
        if acc.kind == "tpu":
            for shape in acc.shapes:
                x, y = (int(v) for v in str(shape.topology).split("x"))
                assert x * y == shape.count
    assert catalog.BY_KEY["h100-80gb"].fp8 and not catalog.BY_KEY["a100-80gb"].fp8


def test_unknown_machine_type_is_a_settings_error_naming_accepted_ones() -> None:
    with pytest.raises(SettingsError) as info:
        parse_settings(
            {"project": "acme-dev-1", "inference": {"accelerators": ["n1-standard-4"]}}, "dev"
        )
    text = str(info.value)
    assert "gke-inference:inference.accelerators[0]" in text
    assert "'n1-standard-4' is not an accelerator machine type" in text
    assert "a3-highgpu-8g" in text and "ct6e-standard-4t" in text


def test_two_machine_types_for_one_class_are_refused() -> None:
    with pytest.raises(SettingsError) as info:
        parse_settings(
            {
                "project": "acme-dev-1",
                "inference": {"accelerators": ["g2-standard-8", "g2-standard-4"]},
            },
            "dev",
        )
    assert "same compute class 'gpu-l4-x1'" in str(info.value)


def _capacity(rule: dict[str, Any]) -> str:
    if "reservations" in rule:
        return "reservation"
    if rule.get("flexStart", {}).get("enabled"):
        return "flex-start"
    return "spot" if rule.get("spot") else "on-demand"


def classes(plan: Plan) -> dict[str, dict[str, Any]]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in plan.by_type(COMPUTE_CLASS)}


def test_compute_classes_fall_back_in_order(plan_of: Any) -> None:
    found = classes(plan_of("prod"))
    h100 = found["gpu-h100-80gb-x8"]["spec"]
    # after the static pools of the class (tests/test_capacity.py)
    rules = [r for r in h100["priorities"] if "nodepools" not in r]
    assert [_capacity(r) for r in rules] == list(DEFAULT_CHAIN)
    assert all(r["machineType"] == "a3-highgpu-8g" for r in rules)
    assert all(r["gpu"] == {"type": "nvidia-h100-80gb", "count": 8, "driverVersion": "latest"}
               for r in rules)  # fmt: skip
    assert h100["nodePoolAutoCreation"] == {"enabled": True}
    assert h100["nodePoolConfig"]["imageStreaming"] == {"enabled": True}
    assert h100["nodePoolConfig"]["serviceAccount"].startswith("inf-prod-nodes@")
    flex = rules[2]
    assert flex["maxRunDurationSeconds"] == 604800


def test_cost_optimized_variant_is_spot_first(plan_of: Any) -> None:
    spec = classes(plan_of("prod"))["gpu-h100-80gb-x8-co"]["spec"]
    assert [_capacity(r) for r in spec["priorities"]] == list(COST_OPTIMIZED_CHAIN)
    assert _capacity(spec["priorities"][0]) == "spot"


def test_tpu_classes_use_topology_and_skip_best_effort_reservations(plan_of: Any) -> None:
    spec = classes(plan_of("prod"))["tpu-v6e-2x2"]["spec"]
    assert spec["priorities"][0]["tpu"] == {"type": "tpu-v6e-slice", "count": 4, "topology": "2x2"}
    assert "reservation" not in [_capacity(r) for r in spec["priorities"]]


def test_accelerator_pools_and_nap_limits(plan_of: Any) -> None:
    plan = plan_of("prod")
    pools = {p.inputs["name"]: p.inputs for p in plan.by_type(NODE_POOL)}
    reserved, dws = pools["h100-reserved"], pools["h100-dws"]
    assert reserved["nodeConfig"]["reservationAffinity"]["values"] == ["h100-prod-reservation"]
    assert dws["queuedProvisioning"] == {"enabled": True}
    for pool in (reserved, dws):
        config = pool["nodeConfig"]
        accelerator = config["guestAccelerators"][0]
        assert accelerator["type"] == "nvidia-h100-80gb" and accelerator["count"] == 8
        assert accelerator["gpuDriverInstallationConfig"]["gpuDriverVersion"] == "LATEST"
        assert config["gvnic"] == {"enabled": True} and config["gcfsConfig"] == {"enabled": True}
        assert pool["autoscaling"]["minNodeCount"] == 0  # scale to zero
    # Each pool is reserved for what reaches it (tests/test_capacity.py): its compute
    # class, or the ProvisioningRequests of queued batch Jobs.
    assert reserved["nodeConfig"]["taints"] == [
        {
            "key": "cloud.google.com/compute-class",
            "value": "gpu-h100-80gb-x8",
            "effect": "NO_SCHEDULE",
        }
    ]
    assert dws["nodeConfig"]["taints"][0]["key"] == "cloud.google.com/gke-queued"
    spot = {p.inputs["name"]: p.inputs for p in plan_of("dev").by_type(NODE_POOL)}["l4-spot"]
    assert spot["nodeConfig"]["spot"] is True
    limits = {
        lim["resourceType"]: lim["maximum"]
        for lim in plan.one("gcp:container/cluster:Cluster").inputs["clusterAutoscaling"][
            "resourceLimits"
        ]
    }
    assert limits["nvidia-h100-80gb"] == 128 and limits["nvidia-h200-141gb"] == 32
    assert {a.nap_resource for a in catalog.CATALOG} <= set(limits)
    assert {"cpu", "memory"} <= set(limits)


def test_autopilot_plans_without_pools_but_with_classes(plan_of: Any) -> None:
    plan = plan_of("prod", "cluster.mode=autopilot")
    assert plan.by_type(NODE_POOL) == []
    assert "gpu-h100-80gb-x8" in classes(plan)
    adapter = plan.one("kubernetes:apps/v1:Deployment")
    assert "nodeSelector" not in adapter.inputs["spec"]["template"]["spec"]


def test_metrics_adapter_is_wired_for_hpa(plan_of: Any) -> None:
    plan = plan_of("dev")
    services = {
        r.inputs["metadata"]["name"]
        for r in plan.by_type("kubernetes:apiregistration.k8s.io/v1:APIService")
    }
    assert services == {
        "v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io",
        "v1beta1.external.metrics.k8s.io",
    }  # fmt: skip
    grant = next(
        r for r in plan.by_type("gcp:projects/iAMMember:IAMMember")
        if r.inputs["role"] == "roles/monitoring.viewer"
    )  # fmt: skip
    assert grant.inputs["member"].endswith(
        "acme-inference-dev.svc.id.goog/subject/ns/custom-metrics/sa/custom-metrics-stackdriver-adapter"
    )
    deployment = plan.one("kubernetes:apps/v1:Deployment").inputs
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert ":v0.16.7" in container["image"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_model_bucket_and_gateway(plan_of: Any) -> None:
    prod = plan_of("prod")
    bucket = prod.one("gcp:storage/bucket:Bucket")
    assert bucket.protect is True
    assert bucket.inputs["uniformBucketLevelAccess"] is True
    assert bucket.inputs["hierarchicalNamespace"] == {"enabled": True}
    assert bucket.inputs["publicAccessPrevention"] == "enforced"
    assert bucket.inputs["softDeletePolicy"]["retentionDurationSeconds"] == 30 * 86400
    assert plan_of("dev").one("gcp:storage/bucket:Bucket").protect is False
    gateway = prod.one("kubernetes:gateway.networking.k8s.io/v1:Gateway").inputs
    assert gateway["spec"]["gatewayClassName"] == "gke-l7-rilb"
    external = plan_of(
        "dev", "inference.gateway.exposure=external", "inference.gateway.certificate=models-cert"
    )
    ext = external.one("kubernetes:gateway.networking.k8s.io/v1:Gateway").inputs
    assert ext["spec"]["gatewayClassName"] == "gke-l7-global-external-managed"
    assert ext["spec"]["listeners"][0]["protocol"] == "HTTPS"


def test_namespaces_priority_classes_and_scraping(plan_of: Any) -> None:
    plan = plan_of("dev")
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]
                  for r in plan.by_type("kubernetes:core/v1:Namespace")}  # fmt: skip
    assert namespaces["inference"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespaces["gateway"]["pod-security.kubernetes.io/enforce"] == "restricted"
    priority = {
        r.inputs["metadata"]["name"]: r.inputs
        for r in plan.by_type("kubernetes:scheduling.k8s.io/v1:PriorityClass")
    }
    assert [n for n, p in priority.items() if p.get("globalDefault")] == ["standard"]
    assert priority["critical"]["value"] > priority["high"]["value"] > 0 > priority["low"]["value"]
    monitoring = plan.one("kubernetes:monitoring.googleapis.com/v1:PodMonitoring").inputs
    assert monitoring["metadata"]["namespace"] == "inference"
    assert monitoring["spec"]["endpoints"][0]["port"] == "metrics"


def test_kubernetes_objects_use_the_explicit_provider(any_plan: Plan) -> None:
    providers = {r.urn for r in any_plan.by_type("pulumi:providers:kubernetes")}
    assert len(providers) == 1
    provider = any_plan.one("pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == SECRET_MASK
    assert provider.inputs["clusterIdentifier"] == any_plan.outputs["clusterName"]
    for r in any_plan.resources:
        if r.type.startswith("kubernetes:") and r.custom:
            assert r.provider in providers, r.name


def test_outputs_contract_is_complete(any_plan: Plan) -> None:
    contract = {
        "projectId", "region", "clusterName", "clusterLocation", "clusterEndpoint",
        "clusterCaCertificate", "kubeconfig", "workloadNamespace", "modelBucket",
        "artifactRegistry", "gatewayName", "gatewayNamespace", "computeClasses",
        "workloadIdentityPool", "mode", "queuedNodePools",
    }  # fmt: skip
    assert contract <= set(any_plan.outputs)
    assert "kubeconfig" in any_plan.secret_outputs
    assert any_plan.outputs["workloadNamespace"] == "inference"
    classes_out = any_plan.outputs["computeClasses"]
    assert classes_out and all(isinstance(v, str) for v in classes_out.values())
    assert set(classes_out.values()) == set(classes(any_plan))


def test_inference_objective_crd_is_installed_and_pinned(plan_of: Any) -> None:
    crds = plan_of("dev").by_type("kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition")
    assert sorted(c.inputs["metadata"]["name"] for c in crds) == [
        "inferencemodelrewrites.inference.networking.x-k8s.io",  # tests/test_lora_routes.py
        "inferenceobjectives.inference.networking.x-k8s.io",
    ]
    (crd,) = [
        c.inputs
        for c in crds
        if c.inputs["metadata"]["name"] == "inferenceobjectives.inference.networking.x-k8s.io"
    ]
    assert crd["metadata"]["labels"]["gke-inference/api-version"] == "v1.5.0"
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha2" and version["storage"] is True
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["poolRef"]
    assert spec["properties"]["poolRef"]["properties"]["group"]["default"] == (
        "inference.networking.k8s.io"
    )
