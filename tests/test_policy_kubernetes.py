"""Kubernetes workload rules on real recordings of small pulumi_kubernetes programs.

Every case registers real ``pulumi_kubernetes`` resources (explicit provider,
as the inference layer does) through ``run_offline`` and checks the recording,
so the rules see exactly the engine's shapes (camelCase, numbers as floats).
"""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from gke_inference.offline.policy_check import PolicyReport, check_resources
from gke_inference.offline.recording import Plan, run_offline
from gke_inference.policy.pack import policy_named
from gke_inference.workloads import vllm_metrics

VLLM_IMAGE = "us-central1-docker.pkg.dev/acme-inference-prod/docker-hub/vllm/vllm-openai:v0.11.2"
NAMESPACE = "inference"
LABELS = {"app": "llama", "gke-inference/kind": "online"}


def online_workload(**changes: Any) -> dict[str, Any]:
    """Specs of a compliant online vLLM workload; ``changes`` edit them by dotted path."""
    container: dict[str, Any] = {
        "name": "vllm",
        "image": VLLM_IMAGE,
        "args": ["--model=/models/llama"],
        "ports": [{"name": "http", "containerPort": 8000}],
        "resources": {
            "requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "32Gi", "nvidia.com/gpu": "1"},
        },
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    specs: dict[str, Any] = {
        "deployment": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "llama"}},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10000,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "nodeSelector": {"cloud.google.com/compute-class": "gpu-l4-x1"},
                    "containers": [container],
                },
            },
        },
        "hpa": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama"},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {
                            "name": "prometheus.googleapis.com|vllm:num_requests_waiting|gauge"
                        },
                        "target": {"type": "AverageValue", "averageValue": "5"},
                    },
                }
            ],
        },
        "pdb": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "llama"}}},
        "service": {"selector": {"app": "llama"}, "ports": [{"port": 80, "targetPort": "http"}]},
        "service_annotations": {},
    }
    for path, value in changes.items():
        node = specs
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return specs


DELETE = object()


def record(
    specs: dict[str, Any], *, stack: str = "prod", hpa: bool = True, pdb: bool = True
) -> Plan:
    """Register the workload's objects with pulumi_kubernetes under the mock runtime."""

    def program() -> None:
        provider = k8s.Provider("gke", kubeconfig="{}")
        opts = pulumi.ResourceOptions(provider=provider)
        meta = {"name": "llama", "namespace": NAMESPACE, "labels": dict(LABELS)}
        k8s.apps.v1.Deployment("llama", metadata=meta, spec=specs["deployment"], opts=opts)
        k8s.core.v1.Service(
            "llama",
            metadata={**meta, "annotations": specs["service_annotations"]},
            spec=specs["service"],
            opts=opts,
        )
        if hpa:
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                "llama", metadata=meta, spec=specs["hpa"], opts=opts
            )
        if pdb:
            k8s.policy.v1.PodDisruptionBudget("llama", metadata=meta, spec=specs["pdb"], opts=opts)

    return run_offline(program, project="gke-inference-workloads", stack=stack, config={})


def run(plan: Plan, name: str, config: Any = None) -> PolicyReport:
    return check_resources(plan.resources, config, policies=[policy_named(name)])


@pytest.fixture(scope="module")
def compliant() -> Plan:
    return record(online_workload())


def test_recording_has_the_engine_shapes(compliant: Plan) -> None:
    deployment = compliant.one("kubernetes:apps/v1:Deployment")
    assert deployment.inputs["kind"] == "Deployment"
    assert deployment.inputs["spec"]["replicas"] == 2.0
    assert deployment.provider is not None and deployment.provider.endswith("::gke")
    pod = deployment.inputs["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert (
        compliant.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"][
            "maxReplicas"
        ]
        == 4.0
    )


def test_the_compliant_workload_passes_every_rule(compliant: Plan) -> None:
    report = check_resources(compliant.resources)
    assert report.violations == []
    assert report.checked == len(compliant.resources) - 1  # all but the stack


