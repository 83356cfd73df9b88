"""Inference observability as code: one dashboard and the alerts that matter.

Every chart and alert is a PromQL query over Managed Prometheus, which also
serves Cloud Monitoring's system metrics under PromQL names (``:`` and ``/``
become ``_``). The metric names are kept in one table below; tests check the
vLLM ones against what the pinned vLLM version exports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_gcp import monitoring

from gke_inference.core.components import child_options
from gke_inference.core.settings import PlatformSettings

# What each exporter calls its series (PromQL names as Managed Prometheus serves them).
VLLM = {
    "waiting": "vllm:num_requests_waiting",
    "running": "vllm:num_requests_running",
    "kv_cache": "vllm:kv_cache_usage_perc",
    "ttft": "vllm:time_to_first_token_seconds",
    "generation_tokens": "vllm:generation_tokens_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "success": "vllm:request_success_total",
    "e2e_latency": "vllm:e2e_request_latency_seconds",
}
# NVIDIA DCGM exporter fields (GKE-managed DCGM metrics).
DCGM = {
    "gpu_util": "DCGM_FI_DEV_GPU_UTIL",
    "fb_used": "DCGM_FI_DEV_FB_USED",
    "fb_free": "DCGM_FI_DEV_FB_FREE",
    "tensor_active": "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
}
# Cloud Monitoring metric types, and their PromQL spelling.
CLOUD = {
    "tpu_duty_cycle": "kubernetes.io/container/accelerator/duty_cycle",
    "pubsub_backlog": "pubsub.googleapis.com/subscription/num_undelivered_messages",
    "pubsub_dead_letters": "pubsub.googleapis.com/subscription/dead_letter_message_count",
    "lb_requests": "loadbalancing.googleapis.com/https/internal/request_count",
}
# kube-state-metrics series of GKE's POD and HPA monitoring packages.
KSM = {
    "pod_phase": "kube_pod_status_phase",
    "hpa_replicas": "kube_horizontalpodautoscaler_status_current_replicas",
}


def promql_name(metric_type: str) -> str:
    """Cloud Monitoring type -> PromQL name (``a.b/c/d`` -> ``a_b:c_d``)."""
    domain, _, path = metric_type.partition("/")
    return f"{domain.replace('.', '_')}:{path.replace('/', '_')}"


@dataclass(frozen=True)
class Alert:
    key: str
    title: str
    query: str
    duration: str
    severity: str
    runbook: str


def alerts(namespace: str, s: PlatformSettings) -> list[Alert]:
    o = s.observability
    ns = f'namespace="{namespace}"'
    backlog = promql_name(CLOUD["pubsub_backlog"])
    dead = promql_name(CLOUD["pubsub_dead_letters"])
    lb = promql_name(CLOUD["lb_requests"])
    return [
        Alert(
            "queue-growing",
            "Model server queue keeps growing",
            f"sum by (pod) ({VLLM['waiting']}{{{ns}}}) > {o.queue_depth_alert}",
            "600s",
            "WARNING",
            "Requests wait for a free sequence slot. Check that the HPA can add replicas "
            "(maxReplicas, pending pods, compute class capacity).",
        ),
        Alert(
            "kv-cache-saturated",
            "KV cache saturated",
            f"max by (pod) ({VLLM['kv_cache']}{{{ns}}}) > {o.kv_cache_alert}",
            "600s",
            "WARNING",
            "vLLM preempts sequences when the KV cache is full. Scale out, lower "
            "max-num-seqs, or use an FP8 KV cache.",
        ),
        Alert(
            "gpu-idle",
            "GPUs idle while model replicas are up (cost)",
            f"avg by (pod) ({DCGM['gpu_util']}{{{ns}}}) < {o.gpu_idle_percent} "
            f"and on (pod) (sum by (pod) ({VLLM['running']}{{{ns}}}) == 0)",
            "3600s",
            "INFO",
            "Paying for accelerators nobody uses: lower minReplicas or move to a spot-first class.",
        ),
        Alert(
            "server-errors",
            "Gateway 5xx rate above 1 %",
            f'sum(rate({lb}{{response_code_class="500"}}[5m])) / sum(rate({lb}[5m])) > 0.01',
            "300s",
            "ERROR",
            "Check model server logs and readiness; a crash loop or OOM shows here first.",
        ),
        Alert(
            "dead-letters",
            "Streaming requests are being dead-lettered",
            f"sum by (subscription_id) (rate({dead}[10m])) > 0",
            "300s",
            "WARNING",
            "Malformed input or a model that keeps failing. Inspect the dead-letter subscription.",
        ),
        Alert(
            "backlog-stuck",
            "Pub/Sub backlog not draining",
            f"sum by (subscription_id) ({backlog}) > {o.backlog_alert}",
            "1800s",
            "WARNING",
            "The worker HPA is at its maximum or workers cannot reach the model.",
        ),
        Alert(
            "pods-pending",
            "Accelerator pods stuck pending",
            f'sum by (pod) ({KSM["pod_phase"]}{{{ns}, phase="Pending"}}) > 0',
            "900s",
            "WARNING",
            "No capacity in any priority of the compute class (reservation, on-demand, "
            "flex-start, spot) or NAP limits reached. Check `kubectl describe pod` events.",
        ),
    ]


def dashboard(namespace: str, title: str) -> dict[str, Any]:
    ns = f'namespace="{namespace}"'

    def tile(x: int, y: int, name: str, query: str, unit: str = "") -> dict[str, Any]:
        return {
            "xPos": x,
            "yPos": y,
            "width": 24,
            "height": 16,
            "widget": {
                "title": name,
                "xyChart": {
                    "chartOptions": {"mode": "COLOR"},
                    "dataSets": [
                        {
                            "plotType": "LINE",
                            "targetAxis": "Y1",
                            "timeSeriesQuery": {"prometheusQuery": query, "unitOverride": unit},
                        }
                    ],
                },
            },
        }

    charts = [
        (
            "Requests per second",
            f"sum by (model_name) (rate({VLLM['success']}{{{ns}}}[5m]))",
            "1/s",
        ),
        ("Queue depth (waiting requests)", f"sum by (pod) ({VLLM['waiting']}{{{ns}}})", ""),
        ("KV cache use", f"max by (pod) ({VLLM['kv_cache']}{{{ns}}})", "10^2.%"),
        (
            "Time to first token p90",
            f"histogram_quantile(0.9, sum by (le, model_name) (rate({VLLM['ttft']}_bucket{{{ns}}}[5m])))",
            "s",
        ),
        (
            "Output tokens per second",
            f"sum by (model_name) (rate({VLLM['generation_tokens']}{{{ns}}}[5m]))",
            "1/s",
        ),
        ("GPU utilization (DCGM)", f"avg by (pod) ({DCGM['gpu_util']}{{{ns}}})", "%"),
        ("GPU memory used (DCGM)", f"sum by (pod) ({DCGM['fb_used']}{{{ns}}})", "MiBy"),
        (
            "TPU duty cycle",
            f"avg by (pod) ({promql_name(CLOUD['tpu_duty_cycle'])}{{{ns}}})",
            "%",
        ),
        ("HPA replicas", f"sum by (horizontalpodautoscaler) ({KSM['hpa_replicas']}{{{ns}}})", ""),
        (
            "Pub/Sub backlog",
            f"sum by (subscription_id) ({promql_name(CLOUD['pubsub_backlog'])})",
            "",
        ),
        (
            "Error rate (non-2xx at the gateway)",
            f'sum(rate({promql_name(CLOUD["lb_requests"])}{{response_code_class!="200"}}[5m]))',
            "1/s",
        ),
    ]
    tiles = [tile((i % 2) * 24, (i // 2) * 16, *chart) for i, chart in enumerate(charts)]
    return {"displayName": title, "mosaicLayout": {"columns": 48, "tiles": tiles}}


@dataclass
class InferenceObservabilityArgs:
    settings: PlatformSettings
    namespace: str


class InferenceObservability(pulumi.ComponentResource):
    """The environment's inference dashboard, alert policies and notification channels."""

    def __init__(
        self,
        name: str,
        args: InferenceObservabilityArgs,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("gke-inference:inference:InferenceObservability", name, None, opts)
        s = args.settings
        o = s.observability
        labels = s.common_labels
        channels: list[pulumi.Input[str]] = list(o.notification_channels)
        for index, email in enumerate(o.notification_emails):
            channel = monitoring.NotificationChannel(
                f"{name}-email-{index}",
                project=s.project,
                type="email",
                display_name=f"gke-inference {s.environment}: {email}",
                labels={"email_address": email},
                user_labels=labels,
                opts=child_options(self, opts),
            )
            channels.append(channel.id)
        monitoring.Dashboard(
            f"{name}-dashboard",
            project=s.project,
            dashboard_json=json.dumps(dashboard(args.namespace, f"Inference ({s.cluster_name})")),
            opts=child_options(self, opts),
        )
        for alert in alerts(args.namespace, s):
            monitoring.AlertPolicy(
                f"{name}-{alert.key}",
                project=s.project,
                display_name=f"[{s.environment}] {alert.title}",
                combiner="OR",
                severity=alert.severity,
                conditions=[
                    monitoring.AlertPolicyConditionArgs(
                        display_name=alert.title,
                        condition_prometheus_query_language=monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                            query=alert.query,
                            duration=alert.duration,
                            evaluation_interval="60s",
                        ),
                    )
                ],
                documentation=monitoring.AlertPolicyDocumentationArgs(
                    content=alert.runbook, mime_type="text/markdown", subject=alert.title
                ),
                alert_strategy=monitoring.AlertPolicyAlertStrategyArgs(auto_close="3600s"),
                notification_channels=channels,
                user_labels=labels,
                opts=child_options(self, opts),
            )
        self.register_outputs({})
