"""Multi-host serving: a replica that spans nodes plans to one LeaderWorkerSet group,
and the group's launch scripts are rehearsed with stand-ins for Ray and vLLM."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gke_inference.inference.leader_worker_set import LWS_MANIFESTS_URL, LWS_VERSION
from gke_inference.offline.manifests import kubernetes_objects, validate_manifests
from gke_inference.offline.planning import plan_platform, plan_workload
from gke_inference.offline.policy_check import check_resources
from gke_inference.offline.recording import Plan
from gke_inference.workloads.kinds import deployment_for
from gke_inference.workloads.loading import startup_seconds
from gke_inference.workloads.multihost import (
    GROUP_ASSEMBLY_SECONDS,
    LWS_WORKER_INDEX_LABEL,
    leader_script,
    worker_script,
)
from gke_inference.workloads.spec import load_spec
from gke_inference.workloads.vllm_server import flag_problems, server_version, table

REPO = Path(__file__).resolve().parents[1]
# dev with the 8-L4 machine enabled (its class must exist for the group's nodes)
ACCELERATORS = 'inference.accelerators=["g2-standard-8","g2-standard-24","g2-standard-48",' \
    '"g2-standard-96","ct5lp-hightpu-4t"]'  # fmt: skip
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
BIG = """\
name: big
kind: online
model: {id: meta-llama/Llama-3.3-70B-Instruct, preset: llama-3.3-70b}
accelerator: l4
concurrency: 16
scaling: {minReplicas: 1, maxReplicas: 3, metric: queue-depth}
"""


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("multihost") / "big.yaml"
    path.write_text(BIG)
    return path


@pytest.fixture(scope="module")
def plan(spec_file: Path) -> Plan:
    return plan_workload("dev", str(spec_file), [ACCELERATORS], project_dir=REPO)


def group(plan: Plan) -> dict[str, Any]:
    return dict(plan.one(LWS).inputs)


def template(plan: Plan, role: str) -> dict[str, Any]:
    return dict(group(plan)["spec"]["leaderWorkerTemplate"][f"{role}Template"])


def test_seventy_b_on_l4_is_one_group_of_two_nodes(plan: Plan) -> None:
    lws = group(plan)
    assert (lws["apiVersion"], lws["kind"]) == ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
    spec = lws["spec"]
    assert spec["replicas"] == 1
    assert spec["leaderWorkerTemplate"]["size"] == 2
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    # LeaderReady would deadlock: the leader is ready only once workers joined
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["rolloutStrategy"]["rollingUpdateConfiguration"] == {
        "maxSurge": 1,
        "maxUnavailable": 0,
    }
    assert not plan.by_type("kubernetes:apps/v1:Deployment")
    assert validate_manifests(kubernetes_objects(plan)) == []


def test_every_pod_of_the_group_takes_a_whole_node_of_the_class(plan: Plan) -> None:
    for role in ("leader", "worker"):
        pod = template(plan, role)["spec"]
        assert pod["nodeSelector"] == {"cloud.google.com/compute-class": "gpu-l4-x8"}
        (container,) = pod["containers"]
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        # each stage reads its layers from the same mount, under the same identity
        assert pod["serviceAccountName"] == "big"
        assert any(v["name"] == "model" and "csi" in v for v in pod["volumes"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        # each stage compiles its own ranks into the shared compile cache
        assert {"/models", "/tmp", "/dev/shm", "/vllm-cache"} <= mounts
        env = {e["name"]: e for e in container["env"]}
        assert env["VLLM_CACHE_ROOT"]["value"] == "/vllm-cache"
        assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["NCCL_SOCKET_IFNAME"]["value"] == "eth0"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_leader_runs_the_sized_server_with_pipeline_stages_over_ray(plan: Plan) -> None:
    (leader,) = template(plan, "leader")["spec"]["containers"]
    assert leader["command"][:2] == ["/bin/sh", "-c"] and leader["command"][3] == "vllm"
    args = leader["args"]
    for flag in (
        "--tensor-parallel-size=8",
        "--pipeline-parallel-size=2",
        "--distributed-executor-backend=ray",
    ):
        assert flag in args
    # the pinned server's own parser accepts every flag
    version = server_version("vllm-gpu")
    assert flag_problems(args, table(version)) == []
    (worker,) = template(plan, "worker")["spec"]["containers"]
    assert "startupProbe" not in worker and "ports" not in worker


def test_startup_budget_is_the_single_node_one_plus_group_assembly(
    plan: Plan, spec_file: Path
) -> None:
    sizing = deployment_for(load_spec(str(spec_file))).require_sizing()
    (leader,) = template(plan, "leader")["spec"]["containers"]
    expected = math.ceil((startup_seconds(sizing) + GROUP_ASSEMBLY_SECONDS) / 10)
    assert leader["startupProbe"]["failureThreshold"] == expected


def test_leaders_serve_scale_and_the_group_is_the_unit_of_disruption(plan: Plan) -> None:
    service = plan.one("kubernetes:core/v1:Service").inputs
    assert service["spec"]["selector"] == {
        "leaderworkerset.sigs.k8s.io/name": "big",
        LWS_WORKER_INDEX_LABEL: "0",
    }
    hpa = plan.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "name": "big",
    }
    pdb = plan.one("kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    assert pdb["selector"]["matchLabels"] == {"app.kubernetes.io/name": "big"}
    for role in ("leader", "worker"):  # the PDB covers every pod of every group
        labels = template(plan, role)["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "big"


def test_the_platform_installs_the_pinned_lws_release() -> None:
    platform = plan_platform("dev", None, REPO)
    (manifests,) = platform.by_type("kubernetes:yaml/v2:ConfigFile")
    assert manifests.inputs["file"] == LWS_MANIFESTS_URL
    assert LWS_VERSION in LWS_MANIFESTS_URL and "/releases/download/" in LWS_MANIFESTS_URL


# --------------------------------------------------------------------------- rehearsals


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stand_ins(tmp: Path, nodes_after: int | None) -> dict[str, str]:
    """A `ray` CLI that records its arguments, a `ray` module whose cluster grows by a
    node per poll (up to ``nodes_after`` polls; None: never), and a vLLM entrypoint
    that records the argv it was exec'd with."""
    bin_dir, lib = tmp / "bin", tmp / "lib"
    (lib / "vllm" / "entrypoints" / "openai").mkdir(parents=True)
    bin_dir.mkdir()
    ray_cli = bin_dir / "ray"
    ray_cli.write_text(
        f'#!/bin/sh\necho "$@" >> {tmp}/ray-calls\n'
        'case "$*" in *--block*) echo blocked >> ' + f"{tmp}/ray-calls;; esac\n"
    )
    ray_cli.chmod(0o755)
    (lib / "ray.py").write_text(
        textwrap.dedent(f"""\
        import pathlib
        _polls = pathlib.Path({str(tmp)!r}) / "polls"
        def init(**kwargs):
            pass
        def nodes():
            n = int(_polls.read_text()) + 1 if _polls.exists() else 1
            _polls.write_text(str(n))
            alive = 1 if {nodes_after!r} is None else min(n, {nodes_after!r})
            return [{{"Alive": True}}] * alive
        """)
    )
    for pkg in ("vllm", "vllm/entrypoints", "vllm/entrypoints/openai"):
        (lib / pkg / "__init__.py").write_text("")
    (lib / "vllm/entrypoints/openai/api_server.py").write_text(
        f"import sys, pathlib\npathlib.Path({str(tmp)!r}, 'served').write_text("
        "'\\n'.join(sys.argv[1:]))\n"
    )
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(lib),
        "POD_IP": "127.0.0.1",
        "LWS_GROUP_SIZE": "3",
        "LWS_LEADER_ADDRESS": "127.0.0.1",
    }


