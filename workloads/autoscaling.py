"""Autoscaling and disruption budgets for the Deployments of every workload kind.

One shape serves both scalers: an HPA on one metric that scales up at once
(``select_policy: Max``) and down through a stabilization window
(``select_policy: Min``), and a PodDisruptionBudget that lets one pod go at a
time (a production model server: never its last replica, see
:func:`serving_min_available`). Pods that are not ready never block a drain
(``unhealthyPodEvictionPolicy: AlwaysAllow``). The rates differ on purpose,
so they are arguments: a model server costs minutes of weight loading per new
replica, a streaming worker seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from gke_inference.workloads import latency
from gke_inference.workloads.kinds import PRODUCTION_ENVIRONMENT
from gke_inference.workloads.serving_spec import LATENCY_HPA_METRICS, POOL_HPA_METRICS
from gke_inference.workloads.spec import WorkloadSpec


@dataclass(frozen=True)
class Rate:
    """At most ``value`` pods (or percent of the current replicas) per ``period_seconds``."""

    type: str  # "Pods" | "Percent"
    value: int
    period_seconds: int

    def policy(self) -> k8s.autoscaling.v2.HPAScalingPolicyArgs:
        return k8s.autoscaling.v2.HPAScalingPolicyArgs(
            type=self.type, value=self.value, period_seconds=self.period_seconds
        )


DEPLOYMENT_TARGET = ("apps/v1", "Deployment")


def quantity(value: float) -> str:
    """A Kubernetes quantity for an HPA target (0.8 -> "800m")."""
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def hpa_spec(
    deployment: str,
    min_replicas: int,
    max_replicas: int,
    metric: k8s.autoscaling.v2.MetricSpecArgs,
    *,
    scale_up: Sequence[Rate],
    scale_down: Sequence[Rate],
    scale_down_window_seconds: int,
    target: tuple[str, str] = DEPLOYMENT_TARGET,
) -> k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs:
    """``target``: (apiVersion, kind) of the scaled object named ``deployment``."""
    api_version, kind = target
    return k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
        scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
            api_version=api_version, kind=kind, name=deployment
        ),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metrics=[metric],
        behavior=k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
            scale_up=k8s.autoscaling.v2.HPAScalingRulesArgs(
                stabilization_window_seconds=0,
                select_policy="Max",
                policies=[rate.policy() for rate in scale_up],
            ),
            scale_down=k8s.autoscaling.v2.HPAScalingRulesArgs(
                stabilization_window_seconds=scale_down_window_seconds,
                select_policy="Min",
                policies=[rate.policy() for rate in scale_down],
            ),
        ),
    )


def pool_metric(
    name: str, pool: str, namespace: str, target: float
) -> k8s.autoscaling.v2.MetricSpecArgs:
    """The endpoint picker's average over its pool: an external metric (one series per
    pool, labelled ``name``), already per pod, so the target is a Value. External
    metrics are project-wide in the adapter: the selector names the namespace too."""
    return k8s.autoscaling.v2.MetricSpecArgs(
        type="External",
        external=k8s.autoscaling.v2.ExternalMetricSourceArgs(
            metric=k8s.autoscaling.v2.MetricIdentifierArgs(
                name=name,
                selector=LabelSelectorArgs(
                    match_labels={
                        "metric.labels.name": pool,
                        "resource.labels.namespace": namespace,
                    }
                ),
            ),
            target=k8s.autoscaling.v2.MetricTargetArgs(type="Value", value=quantity(target)),
        ),
    )


def vllm_hpa_spec(
    deployment: str,
    spec: WorkloadSpec,
    *,
    namespace: str,
    scaled: tuple[str, str] = DEPLOYMENT_TARGET,
) -> k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs:
    """A model server scales on the metric of ``spec.scaling``: up at once (a queue is
    already latency), down slowly (a new replica costs minutes of model loading). A
    LeaderWorkerSet (``scaled``) scales whole groups; its selector is the leaders. The
    pool metrics are the endpoint picker's, of the pool named like the workload."""
    scaling = spec.scaling
    metric = latency.hpa_metric_for(spec)
    target = latency.scaling_target(spec)
    if scaling.metric in POOL_HPA_METRICS:
        source = pool_metric(metric, spec.name, namespace, target)
    else:
        source = k8s.autoscaling.v2.MetricSpecArgs(
            type="Pods",
            pods=k8s.autoscaling.v2.PodsMetricSourceArgs(
                metric=k8s.autoscaling.v2.MetricIdentifierArgs(name=metric),
                target=k8s.autoscaling.v2.MetricTargetArgs(
                    type="AverageValue", average_value=quantity(target)
                ),
            ),
        )
    return hpa_spec(
        deployment,
        scaling.min_replicas,
        scaling.max_replicas,
        source,
        scale_up=[Rate("Pods", 2, 60), Rate("Percent", 100, 60)],
        scale_down=[Rate("Pods", 1, 120)],
        scale_down_window_seconds=scaling.scale_down_stabilization_seconds,
        target=scaled,
    )


def serving_min_available(spec: WorkloadSpec, environment: str) -> int | None:
    """A production model server keeps ``minReplicas - 1`` pods (at least 1) through
    voluntary disruptions: with 2 replicas one may go, the last one never
    (``kinds.require_production_ready`` requires 2 in prod). Elsewhere None:
    one pod at a time, the only one included (a dev endpoint may pause)."""
    if environment != PRODUCTION_ENVIRONMENT:
        return None
    return max(1, spec.scaling.min_replicas - 1)


def autoscale(
    name: str,
    metadata: ObjectMetaArgs,
    selector: dict[str, str],
    spec: k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs,
    *,
    hpa_opts: pulumi.ResourceOptions,
    pdb_opts: pulumi.ResourceOptions,
    min_available: int | None = None,
) -> None:
    """``<name>-hpa`` with ``spec`` and ``<name>-pdb``: voluntary disruptions take one pod
    at a time, or (``min_available``) keep that many pods available."""
    k8s.autoscaling.v2.HorizontalPodAutoscaler(
        f"{name}-hpa", metadata=metadata, spec=spec, opts=hpa_opts
    )
    k8s.policy.v1.PodDisruptionBudget(
        f"{name}-pdb",
        metadata=metadata,
        spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
            max_unavailable=1 if min_available is None else None,
            min_available=min_available,
            selector=LabelSelectorArgs(match_labels=selector),
            unhealthy_pod_eviction_policy="AlwaysAllow",
        ),
        opts=pdb_opts,
    )


def recording_rule(
    name: str, metadata: ObjectMetaArgs, spec: WorkloadSpec, opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource | None:
    """``<name>-latency``: the Rules object an HPA on latency reads (None for other metrics)."""
    scaling = spec.scaling
    if scaling.metric not in LATENCY_HPA_METRICS:
        return None
    return k8s.apiextensions.CustomResource(
        f"{name}-latency",
        api_version="monitoring.googleapis.com/v1",
        kind="Rules",
        metadata=ObjectMetaArgs(
            name=f"{spec.name}-latency", namespace=metadata.namespace, labels=metadata.labels
        ),
        spec=latency.rules_spec(scaling.metric, scaling.latency_window, spec.name),
        opts=opts,
    )
