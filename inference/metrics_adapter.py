"""Custom Metrics Stackdriver Adapter: HPAs on Managed Prometheus and Pub/Sub metrics.

It serves the custom.metrics.k8s.io and external.metrics.k8s.io APIs from
Cloud Monitoring, so an HPA can target ``prometheus.googleapis.com|
vllm:num_requests_waiting|gauge`` or a subscription's backlog. It reads
Cloud Monitoring as its own Kubernetes service account (Workload Identity),
with monitoring.viewer and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_gcp import projects
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.inference.workload_identity import ksa_principal
from gke_inference.platform.cluster import MANAGED_COMPONENTS_TAINT

NAMESPACE = "custom-metrics"
SERVICE_ACCOUNT = "custom-metrics-stackdriver-adapter"
APP_LABELS = {"app.kubernetes.io/name": SERVICE_ACCOUNT}

# API group/version -> served by this adapter.
API_SERVICES = (
    ("custom.metrics.k8s.io", "v1beta1"),
    ("custom.metrics.k8s.io", "v1beta2"),
    ("external.metrics.k8s.io", "v1beta1"),
)


@dataclass
class MetricsAdapterArgs:
    project: str
    project_number: pulumi.Input[str]
    image: str
    on_system_pool: bool  # Standard mode: run on the tainted system pool


class MetricsAdapter(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: MetricsAdapterArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:inference:MetricsAdapter", name, None, opts)

        def child(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return child_options(self, opts, depends_on=list(deps))

        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=ObjectMetaArgs(
                name=NAMESPACE, labels={"pod-security.kubernetes.io/enforce": "restricted"}
            ),
            opts=child(),
        )
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=ObjectMetaArgs(name=SERVICE_ACCOUNT, namespace=NAMESPACE),
            opts=child(ns),
        )
        adapter = [
            k8s.rbac.v1.SubjectArgs(
                kind="ServiceAccount", name=SERVICE_ACCOUNT, namespace=NAMESPACE
            )
        ]
        hpa_controller = [
            k8s.rbac.v1.SubjectArgs(
                kind="ServiceAccount", name="horizontal-pod-autoscaler", namespace="kube-system"
            )
        ]
        reader = k8s.rbac.v1.ClusterRole(
            f"{name}-resource-reader",
            metadata=ObjectMetaArgs(name=f"{SERVICE_ACCOUNT}:resource-reader"),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""],
                    resources=["pods", "nodes", "nodes/stats"],
                    verbs=["get", "list", "watch"],
                )
            ],
            opts=child(),
        )
        # The HPA controller reads external metrics through the aggregated API.
        external_reader = k8s.rbac.v1.ClusterRole(
            f"{name}-external-reader",
            metadata=ObjectMetaArgs(name="external-metrics-reader"),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["external.metrics.k8s.io"],
                    resources=["*"],
                    verbs=["list", "get", "watch"],
                )
            ],
            opts=child(),
        )
        # (logical suffix, binding kind, binding name and namespace, role kind and name,
        #  subjects, what it waits for)
        bindings: list[tuple[str, Callable[..., pulumi.Resource], ObjectMetaArgs, str, str, Any, Any]] = [
            ("auth-delegator", k8s.rbac.v1.ClusterRoleBinding,
             ObjectMetaArgs(name=f"{SERVICE_ACCOUNT}:system:auth-delegator"),
             "ClusterRole", "system:auth-delegator", adapter, child(sa)),
            ("auth-reader", k8s.rbac.v1.RoleBinding,
             ObjectMetaArgs(name=f"{SERVICE_ACCOUNT}-auth-reader", namespace="kube-system"),
             "Role", "extension-apiserver-authentication-reader", adapter, child(sa)),
            ("resource-reader", k8s.rbac.v1.ClusterRoleBinding,
             ObjectMetaArgs(name=f"{SERVICE_ACCOUNT}:resource-reader"),
             "ClusterRole", f"{SERVICE_ACCOUNT}:resource-reader", adapter, child(reader, sa)),
            ("external-reader", k8s.rbac.v1.ClusterRoleBinding,
             ObjectMetaArgs(name="external-metrics-reader"),
             "ClusterRole", "external-metrics-reader", hpa_controller, child(external_reader)),
        ]  # fmt: skip
        for suffix, binding, metadata, role_kind, role_name, subjects, binding_opts in bindings:
            binding(
                f"{name}-{suffix}",
                metadata=metadata,
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io", kind=role_kind, name=role_name
                ),
                subjects=subjects,
                opts=binding_opts,
            )
        # Standard mode: run on the tainted system pool with the other add-ons.
        node_selector = {"resource-type": "system"} if args.on_system_pool else None
        tolerations = (
            [
                k8s.core.v1.TolerationArgs(
                    key=MANAGED_COMPONENTS_TAINT,
                    operator="Equal",
                    value="true",
                    effect="NoSchedule",
                )
            ]
            if args.on_system_pool
            else None
        )
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=ObjectMetaArgs(name=SERVICE_ACCOUNT, namespace=NAMESPACE, labels=APP_LABELS),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=2,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=APP_LABELS),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=APP_LABELS),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=SERVICE_ACCOUNT,
                        # it serves an aggregated API: it reads HPAs' metric requests
                        # and delegates authentication to the API server
                        automount_service_account_token=True,
                        priority_class_name="critical",
                        security_context=k8s.core.v1.PodSecurityContextArgs(
                            run_as_non_root=True,
                            run_as_user=65534,
                            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                        ),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="adapter",
                                image=args.image,
                                image_pull_policy="IfNotPresent",
                                command=[
                                    "/adapter",
                                    "--use-new-resource-model=true",
                                    "--fallback-for-container-metrics=true",
                                ],
                                ports=[
                                    k8s.core.v1.ContainerPortArgs(name="https", container_port=443)
                                ],
                                # The generic API server's health endpoints: anonymous
                                # requests to /readyz and /livez are always authorized
                                # (--authorization-always-allow-paths default), and the
                                # kubelet does not verify the serving certificate.
                                readiness_probe=k8s.core.v1.ProbeArgs(
                                    http_get=k8s.core.v1.HTTPGetActionArgs(
                                        path="/readyz", port="https", scheme="HTTPS"
                                    ),
                                    period_seconds=10,
                                    failure_threshold=3,
                                ),
                                liveness_probe=k8s.core.v1.ProbeArgs(
                                    http_get=k8s.core.v1.HTTPGetActionArgs(
                                        path="/livez", port="https", scheme="HTTPS"
                                    ),
                                    initial_delay_seconds=10,
                                    period_seconds=20,
                                    failure_threshold=3,
                                ),
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "250m", "memory": "200Mi"},
                                    limits={"memory": "400Mi"},
                                ),
                                security_context=k8s.core.v1.SecurityContextArgs(
                                    allow_privilege_escalation=False,
                                    read_only_root_filesystem=True,
                                    capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
                                ),
                            )
                        ],
                        node_selector=node_selector,
                        tolerations=tolerations,
                    ),
                ),
            ),
            opts=child(sa),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=ObjectMetaArgs(name=SERVICE_ACCOUNT, namespace=NAMESPACE, labels=APP_LABELS),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=APP_LABELS,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="https", port=443, target_port=443, protocol="TCP"
                    )
                ],
            ),
            opts=child(ns),
        )
        for group, version in API_SERVICES:
            k8s.apiregistration.v1.APIService(
                f"{name}-{group.split('.')[0]}-{version}",
                metadata=ObjectMetaArgs(name=f"{version}.{group}"),
                spec=k8s.apiregistration.v1.APIServiceSpecArgs(
                    group=group,
                    version=version,
                    group_priority_minimum=100,
                    version_priority=200 if version == "v1beta2" else 100,
                    insecure_skip_tls_verify=True,
                    service=k8s.apiregistration.v1.ServiceReferenceArgs(
                        name=SERVICE_ACCOUNT, namespace=NAMESPACE
                    ),
                ),
                opts=child(service, deployment),
            )
        projects.IAMMember(
            f"{name}-monitoring-viewer",
            project=args.project,
            role="roles/monitoring.viewer",
            member=ksa_principal(args.project, args.project_number, NAMESPACE, SERVICE_ACCOUNT),
            opts=child(),
        )
        self.register_outputs({})