def test_leader_starts_the_head_waits_for_the_group_then_execs_the_server(
    tmp_path: Path,
) -> None:
    env = _stand_ins(tmp_path, nodes_after=3)
    script = leader_script(port=7000, assembly=30, poll=0)
    flags = ["--model=/models", "--served-model-name=a b", "--pipeline-parallel-size=3"]
    done = subprocess.run(
        ["/bin/sh", "-c", script, "vllm", *flags], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "ray-calls").read_text().splitlines()
    assert calls[0].startswith("start --head --port=7000 --node-ip-address=127.0.0.1")
    assert int((tmp_path / "polls").read_text()) == 3  # polled until 3 of 3 nodes joined
    assert "waiting for Ray nodes: 1 of 3" in done.stdout
    # exec'd with exactly the rendered flags, a space inside one kept intact
    assert (tmp_path / "served").read_text().splitlines() == flags


def test_leader_gives_up_when_the_group_never_assembles(tmp_path: Path) -> None:
    env = _stand_ins(tmp_path, nodes_after=None)
    done = subprocess.run(
        ["/bin/sh", "-c", leader_script(port=7000, assembly=1, poll=0), "vllm", "--x"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "only 1 of 3 Ray nodes joined in 1 s" in done.stderr
    assert not (tmp_path / "served").exists()  # the server never started half a model


def test_worker_waits_for_the_head_then_joins_and_blocks(tmp_path: Path) -> None:
    env = _stand_ins(tmp_path, nodes_after=1)
    port = _free_port()
    listener = socket.socket()

    def open_head_later() -> None:
        time.sleep(1.5)
        listener.bind(("127.0.0.1", port))
        listener.listen()

    opener = threading.Thread(target=open_head_later)
    opener.start()
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", worker_script(port=port, assembly=30, poll=1)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        opener.join()
        listener.close()
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 1.5  # it waited for the head, not crash-looped
    calls = (tmp_path / "ray-calls").read_text().splitlines()
    assert calls[0].startswith(f"start --address=127.0.0.1:{port} --node-ip-address=127.0.0.1")
    assert calls[0].endswith("--block") and calls[1] == "blocked"


def test_worker_gives_up_when_the_head_never_comes(tmp_path: Path) -> None:
    env = _stand_ins(tmp_path, nodes_after=1)
    port = _free_port()
    done = subprocess.run(
        ["/bin/sh", "-c", worker_script(port=port, assembly=2, poll=1)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert f"Ray head 127.0.0.1:{port} unreachable for 2 s" in done.stderr
    assert not (tmp_path / "ray-calls").exists()


# --------------------------------------------------------------------------- policy


def test_the_online_workload_rules_cover_a_leader_worker_set(plan: Plan) -> None:
    assert [v.policy for v in check_resources(plan.resources).violations] == []
    lws = plan.one(LWS)
    without_hpa = [r for r in plan.resources if r.type != HPA]
    report = check_resources(without_hpa)
    assert [(v.policy, v.urn) for v in report.violations] == [
        ("k8s-online-workload-has-hpa", lws.urn)
    ]
    assert "scaleTargetRef {kind: LeaderWorkerSet, name: big}" in report.violations[0].message
    # the leaders serve: their server needs a readiness probe; workers serve nothing
    inputs = copy.deepcopy(lws.inputs)
    del inputs["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0][
        "readinessProbe"
    ]
    unready = [dataclasses.replace(r, inputs=inputs) if r is lws else r for r in plan.resources]
    assert [v.policy for v in check_resources(unready).violations] == [
        "k8s-online-workload-readiness-probe"
    ]
