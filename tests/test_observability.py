"""Dashboards and alerts as code: planned, labelled, and naming real metrics."""

from __future__ import annotations

import json
import re
from typing import Any

from gke_inference.inference import observability as obs
from gke_inference.workloads import vllm_metrics
from gke_inference.workloads.vllm_server import VLLM_IMAGES

# Fields the NVIDIA DCGM exporter publishes (dcgm-exporter default counters).
DCGM_FIELDS = {
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
}  # fmt: skip
# Cloud Monitoring metric types of Pub/Sub, GKE and the load balancer.
CLOUD_TYPES = {
    "pubsub.googleapis.com/subscription/num_undelivered_messages",
    "pubsub.googleapis.com/subscription/dead_letter_message_count",
    "kubernetes.io/container/accelerator/duty_cycle",
    "loadbalancing.googleapis.com/https/internal/request_count",
}


def test_vllm_metric_names_exist_in_the_pinned_vllm() -> None:
    version = vllm_metrics.version_of_image(VLLM_IMAGES["vllm-gpu"])
    assert version is not None
    for name in obs.VLLM.values():
        assert vllm_metrics.problem(name, version) is None, name
        assert name in vllm_metrics.METRICS


def test_dcgm_and_cloud_metric_names() -> None:
    assert set(obs.DCGM.values()) <= DCGM_FIELDS
    assert set(obs.CLOUD.values()) <= CLOUD_TYPES
    assert obs.promql_name("pubsub.googleapis.com/subscription/num_undelivered_messages") == (
        "pubsub_googleapis_com:subscription_num_undelivered_messages"
    )


def queries(plan: Any) -> list[str]:
    out = []
    for policy in plan.by_type("gcp:monitoring/alertPolicy:AlertPolicy"):
        for condition in policy.inputs["conditions"]:
            out.append(condition["conditionPrometheusQueryLanguage"]["query"])
    return out


def test_alert_policies_in_the_plan(plan_of: Any) -> None:
    plan = plan_of("prod")
    policies = {p.name: p.inputs for p in plan.by_type("gcp:monitoring/alertPolicy:AlertPolicy")}
    assert {k.split("inference-observability-")[1] for k in policies} == {
        "queue-growing", "kv-cache-saturated", "gpu-idle", "server-errors", "dead-letters",
        "backlog-stuck", "pods-pending",
    }  # fmt: skip
    channel = plan.one("gcp:monitoring/notificationChannel:NotificationChannel")
    assert channel.inputs["labels"] == {"email_address": "ml-platform-oncall@acme.example"}
    for inputs in policies.values():
        assert inputs["notificationChannels"] == [f"{channel.name}-id"]  # that channel's id
        assert inputs["userLabels"]["environment"] == "prod"
        assert inputs["documentation"]["content"]
    kv = policies["inference-observability-kv-cache-saturated"]["conditions"][0]
    assert "vllm:kv_cache_usage_perc" in kv["conditionPrometheusQueryLanguage"]["query"]
    assert "> 0.95" in kv["conditionPrometheusQueryLanguage"]["query"]
    idle = policies["inference-observability-gpu-idle"]["conditions"][0][
        "conditionPrometheusQueryLanguage"
    ]
    assert "DCGM_FI_DEV_GPU_UTIL" in idle["query"] and idle["duration"] == "3600s"


def test_every_metric_in_alerts_and_dashboard_is_known(plan_of: Any) -> None:
    plan = plan_of("prod")
    dashboard = json.loads(plan.one("gcp:monitoring/dashboard:Dashboard").inputs["dashboardJson"])
    tiles = dashboard["mosaicLayout"]["tiles"]
    assert len(tiles) >= 10
    titles = {t["widget"]["title"] for t in tiles}
    for wanted in ("Queue depth (waiting requests)", "KV cache use", "Time to first token p90",
                   "GPU utilization (DCGM)", "HPA replicas", "Pub/Sub backlog"):  # fmt: skip
        assert wanted in titles
    texts = queries(plan) + [
        d["timeSeriesQuery"]["prometheusQuery"]
        for t in tiles
        for d in t["widget"]["xyChart"]["dataSets"]
    ]
    known = (
        set(obs.VLLM.values()) | set(obs.DCGM.values()) | set(obs.KSM.values())
        | {obs.promql_name(t) for t in obs.CLOUD.values()}
    )  # fmt: skip
    for text in texts:
        names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_:]*(?=\{|\)|\[| >| <|$)", text))
        metrics = {
            n.removesuffix("_bucket") for n in names if ":" in n or n.startswith(("DCGM_", "kube_"))
        }
        assert metrics, text
        assert metrics <= known, (text, metrics - known)


def test_alerts_can_be_switched_off(plan_of: Any) -> None:
    plan = plan_of("dev", "observability.alerts=false")
    assert plan.by_type("gcp:monitoring/alertPolicy:AlertPolicy") == []
