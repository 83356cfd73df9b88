"""OnlineInference: vLLM behind the environment's gateway, autoscaled on inference metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.workloads.autoscaling import (
    autoscale,
    recording_rule,
    serving_min_available,
    vllm_hpa_spec,
)
from gke_inference.workloads.lora import rewrite_rules
from gke_inference.workloads.multihost import (
    LWS_API_VERSION,
    LWS_KIND,
    LWS_NAME_LABEL,
    leader_selector,
    leader_worker_set,
)
from gke_inference.workloads.network_policy import PodPeer, isolate
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.pods import (
    SERVER_PORT,
    ModelServer,
    cluster_service,
    pinned_image,
    service_url,
    vllm_container,
)
from gke_inference.workloads.routing import expose_on_gateway
from gke_inference.workloads.sizing import Sizing
from gke_inference.workloads.spec import WorkloadSpec


@dataclass
class OnlineInferenceArgs:
    spec: WorkloadSpec
    sizing: Sizing
    platform: PlatformRef
    expose: bool = True  # False when another component (streaming) is the only client
    # the pods of the namespace that call the server (labels), besides the gateway
    clients: Mapping[str, str] | None = None


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
        server = ModelServer.of(spec, sizing, platform)
        labels = server.labels
        selector = {"app.kubernetes.io/name": workload}

        account = server.service_account(name, self, k8s_opts)
        metadata = ObjectMetaArgs(name=workload, namespace=namespace, labels=labels)
        server_opts = child_options(self, opts, depends_on=[account])
        replicas: pulumi.Resource
        if sizing.nodes > 1:
            # One replica spans nodes: a LeaderWorkerSet group; leaders serve.
            replicas = leader_worker_set(name, spec, sizing, server, metadata, server_opts)
            serving = leader_selector(workload)
            target = (LWS_API_VERSION, LWS_KIND)
        else:
            replicas = self._deployment(name, spec, sizing, server, metadata, selector, server_opts)
            serving, target = selector, ("apps/v1", "Deployment")
        self.service_name = workload
        cluster_service(name, metadata, serving, SERVER_PORT, "metrics", k8s_opts)
        recorded = recording_rule(name, metadata, spec, k8s_opts)
        autoscale(
            name,
            metadata,
            selector,
            vllm_hpa_spec(workload, spec, namespace=namespace, scaled=target),
            hpa_opts=child_options(
                self, opts, depends_on=[replicas] + ([recorded] if recorded else [])
            ),
            pdb_opts=k8s_opts,
            # a group goes down as a whole: one pod of the set at a time (module doc
            # of workloads.multihost)
            min_available=None
            if sizing.nodes > 1
            else serving_min_available(spec, platform.environment),
        )
        self.url = pulumi.Output.from_input(service_url(workload, namespace, SERVER_PORT))
        callers: list[PodPeer] = [(args.clients, [SERVER_PORT])] if args.clients else []
        if args.expose:
            callers += self._expose(name, spec, sizing, platform, labels, serving, k8s_opts)
        # A group's pods reach each other on every port: Ray picks its object-manager,
        # node-manager and worker ports at start, NCCL its own.
        group: list[PodPeer] = [({LWS_NAME_LABEL: workload}, [])] if sizing.nodes > 1 else []
        isolate(
            name,
            metadata,
            selector,
            platform,
            k8s_opts,
            served=[SERVER_PORT] if args.expose else [],
            scraped=[SERVER_PORT],  # vLLM's /metrics is on its serving port
            peers_in=[*callers, *group],
            peers_out=group,
        )
        self.register_outputs({"url": self.url})

    def _deployment(
        self,
        name: str,
        spec: WorkloadSpec,
        sizing: Sizing,
        server: ModelServer,
        metadata: ObjectMetaArgs,
        selector: dict[str, str],
        opts: pulumi.ResourceOptions,
    ) -> k8s.apps.v1.Deployment:
        """Single-node replicas: surge one new pod before an old one goes."""
        return k8s.apps.v1.Deployment(
            f"{name}-server",
            metadata=metadata,
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
                template=server.pod(
                    containers=[vllm_container(sizing, server.image, model=server.model_location)],
                    priority_class_name="high",
                ),
            ),
            opts=opts,
        )

    def _expose(
        self,
        name: str,
        spec: WorkloadSpec,
        sizing: Sizing,
        platform: PlatformRef,
        labels: dict[str, str],
        selector: dict[str, str],
        k8s_opts: pulumi.ResourceOptions,
    ) -> list[PodPeer]:
        """HTTPRoute on the environment's gateway, and backend policies for long streams;
        the pods that then call the server besides the gateway (an endpoint picker)."""
        workload, namespace = spec.name, platform.workload_namespace
        prefix = spec.routing.path_prefix or f"/{workload}"
        if spec.routing.mode == "inference-pool":
            from gke_inference.workloads.epp_config import config_text
            from gke_inference.workloads.inference_pool import InferencePoolRouting

            epp_image = pinned_image(platform, "epp")
            pool = InferencePoolRouting(
                name,
                workload,
                namespace,
                selector,
                labels,
                k8s_opts,
                image=epp_image,
                platform=platform,
                config=config_text(spec.routing.scorer_weights, sizing),
                rewrite_rules=rewrite_rules(spec.lora),
            )
            target_kind, backend_name = "InferencePool", pool.pool_name
            callers: list[PodPeer] = [(pool.picker_selector, [SERVER_PORT])]
        else:
            target_kind, backend_name = "Service", workload
            callers = []
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
        return callers
