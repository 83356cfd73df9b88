"""Quantization (``--quantization``), checked against vLLM's loaders (v0.11):

- ``model.prequantized: true`` (an AWQ, GPTQ, compressed-tensors, FP8 or
  bitsandbytes checkpoint): no flag. vLLM reads ``quantization_config`` from
  config.json and picks the fast kernel itself (awq_marlin / gptq_marlin);
  forcing ``awq``/``gptq`` picks the slow kernels and ``fp8`` on a
  compressed-tensors FP8 checkpoint is rejected. A quantizationMethod the user
  names explicitly is passed through when it matches the precision.
- not pre-quantized: only what vLLM quantizes while loading a 16-bit
  checkpoint: ``fp8`` (online dynamic W8A8, GPUs with FP8 support) and
  ``bitsandbytes`` (in-flight, always 4-bit NF4: the loader's unquantized
  path calls ``quantize_4bit``). AWQ, GPTQ and compressed-tensors need a
  checkpoint produced by their tools, and vLLM has no general online int8 for
  dense models on GPUs, so int8 of a 16-bit checkpoint is an error.
"""

from __future__ import annotations

from gke_inference.core.errors import Problem
from gke_inference.inference import catalog
from gke_inference.workloads.spec import WorkloadSpec

# Methods vLLM can apply while loading a 16-bit checkpoint, per precision.
ONLINE_METHODS = {"fp8": {"fp8"}, "int4": {"bitsandbytes"}}
DEFAULT_ONLINE_METHOD = {"fp8": "fp8", "int4": "bitsandbytes"}
# Methods that describe a pre-quantized checkpoint of each precision.
ACCEPTED_METHODS = {
    "fp8": {"fp8", "compressed-tensors"},
    "int8": {"compressed-tensors", "gptq", "bitsandbytes"},
    "int4": {"awq", "gptq", "compressed-tensors", "bitsandbytes"},
}


def quantization_problems(spec: WorkloadSpec, acc: catalog.Accelerator) -> list[Problem]:
    problems: list[Problem] = []
    if acc.kind == "tpu" and spec.precision not in ("bf16", "fp16"):
        problems.append(
            Problem(
                "precision", f"{spec.precision!r} is not served on TPU here; accepted: bf16, fp16"
            )
        )
    if spec.precision == "fp8" and not acc.fp8:
        fp8 = ", ".join(a.key for a in catalog.CATALOG if a.fp8)
        problems.append(
            Problem("precision", f"{acc.key} has no FP8 support; use int8/int4, or one of: {fp8}")
        )
    if spec.kv_cache_dtype == "fp8" and not acc.fp8:
        problems.append(Problem("kvCacheDtype", f"{acc.key} has no FP8 support; accepted: auto"))
    method = spec.quantization_method
    prequantized = spec.model is not None and spec.model.prequantized
    quantized = spec.precision not in ("bf16", "fp16")
    if prequantized and not quantized:
        problems.append(
            Problem(
                "model.prequantized",
                f"a pre-quantized checkpoint is not served at precision {spec.precision}; "
                "set precision to the checkpoint's (fp8, int8, int4) or prequantized: false",
            )
        )
    elif method is not None and prequantized:
        accepted = ACCEPTED_METHODS.get(spec.precision, set())
        if method not in accepted:
            problems.append(
                Problem(
                    "quantizationMethod",
                    f"{method!r} does not describe a {spec.precision} checkpoint; accepted: "
                    + ", ".join(sorted(accepted))
                    + " (or leave it unset: vLLM reads the checkpoint's quantization_config)",
                )
            )
    elif quantized and not prequantized:
        online = ONLINE_METHODS.get(spec.precision, set())
        if not online:
            problems.append(
                Problem(
                    "precision",
                    f"{spec.precision} of a 16-bit checkpoint (model.prequantized: false) cannot "
                    "be quantized by vLLM while loading; serve a pre-quantized checkpoint "
                    "(model.prequantized: true, e.g. GPTQ or compressed-tensors W8A8), or use "
                    "fp8 (FP8 GPUs) or int4 (bitsandbytes)",
                )
            )
        elif method is not None and method not in online:
            problems.append(
                Problem(
                    "quantizationMethod",
                    f"{method!r} cannot quantize a 16-bit checkpoint while loading "
                    f"(model.prequantized: false); accepted for {spec.precision}: "
                    + ", ".join(sorted(online))
                    + f", or set model.prequantized: true for a {method} checkpoint",
                )
            )
    elif method is not None:
        problems.append(
            Problem(
                "quantizationMethod",
                f"{method!r} does not apply to precision {spec.precision}; accepted: none",
            )
        )
    return problems


def quantization_flag(spec: WorkloadSpec) -> str | None:
    """``--quantization`` for a spec that passed :func:`quantization_problems` (see the module doc)."""
    if spec.model is not None and spec.model.prequantized:
        return spec.quantization_method  # None: vLLM detects the checkpoint's method
    return spec.quantization_method or DEFAULT_ONLINE_METHOD.get(spec.precision)
