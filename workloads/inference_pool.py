"""Model-aware routing: an InferencePool and its endpoint picker (EPP).

The gateway asks the EPP which replica should serve each request; the EPP
scores replicas on the vLLM metrics it scrapes (queue depth, KV-cache use,
prefix-cache affinity) instead of round-robin.

Sized and wired as the upstream ``inferencepool`` Helm chart of the pinned
EPP version (kubernetes-sigs/gateway-api-inference-extension v1.5.0,
config/charts/inferencepool/values.yaml and config/charts/epplib/templates):
4 CPU / 8Gi requested and a 16Gi memory limit (their scale-tested defaults; no
CPU limit so scheduling spikes can burst), one replica with the Recreate
strategy (the prefix-cache scorer is stateful), a 130 s grace period (the
longest grace period of the pool's pods), and, because the EPP authenticates
its metrics endpoint by default (``--metrics-endpoint-auth``, controller-runtime
``WithAuthenticationAndAuthorization``), RBAC to create TokenReviews and
SubjectAccessReviews plus a PodMonitoring that scrapes with a bearer token of a
dedicated metrics-reader account (the chart's ``provider.name: gke`` templates).
Its scheduling config is explicit (workloads.epp_config), mounted from a
ConfigMap, with a digest annotation so a changed config replaces the pod.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs

from gke_inference.inference.inference_extension import (
    OBJECTIVE_GROUP,
    OBJECTIVE_VERSION,
    POOL_GROUP,
    POOL_VERSION,
    REWRITE_KIND,
)
from gke_inference.workloads.epp_config import CONFIG_DIR, CONFIG_FILE, digest
from gke_inference.workloads.network_policy import GMP_NAMESPACE, isolate
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.pods import SERVER_PORT, container_security, pod_security

EPP_GRPC_PORT = 9002
EPP_HEALTH_PORT = 9003
EPP_METRICS_PORT = 9090
EPP_RESOURCES = {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}
EPP_GRACE_SECONDS = 130
EPP_LOG_VERBOSITY = 1  # the chart's default flags.v
METRICS_INTERVAL = "10s"  # the chart's monitoring.interval
CONFIG_DIGEST_ANNOTATION = "gke-inference/epp-config-sha256"


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
        platform: PlatformRef,
        config: str,
        rewrite_rules: list[dict[str, object]] | None = None,
    ) -> None:
        """``config``: the picker's EndpointPickerConfig (workloads.epp_config)."""
        self.pool_name = workload
        epp = f"{workload}-epp"
        epp_labels = {"app.kubernetes.io/name": epp, "gke-inference/workload": workload}
        self.picker_selector = {"app.kubernetes.io/name": epp}
        mode = platform.mode
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
                    # the picker watches both once discovery finds their CRDs
                    resources=["inferenceobjectives", "inferencemodelrewrites"],
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
        # Cluster-scoped names must be unique across namespaces.
        cluster_name = pulumi.Output.concat(namespace, "-", epp)
        auth = k8s.rbac.v1.ClusterRole(
            f"{name}-epp-auth",
            metadata=ObjectMetaArgs(name=pulumi.Output.concat(cluster_name, "-auth")),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["authentication.k8s.io"],
                    resources=["tokenreviews"],
                    verbs=["create"],
                ),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["authorization.k8s.io"],
                    resources=["subjectaccessreviews"],
                    verbs=["create"],
                ),
            ],
            opts=opts,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-epp-auth-binding",
            metadata=ObjectMetaArgs(name=pulumi.Output.concat(cluster_name, "-auth")),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io",
                kind="ClusterRole",
                name=pulumi.Output.concat(cluster_name, "-auth"),
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=epp, namespace=namespace)
            ],
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[auth])),
        )
        self._metrics_reader(name, epp, namespace, cluster_name, epp_labels, mode, opts)
        scheduling = k8s.core.v1.ConfigMap(
            f"{name}-epp-config",
            metadata=ObjectMetaArgs(name=epp, namespace=namespace, labels=epp_labels),
            data={CONFIG_FILE: config},
            opts=opts,
        )
        grpc_health = k8s.core.v1.GRPCActionArgs(
            port=EPP_HEALTH_PORT, service="inference-extension"
        )
        k8s.apps.v1.Deployment(
            f"{name}-epp",
            metadata=ObjectMetaArgs(name=epp, namespace=namespace, labels=epp_labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                # One active picker: Recreate lets the new one take over at once.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
                selector=LabelSelectorArgs(match_labels={"app.kubernetes.io/name": epp}),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(
                        labels=epp_labels,
                        # the picker reads its config once: a new one rolls the pod
                        annotations={CONFIG_DIGEST_ANNOTATION: digest(config)},
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=epp,
                        # the one workload pod that talks to the API server: it watches
                        # its pool, the pool's pods and their objectives (the Role above)
                        automount_service_account_token=True,
                        priority_class_name="high",
                        termination_grace_period_seconds=EPP_GRACE_SECONDS,
                        security_context=pod_security(),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="epp",
                                image=image,
                                args=[
                                    f"--pool-name={workload}",
                                    pulumi.Output.concat("--pool-namespace=", namespace),
                                    f"--pool-group={POOL_GROUP}",
                                    "--zap-encoder=json",
                                    f"--v={EPP_LOG_VERBOSITY}",
                                    # No OTLP collector here; the EPP traces by default.
                                    "--tracing=false",
                                    f"--config-file={CONFIG_DIR}/{CONFIG_FILE}",
                                ],
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(
                                        name="config", mount_path=CONFIG_DIR, read_only=True
                                    )
                                ],
                                env=[
                                    k8s.core.v1.EnvVarArgs(
                                        name="NAMESPACE",
                                        value_from=k8s.core.v1.EnvVarSourceArgs(
                                            field_ref=k8s.core.v1.ObjectFieldSelectorArgs(
                                                field_path="metadata.namespace"
                                            )
                                        ),
                                    ),
                                    k8s.core.v1.EnvVarArgs(
                                        name="POD_NAME",
                                        value_from=k8s.core.v1.EnvVarSourceArgs(
                                            field_ref=k8s.core.v1.ObjectFieldSelectorArgs(
                                                field_path="metadata.name"
                                            )
                                        ),
                                    ),
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
                                    requests=EPP_RESOURCES["requests"],
                                    limits=EPP_RESOURCES["limits"],
                                ),
                                readiness_probe=k8s.core.v1.ProbeArgs(
                                    grpc=grpc_health, period_seconds=2
                                ),
                                liveness_probe=k8s.core.v1.ProbeArgs(
                                    grpc=grpc_health, initial_delay_seconds=5, period_seconds=10
                                ),
                                security_context=container_security(),
                            )
                        ],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="config",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=epp),
                            )
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=[scheduling])
            ),
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
        # The gateway's proxies call the picker (ext-proc on gRPC) and its health
        # checkers may probe either gRPC port; it reads pods and pools from the API
        # server and scrapes the pool's servers; it calls no Google API.
        isolate(
            f"{name}-epp",
            ObjectMetaArgs(name=epp, namespace=namespace, labels=epp_labels),
            self.picker_selector,
            platform,
            opts,
            served=[EPP_GRPC_PORT, EPP_HEALTH_PORT],
            scraped=[EPP_METRICS_PORT],
            peers_out=[(server_selector, [SERVER_PORT])],
            google_apis=False,
            api_server=True,
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
        if rewrite_rules:
            # LoRA routes: the picker rewrites the request's model (workloads.lora)
            k8s.apiextensions.CustomResource(
                f"{name}-model-rewrite",
                api_version=f"{OBJECTIVE_GROUP}/{OBJECTIVE_VERSION}",
                kind=REWRITE_KIND,
                metadata=ObjectMetaArgs(name=workload, namespace=namespace, labels=labels),
                spec={
                    "poolRef": {"group": POOL_GROUP, "kind": "InferencePool", "name": workload},
                    "rules": rewrite_rules,
                },
                opts=opts,
            )

    def _metrics_reader(
        self,
        name: str,
        epp: str,
        namespace: pulumi.Input[str],
        cluster_name: pulumi.Output[str],
        epp_labels: dict[str, str],
        mode: str,
        opts: pulumi.ResourceOptions,
    ) -> None:
        """PodMonitoring of the EPP's authenticated /metrics, as the chart's gke provider."""
        reader = f"{epp}-metrics-reader"
        token_secret = f"{reader}-token"
        k8s.core.v1.ServiceAccount(
            f"{name}-epp-metrics-reader",
            metadata=ObjectMetaArgs(name=reader, namespace=namespace),
            automount_service_account_token=False,
            opts=opts,
        )
        k8s.core.v1.Secret(
            f"{name}-epp-metrics-token",
            metadata=ObjectMetaArgs(
                name=token_secret,
                namespace=namespace,
                labels=epp_labels,
                annotations={"kubernetes.io/service-account.name": reader},
            ),
            type="kubernetes.io/service-account-token",
            opts=opts,
        )
        role_name = pulumi.Output.concat(cluster_name, "-metrics-reader")
        metrics_role = k8s.rbac.v1.ClusterRole(
            f"{name}-epp-metrics-role",
            metadata=ObjectMetaArgs(name=role_name),
            rules=[k8s.rbac.v1.PolicyRuleArgs(non_resource_urls=["/metrics"], verbs=["get"])],
            opts=opts,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-epp-metrics-binding",
            metadata=ObjectMetaArgs(name=role_name),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role_name
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=reader, namespace=namespace)
            ],
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=[metrics_role])
            ),
        )
        secret_role = k8s.rbac.v1.Role(
            f"{name}-epp-metrics-secret-read",
            metadata=ObjectMetaArgs(name=f"{reader}-secret-read", namespace=namespace),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""],
                    resources=["secrets"],
                    resource_names=[token_secret],
                    verbs=["get", "list", "watch"],
                )
            ],
            opts=opts,
        )
        gmp = GMP_NAMESPACE[mode]
        k8s.rbac.v1.RoleBinding(
            f"{name}-epp-metrics-collector",
            metadata=ObjectMetaArgs(name=f"{gmp}-collector-{reader}", namespace=namespace),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=f"{reader}-secret-read"
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name="collector", namespace=gmp)
            ],
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=[secret_role])
            ),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-epp-metrics",
            api_version="monitoring.googleapis.com/v1",
            kind="PodMonitoring",
            metadata=ObjectMetaArgs(name=epp, namespace=namespace, labels=epp_labels),
            spec={
                "selector": {"matchLabels": {"app.kubernetes.io/name": epp}},
                "endpoints": [
                    {
                        "port": "metrics",
                        "scheme": "http",
                        "path": "/metrics",
                        "interval": METRICS_INTERVAL,
                        "authorization": {
                            "type": "Bearer",
                            "credentials": {"secret": {"name": token_secret, "key": "token"}},
                        },
                    }
                ],
            },
            opts=opts,
        )
