"""In-cluster basics: namespaces (default-deny networking), priority classes, scraping."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from gke_inference.core.components import child_options

MODEL_SERVER_LABEL = "gke-inference/model-server"
GATEWAY_ACCESS_LABEL = "gke-inference/gateway-access"

# (name, value, global default, description). Values below the system range
# (<= 1e9); best-effort batch can be preempted by anything online.
PRIORITY_CLASSES: tuple[tuple[str, int, bool, str], ...] = (
    ("critical", 1_000_000_000, False, "Platform add-ons that inference depends on"),
    ("high", 500_000_000, False, "Latency-sensitive online inference"),
    ("standard", 0, True, "Default for everything else"),
    ("low", -1_073_741_824, False, "Batch and streaming work that can wait"),
    ("lowest", -2_147_483_648, False, "Opportunistic work on spare capacity"),
)


def pod_security_labels(enforce: str) -> dict[str, str]:
    return {
        "pod-security.kubernetes.io/enforce": enforce,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }


@dataclass
class ClusterAddonsArgs:
    workload_namespace: str
    gateway_namespace: str
    environment: str


class ClusterAddons(pulumi.ComponentResource):
    workload_namespace: k8s.core.v1.Namespace
    gateway_namespace: k8s.core.v1.Namespace

    def __init__(
        self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:inference:ClusterAddons", name, None, opts)
        # "restricted" enforced: every pod the workload kinds render meets it (policy
        # k8s-pod-security-restricted), and so does the sidecar GKE injects for Cloud
        # Storage FUSE (gcs-fuse-csi-driver builds it to the restricted profile: uid
        # 65534, no privilege escalation, capabilities dropped, RuntimeDefault
        # seccomp). GPU and TPU device plugins run in kube-system, not here.
        self.workload_namespace = k8s.core.v1.Namespace(
            f"{name}-workloads",
            metadata=ObjectMetaArgs(
                name=args.workload_namespace,
                labels={
                    **pod_security_labels("restricted"),
                    GATEWAY_ACCESS_LABEL: "true",
                    "environment": args.environment,
                },
            ),
            opts=child_options(self, opts),
        )
        self.gateway_namespace = k8s.core.v1.Namespace(
            f"{name}-gateway",
            metadata=ObjectMetaArgs(
                name=args.gateway_namespace,
                labels={**pod_security_labels("restricted"), "environment": args.environment},
            ),
            opts=child_options(self, opts),
        )
        # Nothing in the workload namespace sends or receives until a policy of its
        # own admits it: every pod the workload kinds render gets one
        # (gke_inference.workloads.network_policy), a pod someone adds by hand gets
        # nothing until it has one.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-workloads-default-deny",
            metadata=ObjectMetaArgs(name="default-deny", namespace=args.workload_namespace),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=LabelSelectorArgs(), policy_types=["Ingress", "Egress"]
            ),
            opts=child_options(self, opts, depends_on=[self.workload_namespace]),
        )
        for pc_name, value, default, description in PRIORITY_CLASSES:
            k8s.scheduling.v1.PriorityClass(
                f"{name}-priority-{pc_name}",
                metadata=ObjectMetaArgs(name=pc_name),
                value=value,
                global_default=default,
                preemption_policy="Never" if value < 0 else "PreemptLowerPriority",
                description=description,
                opts=child_options(self, opts),
            )
        # Managed Prometheus scrapes every vLLM pod in the namespace; HPAs and
        # dashboards read vllm:* metrics from Cloud Monitoring.
        k8s.apiextensions.CustomResource(
            f"{name}-model-servers",
            api_version="monitoring.googleapis.com/v1",
            kind="PodMonitoring",
            metadata=ObjectMetaArgs(name="model-servers", namespace=args.workload_namespace),
            spec={
                "selector": {
                    "matchExpressions": [{"key": MODEL_SERVER_LABEL, "operator": "Exists"}]
                },
                "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
                # workload: the pod's app.kubernetes.io/name, which the latency recording
                # rules select on (workloads.latency), so workloads sharing the
                # namespace never scale on each other's pods.
                "targetLabels": {
                    "metadata": ["pod", "container", "node"],
                    "fromPod": [{"from": "app.kubernetes.io/name", "to": "workload"}],
                },
            },
            opts=child_options(self, opts, depends_on=[self.workload_namespace]),
        )
        self.register_outputs({"workloadNamespace": args.workload_namespace})
