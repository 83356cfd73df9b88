"""routing.mode inference-pool: the endpoint picker as the upstream chart of its version runs it.

Numbers from kubernetes-sigs/gateway-api-inference-extension v1.5.0
(config/charts/inferencepool/values.yaml, config/charts/epplib/templates/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gke_inference.core.errors import SpecError
from gke_inference.core.images import PINNED_IMAGES
from gke_inference.offline.manifests import kubernetes_objects, validate_manifests
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.policy_check import check_plan
from gke_inference.offline.recording import Plan

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "workloads" / "examples"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
SECRET = "kubernetes:core/v1:Secret"
POD_MONITORING = "kubernetes:monitoring.googleapis.com/v1:PodMonitoring"
POOL = "kubernetes:inference.networking.k8s.io/v1:InferencePool"

_plans: dict[tuple[str, ...], Plan] = {}


def pool_plan(tmp_path: Path, *overrides: str) -> Plan:
    key = overrides
    if key not in _plans:
        data: dict[str, Any] = yaml.safe_load((EXAMPLES / "gemma-3-1b-l4.yaml").read_text())
        data["routing"] = {"mode": "inference-pool"}
        spec = tmp_path / "pool.yaml"
        spec.write_text(yaml.safe_dump(data))
        _plans[key] = plan_workload("dev", str(spec), list(overrides), project_dir=REPO)
    return _plans[key]


def test_epp_image_is_a_published_release() -> None:
    # v1.5.0 is a tag of the upstream repository and the chart's default image tag.
    assert PINNED_IMAGES["epp"].ref == "gateway-api-inference-extension/epp:v1.5.0"


def test_epp_is_sized_and_drains_as_upstream(tmp_path: Path) -> None:
    p = pool_plan(tmp_path)
    epp = p.one(DEPLOYMENT, "gemma-3-1b-epp").inputs["spec"]
    assert epp["replicas"] == 1 and epp["strategy"] == {"type": "Recreate"}
    pod = epp["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 130
    (container,) = pod["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "8Gi"},
        "limits": {"memory": "16Gi"},
    }
    args = container["args"]
    assert "--pool-name=gemma-3-1b" in args and "--pool-namespace=inference" in args
    assert "--pool-group=inference.networking.k8s.io" in args and "--tracing=false" in args
    # Metrics stay authenticated (the EPP default): no --metrics-endpoint-auth=false.
    assert not any(a.startswith("--metrics-endpoint-auth") for a in args)
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    assert container["readinessProbe"]["grpc"] == {"port": 9003, "service": "inference-extension"}
    assert container["readinessProbe"]["periodSeconds"] == 2
    assert container["livenessProbe"]["initialDelaySeconds"] == 5


def test_metrics_authentication_has_its_rbac(tmp_path: Path) -> None:
    p = pool_plan(tmp_path)
    roles = {r.inputs["metadata"]["name"]: r.inputs["rules"] for r in p.by_type(CLUSTER_ROLE)}
    auth = roles["inference-gemma-3-1b-epp-auth"]
    assert {(r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in auth} == {
        ("authentication.k8s.io", "tokenreviews", ("create",)),
        ("authorization.k8s.io", "subjectaccessreviews", ("create",)),
    }
    assert roles["inference-gemma-3-1b-epp-metrics-reader"] == [
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}
    ]
    bindings = {r.inputs["metadata"]["name"]: r.inputs for r in p.by_type(CLUSTER_ROLE_BINDING)}
    assert bindings["inference-gemma-3-1b-epp-auth"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "gemma-3-1b-epp", "namespace": "inference"}
    ]
    assert bindings["inference-gemma-3-1b-epp-metrics-reader"]["subjects"][0]["name"] == (
        "gemma-3-1b-epp-metrics-reader"
    )


def test_pod_monitoring_scrapes_with_a_bearer_token(tmp_path: Path) -> None:
    p = pool_plan(tmp_path)
    monitoring = p.one(POD_MONITORING, "gemma-3-1b-epp-metrics").inputs["spec"]
    assert monitoring["selector"] == {"matchLabels": {"app.kubernetes.io/name": "gemma-3-1b-epp"}}
    (endpoint,) = monitoring["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["interval"] == "10s"
    secret_name = endpoint["authorization"]["credentials"]["secret"]["name"]
    token = p.one(SECRET, "gemma-3-1b-epp-metrics-token").inputs
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["name"] == secret_name
    assert token["metadata"]["annotations"] == {
        "kubernetes.io/service-account.name": "gemma-3-1b-epp-metrics-reader"
    }
    # Managed Prometheus' collector may read exactly that secret.
    read = p.one(ROLE, "gemma-3-1b-epp-metrics-secret-read").inputs["rules"]
    assert read[0]["resourceNames"] == [secret_name]
    collector = p.one(ROLE_BINDING, "gemma-3-1b-epp-metrics-collector").inputs["subjects"]
    assert collector == [{"kind": "ServiceAccount", "name": "collector", "namespace": "gmp-system"}]
    # The EPP Service still exposes metrics by port name for the pool's health.
    ports = [
        a["name"]
        for a in p.one(DEPLOYMENT, "gemma-3-1b-epp").inputs["spec"]["template"]["spec"][
            "containers"
        ][0]["ports"]
    ]
    assert "metrics" in ports


def test_pool_plan_is_valid_and_passes_policy(tmp_path: Path) -> None:
    p = pool_plan(tmp_path)
    assert [v.to_json() for v in check_plan(p).mandatory] == []
    assert validate_manifests(kubernetes_objects(p)) == []


def test_inference_pool_behind_the_global_external_gateway_is_refused(tmp_path: Path) -> None:
    external = (
        "gke-inference:inference.gateway.exposure=external",
        "gke-inference:inference.gateway.certificate=inference-cert",
    )
    try:
        p = pool_plan(tmp_path, *external)
    except SpecError as exc:
        assert "inference-pool" in str(exc) or "routing" in str(exc)
        return
    raise AssertionError(f"planned {len(p.by_type(POOL))} InferencePool behind {external[0]}")


def test_on_autopilot_the_collector_of_gke_gmp_system_reads_the_token(tmp_path: Path) -> None:
    # Managed collection runs in gke-gmp-system on Autopilot: the online
    # component passes the platform's mode down to the endpoint picker.
    p = pool_plan(tmp_path, "gke-inference:cluster.mode=autopilot")
    collector = p.one(ROLE_BINDING, "gemma-3-1b-epp-metrics-collector").inputs["subjects"]
    assert collector == [
        {"kind": "ServiceAccount", "name": "collector", "namespace": "gke-gmp-system"}
    ]