# (rule, dotted changes) — each change makes that rule fire on the Deployment/Service, and
# no other rule but the Pod Security ones that cover the same field (ALSO).
POD = "deployment__template__spec"
C0 = f"{POD}__containers__0"
RESTRICTED, HIGH_UID = "k8s-pod-security-restricted", "k8s-high-uid-read-only-root"
ALSO: dict[int, set[str]] = {0: {RESTRICTED, HIGH_UID}, 1: {RESTRICTED, HIGH_UID}, 2: {RESTRICTED}}
ALSO[3] = {RESTRICTED}
CASES: list[tuple[str, dict[str, Any]]] = [
    (
        "k8s-containers-run-as-non-root",
        {f"{POD}__securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}},
    ),
    ("k8s-containers-run-as-non-root", {f"{C0}__securityContext__runAsUser": 0}),
    ("k8s-privileged-containers-disallowed", {f"{C0}__securityContext__privileged": True}),
    (
        "k8s-privilege-escalation-disallowed",
        {f"{C0}__securityContext__allowPrivilegeEscalation": True},
    ),
    (
        "k8s-accelerator-requests-equal-limits",
        {f"{C0}__resources__limits": {"nvidia.com/gpu": "2"}},
    ),
    ("k8s-accelerator-requests-equal-limits", {f"{C0}__resources__limits": {"memory": "32Gi"}}),
    ("k8s-accelerator-pods-select-nodes", {f"{POD}__nodeSelector": {"pool": "any"}}),
    ("k8s-image-tag-pinned", {f"{C0}__image": "us-docker.pkg.dev/p/r/vllm-openai:latest"}),
    ("k8s-image-tag-pinned", {f"{C0}__image": "us-docker.pkg.dev/p/r/vllm-openai"}),
    ("k8s-image-from-artifact-registry", {f"{C0}__image": "docker.io/vllm/vllm-openai:v0.11.2"}),
    ("k8s-service-no-public-load-balancer", {"service__type": "LoadBalancer"}),
    ("k8s-online-workload-readiness-probe", {f"{C0}__readinessProbe": DELETE}),
    ("k8s-online-workload-has-hpa", {"hpa__scaleTargetRef__name": "another"}),
    ("k8s-online-workload-has-hpa", {"hpa__maxReplicas": 0}),
    ("k8s-online-workload-has-pdb", {"pdb__selector": {"matchLabels": {"app": "other"}}}),
    (
        "k8s-hpa-vllm-metrics-exported",
        {
            "hpa__metrics__0__pods__metric__name": "prometheus.googleapis.com|vllm:gpu_cache_usage_perc|gauge"
        },
    ),
    (RESTRICTED, {f"{C0}__securityContext__capabilities": {"drop": ["NET_RAW"]}}),
    (RESTRICTED, {f"{POD}__securityContext__seccompProfile": {"type": "Unconfined"}}),
    (HIGH_UID, {f"{POD}__securityContext__runAsUser": 1000}),
    (HIGH_UID, {f"{C0}__securityContext__readOnlyRootFilesystem": False}),
]


@pytest.mark.parametrize(
    ("rule", "changes"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_fires_on_a_violating_recording(
    compliant: Plan, rule: str, changes: dict[str, Any]
) -> None:
    assert run(compliant, rule).violations == []
    report = check_resources(record(online_workload(**changes)).resources)
    also = ALSO.get(next(i for i, case in enumerate(CASES) if case == (rule, changes)), set())
    assert {v.policy for v in report.violations} == {rule, *also}
    assert all(
        v.urn.startswith("urn:pulumi:prod::gke-inference-workloads::") for v in report.violations
    )


def test_levels_follow_the_defaults() -> None:
    report = check_resources(
        record(online_workload(**{f"{C0}__image": "docker.io/vllm/vllm-openai:latest"})).resources
    )
    levels = {v.policy: v.level for v in report.violations}
    assert levels == {
        "k8s-image-tag-pinned": "mandatory",
        "k8s-image-from-artifact-registry": "advisory",
    }


def test_digest_pinned_images_and_custom_registries() -> None:
    digest = "ghcr.io/acme/server@sha256:" + "a" * 64
    plan = record(online_workload(**{f"{C0}__image": digest}))
    assert run(plan, "k8s-image-tag-pinned").violations == []
    assert len(run(plan, "k8s-image-from-artifact-registry").violations) == 1
    allowed = {"k8s-image-from-artifact-registry": {"allowedRegistries": ["ghcr.io/acme/"]}}
    assert run(plan, "k8s-image-from-artifact-registry", allowed).violations == []
    # '*' stays within one path segment: a registry name inside a path does not count.
    sneaky = record(online_workload(**{f"{C0}__image": "evil.example/us-docker.pkg.dev/x:v1"}))
    assert len(run(sneaky, "k8s-image-from-artifact-registry").violations) == 1


def test_internal_or_allowed_load_balancers_pass() -> None:
    internal = record(
        online_workload(
            service__type="LoadBalancer",
            service_annotations={"networking.gke.io/load-balancer-type": "Internal"},
        )
    )
    assert run(internal, "k8s-service-no-public-load-balancer").violations == []
    public = record(online_workload(service__type="LoadBalancer"))
    allowed = {"k8s-service-no-public-load-balancer": {"allowPublicLoadBalancer": True}}
    assert run(public, "k8s-service-no-public-load-balancer", allowed).violations == []


def test_accelerator_limits_without_requests_are_fine_and_affinity_counts() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "cloud.google.com/gke-accelerator",
                                "operator": "In",
                                "values": ["nvidia-l4"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    plan = record(
        online_workload(
            **{
                f"{C0}__resources": {"limits": {"nvidia.com/gpu": 1}},
                f"{POD}__nodeSelector": DELETE,
                f"{POD}__affinity": affinity,
            }
        )
    )
    assert check_resources(plan.resources).violations == []


def test_missing_hpa_and_pdb_are_reported_on_the_deployment() -> None:
    plan = record(online_workload(), hpa=False, pdb=False)
    report = check_resources(plan.resources)
    deployment = plan.one("kubernetes:apps/v1:Deployment")
    assert {(v.policy, v.urn) for v in report.violations} == {
        ("k8s-online-workload-has-hpa", deployment.urn),
        ("k8s-online-workload-has-pdb", deployment.urn),
    }


def test_unlabelled_gpu_deployments_count_as_online_and_batch_ones_do_not() -> None:
    unlabelled = online_workload()
    unlabelled["deployment"]["template"]["metadata"]["labels"] = {"app": "llama"}
    plan = record(unlabelled, hpa=False)
    assert {v.policy for v in check_resources(plan.resources).violations} == {
        "k8s-online-workload-has-hpa"
    }

    batch = copy.deepcopy(unlabelled)
    batch["deployment"]["template"]["metadata"]["labels"]["gke-inference/kind"] = "batch"

    def program() -> None:
        provider = k8s.Provider("gke", kubeconfig="{}")
        k8s.apps.v1.Deployment(
            "batch",
            metadata={"name": "batch", "namespace": NAMESPACE},
            spec=batch["deployment"],
            opts=pulumi.ResourceOptions(provider=provider),
        )

    plan = run_offline(program, project="gke-inference-workloads", stack="prod", config={})
    assert check_resources(plan.resources).violations == []


def test_jobs_jobsets_and_pods_are_checked_like_deployments() -> None:
    root_pod = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "us-docker.pkg.dev/p/r/batch:v1",
                "securityContext": {"privileged": True},
            }
        ],
    }

    def program() -> None:
        provider = k8s.Provider("gke", kubeconfig="{}")
        opts = pulumi.ResourceOptions(provider=provider)
        k8s.batch.v1.Job(
            "job", metadata={"name": "job"}, spec={"template": {"spec": root_pod}}, opts=opts
        )
        k8s.core.v1.Pod("pod", metadata={"name": "pod"}, spec=root_pod, opts=opts)
        k8s.apiextensions.CustomResource(
            "jobset",
            api_version="jobset.x-k8s.io/v1alpha2",
            kind="JobSet",
            metadata={"name": "jobset"},
            spec={
                "replicatedJobs": [
                    {
                        "name": "w",
                        "replicas": 1,
                        "template": {"spec": {"template": {"spec": root_pod}}},
                    }
                ]
            },
            opts=opts,
        )

    plan = run_offline(program, project="gke-inference-workloads", stack="dev", config={})
    assert {r.type for r in plan.resources} >= {
        "kubernetes:batch/v1:Job",
        "kubernetes:core/v1:Pod",
        "kubernetes:jobset.x-k8s.io/v1alpha2:JobSet",
    }
    report = check_resources(plan.resources)
    flagged = {(v.policy, v.urn.rsplit("::", 1)[-1]) for v in report.violations}
    for name in ("job", "pod", "jobset"):
        assert ("k8s-privileged-containers-disallowed", name) in flagged
        assert ("k8s-containers-run-as-non-root", name) in flagged


@pytest.mark.parametrize(
    ("image", "metric", "ok"),
    [
        ("vllm/vllm-openai:v0.11.2", "vllm:kv_cache_usage_perc", True),
        ("vllm/vllm-openai:v0.11.2", "vllm:gpu_cache_usage_perc", False),  # hidden from 0.11
        ("vllm/vllm-openai:v0.10.1", "vllm:gpu_cache_usage_perc", True),
        ("vllm/vllm-openai:v0.12.0", "vllm:gpu_cache_usage_perc", False),  # removed
        ("vllm/vllm-openai:v0.9.1", "vllm:kv_cache_usage_perc", False),  # not yet
        ("vllm/vllm-openai:v0.9.2", "vllm:kv_cache_usage_perc", True),
        ("vllm/vllm-openai:v0.11.2", "vllm:num_requests_running", True),
        ("vllm/vllm-openai:v0.11.2", "vllm:num_request_waiting", False),  # typo
    ],
)
def test_hpa_metric_names_are_checked_against_the_vllm_tag(
    image: str, metric: str, ok: bool
) -> None:
    name = f"prometheus.googleapis.com|{metric}|gauge"
    plan = record(
        online_workload(
            **{
                f"{C0}__image": f"us-docker.pkg.dev/p/mirror/{image}",
                "hpa__metrics": [
                    {
                        "type": "External",
                        "external": {
                            "metric": {"name": name},
                            "target": {"type": "AverageValue", "averageValue": "5"},
                        },
                    }
                ],
            }
        )
    )
    violations = run(plan, "k8s-hpa-vllm-metrics-exported").violations
    assert (violations == []) is ok, violations
    if not ok:
        assert (
            image.rsplit(":", 1)[1] in violations[0].message
            or "not a metric" in violations[0].message
        )


def test_hpa_metric_kind_must_match() -> None:
    plan = record(
        online_workload(
            hpa__metrics__0__pods__metric__name="prometheus.googleapis.com|vllm:num_requests_waiting|counter"
        )
    )
    assert "is a gauge" in run(plan, "k8s-hpa-vllm-metrics-exported").violations[0].message


def test_every_replacement_is_a_metric_and_only_retired_metrics_have_one() -> None:
    for metric in vllm_metrics.METRICS.values():
        if metric.replacement is not None:
            assert metric.replacement in vllm_metrics.METRICS, metric
            assert metric.hidden_from or metric.removed_in, metric
    assert set(vllm_metrics._REPLACEMENTS) <= set(vllm_metrics.METRICS)
