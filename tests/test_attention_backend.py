"""The attention backend `size` states and a spec may pin, against the pinned vLLM's table.

The table's ``attentionBackends`` was read from the pinned wheel by
``scripts/vllm_flags.py`` (the names VLLM_ATTENTION_BACKEND accepts, the CUDA
priority lists, each backend's limits); these tests replay vLLM's selection on
it, check what the pod would be started with, and check the generator on a
small source tree laid out like vLLM's.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from gke_inference.core.errors import Problem, SpecError
from gke_inference.inference import catalog
from gke_inference.offline.planning import plan_workload
from gke_inference.workloads import attention
from gke_inference.workloads.sizing import size
from gke_inference.workloads.sizing_table import sizing_table
from gke_inference.workloads.spec import parse_spec
from gke_inference.workloads.vllm_server import VLLM_IMAGES, server_version, table

REPO = Path(__file__).resolve().parents[1]
GPU_TABLE = table(server_version("vllm-gpu"))


def spec_data(accelerator: str = "l4", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "chat",
        "kind": "online",
        "model": {"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"},
        "accelerator": accelerator,
    }
    if accelerator.startswith("tpu"):
        data["server"] = {"type": "vllm-tpu"}
    for key, value in extra.items():
        if key == "server" and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def custom_model(head_dim: int) -> dict[str, Any]:
    return {
        "id": "acme/custom-7b",
        "architecture": {
            "parametersBillions": 7,
            "layers": 32,
            "attentionHeads": 32,
            "kvHeads": 32,
            "headDim": head_dim,
            "maxContext": 8192,
        },
    }


def predicted(acc_key: str, head_dim: int, kv: str = "auto") -> attention.Choice:
    choice = attention.choose(
        GPU_TABLE,
        catalog.BY_KEY[acc_key],
        head_dim=head_dim,
        kv_cache_dtype=kv,
        precision="bf16",
        pinned=None,
    )
    assert isinstance(choice, attention.Choice), choice
    return choice


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("server_type", sorted(VLLM_IMAGES))
def test_every_name_a_spec_may_pin_is_one_the_pinned_server_accepts(server_type: str) -> None:
    """vLLM's envs check VLLM_ATTENTION_BACKEND against AttentionBackendEnum's members
    (case-sensitive): a name outside them is a start-up ValueError."""
    accepted = table(server_version(server_type))["attentionBackends"]["accepted"]
    assert set(get_args(attention.AttentionBackendName)) <= set(accepted)
    gpu = set(get_args(attention.AttentionBackendName)) - {attention.TPU_BACKEND}
    reachable = {
        n for ranked in GPU_TABLE["attentionBackends"]["cudaPriority"].values() for n in ranked
    }
    assert gpu == reachable  # exactly the backends vLLM's CUDA walk tries


def test_the_table_records_the_fp8_rule_the_code_implements() -> None:
    backends = GPU_TABLE["attentionBackends"]["backends"]
    assert backends["FLASH_ATTN"]["fp8KvCacheIf"] == attention.FA3_FP8_RULE
    assert all("fp8KvCacheIf" not in b for n, b in backends.items() if n != "FLASH_ATTN")


def test_every_gpu_has_a_compute_capability_and_no_tpu_does() -> None:
    for acc in catalog.CATALOG:
        assert (acc.compute_capability is None) == (acc.kind == "tpu"), acc.key


# --------------------------------------------------------------------------- selection


@pytest.mark.parametrize(
    ("accelerator", "head_dim", "kv", "backend", "passed_over"),
    [
        ("l4", 256, "auto", "FLASH_ATTN", {}),
        ("h100-80gb", 128, "auto", "FLASH_ATTN", {}),
        ("rtx-pro-6000", 128, "auto", "FLASH_ATTN", {}),
        # FP8 KV cache: FlashAttention takes it only as FA3, on Hopper
        ("h100-80gb", 128, "fp8", "FLASH_ATTN", {}),
        ("l4", 128, "fp8", "FLASHINFER", {"FLASH_ATTN": ["kv_cache_dtype not supported"]}),
        ("a100-80gb", 128, "fp8", "FLASHINFER", {"FLASH_ATTN": ["kv_cache_dtype not supported"]}),
        # head size 80 (Phi-2 style): neither FlashAttention's list nor FlashInfer's has it
        (
            "a100-80gb",
            80,
            "auto",
            "TRITON_ATTN",
            {"FLASH_ATTN": ["head_size not supported"], "FLASHINFER": ["head_size not supported"]},
        ),
        # head size 16: below Triton's minimum too; FlexAttention takes any size, no FP8
        ("l4", 16, "auto", "FLEX_ATTENTION", {
            "FLASH_ATTN": ["head_size not supported"],
            "FLASHINFER": ["head_size not supported"],
            "TRITON_ATTN": ["head_size not supported"],
        }),
    ],
)  # fmt: skip
def test_vllm_selection_replayed(
    accelerator: str, head_dim: int, kv: str, backend: str, passed_over: dict[str, list[str]]
) -> None:
    choice = predicted(accelerator, head_dim, kv)
    assert (choice.backend, choice.passed_over, choice.pinned) == (backend, passed_over, False)


def test_no_backend_at_all_is_a_problem() -> None:
    found = attention.choose(
        GPU_TABLE,
        catalog.BY_KEY["l4"],
        head_dim=16,
        kv_cache_dtype="fp8",
        precision="bf16",
        pinned=None,
    )
    assert isinstance(found, Problem) and "no attention backend" in found.message


def test_tpu_always_runs_pallas() -> None:
    sized = size(parse_spec(spec_data("tpu-v6e")))
    assert sized.attention == attention.Choice("PALLAS", False)
    assert "PALLAS (Pallas), the TPU platform's only kernel" in sizing_table(sized)


# --------------------------------------------------------------------------- the spec


def test_size_states_the_backend_and_why_the_first_choices_were_passed_over() -> None:
    sized = size(parse_spec(spec_data(kvCacheDtype="fp8", model=custom_model(128))))
    text = sizing_table(sized)
    assert "attention backend" in text
    assert "FLASHINFER (FlashInfer), vLLM's first valid choice on compute capability 8.9" in text
    assert (
        "attention backend FLASHINFER: vLLM passes over FLASH_ATTN: kv_cache_dtype not supported"
        in text
    )


def test_a_pin_vllm_would_refuse_is_refused_with_what_it_would_pick() -> None:
    data = spec_data(
        kvCacheDtype="fp8", model=custom_model(128), server={"attentionBackend": "FLASH_ATTN"}
    )
    with pytest.raises(SpecError) as info:
        size(parse_spec(data))
    (problem,) = info.value.problems
    assert problem.path == "server.attentionBackend"
    assert "refuses FLASH_ATTN on NVIDIA L4 24 GB" in problem.message
    assert "kv_cache_dtype not supported" in problem.message
    assert "vLLM would pick FLASHINFER" in problem.message


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (spec_data("tpu-v6e", server={"attentionBackend": "FLASHINFER"}), "does not run on TPUs"),
        (spec_data(server={"attentionBackend": "PALLAS"}), "is not a CUDA backend"),
    ],
)
def test_a_pin_for_the_other_platform_is_refused(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError) as info:
        size(parse_spec(data))
    (problem,) = info.value.problems
    assert problem.path == "server.attentionBackend" and needle in problem.message


def test_an_unknown_name_is_refused_by_the_spec() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(spec_data(server={"attentionBackend": "flash_attn"}))
    (problem,) = info.value.problems
    assert problem.path == "server.attentionBackend" and "FLASHINFER" in problem.message


def server_env(tmp_path: Path, data: dict[str, Any]) -> dict[str, str]:
    file = tmp_path / "chat.yaml"
    file.write_text(yaml.safe_dump(data))
    plan = plan_workload("dev", str(file), project_dir=REPO)
    deployment = plan.one("kubernetes:apps/v1:Deployment")
    (container,) = [
        c
        for c in deployment.inputs["spec"]["template"]["spec"]["containers"]
        if c["name"] == "server"
    ]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_a_pin_reaches_the_server_and_no_pin_leaves_vllm_to_choose(tmp_path: Path) -> None:
    pinned = server_env(tmp_path, spec_data(server={"attentionBackend": "FLASHINFER"}))
    assert pinned[attention.ENV] == "FLASHINFER"
    assert pinned[attention.ENV] in GPU_TABLE["attentionBackends"]["accepted"]
    assert attention.ENV in GPU_TABLE["environment"]  # a variable the server reads
    assert attention.ENV not in server_env(tmp_path, spec_data())


# --------------------------------------------------------------------------- the generator


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("vllm_flags", REPO / "scripts" / "vllm_flags.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def lay_out(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text))


SMALL_VLLM = {
    "vllm/attention/backends/registry.py": """
        class AttentionBackendEnum(enum.Enum):
            FAST = "vllm.v1.attention.backends.fast.FastBackend"
            SLOW = "vllm.v1.attention.backends.slow.SlowBackend"
            VIT = ""
    """,
    "vllm/platforms/cuda.py": """
        def _get_backend_priorities(use_mla, device_capability):
            if use_mla:
                return []
            else:
                if device_capability.major == 10:
                    return [AttentionBackendEnum.SLOW, AttentionBackendEnum.FAST]
                else:
                    return [AttentionBackendEnum.FAST, AttentionBackendEnum.SLOW]
    """,
    "vllm/attention/backends/abstract.py": """
        class AttentionBackend(ABC):
            supported_dtypes: ClassVar[list[torch.dtype]] = [torch.float16, torch.bfloat16]
            supported_kv_cache_dtypes: ClassVar[list["CacheDType"]] = ["auto"]
    """,
    "vllm/v1/attention/backends/fast.py": """
        class FastBackend(AttentionBackend):
            @classmethod
            def get_supported_head_sizes(cls) -> list[int]:
                return [64, 128]

            @classmethod
            def supports_kv_cache_dtype(cls, kv_cache_dtype):
                if kv_cache_dtype is None:
                    return True
                if kv_cache_dtype.startswith("fp8"):
                    return flash_attn_supports_fp8()
                return kv_cache_dtype in ["auto"]

            @classmethod
            def supports_compute_capability(cls, capability):
                return capability >= DeviceCapability(8, 0) and capability <= DeviceCapability(9, 0)
    """,
    "vllm/v1/attention/backends/slow.py": """
        class SlowBackend(AttentionBackend):
            supported_kv_cache_dtypes: ClassVar[list[CacheDType]] = ["auto", "fp8"]

            @classmethod
            def supports_head_size(cls, head_size: int) -> bool:
                return head_size >= 32
    """,
}


def test_generator_reads_the_backends_from_the_source(tmp_path: Path) -> None:
    lay_out(tmp_path, SMALL_VLLM)
    vllm_flags = generator()
    found = vllm_flags.attention_backends(vllm_flags.Resolver(vllm_flags.Source(tmp_path)))
    assert found == {
        "accepted": ["FAST", "SLOW", "VIT"],
        "cudaPriority": {"10": ["SLOW", "FAST"], "other": ["FAST", "SLOW"]},
        "backends": {
            "SLOW": {
                "dtypes": ["float16", "bfloat16"],
                "kvCacheDtypes": ["auto", "fp8"],
                "capability": {},
                "headSizes": [],
                "headSizeMin": 32,
            },
            "FAST": {
                "dtypes": ["float16", "bfloat16"],
                "kvCacheDtypes": ["auto"],
                "capability": {"min": [8, 0], "max": [9, 0]},
                "headSizes": [64, 128],
                "fp8KvCacheIf": "flash_attn_supports_fp8",
            },
        },
    }


def test_generator_refuses_a_check_it_cannot_read(tmp_path: Path) -> None:
    """A vLLM upgrade that changes a check's shape stops the generator instead of
    writing a table that says less than the server does."""
    files = dict(SMALL_VLLM)
    files["vllm/v1/attention/backends/fast.py"] = files[
        "vllm/v1/attention/backends/fast.py"
    ].replace("capability >= DeviceCapability(8, 0)", "capability.major in (8, 9)")
    lay_out(tmp_path, files)
    vllm_flags = generator()
    with pytest.raises(SystemExit, match="unsupported capability"):
        vllm_flags.attention_backends(vllm_flags.Resolver(vllm_flags.Source(tmp_path)))
