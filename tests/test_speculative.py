"""Speculative decoding: the config the pinned server reads, the draft's memory and mount."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.core.errors import SpecError
from gke_inference.offline.planning import plan_workload
from gke_inference.workloads import speculative
from gke_inference.workloads.kinds import deployment_for
from gke_inference.workloads.sizing import size
from gke_inference.workloads.spec import parse_spec
from gke_inference.workloads.vllm_server import flag_problems, table
from tests.test_runtime_filesystem import container_view, inside

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3
DRAFT = {"path": "gs://acme-drafts/eagle3-llama-3.1-8b", "parametersBillions": 0.85}
# vllm/config/speculative.py v0.11.2: SpeculativeMethod and the fields rendered here
VLLM_METHODS = {"ngram", "medusa", "mlp_speculator", "draft_model", "suffix", "eagle", "eagle3"}
CONFIG_FIELDS = {
    "method",
    "num_speculative_tokens",
    "model",
    "prompt_lookup_min",
    "prompt_lookup_max",
}


def spec_data(**speculative_settings: Any) -> dict[str, Any]:
    return {
        "name": "llama-spec",
        "kind": "online",
        "model": {"id": "meta-llama/Llama-3.1-8B-Instruct", "preset": "llama-3.1-8b"},
        "accelerator": "l4",
        "tensorParallel": 2,
        "speculative": speculative_settings,
    }


def server(tmp_path: Path, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    file = tmp_path / "spec.yaml"
    file.write_text(yaml.safe_dump(data))
    plan = plan_workload("dev", str(file), project_dir=REPO)
    deployment = plan.one("kubernetes:apps/v1:Deployment")
    pod = dict(deployment.inputs["spec"]["template"]["spec"])
    return pod, pod["containers"][0]


def config_of(container: dict[str, Any]) -> dict[str, Any]:
    (arg,) = [a for a in container["args"] if a.startswith("--speculative-config=")]
    return dict(json.loads(arg.split("=", 1)[1]))


def test_ngram_config_is_complete_and_parsed_by_the_pinned_server(tmp_path: Path) -> None:
    _, container = server(tmp_path, spec_data(method="ngram", tokens=4))
    assert flag_problems(container["args"], table("0.11.2")) == []
    config = config_of(container)
    assert config == {
        "method": "ngram",
        "num_speculative_tokens": 4,
        "prompt_lookup_min": 2,
        "prompt_lookup_max": 5,
    }
    assert set(config) <= CONFIG_FIELDS and config["method"] in VLLM_METHODS


def test_eagle_head_is_mounted_where_the_config_points(tmp_path: Path) -> None:
    pod, container = server(tmp_path, spec_data(method="eagle3", draft=DRAFT))
    config = config_of(container)
    assert config["model"] == speculative.DRAFT_MOUNT and config["method"] == "eagle3"
    gcs = tmp_path / "gcs"
    head = gcs / "acme-drafts" / "eagle3-llama-3.1-8b"
    head.mkdir(parents=True)
    (head / "config.json").write_text("{}")
    rootfs = container_view(tmp_path, gcs, pod, container)
    assert (inside(rootfs, config["model"]) / "config.json").is_file()


def test_the_heads_memory_comes_out_of_the_kv_budget() -> None:
    """0.85B x 2 bytes, plus one layer's KV (2 x 8 KV heads x 128 x 2 bytes = 4 KiB a
    token) for 16 x 8192 tokens: 1.7e9 + 0.5 GiB."""
    with_head = size(parse_spec(spec_data(method="eagle3", draft=DRAFT)))
    plain = size(parse_spec({k: v for k, v in spec_data().items() if k != "speculative"}))
    assert with_head.draft_gib * GIB == pytest.approx(0.85e9 * 2 + 4096 * 16 * 8192)
    assert with_head.kv_budget_gib == pytest.approx(plain.kv_budget_gib - with_head.draft_gib)
    ngram = size(parse_spec(spec_data(method="ngram")))
    assert ngram.draft_gib == 0 and ngram.kv_budget_gib == pytest.approx(plain.kv_budget_gib)


@pytest.mark.parametrize(
    ("settings", "path", "needle"),
    [
        ({"method": "eagle"}, "speculative", "needs draft"),
        ({"method": "ngram", "draft": DRAFT}, "speculative", "remove draft"),
        ({"method": "ngram", "lookupMin": 6, "lookupMax": 3}, "speculative", "<= lookupMax"),
        ({"method": "draft_model"}, "speculative.method", "ngram"),
        ({"method": "ngram", "tokens": 0}, "speculative.tokens", "1"),
    ],
)
def test_bad_settings(settings: dict[str, Any], path: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec_data(**settings))
    (problem,) = info.value.problems
    assert problem.path == path and needle in problem.message, problem


def test_eagle3_is_refused_for_targets_vllm_refuses() -> None:
    data = spec_data(method="eagle3", draft=DRAFT)
    data["model"] = {"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"}
    data["tensorParallel"] = 1
    with pytest.raises(SpecError) as info:
        deployment_for(parse_spec(data))
    (problem,) = info.value.problems
    assert problem.path == "speculative.method" and "llama, qwen" in problem.message


def test_tpu_runs_only_what_tpu_inference_proposes_with() -> None:
    data = spec_data(method="eagle", draft=DRAFT)
    data.update(
        accelerator="tpu-v6e",
        server={"type": "vllm-tpu"},
        model={"id": "Qwen/Qwen3-32B", "preset": "qwen3-32b"},
    )
    del data["tensorParallel"]
    with pytest.raises(SpecError) as info:
        deployment_for(parse_spec(data))
    (problem,) = info.value.problems
    assert problem.path == "speculative.method" and "ngram and eagle3 only" in problem.message


def test_a_replica_across_nodes_is_refused() -> None:
    data = spec_data(method="ngram")
    data["model"] = {"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"}
    del data["tensorParallel"]
    with pytest.raises(SpecError) as info:
        deployment_for(parse_spec(data))
    (problem,) = info.value.problems
    assert problem.path == "speculative" and "spans 2 nodes" in problem.message
