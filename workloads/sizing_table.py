"""The `size` report of a Sizing: every number the sizing chose, with its unit and source."""

from __future__ import annotations

from gke_inference.workloads.fit import GIB, RUNTIME_RESERVE_GIB, usable_bytes_per_device
from gke_inference.workloads.loading import startup_rows
from gke_inference.workloads.lora import lora_rows
from gke_inference.workloads.sizing import TYPICAL_REQUEST_TOKENS, Sizing
from gke_inference.workloads.speculative import speculative_rows


def sizing_table(sizing: Sizing) -> str:
    """The rows `size` prints for a sizing, then the reasons."""
    acc = sizing.accelerator
    per_device = usable_bytes_per_device(acc) / GIB
    replicas = (
        f", {sizing.replicas_per_node} replicas per node" if sizing.replicas_per_node > 1 else ""
    )
    rows = [
        ("accelerator", f"{acc.display_name} ({acc.gke_label})"),
        ("machine type", f"{sizing.shape.machine_type} ({sizing.shape.count} per node{replicas})"),
        ("compute class", sizing.compute_class),
        ("devices per replica", f"{sizing.devices} ({sizing.devices_per_pod} per pod)"),
        ("tensor / pipeline parallel", f"{sizing.tensor_parallel} / {sizing.pipeline_parallel}"),
        ("device memory", f"{acc.memory_gib:.1f} GiB ({acc.memory_mib} MiB as reported)"),
        (
            "usable per device",
            f"{per_device:.1f} GiB (x {sizing.gpu_memory_utilization:.2f} utilization "
            f"- {RUNTIME_RESERVE_GIB[acc.kind]:g} GiB reserved: context, activations, graphs)",
        ),
        ("usable per replica", f"{sizing.usable_gib:.1f} GiB"),
        ("weights", f"{sizing.weights_gib:.1f} GiB"),
        *lora_rows(sizing.lora, sizing.lora_gib),
        *speculative_rows(sizing.speculative, sizing.draft_gib),
        ("KV cache budget", f"{sizing.kv_budget_gib:.1f} GiB (usable - weights - extras)"),
        (
            "KV cache per token",
            f"{sizing.kv_bytes_per_token / 1024:.1f} KiB (full attention"
            + (f", KV heads x{sizing.kv_replication}" if sizing.kv_replication > 1 else "")
            + ")",
        ),
        (
            "KV cache per sequence",
            f"{sizing.kv_sequence_bytes / GIB:.2f} GiB at {sizing.max_model_len} tokens",
        ),
        (
            "KV cache for concurrency",
            f"{sizing.kv_cache_gib:.1f} GiB ({sizing.concurrency} x {sizing.max_model_len} tokens)",
        ),
        ("headroom", f"{sizing.headroom_gib:.1f} GiB"),
        (
            "sequences the cache holds",
            f"{sizing.sequences_held(sizing.kv_sequence_bytes)} at {sizing.max_model_len} tokens, "
            f"{sizing.sequences_held(sizing.typical_sequence_bytes)} at "
            f"{min(TYPICAL_REQUEST_TOKENS, sizing.max_model_len)}",
        ),
        ("--gpu-memory-utilization", f"{sizing.gpu_memory_utilization:.2f}"),
        ("--max-model-len", str(sizing.max_model_len)),
        ("--max-num-seqs", str(sizing.max_num_seqs)),
        ("--quantization", sizing.quantization or "none"),
        ("--kv-cache-dtype", sizing.kv_cache_dtype),
        ("--block-size", str(sizing.block_size) if sizing.block_size else "server default"),
        ("attention backend", sizing.attention.describe(acc)),
        *startup_rows(sizing),
        sizing.compile_cache.row()
        if sizing.compile_cache
        else ("compile cache", "in the pod's /tmp: every pod compiles (server.compileCache: pod)"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if sizing.reasons:
        lines += ["", "why:"] + [f"  - {reason}" for reason in sizing.reasons]
    return "\n".join(lines)
