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
    # vLLM's own default batch width on an L4 (256), not the 4 sequences that fit at
    # full context: vLLM admits only what free KV blocks hold (issue 11, item 9).
    assert s.max_num_seqs == 256
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
        (
            {"precision": "int4", "quantizationMethod": "fp8"},
            "quantizationMethod",
            "accepted for int4: bitsandbytes",
        ),
    ],
)
def test_impossible_choices_are_named(overrides: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        size(spec(**overrides))
    assert any(p.path == path and fragment in p.message for p in info.value.problems)


def test_int4_of_a_16_bit_checkpoint_is_quantized_in_flight() -> None:
    # Was --quantization=awq, which vLLM cannot apply to a 16-bit checkpoint: only
    # bitsandbytes quantizes to 4 bits while loading (issue 11, item 3).
    assert "--quantization=bitsandbytes" in size(spec(precision="int4")).vllm_args()


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


# --------------------------------------------------------------------------- issue 11


def test_served_path_is_the_mount_root_of_the_model_folder() -> None:
    # only-dir:<folder> makes the folder the mount root: --model=/models (was /models/<folder>).
    s = size(spec())
    assert s.model_path == "/models" and "--model=/models" in s.vllm_args()
    assert s.model_dir == "meta-llama/llama-3.1-8b-instruct" and s.model_bucket is None
    t = size(spec(model={"id": "gs://other-team/ckpt/llama/", "preset": "llama-3.1-8b"}))
    assert (t.model_bucket, t.model_dir, t.model_path) == ("other-team", "ckpt/llama", "/models")


@pytest.mark.parametrize(
    ("precision", "method", "flag"),
    [
        ("int4", None, None),  # vLLM reads quantization_config (awq -> awq_marlin itself)
        ("int8", None, None),
        ("fp8", None, None),  # a compressed-tensors FP8 checkpoint must not get --quantization=fp8
        ("int4", "awq", "awq"),  # named explicitly and compatible: passed through
        ("int8", "compressed-tensors", "compressed-tensors"),
    ],
)
def test_prequantized_checkpoints_get_no_quantization_flag_unless_named(
    precision: str, method: str | None, flag: str | None
) -> None:
    overrides: dict[str, Any] = {
        "model": {"id": "org/ckpt", "preset": "llama-3.1-8b", "prequantized": True},
        "accelerator": "h100-80gb",
        "precision": precision,
    }
    if method:
        overrides["quantizationMethod"] = method
    args = size(spec(**overrides)).vllm_args()
    quantization = [a for a in args if a.startswith("--quantization")]
    assert quantization == ([f"--quantization={flag}"] if flag else [])


def test_online_quantization_of_a_16_bit_checkpoint() -> None:
    assert "--quantization=fp8" in size(spec(accelerator="h100-80gb", precision="fp8")).vllm_args()
    assert "--quantization=bitsandbytes" in size(spec(precision="int4")).vllm_args()


@pytest.mark.parametrize(
    ("overrides", "path", "fragments"),
    [
        (
            {"precision": "int4", "quantizationMethod": "awq"},
            "quantizationMethod",
            ("cannot quantize a 16-bit checkpoint", "model.prequantized: true"),
        ),
        (
            {"precision": "int4", "quantizationMethod": "gptq"},
            "quantizationMethod",
            ("accepted for int4: bitsandbytes",),
        ),
        ({"precision": "int8"}, "precision", ("model.prequantized: true", "cannot be quantized")),
        (
            {"model": {"id": "a/b", "preset": "llama-3.1-8b", "prequantized": True}},
            "model.prequantized",
            ("precision bf16",),
        ),
    ],
)
def test_quantization_that_vllm_cannot_do_is_refused(
    overrides: dict[str, Any], path: str, fragments: tuple[str, ...]
) -> None:
    with pytest.raises(SpecError) as info:
        size(spec(**overrides))
    assert any(
        p.path == path and all(f in p.message for f in fragments) for p in info.value.problems
    ), info.value.problems


def test_max_num_seqs_is_vllms_default_for_the_accelerator() -> None:
    # vLLM: 256, and 1024 on GPUs of >= 70 GiB other than A100 (EngineArgs defaults).
    assert size(spec(accelerator="a100-80gb")).max_num_seqs == 256
    h100 = spec(model={"id": "a/b", "preset": "llama-3.3-70b"}, accelerator="h100-80gb")
    assert size(h100).max_num_seqs == 1024
    assert size(spec(concurrency=8)).max_num_seqs == 256
    tpu = spec(accelerator="tpu-v6e", server={"type": "vllm-tpu"})
    assert size(tpu).max_num_seqs == 256


@pytest.mark.parametrize(
    ("scaling", "limit"),
    [
        ({"metric": "running-requests", "target": 300}, "--max-num-seqs=256"),
        ({"metric": "kv-cache", "target": 1.5}, "0 to 1"),
    ],
)
def test_hpa_targets_that_can_never_trigger_are_refused(
    scaling: dict[str, Any], limit: str
) -> None:
    from gke_inference.workloads.kinds import deployment_for

    with pytest.raises(SpecError) as info:
        deployment_for(spec(scaling=scaling))
    (problem,) = info.value.problems
    assert problem.path == "scaling.target" and limit in problem.message
    ok = dict(scaling, target=256 if scaling["metric"] == "running-requests" else 0.9)
    assert deployment_for(spec(scaling=ok)).sizing is not None


def test_startup_budget_from_weights_accelerator_and_margin() -> None:
    from gke_inference.workloads.sizing import startup_seconds

    # 120 s margin + GiB / 0.25 GiB/s + 180 s GPU warm-up (1800 s TPU XLA compile).
    gemma = size(spec(model={"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"}))
    assert startup_seconds(gemma) == 120 + 8 + 180
    llama = size(spec(model={"id": "a/b", "preset": "llama-3.3-70b"}, accelerator="h100-80gb"))
    assert startup_seconds(llama) == 120 + 527 + 180  # 131.5 GiB: ~9 minutes of reads
    qwen = size(spec(model={"id": "Qwen/Qwen3-32B", "preset": "qwen3-32b"},
                     accelerator="tpu-v6e", server={"type": "vllm-tpu"}))  # fmt: skip
    assert startup_seconds(qwen) == 120 + 245 + 1800
