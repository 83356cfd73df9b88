"""The workload spec: one pydantic model for YAML files and JSON bodies.

A spec says what a model team wants (model, server, accelerator, precision,
context, concurrency, scaling); sizing turns it into vLLM flags, device counts
and a compute class, and the components turn that into Kubernetes objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import Field

from gke_inference.core import safe_yaml
from gke_inference.core.errors import Problem, SpecError, show_value
from gke_inference.core.settings import ZONE_PATTERN
from gke_inference.core.validation import describe_pattern, problems_from, repeated
from gke_inference.inference import catalog
from gke_inference.workloads.attention import AttentionBackendName
from gke_inference.workloads.compile_cache import Mode as CompileCacheMode
from gke_inference.workloads.kinds import KINDS
from gke_inference.workloads.loading import Loader
from gke_inference.workloads.serving_spec import (
    POOL_HPA_METRICS,
    LoraSettings,
    RoutingSettings,
    ScalingSettings,
    SpeculativeSettings,
)
from gke_inference.workloads.spec_types import GCS_PREFIX as _GCS_PREFIX
from gke_inference.workloads.spec_types import GcsPath, SpecModel
from gke_inference.workloads.spec_types import exact_int as _exact_int
from gke_inference.workloads.vllm_server import (
    flag_problems,
    platform_flag_problems,
    server_version,
    table,
)

_WORKLOAD_NAME = describe_pattern(
    r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$",
    "a DNS label of at most 40 characters: lowercase letters, digits and hyphens",
)
_MODEL_ID = describe_pattern(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*|gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/[^\s]*)?)$",
    "a Hugging Face id (org/name) or a gs://bucket/path",
)
_IMAGE = describe_pattern(
    r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+"
    r"(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64}|:[A-Za-z0-9._-]+@sha256:[a-f0-9]{64})$",
    "a container image with a registry, a repository and a pinned tag, digest or both "
    "(name:tag@sha256:<64 hex>)",
)
Precision = Literal["bf16", "fp16", "fp8", "int8", "int4"]
QuantizationMethod = Literal["fp8", "awq", "gptq", "compressed-tensors", "bitsandbytes"]


def _accelerator_key(value: str) -> str:
    if value not in catalog.BY_KEY:
        raise ValueError(
            f"{show_value(value)} is not in the catalog; accepted: {', '.join(catalog.BY_KEY)}"
        )
    return value


AcceleratorKey = Annotated[str, pydantic.AfterValidator(_accelerator_key)]


class Architecture(SpecModel):
    """The published numbers sizing needs (from the model's config.json)."""

    parameters_billions: float = Field(gt=0, le=2000)
    layers: int = Field(gt=0, le=512)
    attention_heads: int = Field(gt=0, le=1024)
    kv_heads: int = Field(gt=0, le=1024)
    head_dim: int = Field(gt=0, le=1024)
    max_context: int = Field(gt=0, le=10_000_000)
    # Sliding-window (local) attention, from config.json's ``sliding_window``
    # and the local:global layer pattern (Gemma 2: 2, every other layer global;
    # Gemma 3: 6, every sixth layer global; unset: every layer slides).
    sliding_window: int | None = Field(default=None, gt=0, le=10_000_000)
    sliding_window_pattern: int | None = Field(default=None, ge=2, le=512)
    # config.json hidden_size and intermediate_size: the LoRA slots' size (workloads.lora)
    hidden_size: int | None = Field(default=None, gt=0, le=131_072)
    intermediate_size: int | None = Field(default=None, gt=0, le=524_288)

    @pydantic.model_validator(mode="after")
    def _heads(self) -> Architecture:
        if self.attention_heads % self.kv_heads:
            raise ValueError(
                "attentionHeads must be a multiple of kvHeads (grouped-query attention)"
            )
        if self.sliding_window_pattern is not None and self.sliding_window is None:
            raise ValueError("slidingWindowPattern needs slidingWindow (the window in tokens)")
        return self

    @property
    def full_attention_layers(self) -> int:
        """Layers that attend to the whole context (every ``pattern``-th layer)."""
        if self.sliding_window is None:
            return self.layers
        if self.sliding_window_pattern is None:
            return 0
        return self.layers // self.sliding_window_pattern

    @property
    def sliding_layers(self) -> int:
        return self.layers - self.full_attention_layers


class HyperdiskMlSettings(SpecModel):
    """``model.loader: hyperdisk-ml``: the weights copied once to a Hyperdisk ML volume
    that every replica attaches read-only (workloads.hyperdisk)."""

    # One disk per zone, restored from one snapshot; serving pods schedule there.
    zones: list[Annotated[str, Field(pattern=ZONE_PATTERN)]] = Field(min_length=1, max_length=4)
    # The volume's provisioned read throughput (Hyperdisk ML: 400-1,200,000 MiB/s).
    throughput_mi_bps: int = Field(default=2400, ge=400, le=1_200_000)

    @pydantic.field_validator("zones")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if twice := repeated(value):
            raise ValueError(f"zones must be distinct; {twice} is repeated")
        regions = sorted({z.rsplit("-", 1)[0] for z in value})
        if len(regions) > 1:
            raise ValueError(f"zones must share one region; these span {', '.join(regions)}")
        return value


class ModelSettings(SpecModel):
    id: GcsPath = Field(pattern=_MODEL_ID)
    preset: str | None = None
    architecture: Architecture | None = None
    revision: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # The checkpoint is already stored at the spec's precision (AWQ, GPTQ,
    # compressed-tensors, FP8): vLLM reads its quantization config itself.
    prequantized: bool = False
    # Download the weights from the Hub before serving. Default: when
    # huggingFaceTokenSecret is set; true downloads a public model without a token.
    download: bool | None = None
    # How the weights reach the server: a Cloud Storage FUSE mount, or vLLM's Run:ai
    # Model Streamer reading gs:// directly (workloads.loading).
    loader: Loader = "fuse"
    hyperdisk_ml: HyperdiskMlSettings | None = None

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> ModelSettings:
        if (self.preset is None) == (self.architecture is None):
            raise ValueError("give exactly one of preset (a known model) or architecture")
        if (self.loader == "hyperdisk-ml") != (self.hyperdisk_ml is not None):
            raise ValueError(
                "loader 'hyperdisk-ml' needs hyperdiskMl (its zones), and hyperdiskMl is "
                f"only for that loader (loader is {self.loader!r})"
            )
        return self

    @pydantic.field_validator("download")
    @classmethod
    def _download_from_the_hub(
        cls, value: bool | None, info: pydantic.ValidationInfo
    ) -> bool | None:
        if value and str(info.data.get("id", "")).startswith("gs://"):
            raise ValueError("is for Hugging Face ids; a gs:// model is read from its bucket as is")
        return value

    @property
    def in_bucket(self) -> bool:
        return self.id.startswith("gs://")

    @property
    def bucket(self) -> str | None:
        """The bucket a ``gs://`` id names (None for a Hugging Face id)."""
        return self.id.removeprefix("gs://").split("/", 1)[0] if self.in_bucket else None

    @property
    def bucket_path(self) -> str:
        """Path of the weights inside the platform's model bucket (HF ids lower-cased)."""
        if self.in_bucket:
            return self.id.split("/", 3)[3] if self.id.count("/") >= 3 else ""
        return self.id.lower()


class ServerSettings(SpecModel):
    type: Literal["vllm-gpu", "vllm-tpu"] = "vllm-gpu"
    image: str | None = Field(default=None, pattern=_IMAGE)
    extra_args: list[str] = Field(default_factory=list, max_length=32)
    # Pin vLLM's attention backend (VLLM_ATTENTION_BACKEND); default: vLLM's own choice,
    # which `size` predicts (workloads.attention).
    attention_backend: AttentionBackendName | None = None
    # Where vLLM's compilation caches live (workloads.compile_cache): a prefix of the
    # platform model bucket shared by the pods of one shape, or each pod's /tmp.
    compile_cache: CompileCacheMode = "bucket"

    @pydantic.field_validator("extra_args")
    @classmethod
    def _extra_args_allowed(cls, value: list[str], info: pydantic.ValidationInfo) -> list[str]:
        """Never a flag the rendered command line already sets (the spec and the
        sizing own those) or one that weakens the server's security, whatever the image."""
        if value:
            doc = table(server_version(info.data.get("type", "vllm-gpu")))
            problems = platform_flag_problems(value, doc)
            if problems:
                raise ValueError("; ".join(problems))
        return value

    @pydantic.model_validator(mode="after")
    def _extra_args_known(self) -> ServerSettings:
        """extraArgs reach the server verbatim: check them against the pinned version's
        parser (a custom image may be another version, so its flags are its own business)."""
        if self.image is None and self.extra_args:
            version = server_version(self.type)
            problems = flag_problems(self.extra_args, table(version))
            if problems:
                raise ValueError(
                    f"extraArgs: {'; '.join(problems)} (vLLM {version}, the pinned image)"
                )
        return self


class BatchSettings(SpecModel):
    input: GcsPath = Field(pattern=_GCS_PREFIX)
    output: GcsPath = Field(pattern=_GCS_PREFIX)
    shards: int = Field(ge=1, le=10_000)
    parallelism: int = Field(default=2, ge=1, le=1000)
    retries_per_shard: int = Field(default=2, ge=0, le=10)
    max_failure_fraction: float = Field(default=0.05, ge=0, le=1)
    worker_image: str | None = Field(default=None, pattern=_IMAGE)
    # Where the pods' nodes come from: "default" through the sized compute class
    # (static pools, then reservations, on-demand, flex-start, Spot); "queued" from
    # the environment's queued-provisioning (DWS) pool of the sized machine type,
    # all at once through a ProvisioningRequest (workloads/queued.py).
    capacity: Literal["default", "queued"] = "default"


class StreamingSettings(SpecModel):
    ack_deadline_seconds: int = Field(default=600, ge=10, le=600)
    max_delivery_attempts: int = Field(default=10, ge=5, le=100)
    message_retention_seconds: int = Field(default=86_400, ge=600, le=604_800)
    min_backoff_seconds: int = Field(default=10, ge=0, le=600)
    max_backoff_seconds: int = Field(default=600, ge=0, le=600)
    backlog_per_worker: int = Field(default=100, ge=1, le=100_000)
    min_workers: int = Field(default=1, ge=0, le=100)
    max_workers: int = Field(default=16, ge=1, le=1000)
    worker_concurrency: int = Field(default=16, ge=1, le=1024)
    worker_image: str | None = Field(default=None, pattern=_IMAGE)

    @pydantic.model_validator(mode="after")
    def _bounds(self) -> StreamingSettings:
        problems = []
        if self.min_backoff_seconds > self.max_backoff_seconds:
            problems.append("minBackoffSeconds must not exceed maxBackoffSeconds")
        if self.max_workers < self.min_workers:
            problems.append("maxWorkers must be >= minWorkers")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ComfyUISettings(SpecModel):
    image: str = Field(pattern=_IMAGE)
    port: int = Field(default=8188, ge=1, le=65535)


# What a missing section must hold, for the message.
_SECTION_FIELDS = {"batch": " (input, output, shards)", "comfyui": " (image)"}


class WorkloadSpec(SpecModel):
    name: str = Field(pattern=_WORKLOAD_NAME)
    kind: Literal["online", "batch", "streaming", "comfyui"]
    model: ModelSettings | None = None
    server: ServerSettings = ServerSettings()
    accelerator: AcceleratorKey
    precision: Precision = "bf16"
    quantization_method: QuantizationMethod | None = None
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    context_length: int = Field(default=8192, ge=128, le=10_000_000)
    concurrency: int = Field(default=16, ge=1, le=4096)
    # Pin vLLM's --tensor-parallel-size (default: the smallest degree that fits).
    tensor_parallel: (
        Annotated[Literal[1, 2, 4, 8, 16], pydantic.BeforeValidator(_exact_int)] | None
    ) = None
    cost_optimized: bool = False
    scaling: ScalingSettings = ScalingSettings()
    routing: RoutingSettings = RoutingSettings()
    batch: BatchSettings | None = None
    streaming: StreamingSettings | None = None
    comfyui: ComfyUISettings | None = None
    lora: LoraSettings | None = None
    speculative: SpeculativeSettings | None = None
    hugging_face_token_secret: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,255}$")

    @pydantic.model_validator(mode="after")
    def _kind_sections(self) -> WorkloadSpec:
        kind = KINDS[self.kind]
        problems = []
        if self.scaling.metric in POOL_HPA_METRICS and self.routing.mode != "inference-pool":
            problems.append(
                f"scaling.metric {self.scaling.metric!r} reads the endpoint picker's pool "
                f"averages, which only routing.mode 'inference-pool' has (not "
                f"{self.routing.mode!r}); use {self.scaling.metric.removeprefix('pool-')!r} "
                "or set routing.mode: inference-pool"
            )
        if self.lora is not None and self.lora.routes and self.routing.mode != "inference-pool":
            problems.append(
                "lora.routes are applied by the endpoint picker, which only routing.mode "
                f"'inference-pool' has (not {self.routing.mode!r}): set routing.mode: "
                "inference-pool or remove the routes"
            )
        if kind.serves_model and self.model is None:
            problems.append(f"model is required for kind {self.kind!r}")
        if kind.section is not None and getattr(self, kind.section) is None:
            what = _SECTION_FIELDS.get(kind.section, "")
            problems.append(f"{kind.section}{what} is required for kind {self.kind!r}")
        acc = catalog.BY_KEY[self.accelerator]
        if (self.server.type == "vllm-tpu") != (acc.kind == "tpu"):
            problems.append(
                f"server.type {self.server.type!r} does not run on {acc.kind.upper()} "
                f"accelerator {self.accelerator!r}; use vllm-tpu with a TPU, vllm-gpu with a GPU"
            )
        if kind.gpu_only and acc.kind == "tpu":
            problems.append(f"{kind.component} needs a GPU accelerator")
        for section in ("lora", "speculative"):
            if getattr(self, section) is not None and not kind.serves_model:
                problems.append(f"{section} needs a model server; kind {self.kind!r} has none")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def accelerator_info(self) -> catalog.Accelerator:
        return catalog.BY_KEY[self.accelerator]


