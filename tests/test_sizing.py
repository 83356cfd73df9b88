"""Sizing against hand-computed cases of real models with published architectures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gke_inference.cli import main
from gke_inference.core.errors import SpecError
from gke_inference.workloads.sizing import GIB, size
from gke_inference.workloads.spec import parse_spec


def spec(**overrides: Any) -> Any:
    base: dict[str, Any] = {
        "name": "m",
        "kind": "online",
        "model": {"id": "meta-llama/Llama-3.1-8B-Instruct", "preset": "llama-3.1-8b"},
        "accelerator": "l4",
        "contextLength": 8192,
        "concurrency": 4,
    }
    base.update(overrides)
    return parse_spec(base)


def test_llama_8b_bf16_fits_one_l4() -> None:
    # weights 8.03e9 x 2 B = 14.96 GiB; KV/token 2 x 32 layers x 8 heads x 128 x 2 B = 128 KiB;
    # 8192 tokens x 4 seqs x 128 KiB = 4 GiB; one L4 gives 24 x 0.90 - 2 = 19.6 GiB.
    s = size(spec())
    assert s.kv_bytes_per_token == 131072
    assert s.weights_gib == pytest.approx(8.03e9 * 2 / GIB)
    assert s.kv_cache_gib == pytest.approx(4.0)
    assert s.usable_gib == pytest.approx(19.6)
    assert (s.shape.count, s.tensor_parallel, s.pipeline_parallel) == (1, 1, 1)
    assert s.compute_class == "gpu-l4-x1"
    # (19.6 - 14.96) GiB / 1 GiB per full-context sequence = 4 sequences
    assert s.max_num_seqs == 4
    assert "--gpu-memory-utilization=0.90" in s.vllm_args()
    assert "--block-size=16" in s.vllm_args()


def test_llama_8b_needs_two_l4_for_eight_sequences() -> None:
    # 14.96 + 8 GiB = 22.96 GiB > 19.6: the next L4 shape is 2 GPUs (g2-standard-24), TP 2.
    s = size(spec(concurrency=8))
    assert (s.shape.machine_type, s.tensor_parallel) == ("g2-standard-24", 2)
    assert s.compute_class == "gpu-l4-x2"


def test_llama_70b_on_h100_uses_tensor_parallel_four() -> None:
    # weights 70.6e9 x 2 B = 131.5 GiB; KV/token 2 x 80 x 8 x 128 x 2 B = 320 KiB;
    # 8192 x 16 x 320 KiB = 40 GiB; total 171.5 GiB. H100 usable 80 x 0.95 - 2 = 74 GiB:
    # 2 GPUs = 148 GiB (too small), 4 GPUs = 296 GiB.
    s = size(spec(model={"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"},
                  accelerator="h100-80gb", concurrency=16))  # fmt: skip
    assert s.kv_bytes_per_token == 327680
    assert s.kv_cache_gib == pytest.approx(40.0)
    assert s.weights_gib + s.kv_cache_gib == pytest.approx(171.5, abs=0.1)
    assert (s.tensor_parallel, s.compute_class) == (4, "gpu-h100-80gb-x4")
    assert "--gpu-memory-utilization=0.95" in s.vllm_args()


def test_fp8_kv_cache_halves_kv_memory() -> None:
    s = size(spec(model={"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"},
                  accelerator="h100-80gb", concurrency=16, kvCacheDtype="fp8"))  # fmt: skip
    assert s.kv_bytes_per_token == 163840
    assert "--kv-cache-dtype=fp8" in s.vllm_args()


def test_qwen3_32b_fp8_on_one_h100() -> None:
    # weights 32.8e9 x 1 B = 30.5 GiB; KV 2 x 64 x 8 x 128 x 2 = 256 KiB/token;
    # 16384 x 8 x 256 KiB = 32 GiB; 62.5 GiB <= 74 GiB on one H100.
    s = size(spec(model={"id": "Qwen/Qwen3-32B", "preset": "qwen3-32b"}, accelerator="h100-80gb",
                  precision="fp8", contextLength=16384, concurrency=8))  # fmt: skip
    assert s.kv_cache_gib == pytest.approx(32.0)
    assert s.tensor_parallel == 1
    assert "--quantization=fp8" in s.vllm_args()


def test_gemma_1b_on_tpu_v5e_single_chip() -> None:
    # 1.0e9 x 2 B = 1.86 GiB; KV 2 x 26 x 1 x 256 x 2 B = 26 KiB/token; 8192 x 16 -> 3.25 GiB;
    # one v5e chip: 16 x 0.90 - 1 = 13.4 GiB.
    s = size(spec(model={"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"}, accelerator="tpu-v5e",
                  server={"type": "vllm-tpu"}, concurrency=16))  # fmt: skip
    assert s.kv_bytes_per_token == 26624
    assert s.compute_class == "tpu-v5e-1x1"
    assert not any(a.startswith("--block-size") for a in s.vllm_args())


def test_seventy_b_bf16_on_one_l4_is_an_error_with_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SpecError) as info:
        size(
            spec(model={"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"}),
            devices=1,
        )
    text = str(info.value)
    assert "weights 131.5 GiB" in text and "19.6 GiB usable" in text
    assert "shapes that would fit:" in text
    file = tmp_path / "big.yaml"
    file.write_text(
        "name: big\nkind: online\nmodel: {id: meta-llama/Llama-3.3-70B-Instruct, preset: llama-3.3-70b}\n"
        "accelerator: l4\ncontextLength: 8192\nconcurrency: 4\n"
    )
    assert main(["size", str(file), "--devices", "1"]) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "GiB" in err and "Traceback" not in err


def test_pipeline_parallel_when_one_node_is_not_enough() -> None:
    # 171.5 GiB > 8 L4 (156.8 GiB usable): two nodes of 8 with 80 layers split in two.
    s = size(spec(model={"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"},
                  concurrency=16))  # fmt: skip
    assert (s.tensor_parallel, s.pipeline_parallel) == (8, 2)
    assert "--pipeline-parallel-size=2" in s.vllm_args()


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        ({"accelerator": "a100-80gb", "precision": "fp8"}, "precision", "no FP8 support"),
        (
            {"accelerator": "l4", "contextLength": 200000},
            "contextLength",
            "exceeds the model's maximum",
        ),
        ({"precision": "int4", "quantizationMethod": "fp8"}, "quantizationMethod", "accepted: awq"),
    ],
)
def test_impossible_choices_are_named(overrides: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        size(spec(**overrides))
    assert any(p.path == path and fragment in p.message for p in info.value.problems)


def test_int4_defaults_to_awq() -> None:
    assert "--quantization=awq" in size(spec(precision="int4")).vllm_args()


def test_size_command_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[1] / "workloads/examples/llama-3-3-70b-h100.yaml"
    assert main(["size", str(example)]) == 0
    out = capsys.readouterr().out
    for row in (
        "compute class",
        "gpu-h100-80gb-x4",
        "--max-num-seqs",
        "KV cache per token",
        "160.0 KiB",
    ):
        assert row in out
