"""InferencePlatform: the inference-optimized layer on top of BasePlatform."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.core.settings import PlatformSettings
from gke_inference.inference.capacity import AcceleratorPools, AcceleratorPoolsArgs
from gke_inference.inference.catalog import Accelerator, MachineShape
from gke_inference.inference.cluster_addons import ClusterAddons, ClusterAddonsArgs
from gke_inference.inference.compute_classes import (
    class_node_pools,
    compute_class_spec,
    enabled_classes,
)
from gke_inference.inference.gateway import InferenceGateway, InferenceGatewayArgs
from gke_inference.inference.inference_extension import InferenceExtension
from gke_inference.inference.leader_worker_set import (
    LeaderWorkerSetController,
    LeaderWorkerSetControllerArgs,
)
from gke_inference.inference.metrics_adapter import MetricsAdapter, MetricsAdapterArgs
from gke_inference.inference.model_storage import ModelBucket, ModelBucketArgs
from gke_inference.inference.observability import (
    InferenceObservability,
    InferenceObservabilityArgs,
)
from gke_inference.platform.base import BasePlatform
from gke_inference.platform.identity import project_number
from gke_inference.platform.kubeconfig import kubernetes_provider


def _class_spec(
    acc: Accelerator,
    shape: MachineShape,
    cost_optimized: bool,
    node_pools: list[list[str]],
    node_service_account: str,
) -> dict[str, Any]:
    return compute_class_spec(
        acc,
        shape,
        cost_optimized=cost_optimized,
        node_service_account=node_service_account,
        node_pools=node_pools,
    )


@dataclass
class InferencePlatformArgs:
    settings: PlatformSettings
    base: BasePlatform


class InferencePlatform(pulumi.ComponentResource):
    compute_classes: dict[str, str]  # "<accelerator>-x<count>" style key -> class name
    model_bucket: ModelBucket
    provider: k8s.Provider

    def __init__(
        self, name: str, args: InferencePlatformArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:inference:InferencePlatform", name, None, opts)
        s = args.settings
        base = args.base
        inf = s.inference
        number = project_number(s.project)

        if inf.node_pools and s.autopilot:
            # The same stack file can be planned in either mode; Autopilot
            # provisions nodes itself, through the compute classes below.
            pulumi.log.warn(
                f"cluster.mode is autopilot: the {len(inf.node_pools)} configured "
                "inference.nodePools are not created",
                resource=self,
            )
        elif inf.node_pools:
            AcceleratorPools(
                f"{name}-pools",
                AcceleratorPoolsArgs(s, base.cluster.cluster.id, base.node_identity.email),
                child_options(self, opts),
            )

        cache = inf.model_bucket.anywhere_cache
        self.model_bucket = ModelBucket(
            f"{name}-models",
            ModelBucketArgs(
                project=s.project,
                region=s.region,
                name=inf.model_bucket.name or f"{s.project}-{s.cluster_name}-models",
                soft_delete_days=inf.model_bucket.soft_delete_days,
                protected=s.is_production,
                labels=s.common_labels,
                project_number=number,
                cache_zones=list(cache.zones) if cache else [],
                cache_ttl_hours=cache.ttl_hours if cache else 168,
            ),
            child_options(self, opts),
        )

        if s.observability.alerts:
            InferenceObservability(
                f"{name}-observability",
                InferenceObservabilityArgs(s, inf.workload_namespace),
                child_options(self, opts),
            )

        self.provider = kubernetes_provider(f"{name}-k8s", base.cluster.name, base.kubeconfig, self)
        k8s_opts = pulumi.ResourceOptions(
            parent=self, providers=[self.provider], depends_on=[base.cluster]
        )

        addons = ClusterAddons(
            f"{name}-addons",
            ClusterAddonsArgs(inf.workload_namespace, inf.gateway.namespace, s.environment),
            k8s_opts,
        )
        MetricsAdapter(
            f"{name}-metrics-adapter",
            MetricsAdapterArgs(
                project=s.project,
                project_number=number,
                image=s.metrics_adapter_image,
                on_system_pool=not s.autopilot,
            ),
            k8s_opts,
        )
        InferenceExtension(f"{name}-extension", k8s_opts)
        LeaderWorkerSetController(
            f"{name}-lws",
            LeaderWorkerSetControllerArgs(s.platform_image("lws-controller")),
            k8s_opts,
        )
        InferenceGateway(
            f"{name}-gateway",
            InferenceGatewayArgs(inf.gateway, addons.gateway_namespace),
            k8s_opts,
        )

        self.compute_classes = {}
        pools_of = class_node_pools(s)
        for enabled in enabled_classes(inf.accelerators, inf.cost_optimized_classes):
            self.compute_classes[enabled.key] = enabled.name
            spec = base.node_identity.email.apply(
                functools.partial(
                    _class_spec,
                    enabled.accelerator,
                    enabled.shape,
                    enabled.cost_optimized,
                    pools_of.get(enabled.name, []),
                )
            )
            k8s.apiextensions.CustomResource(
                f"{name}-class-{enabled.name}",
                api_version="cloud.google.com/v1",
                kind="ComputeClass",
                metadata=ObjectMetaArgs(
                    name=enabled.name, labels={"gke-inference/accelerator": enabled.accelerator.key}
                ),
                spec=spec,
                opts=k8s_opts,
            )
        self.register_outputs(
            {"computeClasses": self.compute_classes, "modelBucket": self.model_bucket.name}
        )
