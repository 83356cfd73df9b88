"""The GKE cluster (Standard or Autopilot) and, in Standard mode, its system pool."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi_gcp import container

from gke_inference.core.components import child_options
from gke_inference.core.settings import PlatformSettings

OAUTH_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
MANAGED_COMPONENTS_TAINT = "components.gke.io/gke-managed-components"


@dataclass
class ResourceLimit:
    """A node auto-provisioning ceiling (``cpu``, ``memory`` or an accelerator resource)."""

    resource_type: str
    maximum: int
    minimum: int = 0


@dataclass
class GkeClusterArgs:
    settings: PlatformSettings
    network_id: pulumi.Input[str]
    subnetwork_id: pulumi.Input[str]
    pod_range_name: str
    service_range_name: str
    node_service_account: pulumi.Input[str]
    secrets_key_id: pulumi.Input[str] | None
    nap_limits: list[ResourceLimit] = field(default_factory=list)


def hardened_node_config(
    *,
    machine_type: str,
    service_account: pulumi.Input[str],
    disk_type: str,
    disk_size_gb: int,
    labels: dict[str, str],
    resource_labels: dict[str, str],
    taint: tuple[str, str],
    **extra: Any,
) -> container.NodePoolNodeConfigArgs:
    """Node settings every pool shares: the security baseline lives in one place.

    Shielded VM (secure boot, integrity monitoring), the dedicated node
    identity, the GKE metadata server, no legacy metadata endpoints, image
    streaming, gVNIC, and one NoSchedule taint that reserves the pool.
    """
    key, value = taint
    return container.NodePoolNodeConfigArgs(
        machine_type=machine_type,
        image_type="COS_CONTAINERD",
        disk_type=disk_type,
        disk_size_gb=disk_size_gb,
        service_account=service_account,
        oauth_scopes=OAUTH_SCOPES,
        shielded_instance_config=container.NodePoolNodeConfigShieldedInstanceConfigArgs(
            enable_secure_boot=True, enable_integrity_monitoring=True
        ),
        workload_metadata_config=container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
            mode="GKE_METADATA"
        ),
        gcfs_config=container.NodePoolNodeConfigGcfsConfigArgs(enabled=True),
        gvnic=container.NodePoolNodeConfigGvnicArgs(enabled=True),
        metadata={"disable-legacy-endpoints": "true"},
        labels=labels,
        resource_labels=resource_labels,
        taints=[container.NodePoolNodeConfigTaintArgs(key=key, value=value, effect="NO_SCHEDULE")],
        **extra,
    )


class GkeCluster(pulumi.ComponentResource):
    cluster: container.Cluster
    name: pulumi.Output[str]
    location: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    ca_certificate: pulumi.Output[str]

    def __init__(self, name: str, args: GkeClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gke-inference:platform:GkeCluster", name, None, opts)
        s = args.settings
        self.cluster = container.Cluster(
            f"{name}-cluster",
            args=self._cluster_args(args),
            opts=child_options(
                self,
                opts,
                protect=s.is_production,
                # The default pool is removed right after creation; its node
                # config and the versions GKE auto-upgrades must not cause diffs.
                ignore_changes=["nodeConfig", "nodePool", "minMasterVersion", "nodeVersion"],
                custom_timeouts=pulumi.CustomTimeouts(create="45m", update="60m", delete="45m"),
            ),
        )
        if not s.autopilot:
            self._system_pool(name, args, opts)
        self.name = self.cluster.name
        self.location = self.cluster.location
        dns = self.cluster.control_plane_endpoints_config.apply(
            lambda c: (
                (c.dns_endpoint_config.endpoint if c and c.dns_endpoint_config else None) or ""
            )
        )
        # A private-endpoint cluster is reached through its DNS endpoint (IAM
        # checked, no bastion); otherwise through the IP endpoint.
        self.endpoint = dns if s.cluster.dns_endpoint else self.cluster.endpoint
        self.ca_certificate = self.cluster.master_auth.cluster_ca_certificate.apply(
            lambda c: c or ""
        )
        self.register_outputs(
            {"name": self.name, "location": self.location, "endpoint": self.endpoint}
        )

    def _cluster_args(self, args: GkeClusterArgs) -> container.ClusterArgs:
        s = args.settings
        c = s.cluster
        standard = not s.autopilot
        encryption = (
            container.ClusterDatabaseEncryptionArgs(state="ENCRYPTED", key_name=args.secrets_key_id)
            if args.secrets_key_id is not None
            else container.ClusterDatabaseEncryptionArgs(state="DECRYPTED")
        )
        if standard:
            nap_defaults = container.ClusterClusterAutoscalingAutoProvisioningDefaultsArgs(
                service_account=args.node_service_account,
                oauth_scopes=OAUTH_SCOPES,
                disk_type="pd-balanced",
                image_type="COS_CONTAINERD",
                shielded_instance_config=container.ClusterClusterAutoscalingAutoProvisioningDefaultsShieldedInstanceConfigArgs(
                    enable_secure_boot=True, enable_integrity_monitoring=True
                ),
                management=container.ClusterClusterAutoscalingAutoProvisioningDefaultsManagementArgs(
                    auto_repair=True, auto_upgrade=True
                ),
                upgrade_settings=container.ClusterClusterAutoscalingAutoProvisioningDefaultsUpgradeSettingsArgs(
                    strategy="SURGE", max_surge=1, max_unavailable=0
                ),
            )
            autoscaling = container.ClusterClusterAutoscalingArgs(
                enabled=True,
                autoscaling_profile="OPTIMIZE_UTILIZATION",
                auto_provisioning_defaults=nap_defaults,
                resource_limits=[
                    container.ClusterClusterAutoscalingResourceLimitArgs(
                        resource_type=limit.resource_type,
                        minimum=limit.minimum,
                        maximum=limit.maximum,
                    )
                    for limit in args.nap_limits
                ],
            )
        else:
            # Autopilot manages node shape, shielding and upgrades itself; only
            # the identity its nodes run as is ours to choose.
            autoscaling = container.ClusterClusterAutoscalingArgs(
                auto_provisioning_defaults=container.ClusterClusterAutoscalingAutoProvisioningDefaultsArgs(
                    service_account=args.node_service_account, oauth_scopes=OAUTH_SCOPES
                )
            )
        window = c.maintenance_window
        common = dict(
            name=s.cluster_name,
            project=s.project,
            location=s.region,
            network=args.network_id,
            subnetwork=args.subnetwork_id,
            deletion_protection=s.deletion_protection,
            resource_labels=s.common_labels,
            release_channel=container.ClusterReleaseChannelArgs(channel=c.release_channel),
            networking_mode="VPC_NATIVE",
            ip_allocation_policy=container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=args.pod_range_name,
                services_secondary_range_name=args.service_range_name,
            ),
            private_cluster_config=container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True,
                enable_private_endpoint=c.private_endpoint,
                master_ipv4_cidr_block=str(s.network.control_plane_cidr)
                if s.network.mode == "create"
                else None,
                master_global_access_config=container.ClusterPrivateClusterConfigMasterGlobalAccessConfigArgs(
                    enabled=True
                ),
            ),
            master_authorized_networks_config=container.ClusterMasterAuthorizedNetworksConfigArgs(
                cidr_blocks=[
                    container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                        cidr_block=str(n.cidr), display_name=n.display_name
                    )
                    for n in c.authorized_networks
                ],
                gcp_public_cidrs_access_enabled=False,
            ),
            control_plane_endpoints_config=container.ClusterControlPlaneEndpointsConfigArgs(
                dns_endpoint_config=container.ClusterControlPlaneEndpointsConfigDnsEndpointConfigArgs(
                    allow_external_traffic=c.dns_endpoint
                ),
            ),
            workload_identity_config=container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=s.workload_pool
            ),
            datapath_provider="ADVANCED_DATAPATH",
            dns_config=container.ClusterDnsConfigArgs(
                cluster_dns="CLOUD_DNS", cluster_dns_scope="CLUSTER_SCOPE"
            ),
            gateway_api_config=container.ClusterGatewayApiConfigArgs(channel=c.gateway_api_channel),
            addons_config=container.ClusterAddonsConfigArgs(
                gcs_fuse_csi_driver_config=container.ClusterAddonsConfigGcsFuseCsiDriverConfigArgs(
                    enabled=True
                ),
                gcp_filestore_csi_driver_config=container.ClusterAddonsConfigGcpFilestoreCsiDriverConfigArgs(
                    enabled=True
                ),
                gce_persistent_disk_csi_driver_config=container.ClusterAddonsConfigGcePersistentDiskCsiDriverConfigArgs(
                    enabled=True
                ),
                horizontal_pod_autoscaling=container.ClusterAddonsConfigHorizontalPodAutoscalingArgs(
                    disabled=False
                ),
                http_load_balancing=container.ClusterAddonsConfigHttpLoadBalancingArgs(
                    disabled=False
                ),
            ),
            monitoring_config=container.ClusterMonitoringConfigArgs(
                enable_components=list(s.observability.monitoring_components),
                managed_prometheus=container.ClusterMonitoringConfigManagedPrometheusArgs(
                    enabled=True,
                    auto_monitoring_config=container.ClusterMonitoringConfigManagedPrometheusAutoMonitoringConfigArgs(
                        scope=s.observability.auto_monitoring
                    ),
                ),
                advanced_datapath_observability_config=container.ClusterMonitoringConfigAdvancedDatapathObservabilityConfigArgs(
                    enable_metrics=True, enable_relay=False
                ),
            ),
            logging_config=container.ClusterLoggingConfigArgs(
                enable_components=list(s.observability.logging_components)
            ),
            cost_management_config=container.ClusterCostManagementConfigArgs(
                enabled=c.cost_allocation
            ),
            security_posture_config=container.ClusterSecurityPostureConfigArgs(
                mode=c.security_posture, vulnerability_mode=c.vulnerability_scanning
            ),
            maintenance_policy=container.ClusterMaintenancePolicyArgs(
                recurring_window=container.ClusterMaintenancePolicyRecurringWindowArgs(
                    start_time=window.start_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    end_time=window.end_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    recurrence=window.recurrence,
                )
            ),
            pod_autoscaling=container.ClusterPodAutoscalingArgs(hpa_profile=c.hpa_profile),
            binary_authorization=container.ClusterBinaryAuthorizationArgs(
                evaluation_mode="PROJECT_SINGLETON_POLICY_ENFORCE"
                if s.binary_authorization_enforced
                else "DISABLED"
            ),
            database_encryption=encryption,
            enable_legacy_abac=False,
            master_auth=container.ClusterMasterAuthArgs(
                client_certificate_config=container.ClusterMasterAuthClientCertificateConfigArgs(
                    issue_client_certificate=False
                )
            ),
            cluster_autoscaling=autoscaling,
        )
        if not standard:
            return container.ClusterArgs(enable_autopilot=True, **common)  # type: ignore[arg-type]
        return container.ClusterArgs(
            **common,  # type: ignore[arg-type]
            node_locations=c.node_locations,
            enable_shielded_nodes=True,
            remove_default_node_pool=True,
            initial_node_count=1,
            node_pool_defaults=container.ClusterNodePoolDefaultsArgs(
                node_config_defaults=container.ClusterNodePoolDefaultsNodeConfigDefaultsArgs(
                    gcfs_config=container.ClusterNodePoolDefaultsNodeConfigDefaultsGcfsConfigArgs(
                        enabled=True
                    ),
                    insecure_kubelet_readonly_port_enabled="FALSE",
                )
            ),
            # Settings of the short-lived default pool: even it must not run
            # with the default compute service account or without Shielded VM.
            node_config=container.ClusterNodeConfigArgs(
                service_account=args.node_service_account,
                oauth_scopes=OAUTH_SCOPES,
                shielded_instance_config=container.ClusterNodeConfigShieldedInstanceConfigArgs(
                    enable_secure_boot=True, enable_integrity_monitoring=True
                ),
                workload_metadata_config=container.ClusterNodeConfigWorkloadMetadataConfigArgs(
                    mode="GKE_METADATA"
                ),
                metadata={"disable-legacy-endpoints": "true"},
            ),
        )

    def _system_pool(
        self, name: str, args: GkeClusterArgs, opts: pulumi.ResourceOptions | None
    ) -> None:
        s = args.settings
        pool = s.cluster.system_pool
        container.NodePool(
            f"{name}-system",
            name="system",
            project=s.project,
            cluster=self.cluster.id,
            location=s.region,
            node_locations=s.cluster.node_locations,
            initial_node_count=pool.min_nodes_per_zone or 1,
            autoscaling=container.NodePoolAutoscalingArgs(
                min_node_count=pool.min_nodes_per_zone,
                max_node_count=pool.max_nodes_per_zone,
                location_policy="BALANCED",
            ),
            management=container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            upgrade_settings=container.NodePoolUpgradeSettingsArgs(
                strategy="SURGE", max_surge=1, max_unavailable=0
            ),
            network_config=container.NodePoolNetworkConfigArgs(enable_private_nodes=True),
            node_config=hardened_node_config(
                machine_type=pool.machine_type,
                service_account=args.node_service_account,
                disk_type=pool.disk_type,
                disk_size_gb=pool.disk_size_gb,
                labels={"resource-type": "system"},
                resource_labels=s.common_labels,
                taint=(MANAGED_COMPONENTS_TAINT, "true"),
            ),
            opts=child_options(
                self,
                opts,
                ignore_changes=["initialNodeCount", "version"],
                custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m"),
            ),
        )
