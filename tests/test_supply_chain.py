"""Pinned images and admission that matches the cluster (issue 17, items 2 and 3).

A production stack runs every image by digest (configuration: ``images.digests``,
resolved by ``scripts/pin_images.py``), and every image a workload renders must be
one its cluster's Binary Authorization policy admits. Both are checked three
times: the spec's own images before any resource (exit 2 / HTTP 422), every
rendered container by the mandatory policies ``images-pinned-by-digest`` and
``images-admitted-by-binary-authorization``, and the pins themselves in settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.core.admission import admitted, pattern_matches
from gke_inference.core.errors import SettingsError, SpecError
from gke_inference.core.images import PINNED_IMAGES, has_digest, image_tag, with_digest
from gke_inference.core.settings import parse_settings
from gke_inference.inference.leader_worker_set import (
    UPSTREAM_CONTROLLER_IMAGE,
    pin_controller_image,
)
from gke_inference.offline.planning import plan_platform, plan_workload
from gke_inference.offline.policy_check import check_plan, check_resources, resources_from_plan_json
from gke_inference.offline.recording import Plan
from gke_inference.policy.rules_kubernetes import containers, pod_specs
from tests.support.examples import EXAMPLES, REPO
from tests.support.pinning import TEST_DIGESTS

PROD_REGISTRY = "us-central1-docker.pkg.dev/acme-inference-prod"
RULES = ("images-pinned-by-digest", "images-admitted-by-binary-authorization")


def images_of(plan: Plan) -> dict[str, str]:
    """``<resource name>/<container path>`` -> image, for every container of the plan."""
    found = {}
    for r in plan.resources:
        for pod in pod_specs(r.type, r.inputs):
            for path, container in containers(pod):
                found[f"{r.name}/{path}"] = str(container.get("image"))
    return found


def violations(plan: Plan, rule: str) -> list[str]:
    return [v.message for v in check_plan(plan).mandatory if v.policy == rule]


def write_spec(tmp_path: Path, example: str, path: list[str], value: Any) -> str:
    data = yaml.safe_load((EXAMPLES / example).read_text())
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    out = tmp_path / example
    out.write_text(yaml.safe_dump(data))
    return str(out)


# --------------------------------------------------------------------------- the shipped prod stack


def test_the_shipped_prod_stack_fails_until_its_images_are_pinned(unpinned_prod: None) -> None:
    plan = plan_platform("prod", [], project_dir=REPO)
    found = violations(plan, "images-pinned-by-digest")
    assert len(found) == 1
    assert "custom-metrics-stackdriver-adapter:v0.16.7-gke.0 has no digest" in found[0]
    assert "scripts/pin_images.py" in found[0]
    assert plan.outputs["imageDigests"] == {}
    assert plan.outputs["imageDigestsRequired"] is True


def test_a_pinned_prod_platform_runs_its_images_by_digest(plan_of: Any) -> None:
    plan = plan_of("prod")
    (adapter,) = images_of(plan).values()
    assert adapter == f"{PINNED_IMAGES['metrics-adapter'].ref}@{TEST_DIGESTS['metrics-adapter']}"
    assert plan.outputs["imageDigests"] == dict(sorted(TEST_DIGESTS.items()))
    assert plan.outputs["binaryAuthorizationAllowlist"] == [f"{PROD_REGISTRY}/**"]
    for rule in RULES:
        assert violations(plan, rule) == []


def test_dev_needs_no_digests_and_enforces_no_admission(plan_of: Any) -> None:
    plan = plan_of("dev")
    assert plan.outputs["imageDigestsRequired"] is False
    assert plan.outputs["binaryAuthorizationAllowlist"] == []
    report = check_plan(plan)
    not_applicable = {name for name, _, _ in report.not_applicable}
    assert set(RULES) <= not_applicable


@pytest.mark.parametrize("example", ["llama-3-3-70b-h100.yaml", "qwen3-32b-tpu-v6e.yaml"])
def test_prod_workloads_pull_every_image_through_the_registry_by_digest(example: str) -> None:
    plan = plan_workload("prod", str(EXAMPLES / example), project_dir=REPO)
    images = images_of(plan)
    assert images
    for where, image in images.items():
        assert image.startswith(f"{PROD_REGISTRY}/"), where
        assert has_digest(image), where
    by_ref = {image.split("@")[0]: image.split("@")[1] for image in images.values()}
    for name, pinned in PINNED_IMAGES.items():
        for ref, digest in by_ref.items():
            if ref.endswith("/" + pinned.ref):
                assert digest == TEST_DIGESTS[name], (name, ref)
    for rule in RULES:
        assert violations(plan, rule) == []


# --------------------------------------------------------------------------- a spec's own images


def test_the_dev_comfyui_image_is_refused_in_prod_before_any_resource() -> None:
    with pytest.raises(SpecError) as refused:
        plan_workload("prod", str(EXAMPLES / "comfyui-l4.yaml"), project_dir=REPO)
    (problem,) = refused.value.problems
    assert problem.path == "comfyui.image"
    assert "acme-inference-dev/inference/comfyui" in problem.message
    assert f"{PROD_REGISTRY}/**" in problem.message


def test_a_spec_image_without_digest_is_refused_in_prod(tmp_path: Path) -> None:
    image = f"{PROD_REGISTRY}/inference/comfyui:0.3.66-cu128"
    spec = write_spec(tmp_path, "comfyui-l4.yaml", ["comfyui", "image"], image)
    with pytest.raises(SpecError) as refused:
        plan_workload("prod", spec, project_dir=REPO)
    (problem,) = refused.value.problems
    assert problem.path == "comfyui.image"
    assert "not pinned by digest" in problem.message


def test_a_spec_image_with_tag_and_digest_from_the_registry_plans_in_prod(tmp_path: Path) -> None:
    image = f"{PROD_REGISTRY}/inference/comfyui:0.3.66-cu128@sha256:{'ab' * 32}"
    spec = write_spec(tmp_path, "comfyui-l4.yaml", ["comfyui", "image"], image)
    plan = plan_workload("prod", spec, project_dir=REPO)
    assert image in images_of(plan).values()
    for rule in RULES:
        assert violations(plan, rule) == []


def test_the_cli_refuses_a_non_admitted_image_with_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gke_inference", "plan", "-s", "prod", "-w",
         str(EXAMPLES / "comfyui-l4.yaml")],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "comfyui.image" in done.stderr and "allow-list" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- the policies over rendered objects


def _edited(plan: Plan, image: str) -> list[Any]:
    """The plan's resources (through its saved JSON) with the first container of the
    first pod-bearing object running ``image``."""
    resources = resources_from_plan_json(json.loads(json.dumps(plan.to_json())))
    for r in resources:
        for pod in pod_specs(r.type, r.inputs):
            for _, container in containers(pod):
                container["image"] = image  # type: ignore[index]
                return resources
    raise AssertionError("no pod-bearing object")


def test_the_policies_see_the_platforms_allow_list_through_the_stack_reference() -> None:
    plan = plan_workload("prod", str(EXAMPLES / "llama-3-3-70b-h100.yaml"), project_dir=REPO)
    (reference,) = [r for r in plan.resources if r.type == "pulumi:pulumi:StackReference"]
    outputs = reference.state["outputs"]
    assert outputs["binaryAuthorizationAllowlist"] == [f"{PROD_REGISTRY}/**"]
    assert outputs["kubeconfig"] == "[secret]"  # secrets stay masked for policies
    # docker.io is outside the allow-list; a tag alone is not a digest
    report = check_resources(_edited(plan, "docker.io/vllm/vllm-openai:v0.11.2"))
    fired = {v.policy for v in report.mandatory}
    assert set(RULES) <= fired
    message = next(v.message for v in report.mandatory if v.policy == RULES[1])
    assert "docker.io/vllm/vllm-openai:v0.11.2 is outside the allow-list" in message


def test_gke_system_images_are_admitted_as_the_cluster_exempts_them() -> None:
    plan = plan_workload("prod", str(EXAMPLES / "llama-3-3-70b-h100.yaml"), project_dir=REPO)
    image = f"gcr.io/gke-release/some-agent:v1@sha256:{'cd' * 32}"
    report = check_resources(_edited(plan, image))
    assert not [v for v in report.mandatory if v.policy in RULES]


# --------------------------------------------------------------------------- admission patterns


@pytest.mark.parametrize(
    ("pattern", "image", "matches"),
    [
        (f"{PROD_REGISTRY}/**", f"{PROD_REGISTRY}/docker-hub/vllm/vllm-openai:v0.11.2", True),
        (f"{PROD_REGISTRY}/**", "us-central1-docker.pkg.dev/acme-inference-dev/x:1", False),
        (f"{PROD_REGISTRY}/*", f"{PROD_REGISTRY}/inference/worker:1", False),  # one segment
        (f"{PROD_REGISTRY}/inference/*", f"{PROD_REGISTRY}/inference/worker:1", True),
        ("gcr.io/gke-release/**", "gcr.io/gke-release-evil/x:1", False),
    ],
)
def test_name_patterns_match_like_binary_authorization(
    pattern: str, image: str, matches: bool
) -> None:
    assert pattern_matches(pattern, image) is matches


def test_admission_exempts_system_images_only_when_asked() -> None:
    image = "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.16.7-gke.0"
    assert admitted(image, [f"{PROD_REGISTRY}/**"])
    assert not admitted(image, [f"{PROD_REGISTRY}/**"], system_exempt=False)


def test_digests_and_tags() -> None:
    digest = "sha256:" + "0" * 64
    assert with_digest("a/b:1", digest) == f"a/b:1@{digest}"
    assert with_digest(f"a/b:1@{digest}", "sha256:" + "1" * 64) == f"a/b:1@{digest}"
    assert image_tag(f"registry:5000/a/b:v1@{digest}") == "v1"
    assert image_tag(f"a/b@{digest}") == "unknown"
    assert not has_digest("a/b:sha256")


# --------------------------------------------------------------------------- the LWS controller


def _upstream_controller() -> dict[str, Any]:
    container = {"name": "manager", "image": UPSTREAM_CONTROLLER_IMAGE, "args": ["--zap-devel"]}
    return {"spec": {"template": {"spec": {"containers": [container]}}}}


def test_the_lws_controller_is_pulled_through_the_registry_k8s_remote() -> None:
    settings = parse_settings(
        {"project": "acme-inference-prod", "region": "us-central1",
         "images": {"digests": {"lws-controller": TEST_DIGESTS["lws-controller"]}}},
        "prod",
    )  # fmt: skip
    image = settings.platform_image("lws-controller")
    assert image == (
        f"{PROD_REGISTRY}/registry-k8s/lws/lws:v0.10.0@{TEST_DIGESTS['lws-controller']}"
    )
    props = pin_controller_image("Deployment", _upstream_controller(), image)
    assert props is not None
    assert props["spec"]["template"]["spec"]["containers"][0]["image"] == image
    assert admitted(image, [f"{PROD_REGISTRY}/**"])
    assert pin_controller_image("Service", _upstream_controller(), image) is None
    other = _upstream_controller()
    other["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.k8s.io/other:v1"
    assert pin_controller_image("Deployment", other, image) is None


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ({"digests": {"vllm": "sha256:" + "0" * 64}}, "'vllm' is not a pinned image; accepted: vllm-gpu"),
        ({"digests": {"vllm-gpu": "sha256:0"}}, "images.digests.vllm-gpu"),
        ({"requireDigests": False}, "images.requireDigests: must be true in a production stack"),
    ],
)  # fmt: skip
def test_image_settings_errors(images: dict[str, Any], expected: str) -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings({"project": "acme-inference-prod", "images": images}, "prod")
    assert expected in str(error.value)


def test_binary_authorization_needs_the_remotes_the_pinned_images_come_through() -> None:
    with pytest.raises(SettingsError) as error:
        parse_settings(
            {"project": "acme-inference-prod",
             "registry": {"remotes": [{"name": "docker-hub", "upstream": "docker-hub"}]}},
            "prod",
        )  # fmt: skip
    assert "registry.remotes" in str(error.value) and "registry-k8s" in str(error.value)


# --------------------------------------------------------------------------- scripts/pin_images.py


def _fake_resolver(tmp_path: Path, body: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    crane = bin_dir / "crane"
    crane.write_text("#!/bin/sh\n" + body)
    crane.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _pin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "pin_images.py"), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_pin_images_prints_one_config_command_per_image(tmp_path: Path) -> None:
    # the stand-in resolver answers sha256(<the reference it was asked about>)
    env = _fake_resolver(
        tmp_path, 'printf "sha256:%s\\n" "$(printf %s "$2" | sha256sum | cut -c1-64)"\n'
    )
    done = _pin(env, "--stack", "prod", "--resolver", "crane")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == len(PINNED_IMAGES)
    for name, image in PINNED_IMAGES.items():
        ref = (
            f"{PROD_REGISTRY}/inference/{image.ref}" if image.source == "team" else image.public_ref
        )
        import hashlib

        digest = "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
        assert (
            f"pulumi config set --stack prod --path gke-inference:images.digests.{name} {digest}"
            in lines
        )


def test_pin_images_reports_a_failing_resolver_with_exit_3(tmp_path: Path) -> None:
    env = _fake_resolver(tmp_path, 'echo "MANIFEST_UNKNOWN: manifest unknown" >&2; exit 1\n')
    done = _pin(env, "--stack", "prod", "--resolver", "crane", "--only", "vllm-gpu")
    assert done.returncode == 3
    assert "docker.io/vllm/vllm-openai:v0.11.2" in done.stderr
    assert "MANIFEST_UNKNOWN" in done.stderr
    assert "Traceback" not in done.stderr


def test_pin_images_without_a_resolver_is_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}
    done = _pin(env, "--stack", "prod", "--resolver", "crane")
    assert done.returncode == 2
    assert "crane" in done.stderr and "Traceback" not in done.stderr
