"""StreamingInference: Pub/Sub in, vLLM, Pub/Sub out, with dead letters and backlog scaling.

- Topics: ``<name>-input``, ``<name>-output``, ``<name>-dead-letter``; the input
  subscription retries with exponential backoff and moves a message to the
  dead-letter topic after ``maxDeliveryAttempts``; a subscription on the
  dead-letter topic keeps dead letters for a week, for inspection and replay.
- The model server is an :class:`OnlineInference` child with ``expose=False``:
  only the workers call it, through its cluster Service, and it scales on its
  own queue depth.
- Workers (worker/README.md, ``gke-inference-worker streaming``) scale on the
  subscription's backlog (Cloud Monitoring ``num_undelivered_messages`` through
  the custom metrics adapter).
- IAM is scoped to exactly these topics and subscriptions, never the project:
  the workers' Kubernetes service account subscribes to the input subscription
  and publishes to the output and dead-letter topics; the Pub/Sub service
  agent gets what dead-lettering needs. The worker never reads subscription
  metadata, so no ``roles/pubsub.viewer``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_gcp import pubsub
from pulumi_kubernetes.core import v1 as core
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.inference.workload_identity import ksa_principal
from gke_inference.platform.identity import project_number
from gke_inference.workloads.autoscaling import Rate, autoscale, hpa_spec
from gke_inference.workloads.lifecycle import user_env
from gke_inference.workloads.loading import startup_seconds
from gke_inference.workloads.network_policy import isolate
from gke_inference.workloads.online import OnlineInference, OnlineInferenceArgs
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.pods import (
    SERVER_PORT,
    WORKER_UID,
    container_security,
    gcp_labels,
    pod_security,
    worker_image,
)
from gke_inference.workloads.sizing import Sizing
from gke_inference.workloads.spec import StreamingSettings, WorkloadSpec

METRICS_PORT = 9090
SHUTDOWN_GRACE_SECONDS = 120  # in-flight requests finish (REQUEST_TIMEOUT_S is 120)
TERMINATION_GRACE_SECONDS = SHUTDOWN_GRACE_SECONDS + 30
DEAD_LETTER_RETENTION_SECONDS = 604_800  # the Pub/Sub maximum: a week to inspect and replay
BACKLOG_METRIC = "pubsub.googleapis.com|subscription|num_undelivered_messages"
SUBSCRIBER = "roles/pubsub.subscriber"
PUBLISHER = "roles/pubsub.publisher"


def backlog_hpa_spec(
    deployment: str, subscription: pulumi.Input[str], settings: StreamingSettings
) -> k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs:
    """Workers follow the undelivered messages: backlogPerWorker messages per pod. They
    start in seconds: follow a growing backlog at once, shrink gently (each scale-down
    nacks held messages)."""
    return hpa_spec(
        deployment,
        # An HPA cannot scale to zero without an alpha feature gate.
        max(1, settings.min_workers),
        settings.max_workers,
        k8s.autoscaling.v2.MetricSpecArgs(
            type="External",
            external=k8s.autoscaling.v2.ExternalMetricSourceArgs(
                metric=k8s.autoscaling.v2.MetricIdentifierArgs(
                    name=BACKLOG_METRIC,
                    selector=LabelSelectorArgs(
                        match_labels={"resource.labels.subscription_id": subscription}
                    ),
                ),
                target=k8s.autoscaling.v2.MetricTargetArgs(
                    type="AverageValue", average_value=str(settings.backlog_per_worker)
                ),
            ),
        ),
        scale_up=[Rate("Pods", 4, 30), Rate("Percent", 100, 30)],
        scale_down=[Rate("Percent", 50, 60)],
        scale_down_window_seconds=300,
    )


@dataclass
class StreamingInferenceArgs:
    spec: WorkloadSpec
    sizing: Sizing
    platform: PlatformRef


class StreamingInference(pulumi.ComponentResource):
    input_topic: pulumi.Output[str]
    output_topic: pulumi.Output[str]
    dead_letter_topic: pulumi.Output[str]
    subscription: pulumi.Output[str]
    dead_letter_subscription: pulumi.Output[str]
    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: StreamingInferenceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:workloads:StreamingInference", name, None, opts)
        spec, sizing, platform = args.spec, args.sizing, args.platform
        settings = spec.streaming or StreamingSettings()
        workload = spec.name
        project = platform.project_id
        namespace = platform.workload_namespace
        labels = gcp_labels(spec, platform.environment)
        gcp_opts = child_options(self, opts)
        retention = f"{settings.message_retention_seconds}s"

        def topic(suffix: str, retention_seconds: int) -> pubsub.Topic:
            return pubsub.Topic(
                f"{name}-{suffix}",
                name=f"{workload}-{suffix}",
                project=project,
                labels=labels,
                message_retention_duration=f"{retention_seconds}s",
                opts=gcp_opts,
            )

        input_topic = topic("input", settings.message_retention_seconds)
        output_topic = topic("output", settings.message_retention_seconds)
        dead_letter_topic = topic("dead-letter", DEAD_LETTER_RETENTION_SECONDS)
        never = pubsub.SubscriptionExpirationPolicyArgs(ttl="")
        subscription = pubsub.Subscription(
            f"{name}-input-subscription",
            name=f"{workload}-input",
            project=project,
            topic=input_topic.id,
            labels=labels,
            ack_deadline_seconds=settings.ack_deadline_seconds,
            message_retention_duration=retention,
            retain_acked_messages=False,
            expiration_policy=never,
            dead_letter_policy=pubsub.SubscriptionDeadLetterPolicyArgs(
                dead_letter_topic=dead_letter_topic.id,
                max_delivery_attempts=settings.max_delivery_attempts,
            ),
            retry_policy=pubsub.SubscriptionRetryPolicyArgs(
                minimum_backoff=f"{settings.min_backoff_seconds}s",
                maximum_backoff=f"{settings.max_backoff_seconds}s",
            ),
            opts=gcp_opts,
        )
        # Without a subscription, messages published to a topic are dropped.
        dead_letter_subscription = pubsub.Subscription(
            f"{name}-dead-letter-subscription",
            name=f"{workload}-dead-letter",
            project=project,
            topic=dead_letter_topic.id,
            labels=labels,
            ack_deadline_seconds=60,
            message_retention_duration=f"{DEAD_LETTER_RETENTION_SECONDS}s",
            expiration_policy=never,
            opts=gcp_opts,
        )

        # IAM on these resources only.
        account_name = f"{workload}-worker"
        number = project_number(project)
        worker = ksa_principal(project, number, namespace, account_name)
        service_agent = pulumi.Output.concat(
            "serviceAccount:service-", number, "@gcp-sa-pubsub.iam.gserviceaccount.com"
        )
        iam_opts = pulumi.ResourceOptions(parent=self)
        # Exactly these grants, each on one topic or subscription; the service
        # agent's pair is what dead-lettering needs (it forwards from the
        # subscription to the dead-letter topic).
        publish_on = functools.partial(pubsub.TopicIAMMember, role=PUBLISHER)
        subscribe_on = functools.partial(pubsub.SubscriptionIAMMember, role=SUBSCRIBER)
        table: list[tuple[Callable[..., pulumi.Resource], str, dict[str, Any], Any]] = [
            (publish_on, "worker-publisher-output", {"topic": output_topic.name}, worker),
            (publish_on, "worker-publisher-dead-letter", {"topic": dead_letter_topic.name}, worker),
            (publish_on, "service-agent-publisher-dead-letter", {"topic": dead_letter_topic.name},
             service_agent),
            (subscribe_on, "worker-subscriber", {"subscription": subscription.name}, worker),
            (subscribe_on, "service-agent-subscriber", {"subscription": subscription.name},
             service_agent),
        ]  # fmt: skip
        grants = [
            grant(f"{name}-{suffix}", project=project, member=member, opts=iam_opts, **target)
            for grant, suffix, target, member in table
        ]

        selector = {"app.kubernetes.io/name": account_name}
        # The model server: in-cluster only (its workers are its only callers),
        # autoscaled on its own queue depth.
        model = OnlineInference(
            f"{name}-model",
            OnlineInferenceArgs(spec, sizing, platform, expose=False, clients=selector),
            child_options(self, opts),
        )
        self.url = model.url

        k8s_opts = child_options(self, opts)
        pod_labels = {
            "app.kubernetes.io/name": account_name,
            "app.kubernetes.io/component": "worker",
            "gke-inference/workload": workload,
            "gke-inference/kind": "streaming",
        }
        account = k8s.core.v1.ServiceAccount(
            f"{name}-worker-ksa",
            metadata=ObjectMetaArgs(name=account_name, namespace=namespace, labels=pod_labels),
            automount_service_account_token=False,
            opts=k8s_opts,
        )
        ready_budget = startup_seconds(sizing)  # the server may still be loading weights
        metrics = core.HTTPGetActionArgs(path="/metrics", port="metrics")
        container = core.ContainerArgs(
            name="worker",
            image=worker_image(platform, settings.worker_image),
            args=["streaming"],
            env=[
                core.EnvVarArgs(name="GOOGLE_CLOUD_PROJECT", value=project),
                core.EnvVarArgs(name="INPUT_SUBSCRIPTION", value=subscription.id),
                core.EnvVarArgs(name="OUTPUT_TOPIC", value=output_topic.id),
                core.EnvVarArgs(name="DEAD_LETTER_TOPIC", value=dead_letter_topic.id),
                core.EnvVarArgs(name="MODEL_ENDPOINT", value=model.url),
                core.EnvVarArgs(name="MODEL_NAME", value=sizing.served_model_name),
                core.EnvVarArgs(name="MAX_CONCURRENCY", value=str(settings.worker_concurrency)),
                core.EnvVarArgs(name="METRICS_PORT", value=str(METRICS_PORT)),
                core.EnvVarArgs(name="MODEL_READY_TIMEOUT_S", value=str(ready_budget)),
                core.EnvVarArgs(name="SHUTDOWN_GRACE_S", value=str(SHUTDOWN_GRACE_SECONDS)),
                core.EnvVarArgs(name="HOME", value="/tmp"),
                *user_env(),
            ],
            ports=[
                core.ContainerPortArgs(name="metrics", container_port=METRICS_PORT, protocol="TCP")
            ],
            resources=core.ResourceRequirementsArgs(
                requests={"cpu": "500m", "memory": "512Mi"}, limits={"memory": "1Gi"}
            ),
            # /metrics is served once the model answers /health: the startup probe
            # covers the wait, then readiness and liveness watch the process.
            startup_probe=core.ProbeArgs(
                http_get=metrics,
                period_seconds=10,
                failure_threshold=math.ceil((ready_budget + 60) / 10),
            ),
            readiness_probe=core.ProbeArgs(
                http_get=metrics, period_seconds=10, failure_threshold=3
            ),
            liveness_probe=core.ProbeArgs(
                http_get=metrics, period_seconds=20, timeout_seconds=5, failure_threshold=3
            ),
            security_context=container_security(WORKER_UID),
            volume_mounts=[core.VolumeMountArgs(name="tmp", mount_path="/tmp")],
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-worker",
            metadata=ObjectMetaArgs(name=account_name, namespace=namespace, labels=pod_labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=max(1, settings.min_workers),
                selector=LabelSelectorArgs(match_labels=selector),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=pod_labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account_name,
                        automount_service_account_token=False,
                        termination_grace_period_seconds=TERMINATION_GRACE_SECONDS,
                        security_context=pod_security(WORKER_UID, fs_group=False),
                        containers=[container],
                        volumes=[
                            core.VolumeArgs(
                                name="tmp",
                                empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="256Mi"),
                            )
                        ],
                    ),
                ),
            ),
            opts=child_options(self, opts, depends_on=[account, *grants]),
        )
        autoscale(
            f"{name}-worker",
            ObjectMetaArgs(name=account_name, namespace=namespace, labels=pod_labels),
            selector,
            backlog_hpa_spec(account_name, subscription.name, settings),
            hpa_opts=child_options(self, opts, depends_on=[deployment]),
            pdb_opts=k8s_opts,
        )
        # Workers take their work from Pub/Sub (public HTTPS), call their model server
        # and are scraped by Managed Prometheus; nothing else reaches them.
        isolate(
            f"{name}-worker",
            ObjectMetaArgs(name=account_name, namespace=namespace, labels=pod_labels),
            selector,
            platform,
            k8s_opts,
            scraped=[METRICS_PORT],
            peers_out=[({"app.kubernetes.io/name": workload}, [SERVER_PORT])],
        )
        k8s.apiextensions.CustomResource(
            f"{name}-worker-metrics",
            api_version="monitoring.googleapis.com/v1",
            kind="PodMonitoring",
            metadata=ObjectMetaArgs(name=account_name, namespace=namespace, labels=pod_labels),
            spec={
                "selector": {"matchLabels": selector},
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
            },
            opts=k8s_opts,
        )

        self.input_topic = input_topic.name
        self.output_topic = output_topic.name
        self.dead_letter_topic = dead_letter_topic.name
        self.subscription = subscription.name
        self.dead_letter_subscription = dead_letter_subscription.name
        self.register_outputs(
            {
                "inputTopic": self.input_topic,
                "outputTopic": self.output_topic,
                "deadLetterTopic": self.dead_letter_topic,
                "subscription": self.subscription,
                "deadLetterSubscription": self.dead_letter_subscription,
                "url": self.url,
            }
        )
