"""Prometheus metrics exported by the vLLM OpenAI server, by version.

HPAs on Google Cloud Managed Service for Prometheus name metrics as
``prometheus.googleapis.com|<metric>|<kind>``; a name the server does not
export gives an HPA that never scales, which is only noticed under load. This
table lets the policy pack check the names against the vLLM image tag of the
target Deployment, and the workloads check the histograms a latency recording
rule reads (workloads.latency) before anything is planned.

Sources (checked in vllm-project/vllm):
- ``vllm/v1/metrics/loggers.py``: ``vllm:gpu_cache_usage_perc`` "Deprecated in
  0.9.2 - Renamed as vllm:kv_cache_usage_perc. With 0.11.x you can enable with
  --show-hidden-metrics-for-version=0.10. TODO: remove in 0.12.0"; the
  ``vllm:gpu_prefix_cache_queries``/``_hits`` counters were deprecated in the
  same change in favour of ``vllm:prefix_cache_queries``/``_hits``.
- ``docs/design/metrics.md``: the v1 metric list; ``vllm:num_requests_swapped``
  and ``vllm:cpu_cache_usage_perc`` belong to the V0 swap preemption mode, gone
  with the V0 engine; ``vllm:avg_*_throughput_toks_per_s`` were removed
  (vllm-project/vllm#12383).
- Deprecation policy (``docs/usage/metrics.md``): deprecated in X.Y, hidden in
  X.Y+1 (re-enable with ``--show-hidden-metrics-for-version=X.Y``), removed in
  X.Y+2. ``vllm:time_per_output_token_seconds`` was deprecated in 0.11 for
  ``vllm:inter_token_latency_seconds`` (new name present since 0.10.2).

An empty version has no known bound (a blank "since": present since metrics
were added). Where a bound is uncertain the table errs towards accepting the
name, so the rule does not flag a working HPA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Version = tuple[int, int, int]


@dataclass(frozen=True)
class VllmMetric:
    name: str  # as scraped, counters with their _total suffix
    kind: str  # gauge | counter | histogram (the Managed Prometheus kind)
    since: Version | None = None
    hidden_from: Version | None = None  # only with --show-hidden-metrics-for-version
    removed_in: Version | None = None
    replacement: str | None = None

    def status(self, version: Version) -> str:
        """``exported``, ``not-yet``, ``hidden`` or ``removed`` for a vLLM version."""
        if self.since and version < self.since:
            return "not-yet"
        if self.removed_in and version >= self.removed_in:
            return "removed"
        if self.hidden_from and version >= self.hidden_from:
            return "hidden"
        return "exported"


# One row a metric, in the order of the server's docs. Columns: name as scraped (counters
# with their _total suffix), Managed Prometheus kind, then the first vLLM version that
# exports it, that hides it (only shown with --show-hidden-metrics-for-version) and that
# no longer has it; "" is no bound.
_TABLE: tuple[tuple[str, str, str, str, str], ...] = (
    # name                                        kind         since     hidden  removed
    ("vllm:num_requests_running",                 "gauge",     "",       "",     ""),
    ("vllm:num_requests_waiting",                 "gauge",     "",       "",     ""),
    ("vllm:num_requests_swapped",                 "gauge",     "",       "",     "0.11"),
    ("vllm:gpu_cache_usage_perc",                 "gauge",     "",       "0.11", "0.12"),
    ("vllm:cpu_cache_usage_perc",                 "gauge",     "",       "",     "0.11"),
    ("vllm:kv_cache_usage_perc",                  "gauge",     "0.9.2",  "",     ""),
    ("vllm:gpu_prefix_cache_hit_rate",            "gauge",     "",       "",     "0.11"),
    ("vllm:gpu_prefix_cache_queries_total",       "counter",   "",       "0.11", "0.12"),
    ("vllm:gpu_prefix_cache_hits_total",          "counter",   "",       "0.11", "0.12"),
    ("vllm:prefix_cache_queries_total",           "counter",   "0.9.2",  "",     ""),
    ("vllm:prefix_cache_hits_total",              "counter",   "0.9.2",  "",     ""),
    ("vllm:num_preemptions_total",                "counter",   "",       "",     ""),
    ("vllm:prompt_tokens_total",                  "counter",   "",       "",     ""),
    ("vllm:generation_tokens_total",              "counter",   "",       "",     ""),
    ("vllm:request_success_total",                "counter",   "",       "",     ""),
    ("vllm:cache_config_info",                    "gauge",     "",       "",     ""),
    ("vllm:lora_requests_info",                   "gauge",     "",       "",     ""),
    ("vllm:iteration_tokens_total",               "histogram", "",       "",     ""),
    ("vllm:time_to_first_token_seconds",          "histogram", "",       "",     ""),
    ("vllm:time_per_output_token_seconds",        "histogram", "",       "0.12", "0.13"),
    ("vllm:inter_token_latency_seconds",          "histogram", "0.10.2", "",     ""),
    ("vllm:e2e_request_latency_seconds",          "histogram", "",       "",     ""),
    ("vllm:request_queue_time_seconds",           "histogram", "",       "",     ""),
    ("vllm:request_inference_time_seconds",       "histogram", "",       "",     ""),
    ("vllm:request_prefill_time_seconds",         "histogram", "",       "",     ""),
    ("vllm:request_decode_time_seconds",          "histogram", "",       "",     ""),
    ("vllm:request_prompt_tokens",                "histogram", "",       "",     ""),
    ("vllm:request_generation_tokens",            "histogram", "",       "",     ""),
    ("vllm:request_max_num_generation_tokens",    "histogram", "",       "",     ""),
    ("vllm:request_params_n",                     "histogram", "",       "",     ""),
    ("vllm:request_params_max_tokens",            "histogram", "",       "",     ""),
    ("vllm:avg_prompt_throughput_toks_per_s",     "gauge",     "",       "",     "0.8"),
    ("vllm:avg_generation_throughput_toks_per_s", "gauge",     "",       "",     "0.8"),
)  # fmt: skip

#: What to use instead of a metric that is hidden or removed, for the message.
_REPLACEMENTS: dict[str, str] = {
    "vllm:num_requests_swapped": "vllm:num_requests_waiting",
    "vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
    "vllm:gpu_prefix_cache_hit_rate": "vllm:prefix_cache_hits_total",
    "vllm:gpu_prefix_cache_queries_total": "vllm:prefix_cache_queries_total",
    "vllm:gpu_prefix_cache_hits_total": "vllm:prefix_cache_hits_total",
    "vllm:time_per_output_token_seconds": "vllm:inter_token_latency_seconds",
}

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-.+].*)?$")


def parse_version(text: str) -> Version | None:
    """``0.11``, ``v0.11.2`` or ``0.11.2-cu128`` -> (0, 11, 2); None if it is no version."""
    match = _VERSION.match(text)
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def _bound(text: str) -> Version | None:
    version = parse_version(text) if text else None
    if text and version is None:
        raise ValueError(f"{text!r} in the vLLM metric table is not a version")
    return version


METRICS: dict[str, VllmMetric] = {
    name: VllmMetric(
        name, kind, _bound(since), _bound(hidden), _bound(removed), _REPLACEMENTS.get(name)
    )
    for name, kind, since, hidden, removed in _TABLE
}


def version_of_image(image: str) -> Version | None:
    """The vLLM version of an image like ``vllm/vllm-openai:v0.11.2`` (None if not vLLM/unknown)."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    if "vllm" not in reference.lower() or ":" not in last:
        return None
    return parse_version(last.rsplit(":", 1)[1])


