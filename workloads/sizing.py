"""Sizing: from a model and an accelerator to a layout, its memory budget and vLLM flags.

The memory model and the choice of layout live in :mod:`~gke_inference.workloads.fit`
(device memory as reported, runtime reserve, KV-head replication, sliding
windows; the smallest tensor-parallel degree that holds the model), the
``--quantization`` rules in :mod:`~gke_inference.workloads.quantization`.
This module turns the chosen layout into what is deployed and explained:
the compute class, the flags, ``--max-num-seqs``, the startup budget, and the
reasons ``gke-inference size`` prints.

Where the weights are: the model's folder (``ModelSettings.bucket_path``) of
its bucket (the platform's model bucket, or the bucket a ``gs://`` id names)
is mounted with GCS FUSE ``only-dir:<folder>`` at MODEL_MOUNT, so the folder's
``config.json`` is ``/models/config.json`` and the server is given
``--model=/models`` (gcsfuse: "--only-dir: mount only a specific directory
within a bucket", the directory becomes the mount root).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gke_inference.core.errors import Problem, SpecError
from gke_inference.inference import catalog
from gke_inference.inference.compute_classes import COST_OPTIMIZED_SUFFIX
from gke_inference.workloads import attention
from gke_inference.workloads.compile_cache import CompileCache, compile_cache
from gke_inference.workloads.compile_cache import Mode as CompileCacheMode
from gke_inference.workloads.fit import (
    BYTES_PER_PARAMETER,
    GIB,
    GPU_BLOCK_SIZE,
    RUNTIME_RESERVE_GIB,
    TENSOR_PARALLEL_DEGREES,
    Layout,
    Need,
    fit_layout,
    kv_bytes_per_sequence,
    kv_bytes_per_token,
    kv_replication,
    memory_utilization,
    nearest_fits,
    shape_for,
    tensor_parallel_problem,
    usable_bytes_per_device,
)
from gke_inference.workloads.loading import Loader, loader_args, loader_problems
from gke_inference.workloads.lora import lora_args, lora_problems, lora_span_problems
from gke_inference.workloads.presets import resolve_architecture
from gke_inference.workloads.quantization import quantization_flag, quantization_problems
from gke_inference.workloads.serving_spec import LoraSettings, SpeculativeSettings
from gke_inference.workloads.spec import Architecture, HyperdiskMlSettings, WorkloadSpec
from gke_inference.workloads.speculative import (
    speculative_args,
    speculative_problems,
    speculative_span_problems,
)

MODEL_MOUNT = "/models"  # the model's folder is the mount root (only-dir)

# vLLM's own --max-num-seqs default for its OpenAI server
# (EngineArgs._set_default_args / get_batch_defaults, v0.10-v0.11): 256, and
# 1024 on GPUs with >= 70 GiB that are not A100s (H100, H200, RTX PRO 6000).
# TPU overrides only the batched-token budget, so 256 there too.
VLLM_DEFAULT_MAX_NUM_SEQS = 256
VLLM_LARGE_GPU_MAX_NUM_SEQS = 1024
VLLM_LARGE_GPU_GIB = 70
# The request length --max-num-seqs is chosen for: prompt + completion of a
# typical chat or RAG request (ShareGPT-style traffic averages well under 2k).
TYPICAL_REQUEST_TOKENS = 2048


@dataclass(frozen=True)
class Sizing:
    """The sized replica, its memory budget, its vLLM flags, and why.

    ``max_num_seqs`` caps how many sequences one engine step batches. What the
    cap protects against is a batch wider than the KV cache can carry: vLLM
    admits a sequence only when blocks for its prompt are free and preempts
    (recomputes) the newest when decoding runs out, so a cap far above what
    the cache holds buys nothing but preemption churn, CUDA-graph captures and
    sampler buffers sized for batches that never run. A cap below it
    throttles throughput (short requests that would fit wait). So it is the
    number of TYPICAL_REQUEST_TOKENS-long sequences the KV budget holds,
    never above vLLM's own default for the device (256; 1024 on >= 70 GiB
    non-A100 GPUs) and never below the spec's ``concurrency`` (which is sized
    to fit at full context). HPA targets are checked against it
    (``kinds.scaling_problems``): a running-requests target above it never
    triggers.
    """

    accelerator: catalog.Accelerator
    shape: catalog.MachineShape
    tensor_parallel: int
    pipeline_parallel: int
    weights_gib: float
    kv_bytes_per_token: int  # full-attention KV of one token across the replica
    kv_replication: int  # copies of each KV head (TP > KV heads)
    kv_sequence_bytes: int  # KV of one contextLength sequence (sliding windows applied)
    typical_sequence_bytes: int  # ... of one TYPICAL_REQUEST_TOKENS sequence
    kv_cache_gib: float  # concurrency x kv_sequence_bytes
    usable_gib: float  # across the whole replica
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    concurrency: int
    quantization: str | None
    kv_cache_dtype: str
    block_size: int | None
    compute_class: str
    model_path: str  # what the server is given: the mount root (MODEL_MOUNT)
    loader: Loader  # how the weights reach it (workloads.loading)
    compile_cache_mode: CompileCacheMode  # server.compileCache (workloads.compile_cache)
    hyperdisk_ml: HyperdiskMlSettings | None  # model.hyperdiskMl (workloads.hyperdisk)
    weight_readers: int  # nodes that may read the weights at once (maxReplicas x nodes)
    served_model_name: str
    lora: LoraSettings | None  # adapters served beside the model (workloads.lora)
    lora_gib: float  # their GPU slots across the replica
    speculative: SpeculativeSettings | None  # workloads.speculative
    draft_gib: float  # an EAGLE head's weights and KV across the replica
    # the attention backend vLLM will use (workloads.attention); pinned: set through
    # VLLM_ATTENTION_BACKEND, else vLLM's own choice, predicted
    attention: attention.Choice
    model_bucket: str | None = None  # the gs:// id's bucket; None: the platform's model bucket
    model_dir: str = ""  # the weights' folder in that bucket (the FUSE only-dir)
    model_key: str = ""  # a path-safe name of the model, for cache prefixes
    extra_args: list[str] = field(default_factory=list)
    reasons: tuple[str, ...] = ()  # why each choice was made, for `size`

    @property
    def nodes(self) -> int:
        """Pods (one per node) that serve one replica: 1, or the pipeline stages."""
        return self.pipeline_parallel

    @property
    def devices_per_pod(self) -> int:
        """Accelerators each pod of a replica requests (its tensor-parallel group)."""
        return self.tensor_parallel

    @property
    def devices(self) -> int:
        """Accelerators of one replica, across its nodes."""
        return self.devices_per_pod * self.nodes

    @property
    def replicas_per_node(self) -> int:
        """Single-node replicas one machine of the shape holds (their requests pack)."""
        return self.shape.count // self.devices_per_pod if self.nodes == 1 else 1

    @property
    def kv_budget_gib(self) -> float:
        """What vLLM gives the KV cache: usable memory minus the weights (and the LoRA
        adapter slots, which its memory profile runs)."""
        return self.usable_gib - self.weights_gib - self.lora_gib - self.draft_gib

    @property
    def headroom_gib(self) -> float:
        return self.kv_budget_gib - self.kv_cache_gib

    @property
    def compile_cache(self) -> CompileCache | None:
        """Where this server's compilation cache persists (None: in the pod)."""
        return compile_cache(
            self.accelerator.kind,
            self.compile_cache_mode,
            model_key=self.model_key,
            machine_type=self.shape.machine_type,
            devices_per_pod=self.devices_per_pod,
            topology=self.shape.topology,
        )

    def sequences_held(self, sequence_bytes: int) -> int:
        return int(self.kv_budget_gib * GIB // sequence_bytes)

    def vllm_args(self, port: int = 8000, model: str | None = None) -> list[str]:
        """The server's flags; ``model``: where it reads the weights when not the mount
        (the streamer's gs:// folder, which needs the platform's bucket name)."""
        args = [
            f"--model={model or self.model_path}",
            f"--served-model-name={self.served_model_name}",
            f"--port={port}",
            f"--tensor-parallel-size={self.tensor_parallel}",
            f"--max-model-len={self.max_model_len}",
            f"--gpu-memory-utilization={self.gpu_memory_utilization:.2f}",
            f"--max-num-seqs={self.max_num_seqs}",
            "--enable-prefix-caching",
        ]
        if self.pipeline_parallel > 1:
            # stages on other nodes: vLLM places its workers through the group's Ray
            # cluster (workloads.multihost)
            args.append(f"--pipeline-parallel-size={self.pipeline_parallel}")
            args.append("--distributed-executor-backend=ray")
        if self.quantization:
            args.append(f"--quantization={self.quantization}")
        if self.kv_cache_dtype != "auto":
            args.append(f"--kv-cache-dtype={self.kv_cache_dtype}")
        if self.block_size:
            args.append(f"--block-size={self.block_size}")
        return [
            *args,
            *loader_args(self),
            *lora_args(self.lora),
            *speculative_args(self.speculative),
            *self.extra_args,
        ]


def vllm_default_max_num_seqs(acc: catalog.Accelerator) -> int:
    """vLLM's own --max-num-seqs default on ``acc`` (see VLLM_DEFAULT_MAX_NUM_SEQS)."""
    if acc.kind == "gpu" and acc.memory_gib >= VLLM_LARGE_GPU_GIB and "a100" not in acc.key:
        return VLLM_LARGE_GPU_MAX_NUM_SEQS
    return VLLM_DEFAULT_MAX_NUM_SEQS


def _input_problems(spec: WorkloadSpec, arch: Architecture, tp: int | None) -> list[Problem]:
    acc = spec.accelerator_info
    problems = quantization_problems(spec, acc)
    if spec.context_length > arch.max_context:
        problems.append(
            Problem(
                "contextLength",
                f"{spec.context_length} exceeds the model's maximum context {arch.max_context}",
            )
        )
    if tp is not None:
        why = tensor_parallel_problem(arch, tp)
        if why is None and shape_for(acc, tp) is None:
            counts = ", ".join(str(c) for c in sorted({s.count for s in acc.shapes}))
            why = f"no {acc.key} machine has {tp} devices (machines have {counts})"
        if why is not None:
            accepted = [
                d
                for d in TENSOR_PARALLEL_DEGREES
                if tensor_parallel_problem(arch, d) is None and shape_for(acc, d) is not None
            ]
            problems.append(
                Problem(
                    "tensorParallel",
                    f"{tp} cannot serve this model on {acc.key}: {why}; accepted: "
                    + (", ".join(map(str, accepted)) or "none"),
                )
            )
    return problems


def _does_not_fit(spec: WorkloadSpec, need: Need, tp: int | None) -> SpecError:
    acc = spec.accelerator_info
    count = tp or max(s.count for s in acc.shapes)
    usable = count * usable_bytes_per_device(acc)
    kv = need.kv(count, acc.kind)
    numbers = (
        f"weights {need.weights / GIB:.1f} GiB ({need.arch.parameters_billions:g}B x "
        f"{BYTES_PER_PARAMETER[spec.precision]:g} bytes, {spec.precision}) + KV cache "
        f"{kv / GIB:.1f} GiB ({spec.context_length} tokens x {spec.concurrency} sequences) = "
        f"{(need.weights + kv) / GIB:.1f} GiB, but {count}x {acc.key} give "
        f"{usable / GIB:.1f} GiB usable ({acc.memory_gib:.1f} GiB x "
        f"{memory_utilization(acc):.2f} - {RUNTIME_RESERVE_GIB[acc.kind]:g} GiB reserved, "
        "per device)"
    )
    hints = nearest_fits(need)
    suggestion = (
        "; shapes that would fit: " + ", ".join(hints)
        if hints
        else "; lower contextLength or concurrency"
    )
    return SpecError(
        f"Workload {spec.name!r} does not fit", [Problem("accelerator", numbers + suggestion)]
    )


def _reasons(spec: WorkloadSpec, need: Need, layout: Layout, max_num_seqs: int) -> list[str]:
    acc = spec.accelerator_info
    arch = need.arch
    tp = layout.tensor_parallel
    per_device = usable_bytes_per_device(acc)
    reasons: list[str] = []
    if spec.tensor_parallel is not None:
        reasons.append(f"tensor parallel {tp}: pinned by the spec (tensorParallel)")
    elif layout.pipeline_parallel == 1:
        skipped = []
        for degree in TENSOR_PARALLEL_DEGREES:
            if degree >= tp:
                break
            why = tensor_parallel_problem(arch, degree)
            if why is None and shape_for(acc, degree) is None:
                why = f"no {degree}-device {acc.key} machine"
            if why is None:
                why = (
                    f"{need.total(degree, acc.kind) / GIB:.1f} GiB needed > "
                    f"{degree * per_device / GIB:.1f} GiB usable"
                )
            skipped.append(f"TP {degree}: {why}")
        reasons.append(
            f"tensor parallel {tp}: the smallest degree that divides the heads and holds "
            f"weights + KV for {spec.concurrency} x {spec.context_length} tokens"
            + (f" ({'; '.join(skipped)})" if skipped else "")
        )
    else:
        reasons.append(
            f"no single {acc.key} machine holds {need.total(tp, acc.kind) / GIB:.1f} GiB: "
            f"tensor parallel {tp} within a node, {layout.pipeline_parallel} pipeline "
            "stages across nodes"
        )
    if layout.shape.count > tp and layout.pipeline_parallel == 1:
        reasons.append(
            f"{layout.shape.machine_type}: the smallest {acc.key} machine with >= {tp} devices; "
            f"pods request {tp}, so {layout.shape.count // tp} replicas share a node"
        )
    replication = kv_replication(arch, tp)
    if replication > 1:
        reasons.append(
            f"KV heads replicated x{replication}: TP {tp} > {arch.kv_heads} KV heads, "
            "each rank keeps a copy (included in the KV figures)"
        )
    if arch.sliding_window is not None:
        if acc.kind == "gpu":
            reasons.append(
                f"sliding window: {arch.sliding_layers} of {arch.layers} layers keep at most "
                f"{arch.sliding_window} + {GPU_BLOCK_SIZE} tokens (vLLM's hybrid KV-cache "
                f"manager), {arch.full_attention_layers} keep the whole context"
            )
        else:
            reasons.append(
                "sliding window not credited on TPU: every layer is sized for the whole context"
            )
    typical = min(TYPICAL_REQUEST_TOKENS, spec.context_length)
    reasons.append(
        f"--max-num-seqs {max_num_seqs}: the {typical}-token sequences the KV budget holds, "
        f"within [concurrency {spec.concurrency}, vLLM's default "
        f"{vllm_default_max_num_seqs(acc)}]; wider batches would only be preempted"
    )
    return reasons


def size(spec: WorkloadSpec, devices: int | None = None) -> Sizing:
    """Size a model-serving spec; SpecError (with the numbers) if it cannot fit.

    ``devices`` (the CLI's ``--devices``) pins the tensor-parallel degree like
    the spec's ``tensorParallel``.
    """
    acc = spec.accelerator_info
    arch = resolve_architecture(spec)
    if arch is None or spec.model is None:
        raise SpecError(f"Cannot size workload {spec.name!r}", [Problem("model", "is required")])
    tp = devices if devices is not None else spec.tensor_parallel
    problems = [
        *_input_problems(spec, arch, tp),
        *lora_problems(spec, arch),
        *speculative_problems(spec, spec.model.preset),
    ]
    backend = attention.for_spec(spec, arch.head_dim)
    if isinstance(backend, Problem):
        problems.append(backend)
    if problems:
        raise SpecError(f"Cannot size workload {spec.name!r}", problems)
    assert isinstance(backend, attention.Choice)
    need = need_of(spec, arch)
    layout = fit_layout(acc, need, tp)
    if layout is None:
        raise _does_not_fit(spec, need, tp)
    nodes = layout.pipeline_parallel
    problems = [
        *loader_problems(spec, nodes),
        *lora_span_problems(spec, nodes),
        *speculative_span_problems(spec, nodes),
    ]
    if problems:
        raise SpecError(f"Cannot size workload {spec.name!r}", problems)
    degree = layout.tensor_parallel
    usable_total = layout.devices * usable_bytes_per_device(acc)
    sequence = kv_bytes_per_sequence(
        arch, spec.kv_cache_dtype, degree, spec.context_length, acc.kind
    )
    typical = kv_bytes_per_sequence(
        arch,
        spec.kv_cache_dtype,
        degree,
        min(TYPICAL_REQUEST_TOKENS, spec.context_length),
        acc.kind,
    )
    adapters = need.adapters(degree)
    held = int((usable_total - need.weights - need.extras(degree)) // typical)
    max_num_seqs = max(spec.concurrency, min(vllm_default_max_num_seqs(acc), held))
    model = spec.model
    return Sizing(
        accelerator=acc,
        shape=layout.shape,
        tensor_parallel=degree,
        pipeline_parallel=layout.pipeline_parallel,
        weights_gib=need.weights / GIB,
        kv_bytes_per_token=kv_bytes_per_token(arch, spec.kv_cache_dtype, degree),
        kv_replication=kv_replication(arch, degree),
        kv_sequence_bytes=sequence,
        typical_sequence_bytes=typical,
        kv_cache_gib=need.kv(degree, acc.kind) / GIB,
        usable_gib=usable_total / GIB,
        lora=spec.lora,
        lora_gib=adapters / GIB,
        speculative=spec.speculative,
        draft_gib=need.draft / GIB,
        gpu_memory_utilization=memory_utilization(acc),
        max_model_len=spec.context_length,
        max_num_seqs=max_num_seqs,
        concurrency=spec.concurrency,
        quantization=quantization_flag(spec),
        kv_cache_dtype=spec.kv_cache_dtype,
        block_size=GPU_BLOCK_SIZE if acc.kind == "gpu" else None,
        compute_class=class_for(spec, layout.shape),
        model_path=MODEL_MOUNT,
        loader=model.loader,
        compile_cache_mode=spec.server.compile_cache,
        hyperdisk_ml=model.hyperdisk_ml,
        weight_readers=layout.pipeline_parallel
        * max(spec.scaling.max_replicas, spec.batch.parallelism if spec.batch else 1),
        served_model_name=model.id if not model.in_bucket else spec.name,
        model_bucket=model.bucket,
        model_dir=model.bucket_path.strip("/"),
        model_key=model_key(model.bucket_path, model.bucket),
        extra_args=list(spec.server.extra_args),
        reasons=tuple((*_reasons(spec, need, layout, max_num_seqs), *backend.reasons())),
        attention=backend,
    )


def need_of(spec: WorkloadSpec, arch: Architecture) -> Need:
    """What one replica of the spec must hold."""
    return Need(
        arch,
        spec.precision,
        spec.kv_cache_dtype,
        spec.context_length,
        spec.concurrency,
        spec.lora,
        spec.speculative,
    )


def alternatives(spec: WorkloadSpec) -> list[str]:
    """Single-node shapes that would hold the spec's model (for specs that span nodes)."""
    arch = resolve_architecture(spec)
    if arch is None:
        return []
    return nearest_fits(need_of(spec, arch))


def single_device_shape(spec: WorkloadSpec) -> catalog.MachineShape:
    """The one-device machine shape of the spec's accelerator (kinds that are not sized)."""
    acc = spec.accelerator_info
    shape = next((s for s in acc.shapes if s.count == 1), None)
    if shape is None:
        raise SpecError(
            f"Workload {spec.name!r} cannot be sized",
            [Problem("accelerator", f"{acc.key} has no single-device machine shape")],
        )
    return shape


def single_device_class(spec: WorkloadSpec) -> str:
    """The class of one device of the spec's accelerator, for kinds that are not sized
    (ComfyUI): ``gpu-<accelerator>-x1``, ``-co`` when cost-optimized."""
    return class_for(spec, single_device_shape(spec))


def class_for(spec: WorkloadSpec, shape: catalog.MachineShape) -> str:
    """The compute class of a shape of the spec's accelerator (``-co``: Spot first)."""
    suffix = COST_OPTIMIZED_SUFFIX if spec.cost_optimized else ""
    return catalog.class_name(spec.accelerator_info, shape) + suffix


def model_key(bucket_path: str, bucket: str | None) -> str:
    """A path-safe name of the model for cache prefixes (``google--gemma-3-1b-it``)."""
    key = "--".join(part for part in bucket_path.strip("/").split("/") if part)
    return key or (bucket or "model")
