"""The specs the runtime rehearsals (tests/test_runtime_*.py) run against, planned once.

Every shipped example except ComfyUI (it serves no model), and variants the
examples do not cover: a ``gs://`` model in another team's bucket, a
pre-quantized int4 checkpoint, batch on the same model, and a model read by
the Run:ai streamer. The TPU case is
the shipped Qwen3 example. Each case is the real workload program under the
mock runtime (``plan_workload``), so what is rehearsed is what would be applied.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.offline.planning import plan_workload
from gke_inference.offline.recording import Plan
from gke_inference.workloads.spec import WorkloadSpec, load_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "workloads" / "examples"

EXAMPLE_CASES = {
    "gemma-3-1b-l4": ("gemma-3-1b-l4.yaml", "dev"),
    "llama-3-3-70b-h100": ("llama-3-3-70b-h100.yaml", "prod"),
    "qwen3-32b-tpu-v6e": ("qwen3-32b-tpu-v6e.yaml", "prod"),
    "batch-llama-8b-l4": ("batch-llama-8b-l4.yaml", "dev"),
    "streaming-gemma-l4": ("streaming-gemma-l4.yaml", "dev"),
}
OTHER_BUCKET = "other-team-models"
# variant -> (example it starts from, stack, top-level changes, model changes)
VARIANTS: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "gs-other-bucket": (
        "gemma-3-1b-l4.yaml",
        "dev",
        {},
        {"id": f"gs://{OTHER_BUCKET}/checkpoints/gemma-3-1b-it"},
    ),
    "prequantized-int4": (
        "gemma-3-1b-l4.yaml",
        "dev",
        {"name": "llama-8b-awq", "precision": "int4"},
        {
            "id": "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
            "preset": "llama-3.1-8b",
            "prequantized": True,
        },
    ),
    # the Run:ai streamer instead of FUSE, on a tensor-parallel pair (distributed loading)
    "streamer-llama-8b": (
        "gemma-3-1b-l4.yaml",
        "dev",
        {"name": "llama-8b-stream", "tensorParallel": 2},
        {"id": "meta-llama/Llama-3.1-8B-Instruct", "preset": "llama-3.1-8b", "loader": "streamer"},
    ),
}
CASES = sorted([*EXAMPLE_CASES, *VARIANTS])
# the cases whose servers read the weights through a FUSE mount (the rest stream them)
FUSE_CASES = [c for c in CASES if not c.startswith("streamer-")]


def platform_model_bucket(stack: str) -> str:
    """The model bucket of the test platform stacks (Pulumi.<stack>.yaml)."""
    return f"acme-inference-{stack}-inf-{stack}-models"


@functools.cache
def _spec_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="runtime-specs-"))


def spec_file(case: str) -> tuple[Path, str]:
    if case in EXAMPLE_CASES:
        example, stack = EXAMPLE_CASES[case]
        return EXAMPLES / example, stack
    example, stack, changes, model = VARIANTS[case]
    data = yaml.safe_load((EXAMPLES / example).read_text())
    data.update(changes)
    data["model"].update(model)
    path = _spec_dir() / f"{case}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, stack


@dataclass(frozen=True)
class Case:
    name: str
    stack: str
    spec: WorkloadSpec
    plan: Plan

    def serving_pods(self) -> list[dict[str, Any]]:
        """Pod specs of the Deployments and Jobs that run vLLM (not the model download)."""
        pods = []
        for r in self.plan.resources:
            if r.type not in ("kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:Job"):
                continue
            template = r.inputs["spec"]["template"]
            if template["metadata"]["labels"].get("gke-inference/model-server") == "vllm":
                pods.append(dict(template["spec"]))
        assert pods, f"{self.name}: no vLLM pod"
        return pods

    def download_env(self) -> dict[str, str] | None:
        """The model download Job's environment, when the plan has one."""
        for r in self.plan.by_type("kubernetes:batch/v1:Job"):
            pod = r.inputs["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []):
                if c["name"] == "prepare":
                    return {e["name"]: e.get("value", "") for e in c["env"]}
        return None


@functools.cache
def case(name: str) -> Case:
    path, stack = spec_file(name)
    return Case(name, stack, load_spec(path), plan_workload(stack, str(path), project_dir=REPO))


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in containers(pod) if c["name"] == name]
    assert len(found) == 1, f"container {name}: {found}"
    return dict(found[0])


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in c.get("env", [])}


def flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    assert len(values) == 1, f"{name} in {args}"
    return values[0]


@pytest.mark.parametrize("name", CASES)
def test_every_case_plans_a_vllm_server(name: str) -> None:
    """A local path (the FUSE mount), or for the streamer the gs:// folder."""
    for pod in case(name).serving_pods():
        server = container(pod, "server")
        prefix = "/" if name in FUSE_CASES else "gs://"
        assert flag(server["args"], "--model").startswith(prefix)


def test_every_serving_example_is_rehearsed() -> None:
    shipped = {p.name for p in EXAMPLES.glob("*.yaml")} - {"comfyui-l4.yaml"}
    assert shipped == {example for example, _ in EXAMPLE_CASES.values()}
