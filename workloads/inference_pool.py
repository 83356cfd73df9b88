"""Model-aware routing: an InferencePool and its endpoint picker (EPP).

The gateway asks the EPP which replica should serve each request; the EPP
scores replicas on the vLLM metrics it scrapes (queue depth, KV-cache use,
prefix-cache affinity) instead of round-robin.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from gke_inference.inference.inference_extension import OBJECTIVE_GROUP, POOL_GROUP, POOL_VERSION
from gke_inference.workloads.pods import SERVER_PORT, container_security, pod_security

EPP_IMAGE = "gateway-api-inference-extension/epp:v1.5.0"  # on registry.k8s.io
EPP_GRPC_PORT = 9002
EPP_HEALTH_PORT = 9003
EPP_METRICS_PORT = 9090


class InferencePoolRouting:
    """Objects that route one workload through an InferencePool (parented by the caller)."""

    def __init__(
        self,
        name: str,
        workload: str,
        namespace: pulumi.Input[str],
        server_selector: dict[str, str],
        labels: dict[str, str],
        opts: pulumi.ResourceOptions,
        image: str,
    ) -> None:
        self.pool_name = workload
        epp = f"{workload}-epp"
        epp_labels = {"app.kubernetes.io/name": epp, "gke-inference/workload": workload}
        k8s.core.v1.ServiceAccount(
            f"{name}-epp-sa", metadata=ObjectMetaArgs(name=epp, namespace=namespace), opts=opts
        )
        role = k8s.rbac.v1.Role(
            f"{name}-epp-role",
            metadata=ObjectMetaArgs(name=epp, namespace=namespace),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""], resources=["pods"], verbs=["get", "list", "watch"]
                ),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[POOL_GROUP],
                    resources=["inferencepools"],
                    verbs=["get", "list", "watch"],
                ),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[OBJECTIVE_GROUP],
                    resources=["inferenceobjectives"],
                    verbs=["get", "list", "watch"],
                ),
            ],
            opts=opts,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-epp-binding",
            metadata=ObjectMetaArgs(name=epp, namespace=namespace),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=epp
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=epp, namespace=namespace)
            ],
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[role])),
        )
        grpc_health = k8s.core.v1.GRPCActionArgs(
            port=EPP_HEALTH_PORT, service="inference-extension"
        )
        k8s.apps.v1.Deployment(
            f"{name}-epp",
            metadata=ObjectMetaArgs(name=epp, namespace=namespace, labels=epp_labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                selector=LabelSelectorArgs(match_labels={"app.kubernetes.io/name": epp}),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=epp_labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=epp,
                        priority_class_name="high",
                        security_context=pod_security(),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="epp",
                                image=image,
                                args=[
                                    f"--pool-name={workload}",
                                    pulumi.Output.concat("--pool-namespace=", namespace),
                                    "--zap-encoder=json",
                                    "--v=2",
                                ],
                                ports=[
                                    k8s.core.v1.ContainerPortArgs(
                                        name="grpc", container_port=EPP_GRPC_PORT
                                    ),
                                    k8s.core.v1.ContainerPortArgs(
                                        name="grpc-health", container_port=EPP_HEALTH_PORT
                                    ),
                                    k8s.core.v1.ContainerPortArgs(
                                        name="metrics", container_port=EPP_METRICS_PORT
                                    ),
                                ],
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "500m", "memory": "512Mi"},
                                    limits={"memory": "1Gi"},
                                ),
                                readiness_probe=k8s.core.v1.ProbeArgs(
                                    grpc=grpc_health, period_seconds=5
                                ),
                                liveness_probe=k8s.core.v1.ProbeArgs(
                                    grpc=grpc_health, period_seconds=10
                                ),
                                security_context=container_security(),
                            )
                        ],
                    ),
                ),
            ),
            opts=opts,
        )
        k8s.core.v1.Service(
            f"{name}-epp-service",
            metadata=ObjectMetaArgs(name=epp, namespace=namespace, labels=epp_labels),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector={"app.kubernetes.io/name": epp},
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="grpc", port=EPP_GRPC_PORT, app_protocol="http2"
                    ),
                    k8s.core.v1.ServicePortArgs(name="metrics", port=EPP_METRICS_PORT),
                ],
            ),
            opts=opts,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-pool",
            api_version=f"{POOL_GROUP}/{POOL_VERSION}",
            kind="InferencePool",
            metadata=ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
            spec={
                "selector": {"matchLabels": server_selector},
                "targetPorts": [{"number": SERVER_PORT}],
                "endpointPickerRef": {
                    "name": epp,
                    "port": {"number": EPP_GRPC_PORT},
                    "failureMode": "FailOpen",
                },
            },
            opts=opts,
        )