def parse_spec(data: Any, source: str = "spec") -> WorkloadSpec:
    """Validate a decoded spec; one SpecError lists every problem with its path."""
    if not isinstance(data, dict):
        raise SpecError(
            f"Invalid workload spec {source}", [Problem("(top level)", "must be a mapping")]
        )
    try:
        safe_yaml.check_depth(data)  # a JSON body nests no deeper than a file may
    except safe_yaml.UnsafeInputError as exc:
        raise SpecError(
            f"Invalid workload spec {source}", [Problem("(top level)", exc.detail)]
        ) from None
    try:
        spec = WorkloadSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise SpecError(
            f"Invalid workload spec {source}", problems_from(exc, WorkloadSpec)
        ) from None
    from gke_inference.workloads.presets import resolve_architecture

    resolve_architecture(spec, source)  # an unknown preset is a SpecError too
    return spec


def load_spec(path: str | Path) -> WorkloadSpec:
    """Read a YAML (or JSON) spec file."""
    file = Path(path)
    try:
        text = safe_yaml.read_text(file)
    except OSError as exc:
        raise SpecError(
            f"Cannot read workload spec {file}", [Problem(str(file), exc.strerror or str(exc))]
        ) from None
    except safe_yaml.UnsafeInputError as exc:
        raise SpecError(
            f"Cannot read workload spec {file}", [Problem(str(file), exc.detail)]
        ) from None
    try:
        data = safe_yaml.load_json(text) if file.suffix == ".json" else safe_yaml.load_yaml(text)
    except safe_yaml.UnsafeInputError as exc:
        raise SpecError(
            f"Cannot parse workload spec {file}", [Problem(str(file), exc.detail)]
        ) from None
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise SpecError(
            f"Cannot parse workload spec {file}", [Problem(str(file), str(exc))]
        ) from None
    return parse_spec(data, str(file))
