"""OnlineInference: vLLM behind the environment's gateway, autoscaled on inference metrics."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.pods import (
    SERVER_PORT,
    VLLM_IMAGES,
    fuse_annotations,
    fuse_volume,
    image_tag,
    node_selector,
    pod_security,
    prefetch_sidecar,
    remote_image,
    scratch_volumes,
    server_labels,
    service_account_with_bucket_access,
    vllm_container,
)
from gke_inference.workloads.routing import expose_on_gateway
from gke_inference.workloads.sizing import Sizing
from gke_inference.workloads.spec import WorkloadSpec

# HPA metric per spec choice: Cloud Monitoring name of the Managed Prometheus
# series (through the custom metrics adapter), and the default per-pod target.
HPA_METRICS: dict[str, tuple[str, float]] = {
    "queue-depth": ("prometheus.googleapis.com|vllm:num_requests_waiting|gauge", 10),
    "kv-cache": ("prometheus.googleapis.com|vllm:kv_cache_usage_perc|gauge", 0.8),
    "requests-per-second": ("prometheus.googleapis.com|vllm:request_success_total|counter", 5),
    "running-requests": ("prometheus.googleapis.com|vllm:num_requests_running|gauge", 32),
}


def quantity(value: float) -> str:
    """A Kubernetes quantity for an HPA target (0.8 -> "800m")."""
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def hpa_spec(
    target_name: str, spec: WorkloadSpec
) -> k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs:
    scaling = spec.scaling
    metric, default_target = HPA_METRICS[scaling.metric]
    target = scaling.target if scaling.target is not None else default_target
    return k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
        scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
            api_version="apps/v1", kind="Deployment", name=target_name
        ),
        min_replicas=scaling.min_replicas,
        max_replicas=scaling.max_replicas,
        metrics=[
            k8s.autoscaling.v2.MetricSpecArgs(
                type="Pods",
                pods=k8s.autoscaling.v2.PodsMetricSourceArgs(
                    metric=k8s.autoscaling.v2.MetricIdentifierArgs(name=metric),
                    target=k8s.autoscaling.v2.MetricTargetArgs(
                        type="AverageValue", average_value=quantity(target)
                    ),
                ),
            )
        ],
        # Scale up at once (a queue is already latency), down slowly: a new
        # replica costs minutes of model loading.
        behavior=k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
            scale_up=k8s.autoscaling.v2.HPAScalingRulesArgs(
                stabilization_window_seconds=0,
                select_policy="Max",
                policies=[
                    k8s.autoscaling.v2.HPAScalingPolicyArgs(
                        type="Pods", value=2, period_seconds=60
                    ),
                    k8s.autoscaling.v2.HPAScalingPolicyArgs(
                        type="Percent", value=100, period_seconds=60
                    ),
                ],
            ),
            scale_down=k8s.autoscaling.v2.HPAScalingRulesArgs(
                stabilization_window_seconds=scaling.scale_down_stabilization_seconds,
                select_policy="Min",
                policies=[
                    k8s.autoscaling.v2.HPAScalingPolicyArgs(
                        type="Pods", value=1, period_seconds=120
                    )
                ],
            ),
        ),
    )


@dataclass
class OnlineInferenceArgs:
    spec: WorkloadSpec
    sizing: Sizing
    platform: PlatformRef
    expose: bool = True  # False when another component (streaming) is the only client


class OnlineInference(pulumi.ComponentResource):
    service_name: str
    url: pulumi.Output[str]

    def __init__(
        self, name: str, args: OnlineInferenceArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:workloads:OnlineInference", name, None, opts)
        spec, sizing, platform = args.spec, args.sizing, args.platform
        k8s_opts = child_options(self, opts)
        namespace = platform.workload_namespace
        workload = spec.name
        image_ref = spec.server.image or VLLM_IMAGES[spec.server.type]
        image = (
            pulumi.Output.from_input(spec.server.image)
            if spec.server.image
            else remote_image(platform, image_ref)
        )
        labels = server_labels(workload, "online", image_tag(image_ref))
        selector = {"app.kubernetes.io/name": workload}

        account = service_account_with_bucket_access(
            name, workload, platform, [(platform.model_bucket, "read")], self, k8s_opts
        )
        model_dir = (
            sizing.model_path.removeprefix("/models/") if sizing.model_path != "/models" else ""
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-server",
            metadata=ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=spec.scaling.min_replicas,
                selector=LabelSelectorArgs(match_labels=selector),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                        max_surge=1, max_unavailable=0
                    ),
                ),
                progress_deadline_seconds=3600,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=labels, annotations=fuse_annotations()),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=workload,
                        automount_service_account_token=False,
                        priority_class_name="high",
                        termination_grace_period_seconds=60,
                        node_selector=node_selector(sizing),
                        security_context=pod_security(),
                        init_containers=[prefetch_sidecar(image, sizing)],
                        containers=[vllm_container(sizing, image)],
                        volumes=[
                            fuse_volume("model", platform.model_bucket, model_dir, read_only=True),
                            *scratch_volumes(shm_gib=max(1, 2 * sizing.shape.count)),
                        ],
                    ),
                ),
            ),
            opts=child_options(self, opts, depends_on=[account]),
        )
        self.service_name = workload
        k8s.core.v1.Service(
            f"{name}-service",
            metadata=ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="http", port=SERVER_PORT, target_port="metrics"
                    )
                ],
            ),
            opts=k8s_opts,
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
            spec=hpa_spec(workload, spec),
            opts=child_options(self, opts, depends_on=[deployment]),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1, selector=LabelSelectorArgs(match_labels=selector)
            ),
            opts=k8s_opts,
        )
        self.url = pulumi.Output.concat(
            "http://", workload, ".", namespace, ".svc.cluster.local:", str(SERVER_PORT)
        )
        if args.expose:
            self._expose(name, spec, platform, labels, selector, k8s_opts)
        self.register_outputs({"url": self.url})

    def _expose(
        self,
        name: str,
        spec: WorkloadSpec,
        platform: PlatformRef,
        labels: dict[str, str],
        selector: dict[str, str],
        k8s_opts: pulumi.ResourceOptions,
    ) -> None:
        """HTTPRoute on the environment's gateway, and backend policies for long streams."""
        workload, namespace = spec.name, platform.workload_namespace
        prefix = spec.routing.path_prefix or f"/{workload}"
        if spec.routing.mode == "inference-pool":
            from gke_inference.workloads.inference_pool import EPP_IMAGE, InferencePoolRouting

            epp_image = remote_image(platform, EPP_IMAGE, upstream="registry-k8s")
            pool = InferencePoolRouting(
                name, workload, namespace, selector, labels, k8s_opts, image=epp_image
            )
            target_kind, backend_name = "InferencePool", pool.pool_name
        else:
            target_kind, backend_name = "Service", workload
        expose_on_gateway(
            name,
            workload,
            platform,
            labels,
            prefix=prefix,
            backend_kind=target_kind,
            backend_name=backend_name,
            port=SERVER_PORT,
            health_path="/health",
            opts=k8s_opts,
        )
