"""The attention backend vLLM will run a model with, from the pinned server's own table.

vLLM (V1 engine, v0.11) picks the paged-attention kernel at start-up: on CUDA
it walks a priority list for the device's compute capability
(``vllm/platforms/cuda.py::_get_backend_priorities``) and takes the first
backend whose ``validate_configuration`` accepts the layer (head size, dtype,
KV-cache dtype, compute capability); ``VLLM_ATTENTION_BACKEND`` names one
instead, and a named backend that does not validate is a start-up error
("Selected backend ... is not valid for this configuration"). On TPU the
platform always uses its Pallas kernel and only logs any other name.

:func:`choose` replays that walk on the facts ``scripts/vllm_flags.py`` read
from the pinned wheel (``attentionBackends`` in ``workloads/data``): the
accepted names, the CUDA priority lists, each backend's head sizes, dtypes,
KV-cache dtypes and compute-capability bounds. One rule is code, not a list:
FlashAttention takes an FP8 KV cache only when ``flash_attn_supports_fp8()``,
i.e. FlashAttention 3, which vLLM uses exactly on compute capability 9.x
(``vllm/attention/utils/fa_utils.py``); the table records which function
decides, and an unknown one fails here rather than guessing.

The spec describes standard (MHA/GQA) attention without sinks: MLA models
(DeepSeek) and attention sinks (gpt-oss) are not sized by this project, so
their MLA and sink backends are out of scope.

What it means in practice, for the catalog's GPUs: FlashAttention (2 on
Ampere/Ada/Blackwell workstation, 3 on Hopper) for every preset; with
``kvCacheDtype: fp8`` on L4, A100 and RTX PRO 6000 FlashInfer instead (head
sizes 64/128/256), else Triton; Pallas on TPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from gke_inference.core.errors import Problem
from gke_inference.inference import catalog
from gke_inference.workloads.vllm_server import server_version, table

if TYPE_CHECKING:
    from gke_inference.workloads.spec import WorkloadSpec

# What a spec may pin: the standard-attention backends the CUDA walk can reach, and
# the TPU kernel.
AttentionBackendName = Literal[
    "FLASH_ATTN", "FLASHINFER", "TRITON_ATTN", "FLEX_ATTENTION", "PALLAS"
]
TPU_BACKEND = "PALLAS"
ENV = "VLLM_ATTENTION_BACKEND"
# The one rule that is a function in vLLM rather than a list (see the module doc).
FA3_FP8_RULE = "flash_attn_supports_fp8"
FA3_MAJOR = 9

DISPLAY = {
    "FLASH_ATTN": "FlashAttention",
    "FLASHINFER": "FlashInfer",
    "TRITON_ATTN": "Triton",
    "FLEX_ATTENTION": "FlexAttention",
    "PALLAS": "Pallas",
}


@dataclass(frozen=True)
class Choice:
    backend: str
    pinned: bool
    # the backends vLLM tries before it, and why each is refused (empty when pinned)
    passed_over: dict[str, list[str]] = field(default_factory=dict)

    def reasons(self) -> list[str]:
        """For `size`: the backends vLLM passes over before this one, and why."""
        if not self.passed_over:
            return []
        skipped = "; ".join(f"{name}: {', '.join(why)}" for name, why in self.passed_over.items())
        return [f"attention backend {self.backend}: vLLM passes over {skipped}"]

    def describe(self, acc: catalog.Accelerator) -> str:
        name = f"{self.backend} ({DISPLAY.get(self.backend, self.backend)})"
        if self.pinned:
            return f"{name}, pinned by server.attentionBackend ({ENV})"
        where = (
            "the TPU platform's only kernel"
            if acc.compute_capability is None
            else "vLLM's first valid choice on compute capability "
            + ".".join(map(str, acc.compute_capability))
        )
        return f"{name}, {where}"


def _dtype(precision: str) -> str:
    """The attention dtype: the model's activations (quantized weights still compute in
    bf16; fp16 only when the spec serves fp16)."""
    return "float16" if precision == "fp16" else "bfloat16"


def refusals(
    facts: dict[str, Any],
    capability: tuple[int, int],
    head_dim: int,
    kv_cache_dtype: str,
    dtype: str,
) -> list[str]:
    """Why one backend's ``validate_configuration`` refuses the layer (vLLM's wording)."""
    why = []
    sizes, minimum = facts.get("headSizes") or [], facts.get("headSizeMin")
    if (sizes and head_dim not in sizes) or (minimum is not None and head_dim < minimum):
        why.append("head_size not supported")
    if dtype not in facts["dtypes"]:
        why.append("dtype not supported")
    kv_ok = kv_cache_dtype in facts["kvCacheDtypes"]
    rule = facts.get("fp8KvCacheIf")
    if rule is not None and kv_cache_dtype.startswith("fp8"):
        if rule != FA3_FP8_RULE:
            raise ValueError(f"the vLLM table decides FP8 KV caches by {rule}(), unknown here")
        kv_ok = capability[0] == FA3_MAJOR
    if not kv_ok:
        why.append("kv_cache_dtype not supported")
    bounds = facts.get("capability") or {}
    low, high = bounds.get("min"), bounds.get("max")
    if (low is not None and capability < tuple(low)) or (
        high is not None and capability > tuple(high)
    ):
        why.append("compute capability not supported")
    return why


def choose(
    table: dict[str, Any],
    acc: catalog.Accelerator,
    *,
    head_dim: int,
    kv_cache_dtype: str,
    precision: str,
    pinned: str | None,
) -> Choice | Problem:
    """The backend vLLM will use, or the Problem with a pinned one it would refuse."""
    known = table["attentionBackends"]
    if acc.compute_capability is None:
        if pinned not in (None, TPU_BACKEND):
            return Problem(
                "server.attentionBackend",
                f"{pinned} does not run on TPUs: vLLM's TPU platform always uses "
                f"{TPU_BACKEND} (any other name is ignored); remove it or use {TPU_BACKEND}",
            )
        return Choice(TPU_BACKEND, pinned is not None)
    capability = acc.compute_capability
    dtype = _dtype(precision)
    major = str(capability[0])
    order = known["cudaPriority"].get(major, known["cudaPriority"]["other"])
    if pinned is not None:
        if pinned not in known["backends"]:
            return Problem(
                "server.attentionBackend",
                f"{pinned} is not a CUDA backend vLLM {table['version']} tries for this "
                f"model; use one of {', '.join(order)} or leave it unset",
            )
        why = refusals(known["backends"][pinned], capability, head_dim, kv_cache_dtype, dtype)
        if why:
            fallback = choose(
                table,
                acc,
                head_dim=head_dim,
                kv_cache_dtype=kv_cache_dtype,
                precision=precision,
                pinned=None,
            )
            instead = (
                f"; vLLM would pick {fallback.backend}" if isinstance(fallback, Choice) else ""
            )
            return Problem(
                "server.attentionBackend",
                f"vLLM {table['version']} refuses {pinned} on {acc.display_name} for this "
                f"model ({'; '.join(why)}: head size {head_dim}, {dtype}, KV cache "
                f"{kv_cache_dtype}), and the server would not start{instead}; remove it "
                "or pin another",
            )
        return Choice(pinned, True)
    passed_over: dict[str, list[str]] = {}
    for name in order:
        why = refusals(known["backends"][name], capability, head_dim, kv_cache_dtype, dtype)
        if not why:
            return Choice(name, False, passed_over)
        passed_over[name] = why
    return Problem(
        "accelerator",
        f"vLLM {table['version']} has no attention backend for this model on "
        f"{acc.display_name}: {passed_over}",
    )


def for_spec(spec: WorkloadSpec, head_dim: int) -> Choice | Problem:
    """:func:`choose` for a spec, on the table of its server's pinned vLLM (a custom
    image is predicted as that version)."""
    return choose(
        table(server_version(spec.server.type)),
        spec.accelerator_info,
        head_dim=head_dim,
        kv_cache_dtype=spec.kv_cache_dtype,
        precision=spec.precision,
        pinned=spec.server.attention_backend,
    )
