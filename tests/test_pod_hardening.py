"""Every pod the project renders is hardened: Pod Security `restricted`, high uids,
service-account tokens only where the API server is called, probes or a reason.

The pods come from the rendered objects of the platform plans (dev, prod, Autopilot)
and of every example, plus the variants that render other pods (an inference pool,
a multi-host group). The checks are policy/pod_security.py's, which restates the
published Pod Security Standards; each control is also shown to refuse a pod that
breaks it, so a check that stopped working fails here.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.offline.manifests import kubernetes_objects
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.policy_check import check_plan
from gke_inference.offline.recording import Plan
from gke_inference.policy.pod_security import MIN_UID, project_problems, restricted_problems
from tests.conftest import platform_plan
from tests.support.examples import EXAMPLE_STACKS, EXAMPLES, REPO
from tests.support.netpol import pod_templates

L4_MACHINES = (
    'inference.accelerators=["g2-standard-8","g2-standard-24","g2-standard-48",'
    '"g2-standard-96","ct5lp-hightpu-4t"]'
)
BIG = {
    "name": "big",
    "kind": "online",
    "model": {"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"},
    "accelerator": "l4",
    "concurrency": 16,
    "scaling": {"minReplicas": 1, "maxReplicas": 3, "metric": "queue-depth"},
}


def _variants(tmp: Path) -> dict[str, Plan]:
    plans = {
        f"platform {stack} {' '.join(o)}": platform_plan(stack, *o)
        for stack in ("dev", "prod")
        for o in ((), ("cluster.mode=autopilot",))
    }
    for example, stack in EXAMPLE_STACKS.items():
        plans[example] = plan_workload(stack, str(EXAMPLES / example), project_dir=REPO)
    pool = yaml.safe_load((EXAMPLES / "gemma-3-1b-l4.yaml").read_text())
    pool["routing"] = {"mode": "inference-pool"}
    (tmp / "pool.yaml").write_text(yaml.safe_dump(pool))
    plans["inference pool"] = plan_workload("dev", str(tmp / "pool.yaml"), project_dir=REPO)
    disk = yaml.safe_load((EXAMPLES / "gemma-3-1b-l4.yaml").read_text())
    disk["model"].update(loader="hyperdisk-ml", hyperdiskMl={"zones": ["us-east4-a"]})
    (tmp / "disk.yaml").write_text(yaml.safe_dump(disk))
    plans["hyperdisk ml"] = plan_workload("dev", str(tmp / "disk.yaml"), project_dir=REPO)
    (tmp / "big.yaml").write_text(yaml.safe_dump(BIG))
    plans["multi-host"] = plan_workload(
        "dev", str(tmp / "big.yaml"), [L4_MACHINES], project_dir=REPO
    )
    return plans


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Plan]:
    return _variants(tmp_path_factory.mktemp("hardening"))


def rendered_pods(plans: Mapping[str, Plan]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, the object, pod template) for every pod template of every plan."""
    for name, plan in plans.items():
        for obj in kubernetes_objects(plan):
            for role, template, _ in pod_templates(obj):
                where = f"{name}: {obj['kind']} {obj['metadata']['name']} {role}".strip()
                yield where, obj, template


def test_the_variants_render_every_kind_of_pod(plans: Mapping[str, Plan]) -> None:
    kinds = {(obj["kind"], obj["metadata"]["name"]) for _, obj, _ in rendered_pods(plans)}
    names = {name for _, name in kinds}
    for expected in ("gemma-3-1b-epp", "big", "gemma-stream-worker", "llama-8b-batch"):
        assert expected in names
    assert any(n.startswith("gemma-3-1b-weights-") and n.endswith("-fill") for n in names)
    assert ("Deployment", "custom-metrics-stackdriver-adapter") in kinds
    assert ("LeaderWorkerSet", "big") in kinds


# --------------------------------------------------------------------------- Pod Security


def test_every_rendered_pod_meets_the_restricted_profile(plans: Mapping[str, Plan]) -> None:
    problems = [
        f"{where}: {p}"
        for where, _, template in rendered_pods(plans)
        for p in restricted_problems(template["spec"])
    ]
    assert problems == []


