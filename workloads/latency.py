"""Autoscaling on latency: a recorded per-pod quantile of vLLM's latency histograms.

vLLM exports time to first token and inter-token latency as histograms, which
an HPA cannot follow: the custom metrics adapter serves one value per pod. So
each workload that scales on latency gets a Managed Prometheus ``Rules``
object (monitoring.googleapis.com/v1) in its namespace whose recording rule
turns the histogram into a gauge, one series per pod:

    histogram_quantile(q, sum by (workload, pod, le) (rate(<histogram>_bucket{workload="w"}[window])))

The managed rule-evaluator scopes the rule to its namespace (every selector
gets the project, location, cluster and namespace matchers; every result
those labels back, prometheus-engine ``rules_config.go``), and writes the
result to Cloud Monitoring as ``prometheus.googleapis.com/<record>/gauge``.
The adapter keys a ``prometheus_target`` series to a pod by
``resource.labels.namespace`` and ``metric.labels.pod``
(k8s-stackdriver ``response_translator.go``), so the rule keeps ``pod``, and
the HPA names ``prometheus.googleapis.com|<record>|gauge``. This module holds
the facts and the rule's text; ``autoscaling.recording_rule`` registers it
(validation imports no provider SDK).

Two edges the plain quantile gets wrong, both handled in :func:`expression`:

- A pod that served nothing in the window has all-zero bucket rates, and
  ``histogram_quantile`` gives NaN. It is dropped (``>= 0`` is false for
  NaN) and recorded as 0 instead from the histogram's ``_count`` rate: no
  traffic is no latency pressure. Without it an idle deployment has no
  metric at all and the HPA, short of every pod's value, never scales down.
- The series are picked by the ``workload`` label, which the platform's
  PodMonitoring copies from each pod's ``app.kubernetes.io/name``
  (inference.cluster_addons): two workloads in one namespace never record,
  or scale on, each other's pods.

The HPA's proportional rule (replicas x value / target) assumes the metric
falls as replicas are added. Latency does once the server is queueing
(time to first token is mostly queue time then) and hardly at all while it
is compute-bound, so the targets default well below the usual service
objectives and scale-down stays slow (ScalingSettings).
"""

from __future__ import annotations

from dataclasses import dataclass

from gke_inference.workloads.serving_spec import (
    LATENCY_HPA_METRICS,
    POOL_HPA_METRICS,
    VLLM_HPA_METRICS,
    LatencySettings,
)
from gke_inference.workloads.spec import WorkloadSpec

# The platform PodMonitoring's target label holding the pod's app.kubernetes.io/name.
WORKLOAD_LABEL = "workload"
# How often the rule-evaluator runs the rule: the model servers are scraped every
# 15 s and the HPA reads every 15 s; 30 s keeps the recorded gauge at most one
# scrape behind without doubling the rule-evaluator's queries.
RULE_INTERVAL = "30s"


@dataclass(frozen=True)
class LatencyMetric:
    histogram: str  # the vLLM histogram, without the _bucket/_count suffix
    default_target: float  # seconds
    buckets: tuple[float, ...]  # its finite bucket bounds in the pinned vLLM


# Buckets: vllm/v1/metrics/loggers.py of vLLM v0.11.2 (the pinned GPU image; the TPU
# image v0.11.1 has the same). Default targets: half the per-request bounds of
# MLPerf Inference's Llama 2 70B server scenario (TTFT 2 s, TPOT 200 ms at p99), so
# the HPA adds replicas before the objective is missed, not after.
LATENCY_METRICS: dict[str, LatencyMetric] = {
    "time-to-first-token": LatencyMetric(
        "vllm:time_to_first_token_seconds",
        1.0,
        (
            *(0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0),
            *(2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
        ),
    ),
    "inter-token-latency": LatencyMetric(
        "vllm:inter_token_latency_seconds",
        0.1,
        (
            *(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0),
            *(2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0),
        ),
    ),
}


def record_name(metric: str, latency: LatencySettings) -> str:
    """``pod:vllm_time_to_first_token_seconds:p90_120s`` (level:metric:operations)."""
    histogram = LATENCY_METRICS[metric].histogram.removeprefix("vllm:")
    percent = f"{latency.quantile * 100:.4g}".replace(".", "_")
    return f"pod:vllm_{histogram}:p{percent}_{latency.window_seconds}s"


def hpa_metric_name(metric: str, latency: LatencySettings) -> str:
    """The adapter's name of the recorded gauge."""
    return f"prometheus.googleapis.com|{record_name(metric, latency)}|gauge"


def expression(metric: str, latency: LatencySettings, workload: str) -> str:
    """The recording rule: per-pod quantile, idle pods 0 (see the module doc)."""
    histogram = LATENCY_METRICS[metric].histogram
    pick = f'{{{WORKLOAD_LABEL}="{workload}"}}'
    window = f"[{latency.window_seconds}s]"
    by = f"{WORKLOAD_LABEL}, pod"
    return (
        f"(histogram_quantile({latency.quantile:g}, sum by ({by}, le) "
        f"(rate({histogram}_bucket{pick}{window}))) >= 0)\n"
        f"or (sum by ({by}) (rate({histogram}_count{pick}{window})) == 0)"
    )


def rules_spec(metric: str, latency: LatencySettings, workload: str) -> dict[str, object]:
    """The ``spec`` of the workload's Rules object."""
    return {
        "groups": [
            {
                "name": f"{workload}-latency",
                "interval": RULE_INTERVAL,
                "rules": [
                    {
                        "record": record_name(metric, latency),
                        "expr": expression(metric, latency, workload),
                    }
                ],
            }
        ]
    }


def target_problem(metric: str, target: float) -> str | None:
    """A target the recorded quantile cannot reach or leave: histogram_quantile answers
    between bucket bounds, at most the highest finite one."""
    buckets = LATENCY_METRICS[metric].buckets
    low, high = buckets[0], buckets[-1]
    if low <= target < high:
        return None
    return (
        f"{target:g} s is outside what vLLM's {LATENCY_METRICS[metric].histogram} histogram "
        f"can tell apart ({low:g} s to {high:g} s, its bucket bounds); use e.g. "
        f"{LATENCY_METRICS[metric].default_target:g}"
    )


def hpa_metric_for(spec: WorkloadSpec) -> str:
    """The adapter's name of the metric a model server scales on: a vLLM series, or
    for latency the gauge the workload's recording rule writes (workloads.latency)."""
    scaling = spec.scaling
    if scaling.metric in LATENCY_HPA_METRICS:
        return hpa_metric_name(scaling.metric, scaling.latency_window)
    if scaling.metric in POOL_HPA_METRICS:
        return POOL_HPA_METRICS[scaling.metric][0]
    return VLLM_HPA_METRICS[scaling.metric][0]


def scaling_target(spec: WorkloadSpec) -> float:
    """The per-pod target of ``spec.scaling``: the spec's, or the metric's default."""
    scaling = spec.scaling
    if scaling.target is not None:
        return scaling.target
    if scaling.metric in LATENCY_HPA_METRICS:
        return LATENCY_METRICS[scaling.metric].default_target
    if scaling.metric in POOL_HPA_METRICS:
        return POOL_HPA_METRICS[scaling.metric][1]
    return VLLM_HPA_METRICS[scaling.metric][1]
