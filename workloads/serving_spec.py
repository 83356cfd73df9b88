"""The serving sections of the workload spec: scaling, routing, LoRA, speculative decoding.

Kept apart from workloads.spec (which composes them into WorkloadSpec) so each
reads in one sitting; the metric tables are what workloads.latency and
workloads.autoscaling turn into HPAs.
"""

from __future__ import annotations

from typing import Annotated, Literal

import pydantic
from pydantic import Field

from gke_inference.core.validation import repeated
from gke_inference.workloads.spec_types import GCS_PREFIX, GcsPath, SpecModel, exact_int


class LoraAdapter(SpecModel):
    # the model name requests select it by (vLLM --lora-modules name=path)
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
    path: GcsPath = Field(pattern=GCS_PREFIX)  # the adapter's folder (adapter_config.json)


MaxLoraRank = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]  # vLLM 0.11 MaxLoRARanks


class LoraTarget(SpecModel):
    adapter: str  # a listed adapter's name
    weight: int = Field(default=1, ge=1, le=1_000_000)  # InferenceModelRewrite bounds


class LoraRoute(SpecModel):
    """Requests naming ``model`` go to the targets by weight (workloads.lora): the
    picker rewrites the body's model (InferenceModelRewrite) and the response back."""

    model: str = Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$")
    targets: list[LoraTarget] = Field(min_length=1, max_length=8)

    @pydantic.model_validator(mode="after")
    def _distinct_targets(self) -> LoraRoute:
        twice = repeated([t.adapter for t in self.targets])
        if twice:
            raise ValueError(
                f"route {self.model!r} lists {twice} twice: give one target its weight"
            )
        return self


class LoraSettings(SpecModel):
    """LoRA adapters served beside the base model (workloads.lora)."""

    adapters: list[LoraAdapter] = Field(min_length=1, max_length=16)
    max_rank: Annotated[MaxLoraRank, pydantic.BeforeValidator(exact_int)] = 16
    # adapters one batch may mix (--max-loras); each is a GPU slot of maxRank
    max_loras: int = Field(default=1, ge=1, le=16)
    # public names the endpoint picker splits over adapters (routing.mode: inference-pool)
    routes: list[LoraRoute] = Field(default_factory=list, max_length=16)

    @pydantic.model_validator(mode="after")
    def _adapters(self) -> LoraSettings:
        names = [a.name for a in self.adapters]
        if twice := repeated(names):
            raise ValueError(f"adapter names must be unique; {twice} is repeated")
        if twice := repeated([r.model for r in self.routes]):
            raise ValueError(f"route models must be unique; {twice} is repeated")
        for index, route in enumerate(self.routes):
            unknown = [t.adapter for t in route.targets if t.adapter not in names]
            if unknown:
                raise ValueError(
                    f"routes[{index}] ({route.model!r}) targets {', '.join(map(repr, unknown))}, "
                    f"not among the adapters listed ({', '.join(names)})"
                )
        if self.max_loras > len(self.adapters):
            raise ValueError(
                f"maxLoras {self.max_loras} exceeds the {len(self.adapters)} adapters listed: "
                "each slot costs GPU memory whether or not an adapter fills it"
            )
        return self


# HPA metric per spec choice: Cloud Monitoring name of the Managed Prometheus
# series (through the custom metrics adapter), and the default per-pod target.
VLLM_HPA_METRICS: dict[str, tuple[str, float]] = {
    "queue-depth": ("prometheus.googleapis.com|vllm:num_requests_waiting|gauge", 10),
    "kv-cache": ("prometheus.googleapis.com|vllm:kv_cache_usage_perc|gauge", 0.8),
    "requests-per-second": ("prometheus.googleapis.com|vllm:request_success_total|counter", 5),
    "running-requests": ("prometheus.googleapis.com|vllm:num_requests_running|gauge", 32),
}
# Latency metrics are not series vLLM exports but per-pod quantiles of its
# histograms, recorded by a Managed Prometheus rule (workloads.latency).
LATENCY_HPA_METRICS = ("time-to-first-token", "inter-token-latency")
# The endpoint picker's own averages over its pool (gateway-api-inference-extension
# v1.5.0 pkg/epp/metrics: gauges labelled by the pool's name), an external metric:
# spec choice -> (Cloud Monitoring name, default target).
POOL_HPA_METRICS: dict[str, tuple[str, float]] = {
    "pool-queue-depth": ("prometheus.googleapis.com|inference_pool_average_queue_size|gauge", 10),
    "pool-kv-cache": (
        "prometheus.googleapis.com|inference_pool_average_kv_cache_utilization|gauge",
        0.8,
    ),
}
ScalingMetric = Literal[
    "queue-depth",
    "kv-cache",
    "requests-per-second",
    "running-requests",
    "time-to-first-token",
    "inter-token-latency",
    "pool-queue-depth",
    "pool-kv-cache",
]