def test_every_container_runs_as_a_high_uid_on_a_read_only_root(
    plans: Mapping[str, Plan],
) -> None:
    problems = [
        f"{where}: {p}"
        for where, _, template in rendered_pods(plans)
        for p in project_problems(template["spec"])
    ]
    assert problems == []


def test_the_workload_namespace_enforces_restricted() -> None:
    objects = kubernetes_objects(platform_plan("dev"))
    (ns,) = [
        o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == "inference"
    ]
    labels = ns["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/enforce-version"] == "latest"


COMPLIANT: dict[str, Any] = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 10000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "app",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ],
    "volumes": [{"name": "tmp", "emptyDir": {}}],
}


def changed(path: str, value: Any) -> dict[str, Any]:
    """COMPLIANT with one field set (``a.b.0.c``: list indexes as numbers)."""
    pod = copy.deepcopy(COMPLIANT)
    node: Any = pod
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[keys[-1]] = value
    return pod


def test_the_compliant_pod_is_admitted() -> None:
    assert restricted_problems(COMPLIANT) == []
    assert project_problems(COMPLIANT) == []


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("hostNetwork", True, "hostNetwork is true"),
        ("hostPID", True, "hostPID is true"),
        ("containers.0.securityContext.privileged", True, "privileged is true"),
        ("containers.0.securityContext.capabilities.add", ["SYS_ADMIN"], "SYS_ADMIN"),
        ("containers.0.securityContext.capabilities.add", ["CHOWN"], "NET_BIND_SERVICE only"),
        ("containers.0.securityContext.capabilities.drop", ["NET_RAW"], "must contain ALL"),
        ("volumes", [{"name": "host", "hostPath": {"path": "/"}}], "hostPath"),
        ("volumes", [{"name": "n", "nfs": {"server": "x", "path": "/"}}], "of type nfs"),
        ("containers.0.ports", [{"containerPort": 80, "hostPort": 80}], "hostPort"),
        ("containers.0.securityContext.allowPrivilegeEscalation", True, "must be false"),
        ("securityContext.runAsNonRoot", False, "runAsNonRoot must be true"),
        ("containers.0.securityContext.runAsUser", 0, "runAsUser is 0"),
        ("securityContext.seccompProfile", {"type": "Unconfined"}, "Unconfined"),
        ("containers.0.securityContext.procMount", "Unmasked", "procMount"),
        ("securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}], "safe sysctl"),
        ("securityContext.seLinuxOptions", {"type": "spc_t"}, "not a container type"),
        ("containers.0.securityContext.appArmorProfile", {"type": "Unconfined"}, "appArmor"),
    ],
)
def test_each_restricted_control_refuses_a_pod_that_breaks_it(
    path: str, value: Any, expected: str
) -> None:
    problems = restricted_problems(changed(path, value))
    assert len(problems) >= 1 and any(expected in p for p in problems), problems


def test_a_pod_without_seccomp_anywhere_is_refused() -> None:
    pod = copy.deepcopy(COMPLIANT)
    del pod["securityContext"]["seccompProfile"]
    (problem,) = restricted_problems(pod)
    assert "seccompProfile.type must be RuntimeDefault or Localhost" in problem


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("securityContext.runAsUser", 1000, f"runs as uid 1000.0; set runAsUser >= {MIN_UID}"),
        ("containers.0.securityContext.readOnlyRootFilesystem", False, "readOnlyRootFilesystem"),
    ],
)
def test_the_project_floor_refuses_low_uids_and_writable_roots(
    path: str, value: Any, expected: str
) -> None:
    (problem,) = project_problems(changed(path, value))
    assert expected in problem


