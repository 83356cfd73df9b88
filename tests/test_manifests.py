"""Manifests from real offline plans: clean objects, files in apply order, strict validation.

Every test runs a small real Pulumi program (pulumi_kubernetes resources with
an explicit provider) through ``run_offline`` and looks at what comes out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from gke_inference.offline import manifests
from gke_inference.offline.manifests import (
    ManifestError,
    ManifestProblem,
    kubernetes_objects,
    omitted,
    validate_manifests,
    write_manifests,
)
from gke_inference.offline.manifests.writer import MARKER
from gke_inference.offline.recording import Plan, run_offline

Builder = Callable[[pulumi.ResourceOptions], None]

NS = "inference"
POD_TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "vllm"}},
    "spec": {
        "containers": [
            {
                "name": "server",
                "image": "us-docker.pkg.dev/project/repo/vllm:1",
                "ports": [{"containerPort": 8000, "name": "http"}],
                "resources": {"limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1}},
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }
        ],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    },
}


def record(*builders: Builder) -> Plan:
    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="{}")
        opts = pulumi.ResourceOptions(provider=provider)
        for build in builders:
            build(opts)

    return run_offline(program, project="manifests", stack="test", config={})


def custom(
    name: str, api_version: str, kind: str, spec: dict[str, Any], namespace: str | None = NS
) -> Builder:
    def build(opts: pulumi.ResourceOptions) -> None:
        metadata: dict[str, Any] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        k8s.apiextensions.CustomResource(
            f"{kind.lower()}-{name}",
            api_version=api_version,
            kind=kind,
            metadata=metadata,
            spec=spec,
            opts=opts,
        )

    return build


def snapshot_class(opts: pulumi.ResourceOptions) -> None:
    """A kind whose fields are top-level (no spec): registered as the provider sees it."""
    pulumi.CustomResource(
        "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshotClass",
        "snapshot-class",
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshotClass",
            "metadata": {"name": "hdml"},
            "driver": "pd.csi.storage.gke.io",
            "deletionPolicy": "Delete",
        },
        opts=opts,
    )


def namespace(opts: pulumi.ResourceOptions) -> None:
    k8s.core.v1.Namespace("ns", metadata={"name": NS}, opts=opts)


def deployment(spec_overrides: dict[str, Any] | None = None) -> Builder:
    def build(opts: pulumi.ResourceOptions) -> None:
        spec = {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "vllm"}},
            "template": POD_TEMPLATE,
            **(spec_overrides or {}),
        }
        k8s.apps.v1.Deployment(
            "vllm", metadata={"name": "vllm", "namespace": NS}, spec=spec, opts=opts
        )

    return build


def builtins(opts: pulumi.ResourceOptions) -> None:
    """One object of every built-in kind the platform registers."""
    namespace(opts)
    deployment()(opts)
    k8s.core.v1.ServiceAccount(
        "sa", metadata={"name": "vllm", "namespace": NS, "annotations": {"a": "b"}}, opts=opts
    )
    k8s.core.v1.ConfigMap(
        "cm",
        metadata={"name": "vllm-config", "namespace": NS},
        data={"config.yaml": "model: llama\nmax_tokens: 4096\n", "__init__": "kept"},
        opts=opts,
    )
    k8s.core.v1.Service(
        "svc",
        metadata={"name": "vllm", "namespace": NS},
        spec={"selector": {"app": "vllm"}, "ports": [{"port": 8000, "targetPort": "http"}]},
        opts=opts,
    )
    k8s.rbac.v1.ClusterRole(
        "cr",
        metadata={"name": "metrics-reader"},
        rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        opts=opts,
    )
    k8s.rbac.v1.ClusterRoleBinding(
        "crb",
        metadata={"name": "metrics-reader"},
        role_ref={
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "metrics-reader",
        },
        subjects=[{"kind": "ServiceAccount", "name": "vllm", "namespace": NS}],
        opts=opts,
    )
    k8s.scheduling.v1.PriorityClass(
        "pc", metadata={"name": "inference-high"}, value=100000, opts=opts
    )
    k8s.autoscaling.v2.HorizontalPodAutoscaler(
        "hpa",
        metadata={"name": "vllm", "namespace": NS},
        spec={
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
            "minReplicas": 1,
            "maxReplicas": 8,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "prometheus.googleapis.com|vllm:num_requests_waiting"},
                        "target": {"type": "AverageValue", "averageValue": "10"},
                    },
                }
            ],
        },
        opts=opts,
    )
    k8s.policy.v1.PodDisruptionBudget(
        "pdb",
        metadata={"name": "vllm", "namespace": NS},
        spec={"maxUnavailable": 1, "selector": {"matchLabels": {"app": "vllm"}}},
        opts=opts,
    )
    k8s.batch.v1.Job(
        "job",
        metadata={"name": "warmup", "namespace": NS},
        spec={
            "backoffLimit": 2,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "warm", "image": "busybox", "args": ["true"]}],
                }
            },
        },
        opts=opts,
    )
    k8s.apiregistration.v1.APIService(
        "apisvc",
        metadata={"name": "v1beta1.custom.metrics.k8s.io"},
        spec={
            "group": "custom.metrics.k8s.io",
            "version": "v1beta1",
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
            "insecureSkipTLSVerify": True,
            "service": {"name": "metrics-adapter", "namespace": NS},
        },
        opts=opts,
    )


COMPUTE_CLASS = {
    "priorities": [
        {"nodepools": ["l4-reserved-a", "l4-reserved-b"]},
        {
            "machineType": "g2-standard-8",
            "gpu": {"type": "nvidia-l4", "count": 1, "driverVersion": "latest"},
            "reservations": {"affinity": "AnyBestEffort"},
            "spot": False,
            "maxPodsPerNode": 32,
        },
        {
            "machineType": "g2-standard-8",
            "gpu": {"type": "nvidia-l4", "count": 1},
            "flexStart": {"enabled": True, "nodeRecycling": {"leadTimeSeconds": 3600}},
            "maxRunDurationSeconds": 604800,
        },
        {"tpu": {"type": "tpu-v6e-slice", "count": 4, "topology": "2x2"}, "spot": True},
    ],
    "nodePoolAutoCreation": {"enabled": True},
    "nodePoolConfig": {"imageStreaming": {"enabled": True}, "serviceAccount": "nodes@p.iam"},
    "activeMigration": {"optimizeRulePriority": True},
    "whenUnsatisfiable": "DoNotScaleUp",
}

WIDGET_CRD: dict[str, Any] = {
    "group": "example.com",
    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
    "scope": "Namespaced",
    "versions": [
        {
            "name": "v1",
            "served": True,
            "storage": True,
            "schema": {
                "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "properties": {"size": {"type": "integer"}},
                        }
                    },
                }
            },
        }
    ],
}


LEADER_WORKER_SET: dict[str, Any] = {
    "replicas": 1,
    "startupPolicy": "LeaderCreated",
    "leaderWorkerTemplate": {
        "size": 2,
        "restartPolicy": "RecreateGroupOnPodRestart",
        "leaderTemplate": POD_TEMPLATE,
        "workerTemplate": POD_TEMPLATE,
    },
    "rolloutStrategy": {
        "type": "RollingUpdate",
        "rollingUpdateConfiguration": {"maxSurge": 1, "maxUnavailable": 0},
    },
    "networkConfig": {"subdomainPolicy": "Shared"},
}


def custom_resources(opts: pulumi.ResourceOptions) -> None:
    """One object of every custom resource kind with a schema in the repo."""
    builders = [
        snapshot_class,
        custom("l4", "cloud.google.com/v1", "ComputeClass", COMPUTE_CLASS, namespace=None),
        custom(
            "model-servers",
            "monitoring.googleapis.com/v1",
            "PodMonitoring",
            {
                "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
                "targetLabels": {"metadata": ["pod", "container", "node"]},
            },
        ),
        custom(
            "weights",
            "snapshot.storage.k8s.io/v1",
            "VolumeSnapshot",
            {"volumeSnapshotClassName": "hdml", "source": {"persistentVolumeClaimName": "stage"}},
        ),
        custom(
            "support",
            "inference.networking.x-k8s.io/v1alpha2",
            "InferenceModelRewrite",
            {
                "poolRef": {"name": "chat"},
                "rules": [
                    {
                        "matches": [{"model": {"value": "support"}}],
                        "targets": [{"modelRewrite": "support-v2", "weight": 10}],
                    }
                ],
            },
        ),
        custom(
            "chat-latency",
            "monitoring.googleapis.com/v1",
            "Rules",
            {
                "groups": [
                    {
                        "name": "chat-latency",
                        "interval": "30s",
                        "rules": [{"record": "pod:vllm_x:p90_120s", "expr": "vector(1)"}],
                    }
                ]
            },
        ),
        custom(
            "inference",
            "gateway.networking.k8s.io/v1",
            "Gateway",
            {
                "gatewayClassName": "gke-l7-rilb",
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": 80,
                        "allowedRoutes": {"namespaces": {"from": "Same"}},
                    }
                ],
            },
        ),
        custom(
            "llama",
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            {
                "parentRefs": [{"name": "inference"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                        "backendRefs": [
                            {
                                "group": "inference.networking.k8s.io",
                                "kind": "InferencePool",
                                "name": "llama",
                            }
                        ],
                        "timeouts": {"request": "300s"},
                    }
                ],
            },
        ),
        custom(
            "llama",
            "inference.networking.k8s.io/v1",
            "InferencePool",
            {
                "selector": {"matchLabels": {"app": "vllm"}},
                "targetPorts": [{"number": 8000}],
                "endpointPickerRef": {
                    "name": "llama-epp",
                    "port": {"number": 9002},
                    "failureMode": "FailOpen",
                },
            },
        ),
        custom(
            "llama",
            "networking.gke.io/v1",
            "GCPBackendPolicy",
            {
                "targetRef": {
                    "group": "inference.networking.k8s.io",
                    "kind": "InferencePool",
                    "name": "llama",
                },
                "default": {
                    "timeoutSec": 300,
                    "logging": {"enabled": True, "sampleRate": 100000},
                    "connectionDraining": {"drainingTimeoutSec": 60},
                },
            },
        ),
        custom(
            "llama",
            "networking.gke.io/v1",
            "HealthCheckPolicy",
            {
                "targetRef": {
                    "group": "inference.networking.k8s.io",
                    "kind": "InferencePool",
                    "name": "llama",
                },
                "default": {
                    "checkIntervalSec": 15,
                    "config": {
                        "type": "HTTP",
                        "httpHealthCheck": {
                            "requestPath": "/health",
                            "portSpecification": "USE_FIXED_PORT",
                            "port": 8000,
                        },
                    },
                },
            },
        ),
        custom(
            "eval",
            "jobset.x-k8s.io/v1alpha2",
            "JobSet",
            {
                "replicatedJobs": [
                    {
                        "name": "workers",
                        "replicas": 2,
                        "template": {
                            "spec": {
                                "template": POD_TEMPLATE
                                | {"spec": {**POD_TEMPLATE["spec"], "restartPolicy": "Never"}}
                            }
                        },
                    }
                ],
                "successPolicy": {"operator": "All"},
                "failurePolicy": {"maxRestarts": 3},
            },
        ),
        custom(
            "eval",
            "autoscaling.x-k8s.io/v1",
            "ProvisioningRequest",
            {
                "provisioningClassName": "queued-provisioning.gke.io",
                "parameters": {"maxRunDurationSeconds": "604800"},
                "podSets": [{"count": 2, "podTemplateRef": {"name": "eval"}}],
            },
        ),
        custom("big", "leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", LEADER_WORKER_SET),
    ]
    for build in builders:
        build(opts)
    k8s.apiextensions.v1.CustomResourceDefinition(
        "widgets", metadata={"name": "widgets.example.com"}, spec=WIDGET_CRD, opts=opts
    )
    custom("w", "example.com/v1", "Widget", {"size": 3})(opts)


def problems_of(*builders: Builder) -> list[ManifestProblem]:
    return validate_manifests(kubernetes_objects(record(*builders)))


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)}"
    return found[0]


# -- objects ---------------------------------------------------------------


def test_integral_floats_become_ints() -> None:
    plan = record(namespace, deployment())
    assert plan.one("kubernetes:apps/v1:Deployment").inputs["spec"]["replicas"] == 2.0
    dep = by_kind(kubernetes_objects(plan), "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    for value in (
        dep["spec"]["replicas"],
        container["ports"][0]["containerPort"],
        container["resources"]["limits"]["nvidia.com/gpu"],
    ):
        assert type(value) is int


def test_key_order_is_stable_and_meaningful_empties_are_kept() -> None:
    objects = kubernetes_objects(record(builtins))
    dep = by_kind(objects, "Deployment")
    assert list(dep)[:3] == ["apiVersion", "kind", "metadata"]
    assert list(dep["metadata"])[:2] == ["name", "namespace"]
    assert dep["spec"]["template"]["spec"]["volumes"] == [{"emptyDir": {}, "name": "scratch"}]
    assert by_kind(objects, "ClusterRole")["rules"][0]["apiGroups"] == [""]
    # Deep keys that start with "__" are user data (ConfigMap keys may).
    assert by_kind(objects, "ConfigMap")["data"]["__init__"] == "kept"
    assert objects == kubernetes_objects(record(builtins))


def test_providers_are_not_objects() -> None:
    objects = kubernetes_objects(record(namespace))
    assert [o["kind"] for o in objects] == ["Namespace"]


def test_an_object_without_a_name_is_a_clear_error() -> None:
    def nameless(opts: pulumi.ResourceOptions) -> None:
        k8s.core.v1.ConfigMap("settings", metadata={"namespace": NS}, data={"a": "1"}, opts=opts)

    with pytest.raises(ManifestError, match=r"ConfigMap 'settings'.*no metadata\.name"):
        kubernetes_objects(record(nameless))


# -- files -----------------------------------------------------------------


def test_one_file_per_object_in_apply_order(tmp_path: Path) -> None:
    plan = record(builtins, custom_resources)
    out = tmp_path / "manifests" / "dev"
    paths = write_manifests(plan, out)
    objects = kubernetes_objects(plan)
    assert len(paths) == len(objects)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in paths]
    kinds = [p.name.split("-")[1] for p in paths]
    assert kinds[:2] == ["customresourcedefinition", "namespace"]
    assert kinds[-1] == "apiservice"  # aggregated APIs last: they must not block the apply
    cluster_builtins = {"priorityclass", "clusterrole", "clusterrolebinding"}
    namespaced = {"serviceaccount", "configmap", "service", "deployment", "job"}
    crs = {"computeclass", "podmonitoring", "gateway", "httproute", "inferencepool", "jobset"}
    last = {k: max(i for i, x in enumerate(kinds) if x == k) for k in set(kinds)}
    first = {k: min(i for i, x in enumerate(kinds) if x == k) for k in set(kinds)}
    assert max(last[k] for k in cluster_builtins) < min(first[k] for k in namespaced)
    assert max(last[k] for k in namespaced) < min(first[k] for k in crs)
    assert first["computeclass"] < first["gateway"]  # cluster-scoped custom resources first
    assert first["serviceaccount"] < first["deployment"]
    names = [p.name for p in paths]
    assert "00-customresourcedefinition-widgets.example.com.yaml" in names
    assert "01-namespace-inference.yaml" in names
    assert f"{kinds.index('deployment'):02d}-deployment-inference-vllm.yaml" in names
    for path in paths:
        text = path.read_text()
        assert text.startswith(MARKER + "\n")
        assert ": 2.0" not in text
    loaded = [yaml.safe_load(p.read_text()) for p in paths]
    assert loaded == objects
    config = next(o for o in loaded if o["kind"] == "ConfigMap")
    assert config["data"]["config.yaml"] == "model: llama\nmax_tokens: 4096\n"
    assert "config.yaml: |" in next(p for p in paths if "configmap" in p.name).read_text()


def test_users_files_are_never_deleted(tmp_path: Path) -> None:
    user_yaml = tmp_path / "99-extra.yaml"
    user_yaml.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mine}\n")
    lookalike = tmp_path / "05-deployment-inference-old.yaml"  # our naming, but no marker
    lookalike.write_text("# my own notes\napiVersion: v1\n")
    notes = tmp_path / "README.md"
    notes.write_text("mine\n")

    first = write_manifests(record(builtins), tmp_path)
    second = write_manifests(record(namespace), tmp_path)

    assert [p.name for p in second] == ["00-namespace-inference.yaml"]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(
        ["00-namespace-inference.yaml", user_yaml.name, lookalike.name, "README.md"]
    )
    assert user_yaml.read_text().startswith("apiVersion: v1")
    assert len(first) > len(second)


def test_objects_with_secret_values_are_not_written(tmp_path: Path) -> None:
    def secret(opts: pulumi.ResourceOptions) -> None:
        k8s.core.v1.Secret(
            "hf-token",
            metadata={"name": "hf-token", "namespace": NS},
            string_data={"token": pulumi.Output.secret("hf_abc")},
            opts=opts,
        )

    plan = record(namespace, secret)
    assert "Secret" in [o["kind"] for o in kubernetes_objects(plan)]
    paths = write_manifests(plan, tmp_path)
    assert [p.name for p in paths] == ["00-namespace-inference.yaml"]
    assert "hf_abc" not in "".join(p.read_text() for p in tmp_path.iterdir())
    assert any("Secret inference/hf-token" in note for note in omitted(plan))
    # The masked value is left out of validation rather than reported as a wrong type.
    assert validate_manifests(kubernetes_objects(plan)) == []


# -- validation ------------------------------------------------------------


def test_valid_objects_of_every_supported_kind_pass() -> None:
    objects = kubernetes_objects(record(builtins, custom_resources))
    kinds = {o["kind"] for o in objects}
    assert {
        "ComputeClass",
        "PodMonitoring",
        "Gateway",
        "HTTPRoute",
        "GCPBackendPolicy",
        "HealthCheckPolicy",
        "InferencePool",
        "JobSet",
        "Widget",
        "Deployment",
        "APIService",
    } <= kinds
    assert validate_manifests(objects) == []


def test_every_crd_schema_in_the_repo_is_exercised() -> None:
    covered = {o["kind"] for o in kubernetes_objects(record(custom_resources))}
    assert {k.split(" ")[0] for k in manifests.crd_schema_kinds()} <= covered


def test_misspelled_deployment_field_fails() -> None:
    problems = problems_of(namespace, deployment({"replica": 3}))
    assert [(p.kind, p.name, p.path) for p in problems] == [("Deployment", "vllm", "spec.replica")]
    assert "unknown field 'replica'" in problems[0].message
    assert "did you mean 'replicas'" in problems[0].message


def test_wrong_type_fails() -> None:
    problems = problems_of(namespace, deployment({"replicas": "two"}))
    assert [(p.path, p.message) for p in problems] == [
        ("spec.replicas", "'two' is not of type integer")
    ]


def test_misspelled_field_deep_in_a_pod_template_fails() -> None:
    template = {
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "w", "image": "x", "imagePullPolice": "Always"}],
                }
            }
        }
    }
    spec = {"replicatedJobs": [{"name": "w", "replicas": 1, "template": template}]}
    problems = problems_of(namespace, custom("eval", "jobset.x-k8s.io/v1alpha2", "JobSet", spec))
    assert [p.path for p in problems] == [
        "spec.replicatedJobs[0].template.spec.template.spec.containers[0].imagePullPolice"
    ]
    assert "did you mean 'imagePullPolicy'" in problems[0].message


def test_unknown_field_in_a_compute_class_priority_fails() -> None:
    spec = {"priorities": [{"machineFamly": "n4", "spot": True}], "whenUnsatisfiable": "Never"}
    problems = problems_of(custom("cpu", "cloud.google.com/v1", "ComputeClass", spec, None))
    assert {(p.kind, p.path) for p in problems} == {
        ("ComputeClass", "spec.priorities[0].machineFamly"),
        ("ComputeClass", "spec.whenUnsatisfiable"),
    }
    typo = next(p for p in problems if p.path.endswith("machineFamly"))
    assert "did you mean 'machineFamily'" in typo.message


def test_a_nodepools_rule_holds_nothing_else() -> None:
    spec = {"priorities": [{"nodepools": ["l4-spot"], "spot": True}, {"nodepools": []}]}
    problems = problems_of(custom("l4", "cloud.google.com/v1", "ComputeClass", spec, None))
    assert sorted(p.path for p in problems) == [
        "spec.priorities[0]",
        "spec.priorities[1].nodepools",
    ]


def test_leader_worker_set_pod_templates_are_checked_like_a_deployments() -> None:
    worker = {**POD_TEMPLATE, "spec": {**POD_TEMPLATE["spec"], "restartPolicyy": "Always"}}
    spec = {
        **LEADER_WORKER_SET,
        "leaderWorkerTemplate": {
            **LEADER_WORKER_SET["leaderWorkerTemplate"],
            "workerTemplate": worker,
            "restartPolicy": "RecreateGroup",
        },
        "startupPolicy": "LeaderStarted",
    }
    problems = problems_of(custom("big", "leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", spec))
    paths = sorted(p.path for p in problems)
    assert "spec.startupPolicy" in paths
    assert "spec.leaderWorkerTemplate.restartPolicy" in paths
    assert any(p.startswith("spec.leaderWorkerTemplate.workerTemplate.spec") for p in paths), paths


def test_provisioning_request_parameters_are_strings() -> None:
    spec = {
        "provisioningClassName": "queued-provisioning.gke.io",
        "parameters": {"maxRunDurationSeconds": 604800},
        "podSets": [{"count": 1, "podTemplateRef": {"name": "eval"}}],
    }
    problems = problems_of(custom("eval", "autoscaling.x-k8s.io/v1", "ProvisioningRequest", spec))
    assert [p.path for p in problems] == ["spec.parameters.maxRunDurationSeconds"]


def test_a_kind_without_a_schema_is_an_error_not_a_pass() -> None:
    problems = problems_of(custom("w", "example.com/v1", "Widget", {"size": 3}))
    assert len(problems) == 1
    message = problems[0].message
    assert "no schema for Widget example.com/v1" in message
    assert "ComputeClass (cloud.google.com/v1)" in message
    assert "JobSet (jobset.x-k8s.io/v1alpha2)" in message


def test_a_misspelled_builtin_kind_is_an_error() -> None:
    problems = problems_of(custom("d", "apps/v1", "Deploymnet", {"replicas": 1}))
    assert [p.kind for p in problems] == ["Deploymnet"]
    assert "not a built-in kind of Kubernetes 1.33" in problems[0].message


def test_custom_resources_follow_a_crd_in_the_same_plan() -> None:
    def crd(opts: pulumi.ResourceOptions) -> None:
        k8s.apiextensions.v1.CustomResourceDefinition(
            "widgets", metadata={"name": "widgets.example.com"}, spec=WIDGET_CRD, opts=opts
        )

    problems = problems_of(crd, custom("w", "example.com/v1", "Widget", {"size": 3, "colour": 1}))
    assert [(p.kind, p.path) for p in problems] == [("Widget", "spec.colour")]


def test_a_namespace_on_a_cluster_scoped_object_and_duplicates_fail() -> None:
    spec = {"priorities": [{"machineFamily": "n4"}]}
    problems = problems_of(
        custom("cpu", "cloud.google.com/v1", "ComputeClass", spec, namespace=NS),
        custom("cpu-again", "cloud.google.com/v1", "ComputeClass", spec, namespace=None),
    )
    assert [(p.name, p.path) for p in problems] == [("cpu", "metadata.namespace")]
    objects = kubernetes_objects(record(namespace))
    problems = validate_manifests(objects + objects)
    assert [(p.kind, p.path) for p in problems] == [("Namespace", "metadata.name")]
    assert "more than once" in problems[0].message


def test_problems_render_on_one_line() -> None:
    problems = problems_of(namespace, deployment({"replica": 3}))
    assert problems[0].render() == (
        "  - Deployment inference/vllm spec.replica: unknown field 'replica' "
        "(did you mean 'replicas'?)"
    )