class LatencySettings(SpecModel):
    """The quantile of a latency histogram the HPA follows, per pod, over a window."""

    # p50..p99: a 2-minute window at 2 requests/s holds 240 samples per pod; a p99.9
    # would rest on the slowest fraction of one of them.
    quantile: float = Field(default=0.9, ge=0.5, le=0.99)
    # rate() needs at least 4 scrapes in its window (Managed Prometheus scrapes the
    # model servers every 15 s); past 10 minutes the HPA reacts to the past.
    window_seconds: int = Field(default=120, ge=60, le=600)


class ScalingSettings(SpecModel):
    min_replicas: int = Field(default=1, ge=1, le=100)
    max_replicas: int = Field(default=3, ge=1, le=100)
    metric: ScalingMetric = "queue-depth"
    target: float | None = Field(default=None, gt=0)
    latency: LatencySettings | None = None
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)

    @pydantic.model_validator(mode="after")
    def _bounds(self) -> ScalingSettings:
        if self.max_replicas < self.min_replicas:
            raise ValueError("maxReplicas must be >= minReplicas")
        if self.latency is not None and self.metric not in LATENCY_HPA_METRICS:
            raise ValueError(
                f"latency is for metric {' or '.join(LATENCY_HPA_METRICS)}, not "
                f"{self.metric!r}: remove it or change the metric"
            )
        return self

    @property
    def latency_window(self) -> LatencySettings:
        """The latency quantile and window (the defaults when the spec gives none)."""
        return self.latency if self.latency is not None else LatencySettings()


class ScorerWeights(SpecModel):
    """The endpoint picker's scorer weights (workloads.epp_config); the defaults are the
    pinned picker's own (gateway-api-inference-extension v1.5.0 loadDefaultConfig)."""

    queue: float = Field(default=2.0, ge=0, le=100)
    kv_cache: float = Field(default=2.0, ge=0, le=100)
    prefix_cache: float = Field(default=3.0, ge=0, le=100)

    @pydantic.model_validator(mode="after")
    def _one_scores(self) -> ScorerWeights:
        if self.queue == self.kv_cache == self.prefix_cache == 0:
            raise ValueError("at least one scorer needs a weight above 0")
        return self


class RoutingSettings(SpecModel):
    mode: Literal["service", "inference-pool"] = "service"
    path_prefix: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9/_-]*$")
    # inference-pool only: how the endpoint picker weighs its scorers
    scorers: ScorerWeights | None = None

    @pydantic.model_validator(mode="after")
    def _scorers_need_a_picker(self) -> RoutingSettings:
        if self.scorers is not None and self.mode != "inference-pool":
            raise ValueError(
                f"scorers weigh the endpoint picker of mode 'inference-pool', not {self.mode!r}: "
                "remove them or set mode: inference-pool"
            )
        return self

    @property
    def scorer_weights(self) -> ScorerWeights:
        return self.scorers if self.scorers is not None else ScorerWeights()


class DraftHead(SpecModel):
    """An EAGLE head's checkpoint (workloads.speculative)."""

    path: GcsPath = Field(pattern=GCS_PREFIX)  # the head's folder (config.json, weights)
    parameters_billions: float = Field(gt=0, le=20)


class SpeculativeSettings(SpecModel):
    """Speculative decoding (workloads.speculative)."""

    method: Literal["ngram", "eagle", "eagle3"]
    tokens: int = Field(default=3, ge=1, le=8)  # num_speculative_tokens
    lookup_min: int = Field(default=2, ge=1, le=16)  # ngram window, in tokens
    lookup_max: int = Field(default=5, ge=1, le=16)
    draft: DraftHead | None = None

    @pydantic.model_validator(mode="after")
    def _method_needs(self) -> SpeculativeSettings:
        if self.method == "ngram" and self.draft is not None:
            raise ValueError("ngram proposes from the prompt itself: remove draft")
        if self.method != "ngram" and self.draft is None:
            raise ValueError(f"{self.method} needs draft (the head's gs:// folder and size)")
        if self.lookup_min > self.lookup_max:
            raise ValueError(
                f"lookupMin {self.lookup_min} must be <= lookupMax {self.lookup_max} "
                "(vLLM refuses it)"
            )
        return self