def test_the_policy_pack_refuses_a_workload_the_namespace_would_refuse(tmp_path: Path) -> None:
    """Through the pack, as CI runs it: a Deployment with a privileged container."""
    plan = plan_workload("dev", str(EXAMPLES / "gemma-3-1b-l4.yaml"), project_dir=REPO)
    deployment = next(r for r in plan.resources if r.type == "kubernetes:apps/v1:Deployment")
    container = deployment.inputs["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["privileged"] = True
    container["securityContext"]["runAsUser"] = 1000
    found = {(v.policy, v.message.split(": ")[-1]) for v in check_plan(plan).mandatory}
    assert ("k8s-pod-security-restricted", "securityContext.privileged is true.") in found
    assert any(p == "k8s-high-uid-read-only-root" and "uid 1000" in m for p, m in found)


# --------------------------------------------------------------------------- tokens, RBAC


def test_only_pods_that_call_the_api_server_get_a_token(plans: Mapping[str, Plan]) -> None:
    """Explicit everywhere: true for the endpoint picker and the metrics adapter (an
    aggregated API server), false for every other pod."""
    with_token = set()
    for where, obj, template in rendered_pods(plans):
        automount = template["spec"].get("automountServiceAccountToken")
        assert automount in (True, False), f"{where} leaves automountServiceAccountToken unset"
        if automount:
            with_token.add(obj["metadata"]["name"])
    assert with_token == {"gemma-3-1b-epp", "custom-metrics-stackdriver-adapter"}


def test_the_endpoint_pickers_rbac_only_reads(plans: Mapping[str, Plan]) -> None:
    objects = kubernetes_objects(plans["inference pool"])
    roles = {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole") and "epp" in o["metadata"]["name"]
    }
    rules = [(o["kind"], r) for o in roles.values() for r in o["rules"]]
    reads = {"get", "list", "watch"}
    for kind, rule in rules:
        verbs = set(rule["verbs"])
        if set(rule.get("resources") or []) == {"secrets"}:
            assert verbs <= reads and rule["resourceNames"], rule  # the metrics token only
        elif kind == "Role":
            # its pool, the pool's pods, objectives and model rewrites, in its namespace only
            assert verbs <= reads, rule
            assert set(rule["resources"]) <= {
                "pods",
                "inferencepools",
                "inferenceobjectives",
                "inferencemodelrewrites",
            }
        elif "nonResourceURLs" in rule:
            assert rule == {"nonResourceURLs": ["/metrics"], "verbs": ["get"]}
        else:
            # authenticating /metrics scrapers (controller-runtime's filter)
            assert verbs == {"create"}, rule
            assert set(rule["resources"]) <= {"tokenreviews", "subjectaccessreviews"}
    assert all(r["kind"] != "ClusterRole" or "secrets" not in str(r) for r in roles.values())


# --------------------------------------------------------------------------- probes

# Containers without readiness and liveness probes: (object kind, container) -> the
# file whose comment says why.
WITHOUT_PROBES = {
    ("Deployment", "prefetch"): "workloads/pods.py",  # a sidecar's readiness gates the pod
    ("Job", "prefetch"): "workloads/pods.py",
    ("LeaderWorkerSet", "prefetch"): "workloads/pods.py",
    ("LeaderWorkerSet", "worker"): "workloads/multihost.py",  # the group's readiness: leader
    ("Job", "worker"): "workloads/batch.py",  # runs to completion
    ("Job", "upload"): "workloads/model_download.py",  # init steps cannot have probes
    ("Job", "fill"): "workloads/hyperdisk.py",  # runs to completion, nothing calls it
}


def test_every_long_running_container_has_readiness_and_liveness_probes(
    plans: Mapping[str, Plan],
) -> None:
    missing = set()
    for where, obj, template in rendered_pods(plans):
        spec = template["spec"]
        running = [
            *spec["containers"],
            *(c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"),
        ]
        for c in running:
            if not (c.get("readinessProbe") and c.get("livenessProbe")):
                key = (obj["kind"], c["name"])
                missing.add(key)
                assert key in WITHOUT_PROBES, f"{where}: {c['name']} has no probes"
    assert missing == set(WITHOUT_PROBES)
    for source in set(WITHOUT_PROBES.values()):
        assert "No probes" in (REPO / source).read_text(), source
