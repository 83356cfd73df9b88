"""Rehearsal: the rendered containers' processes under a uid the image does not know.

The vLLM and worker images have no passwd entry for the uids we run them as,
and ``import vllm`` reaches ``getpass.getuser()`` (torch inductor's cache
dir). A child Python runs with exactly the rendered environment under an
unused uid: ``getuser()`` must answer, and (so this test can fail) it must
raise ``KeyError`` once the user variables are taken away.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from typing import Any

import pytest

from tests.test_runtime_cases import CASES, FUSE_CASES, case, containers, env_of

GETUSER = "import getpass; print(getpass.getuser())"
USER_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")  # what getpass.getuser() reads

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="running a child under another uid needs root (CI runs as root)"
)


def unknown_uid(preferred: int) -> int:
    """The rendered uid when this machine has no passwd entry for it either, else a free one."""
    for uid in (preferred, *range(54321, 54421)):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("no free uid")  # pragma: no cover


def interpreter() -> str:
    """A python3 that another uid may execute (the venv's may live under /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run(
                [candidate, "-I", "-S", "-c", "pass"], user=54999, env={}, check=False
            )
            if probe.returncode == 0:
                return candidate
    pytest.skip("no python3 executable by an unprivileged uid on this machine")


def run_as(uid: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [interpreter(), "-I", "-S", "-c", GETUSER],
        user=uid,
        group=uid,
        extra_groups=[],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def run_as_uid(pod: dict[str, Any], c: dict[str, Any]) -> int:
    security = c.get("securityContext") or {}
    uid = security.get("runAsUser") or pod["securityContext"]["runAsUser"]
    return int(uid)


@pytest.mark.parametrize("name", CASES)
def test_every_container_knows_its_user_name_without_a_passwd_entry(name: str) -> None:
    c = case(name)
    pods = c.serving_pods()
    pods += [
        dict(r.inputs["spec"]["template"]["spec"])
        for r in c.plan.by_type("kubernetes:apps/v1:Deployment")
        if r.inputs["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
        == "worker"
    ]
    checked = []
    for pod in pods:
        for container in containers(pod):
            uid = unknown_uid(run_as_uid(pod, container))
            env = env_of(container)
            result = run_as(uid, env)
            assert result.returncode == 0, f"{name}/{container['name']}: {result.stderr}"
            assert result.stdout.strip() == env["USER"]
            bare = {k: v for k, v in env.items() if k not in USER_VARIABLES}
            failed = run_as(uid, bare)
            assert failed.returncode != 0 and "uid not found" in failed.stderr
            checked.append(container["name"])
    assert "server" in checked
    if name in FUSE_CASES:  # the streamer has no prefetch sidecar
        assert "prefetch" in checked
    if c.spec.kind in ("batch", "streaming"):
        assert "worker" in checked


@pytest.mark.parametrize(
    ("example", "stack", "job_or_deployment", "name"),
    [
        ("comfyui-l4.yaml", "dev", "kubernetes:apps/v1:Deployment", "comfyui-server"),
        ("batch-llama-8b-l4.yaml", "dev", "kubernetes:batch/v1:Job", "llama-8b-batch-model-download-job"),
    ],
)  # fmt: skip
def test_comfyui_and_model_download_know_their_user_name(
    example: str, stack: str, job_or_deployment: str, name: str
) -> None:
    from gke_inference.offline.planning import plan_workload
    from tests.test_runtime_cases import EXAMPLES, REPO

    plan = plan_workload(stack, str(EXAMPLES / example), project_dir=REPO)
    pod = dict(plan.one(job_or_deployment, name).inputs["spec"]["template"]["spec"])
    for container in containers(pod):
        uid = unknown_uid(run_as_uid(pod, container))
        env = env_of(container)
        assert run_as(uid, env).stdout.strip() == env["USER"], container["name"]
        bare = {k: v for k, v in env.items() if k not in USER_VARIABLES}
        assert "uid not found" in run_as(uid, bare).stderr
