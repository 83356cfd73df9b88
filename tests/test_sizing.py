"""Sizing against hand-computed cases of real models with published architectures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gke_inference.cli import main
from gke_inference.core.errors import SpecError
from gke_inference.inference import catalog
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


# Device memory as reported (catalog memory_mib): L4 23034 MiB = 22.49 GiB, so one L4
# gives 22.49 x 0.90 - 2 = 18.24 GiB usable; H100 81559 MiB = 79.65 GiB -> 73.66 GiB;
# H200 143771 MiB = 140.40 GiB -> 131.38 GiB.
L4_USABLE = 23034 / 1024 * 0.90 - 2
H100_USABLE = 81559 / 1024 * 0.95 - 2
H200_USABLE = 143771 / 1024 * 0.95 - 2


def test_llama_8b_bf16_fits_one_l4_for_three_sequences() -> None:
    # weights 8.03e9 x 2 B = 14.96 GiB; KV/token 2 x 32 layers x 8 heads x 128 x 2 B = 128 KiB;
    # 8192 tokens x 3 seqs x 128 KiB = 3 GiB; 17.96 <= 18.24 GiB.
    s = size(spec(concurrency=3))
    assert s.kv_bytes_per_token == 131072
    assert s.weights_gib == pytest.approx(8.03e9 * 2 / GIB)
    assert s.kv_cache_gib == pytest.approx(3.0)
    assert s.usable_gib == pytest.approx(L4_USABLE)
    assert (s.shape.count, s.tensor_parallel, s.pipeline_parallel) == (1, 1, 1)
    assert s.compute_class == "gpu-l4-x1"
    assert "--gpu-memory-utilization=0.90" in s.vllm_args()
    assert "--block-size=16" in s.vllm_args()


def test_llama_8b_needs_two_l4_for_four_sequences() -> None:
    # 14.96 + 4 GiB = 18.96 GiB > 18.24 (it fit when an L4 was taken for 24 GiB):
    # the next L4 shape is 2 GPUs (g2-standard-24), TP 2.
    s = size(spec())
    assert (s.shape.machine_type, s.tensor_parallel) == ("g2-standard-24", 2)
    assert s.usable_gib == pytest.approx(2 * L4_USABLE)
    assert s.compute_class == "gpu-l4-x2"


def test_llama_70b_on_h100_uses_tensor_parallel_four() -> None:
    # weights 70.6e9 x 2 B = 131.5 GiB; KV/token 2 x 80 x 8 x 128 x 2 B = 320 KiB;
    # 8192 x 16 x 320 KiB = 40 GiB; total 171.5 GiB. H100 usable 73.66 GiB:
    # 2 GPUs = 147.3 GiB (too small), 4 GPUs = 294.7 GiB.
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
    # 16384 x 8 x 256 KiB = 32 GiB; 62.5 GiB <= 73.66 GiB on one H100.
    s = size(spec(model={"id": "Qwen/Qwen3-32B", "preset": "qwen3-32b"}, accelerator="h100-80gb",
                  precision="fp8", contextLength=16384, concurrency=8))  # fmt: skip
    assert s.kv_cache_gib == pytest.approx(32.0)
    assert s.tensor_parallel == 1
    assert "--quantization=fp8" in s.vllm_args()


def test_gemma_1b_on_tpu_v5e_single_chip() -> None:
    # 1.0e9 x 2 B = 1.86 GiB; KV 2 x 26 x 1 x 256 x 2 B = 26 KiB/token; 8192 x 16 -> 3.25 GiB;
    # one v5e chip: 16 x 0.90 - 1 = 13.4 GiB. Gemma 3's sliding window is not credited
    # on TPU: every layer is sized for the whole context.
    s = size(spec(model={"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"}, accelerator="tpu-v5e",
                  server={"type": "vllm-tpu"}, concurrency=16))  # fmt: skip
    assert s.kv_bytes_per_token == 26624
    assert s.compute_class == "tpu-v5e-1x1"
    assert s.kv_sequence_bytes == 26624 * 8192
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
    assert "weights 131.5 GiB" in text and "18.2 GiB usable" in text
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
    # 171.5 GiB > 8 L4 (145.96 GiB usable): two nodes of 8 with 80 layers split in two.
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


def test_max_num_seqs_is_what_the_kv_budget_holds_at_typical_length() -> None:
    # llama-8B on 2 L4: budget 2 x 18.24 - 14.96 = 21.53 GiB; a 2048-token sequence
    # takes 2048 x 128 KiB = 256 MiB -> 86 sequences (below vLLM's default 256).
    s = size(spec())
    assert s.kv_budget_gib == pytest.approx(2 * L4_USABLE - 8.03e9 * 2 / GIB)
    assert s.max_num_seqs == int(s.kv_budget_gib * 4) == 86
    # 70B on 4 H100: 4 x 73.66 - 131.5 = 163.2 GiB / 640 MiB = 261 (vLLM's default 1024).
    h100 = size(spec(model={"id": "a/b", "preset": "llama-3.3-70b"}, accelerator="h100-80gb",
                     concurrency=16))  # fmt: skip
    assert h100.max_num_seqs == 261
    # Gemma 3 1B on one H200: the cache holds thousands, vLLM's default (1024) caps it.
    gemma = size(spec(model={"id": "a/b", "preset": "gemma-3-1b"}, accelerator="h200-141gb"))
    assert gemma.max_num_seqs == 1024
    # a100 is not a "large GPU" to vLLM: 256 even with room for more.
    a100 = size(spec(model={"id": "a/b", "preset": "gemma-3-1b"}, accelerator="a100-80gb"))
    assert a100.max_num_seqs == 256
    # never below the spec's concurrency (sized to fit at full context)
    assert size(spec(concurrency=3)).max_num_seqs == 13  # 3.29 GiB / 256 MiB
    short = size(spec(concurrency=3, contextLength=1024))
    assert short.max_num_seqs >= 3


@pytest.mark.parametrize(
    ("scaling", "limit"),
    [
        ({"metric": "running-requests", "target": 300}, "--max-num-seqs=86"),
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
    ok = dict(scaling, target=86 if scaling["metric"] == "running-requests" else 0.9)
    assert deployment_for(spec(scaling=ok)).sizing is not None


def test_startup_budget_from_weights_accelerator_and_margin() -> None:
    from gke_inference.workloads.loading import startup_seconds

    # 120 s margin + GiB / 0.25 GiB/s + 180 s GPU warm-up (1800 s TPU XLA compile).
    gemma = size(spec(model={"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"}))
    assert startup_seconds(gemma) == 120 + 8 + 180
    llama = size(spec(model={"id": "a/b", "preset": "llama-3.3-70b"}, accelerator="h100-80gb"))
    assert startup_seconds(llama) == 120 + 527 + 180  # 131.5 GiB: ~9 minutes of reads
    qwen = size(spec(model={"id": "Qwen/Qwen3-32B", "preset": "qwen3-32b"},
                     accelerator="tpu-v6e", server={"type": "vllm-tpu"}))  # fmt: skip
    assert startup_seconds(qwen) == 120 + 245 + 1800


# --------------------------------------------------------------------------- issue 12


@pytest.mark.parametrize(
    ("key", "mib"),
    [
        ("l4", 23034),
        ("a100-40gb", 40960),
        ("a100-80gb", 81920),
        ("h100-80gb", 81559),
        ("h100-mega-80gb", 81559),
        ("h200-141gb", 143771),
        ("rtx-pro-6000", 97887),
        ("tpu-v5e", 16384),
        ("tpu-v6e", 32768),
    ],
)
def test_device_memory_is_what_the_device_reports(key: str, mib: int) -> None:
    acc = catalog.BY_KEY[key]
    assert acc.memory_mib == mib and acc.memory_gib == mib / 1024
    assert str(mib) in acc.memory_source or "GiB" in acc.memory_source


def test_every_catalog_entry_has_a_memory_figure_with_its_source() -> None:
    tested = {"l4", "a100-40gb", "a100-80gb", "h100-80gb", "h100-mega-80gb", "h200-141gb",
              "rtx-pro-6000", "tpu-v5e", "tpu-v6e"}  # fmt: skip
    assert {a.key for a in catalog.CATALOG} == tested  # a new entry needs its figure tested
    # the "GB" of the marketing name is not the GiB the device reports
    assert catalog.BY_KEY["h100-80gb"].memory_gib == pytest.approx(79.65, abs=0.01)
    assert catalog.BY_KEY["l4"].memory_gib == pytest.approx(22.49, abs=0.01)


@pytest.mark.parametrize("preset", ["gemma-3-1b", "qwen2.5-7b", "llama-3.1-8b", "mistral-7b-v0.3"])
def test_small_models_on_an_eight_gpu_only_accelerator_take_one_device(preset: str) -> None:
    # H200 comes only as a3-ultragpu-8g; qwen2.5-7b has 28 heads, which 8 does not divide
    # (it "did not fit" when TP had to fill the machine).
    s = size(spec(model={"id": "a/b", "preset": preset}, accelerator="h200-141gb"))
    assert (s.shape.machine_type, s.tensor_parallel, s.devices_per_pod) == ("a3-ultragpu-8g", 1, 1)
    assert s.replicas_per_node == 8
    assert s.compute_class == "gpu-h200-141gb-x8"
    assert "--tensor-parallel-size=1" in s.vllm_args()
    assert any("8 replicas share a node" in r for r in s.reasons)


def test_seventy_b_on_h200_uses_the_smallest_tensor_parallel_that_fits() -> None:
    # 131.5 GiB weights + 40 GiB KV (16 x 8192 x 320 KiB) = 171.5 GiB: one H200 (131.38 GiB)
    # is too small, two (262.8 GiB) hold it. The reference architecture runs TP 4 on H200
    # for larger batches; TP 8 (a whole machine) was never needed.
    s = size(spec(model={"id": "a/b", "preset": "llama-3.3-70b"}, accelerator="h200-141gb",
                  concurrency=16))  # fmt: skip
    assert s.tensor_parallel == 2 <= 4
    assert s.usable_gib == pytest.approx(2 * H200_USABLE)
    assert s.replicas_per_node == 4
    assert any("TP 1: 171.5 GiB needed > 131.4 GiB usable" in r for r in s.reasons)
    # 64 sequences of 8k need 160 GiB of KV: TP 4
    wide = size(spec(model={"id": "a/b", "preset": "llama-3.3-70b"}, accelerator="h200-141gb",
                     concurrency=64))  # fmt: skip
    assert wide.tensor_parallel == 4


def test_kv_heads_are_replicated_when_tensor_parallel_exceeds_them() -> None:
    # Llama 3.3 70B has 8 KV heads; at TP 16 (a2-megagpu-16g) every rank holds one
    # KV head, so each is stored twice: 2 x 80 x 16 x 128 x 2 B = 640 KiB per token.
    s = size(spec(model={"id": "a/b", "preset": "llama-3.3-70b"}, accelerator="a100-40gb",
                  tensorParallel=16))  # fmt: skip
    assert s.kv_replication == 2
    assert s.kv_bytes_per_token == 2 * 80 * 16 * 128 * 2 == 655360
    assert s.kv_cache_gib == pytest.approx(4 * 8192 * 655360 / GIB) == 20.0
    # Gemma 3 1B has one KV head: TP 2 doubles it
    g = size(spec(model={"id": "a/b", "preset": "gemma-3-1b"}, tensorParallel=2))
    assert (g.kv_replication, g.kv_bytes_per_token) == (2, 2 * 26 * 2 * 256 * 2)
    assert any("KV heads replicated x2" in r for r in g.reasons)
    # at TP <= KV heads nothing is replicated
    assert size(spec(tensorParallel=2)).kv_replication == 1


def test_gemma_3_sliding_window_kv_against_a_hand_computation() -> None:
    # Gemma 3 1B: 26 layers, every 6th global (layers 6, 12, 18, 24: 4 full), 22 local
    # with a 512-token window; 1 KV head x 256 dims x 2 B x (K, V) = 1024 B per layer-token.
    # One 8192-token sequence on a GPU:
    #   full:    4 x 8192 x 1024            = 33,554,432 B
    #   sliding: 22 x (512 + 16) x 1024     = 11,894,784 B   (window + the block being filled)
    #   total                               = 45,449,216 B  (43.3 MiB)
    # The full-attention formula would say 26 x 8192 x 1024 = 218,103,808 B (208 MiB).
    s = size(spec(model={"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"}))
    assert s.kv_bytes_per_token == 26 * 1024
    assert s.kv_sequence_bytes == 4 * 8192 * 1024 + 22 * 528 * 1024 == 45_449_216
    assert s.kv_cache_gib == pytest.approx(4 * 45_449_216 / GIB)
    # Gemma 3 27B at 32k: 10 full + 52 local (1024 window) layers x 8192 B per layer-token:
    # (10 x 32768 + 52 x 1040) x 8192 = 3,127,377,920 B per sequence (2.91 GiB, not 15.5 GiB)
    big = size(spec(model={"id": "a/b", "preset": "gemma-3-27b"}, accelerator="h100-80gb",
                    contextLength=32768, concurrency=8))  # fmt: skip
    assert big.kv_sequence_bytes == (10 * 32768 + 52 * 1040) * 8192 == 3_127_377_920
    assert big.tensor_parallel == 2  # 51.0 + 23.3 = 74.3 GiB > one H100's 73.66 GiB
    # a context shorter than the window: every layer keeps the whole context
    short = size(spec(model={"id": "a/b", "preset": "gemma-3-1b"}, contextLength=256))
    assert short.kv_sequence_bytes == 26 * 256 * 1024


def test_sliding_window_pattern_needs_a_window() -> None:
    with pytest.raises(SpecError) as info:
        spec(model={"id": "a/b", "architecture": {
            "parametersBillions": 1, "layers": 4, "attentionHeads": 4, "kvHeads": 1,
            "headDim": 64, "maxContext": 4096, "slidingWindowPattern": 2}})  # fmt: skip
    assert "slidingWindowPattern needs slidingWindow" in str(info.value)


def test_tensor_parallel_override_is_checked_against_the_model_and_machines() -> None:
    # qwen2.5-7b: 28 heads, 4 KV heads
    with pytest.raises(SpecError) as info:
        size(spec(model={"id": "a/b", "preset": "qwen2.5-7b"}, accelerator="h100-80gb",
                  tensorParallel=8))  # fmt: skip
    (problem,) = info.value.problems
    assert problem.path == "tensorParallel"
    assert "8 does not divide the 28 attention heads" in problem.message
    assert "accepted: 1, 2, 4" in problem.message
    with pytest.raises(SpecError) as info:
        size(spec(accelerator="h100-80gb", tensorParallel=16))
    assert "no h100-80gb machine has 16 devices" in info.value.problems[0].message
    pinned = size(spec(accelerator="h100-80gb", tensorParallel=4))
    assert (pinned.tensor_parallel, pinned.shape.machine_type) == (4, "a3-highgpu-4g")
    assert any("pinned by the spec" in r for r in pinned.reasons)


def test_size_explains_memory_and_choices(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "q.yaml"
    file.write_text(
        "name: q\nkind: online\nmodel: {id: a/b, preset: qwen2.5-7b}\naccelerator: h200-141gb\n"
    )
    assert main(["size", str(file)]) == 0
    out = capsys.readouterr().out
    for fragment in (
        "140.4 GiB (143771 MiB as reported)",
        "131.4 GiB (x 0.95 utilization - 2 GiB reserved",
        "KV cache budget",
        "8 replicas per node",
        "why:",
        "tensor parallel 1: the smallest degree",
        "--max-num-seqs 1024",
    ):
        assert fragment in out, fragment


def test_a_batch_spec_that_spans_nodes_is_exit_2_with_single_node_alternatives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 70B bf16 x 16 x 8k needs 171.5 GiB: more than one g2-standard-96 (8 L4, 145.96 GiB).
    # Online serving runs that as a LeaderWorkerSet (tests/test_multihost.py); a batch
    # Job's pods cannot span nodes.
    file = tmp_path / "big.yaml"
    file.write_text(
        "name: big\nkind: batch\nmodel: {id: a/b, preset: llama-3.3-70b}\n"
        "accelerator: l4\nconcurrency: 16\n"
        "batch: {input: gs://acme-in/x, output: gs://acme-out/y, shards: 4}\n"
    )
    code = main(["plan", "--stack", "dev", "--workload", str(file)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "2 nodes of g2-standard-96" in err and "shapes that fit one node:" in err
    assert "a3-ultragpu-8g (2x h200-141gb, TP 2) in bf16" in err
