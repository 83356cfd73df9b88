"""LoRA adapters: flags the pinned server parses, folders it finds, memory it reserves."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.core.errors import SpecError
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.recording import Plan
from gke_inference.workloads import lora
from gke_inference.workloads.kinds import deployment_for
from gke_inference.workloads.sizing import size
from gke_inference.workloads.sizing_table import sizing_table
from gke_inference.workloads.spec import parse_spec
from gke_inference.workloads.vllm_metrics import METRICS
from gke_inference.workloads.vllm_server import flag_problems, table
from tests.test_runtime_filesystem import container_view, inside

REPO = Path(__file__).resolve().parents[1]
GIB = 1024**3
ADAPTERS = [
    {"name": "sql", "path": "gs://acme-adapters/llama-8b/sql-v3"},
    {"name": "support", "path": "gs://acme-adapters/llama-8b/support-v1/"},
]


def lora_spec(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "llama-lora",
        "kind": "online",
        "model": {"id": "meta-llama/Llama-3.1-8B-Instruct", "preset": "llama-3.1-8b"},
        "accelerator": "l4",
        "tensorParallel": 2,
        "lora": {"maxRank": 16, "maxLoras": 2, "adapters": ADAPTERS},
    }
    data.update(changes)
    return data


def plan_of(tmp_path: Path, data: dict[str, Any]) -> Plan:
    file = tmp_path / "lora.yaml"
    file.write_text(yaml.safe_dump(data))
    return plan_workload("dev", str(file), project_dir=REPO)


def server_pod(plan: Plan) -> dict[str, Any]:
    deployment = next(
        d for d in plan.by_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"] == "llama-lora"
    )  # fmt: skip
    return dict(deployment.inputs["spec"]["template"]["spec"])


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return plan_of(tmp_path_factory.mktemp("lora"), lora_spec())


def test_the_flags_parse_as_the_pinned_server_parses_them(planned: Plan) -> None:
    args = server_pod(planned)["containers"][0]["args"]
    doc = table("0.11.2")
    assert flag_problems(args, doc) == []
    # --lora-modules takes nargs='+' (the table): the next flag must end its values
    assert doc["flags"]["--lora-modules"]["nargs"] == "+"
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--lora-modules", nargs="+")
    parser.add_argument("--host")
    known, _ = parser.parse_known_args(args)
    assert known.lora_modules == ["sql=/adapters/sql", "support=/adapters/support"]
    assert known.host == "0.0.0.0"  # noqa: S104 (the rendered flag, not a bind)
    assert "--enable-lora" in args and "--max-lora-rank=16" in args and "--max-loras=2" in args


def test_each_module_path_holds_its_adapter(planned: Plan, tmp_path: Path) -> None:
    """Lay the adapters out in their bucket, apply the rendered FUSE volumes, and
    resolve every ``name=path`` of --lora-modules inside the server's view."""
    gcs = tmp_path / "gcs"
    for adapter in ADAPTERS:
        folder = gcs / adapter["path"].removeprefix("gs://").rstrip("/")
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text('{"r": 16}')
        (folder / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    pod = server_pod(planned)
    server = pod["containers"][0]
    rootfs = container_view(tmp_path, gcs, pod, server)
    args = server["args"]
    modules = args[args.index("--lora-modules") + 1 : args.index("--lora-modules") + 3]
    for module in modules:
        name, path = module.split("=", 1)
        assert (inside(rootfs, path) / "adapter_config.json").is_file(), module
        assert not (inside(rootfs, path) / name).exists()  # the folder itself, not above it


def test_the_adapters_bucket_is_readable_and_nothing_more(planned: Plan) -> None:
    grants = {
        (r.inputs["bucket"], r.inputs["role"])
        for r in planned.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    }
    assert ("acme-adapters", "roles/storage.objectViewer") in grants
    assert not [
        g for g in grants if g[0] == "acme-adapters" and g[1] != "roles/storage.objectViewer"
    ]


def test_slot_memory_comes_out_of_the_kv_budget() -> None:
    """Llama 3.1 8B, rank 16, TP 2, 2 slots: 2 x 16 x 32 layers x (2 x 7 x 4096 + 2 x 32
    x 128 + 2 x 8 x 128 + 3 x 14336) x 2 bytes = 226,492,416 bytes."""
    with_lora = size(parse_spec(lora_spec()))
    plain = size(parse_spec({k: v for k, v in lora_spec().items() if k != "lora"}))
    assert with_lora.lora_gib * GIB == pytest.approx(226_492_416)
    assert with_lora.kv_budget_gib == pytest.approx(plain.kv_budget_gib - with_lora.lora_gib)
    assert with_lora.max_num_seqs <= plain.max_num_seqs
    assert "LoRA adapters" in sizing_table(with_lora) and "2 slot(s) of rank 16" in sizing_table(
        with_lora
    )


def test_one_slot_of_the_8b_model_is_84_mb() -> None:
    spec = parse_spec(
        lora_spec(
            accelerator="h100-80gb",
            tensorParallel=1,
            lora={"maxRank": 16, "adapters": ADAPTERS[:1]},
        )
    )
    arch = size(spec)
    assert arch.lora_gib * GIB == 83_886_080


def test_the_picker_prefers_replicas_holding_the_adapter(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, lora_spec(routing={"mode": "inference-pool"}))
    (config_map,) = plan.by_type("kubernetes:core/v1:ConfigMap")
    config = yaml.safe_load(config_map.inputs["data"]["config.yaml"])
    assert {"type": "lora-affinity-scorer"} in config["plugins"]
    # the scorer reads this gauge of the pinned vLLM
    assert METRICS["vllm:lora_requests_info"].status((0, 11, 2)) == "exported"


@pytest.mark.parametrize(
    ("changes", "path", "needle"),
    [
        ({"lora": {"maxLoras": 3, "adapters": ADAPTERS}}, "lora", "exceeds the 2 adapters"),
        ({"lora": {"adapters": [ADAPTERS[0], ADAPTERS[0]]}}, "lora", "sql is repeated"),
        ({"lora": {"maxRank": 12, "adapters": ADAPTERS}}, "lora.maxRank", "16"),
        ({"lora": {"adapters": [{"name": "Bad Name", "path": "gs://a-b/c"}]}}, "lora.adapters[0].name", "pattern"),
        ({"lora": {"adapters": [{"name": "x", "path": "gs://acme-adapters/../x"}]}}, "lora.adapters[0].path", ".."),
    ],
)  # fmt: skip
def test_bad_lora_settings(changes: dict[str, Any], path: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(lora_spec(**changes))
    (problem,) = info.value.problems
    assert problem.path == path and needle in problem.message, problem


@pytest.mark.parametrize(
    ("changes", "path", "needle"),
    [
        (
            {
                "accelerator": "tpu-v6e",
                "server": {"type": "vllm-tpu"},
                "tensorParallel": None,
                "model": {"id": "Qwen/Qwen3-32B", "preset": "qwen3-32b"},
            },
            "lora",
            "JAX worker",
        ),
        (
            {
                "tensorParallel": None,
                "model": {"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"},
            },
            "lora",
            "spans 2 nodes",
        ),
        (
            {
                "model": {
                    "id": "acme/custom",
                    "architecture": {
                        "parametersBillions": 7,
                        "layers": 32,
                        "attentionHeads": 32,
                        "kvHeads": 8,
                        "headDim": 128,
                        "maxContext": 8192,
                    },
                }
            },
            "model.architecture",
            "hiddenSize and intermediateSize",
        ),
    ],
)
def test_where_adapters_cannot_be_served(changes: dict[str, Any], path: str, needle: str) -> None:
    data = {k: v for k, v in lora_spec(**changes).items() if v is not None}
    with pytest.raises(SpecError) as info:
        deployment_for(parse_spec(data))
    (problem,) = info.value.problems
    assert problem.path == path and needle in problem.message, problem


def test_lora_needs_a_model_server() -> None:
    data = {
        "name": "ui",
        "kind": "comfyui",
        "accelerator": "l4",
        "comfyui": {"image": "us-docker.pkg.dev/acme/ui/comfyui:v1"},
        "lora": {"adapters": ADAPTERS},
    }
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert "lora needs a model server" in info.value.problems[0].message


def test_module_doc_examples_hold() -> None:
    """The figures the module doc states (8B: 84 MB a slot; 70B: 13.7 GB)."""
    llama70 = parse_spec(
        lora_spec(
            model={"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"},
            accelerator="h100-80gb",
            tensorParallel=4,
            lora={
                "maxRank": 64,
                "maxLoras": 4,
                "adapters": [
                    *ADAPTERS,
                    {"name": "c", "path": "gs://a-b/c"},
                    {"name": "d", "path": "gs://a-b/d"},
                ],
            },
        )
    )
    sizing = size(llama70)
    assert round(sizing.lora_gib * GIB / 1e9, 1) == 13.7
    assert lora.ADAPTER_MOUNT == "/adapters"