def parse_metric_name(name: str) -> tuple[str, str | None] | None:
    """``prometheus.googleapis.com|vllm:x|gauge`` -> (``vllm:x``, ``gauge``); non-vLLM -> None."""
    parts = name.split("|")
    if len(parts) == 3 and parts[0] == "prometheus.googleapis.com":
        metric, kind = parts[1], parts[2]
    elif len(parts) == 1:
        metric, kind = name, None
    else:
        return None
    if not metric.startswith("vllm:"):
        return None
    return metric, kind


def show(version: Version) -> str:
    return "v" + ".".join(map(str, version))


def problem(name: str, version: Version) -> str | None:
    """Why an HPA metric name does not work with a vLLM version (None when it does)."""
    parsed = parse_metric_name(name)
    if parsed is None:
        return None
    metric, kind = parsed
    known = METRICS.get(metric)
    if known is None:
        base = metric.removesuffix("_total")
        hint = next((m for m in METRICS if m.removesuffix("_total") == base), None)
        extra = f" (did you mean {hint}?)" if hint else ""
        return f"{metric} is not a metric vLLM exports{extra}"
    if kind is not None and kind != known.kind:
        return f"{metric} is a {known.kind} in Managed Prometheus, not a {kind}"
    status = known.status(version)
    instead = f"; use {known.replacement}" if known.replacement else ""
    if status == "not-yet":
        assert known.since is not None
        return f"{metric} only exists from vLLM {show(known.since)} on{instead.replace('use', 'or upgrade, or use')}"
    if status == "removed":
        assert known.removed_in is not None
        return f"{metric} was removed in vLLM {show(known.removed_in)}{instead}"
    if status == "hidden":
        return (
            f"{metric} is deprecated and hidden in vLLM {show(version)} (only with "
            f"--show-hidden-metrics-for-version){instead}"
        )
    return None
