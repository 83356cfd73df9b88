"""Accelerator capacity: static node pools (Standard) and NAP ceilings."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import container

from gke_inference.core.components import child_options
from gke_inference.core.settings import AcceleratorPool, PlatformSettings
from gke_inference.inference.catalog import CATALOG, lookup
from gke_inference.platform.cluster import ResourceLimit, hardened_node_config

# How a pool gets capacity -> the taint that keeps other pods away from it.
PROVISIONING_TAINT = "gke-inference/provisioning"


def nap_limits(settings: PlatformSettings) -> list[ResourceLimit]:
    """One node auto-provisioning ceiling per catalog accelerator (0 = never auto-create)."""
    overrides = settings.inference.nap_max_devices
    return [
        ResourceLimit(acc.nap_resource, maximum=overrides.get(acc.key, acc.default_max_devices))
        for acc in CATALOG
    ]


@dataclass
class AcceleratorPoolsArgs:
    settings: PlatformSettings
    cluster_id: pulumi.Input[str]
    node_service_account: pulumi.Input[str]


class AcceleratorPools(pulumi.ComponentResource):
    """Static GPU/TPU pools with driver auto-install, gVNIC, image streaming, scale to zero."""

    pools: list[container.NodePool]

    def __init__(
        self, name: str, args: AcceleratorPoolsArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:inference:AcceleratorPools", name, None, opts)
        self.pools = [
            self._pool(name, pool, args, opts) for pool in args.settings.inference.node_pools
        ]
        self.register_outputs({"pools": [p.name for p in self.pools]})

    def _pool(
        self,
        name: str,
        pool: AcceleratorPool,
        args: AcceleratorPoolsArgs,
        opts: pulumi.ResourceOptions | None,
    ) -> container.NodePool:
        s = args.settings
        acc, shape = lookup(pool.machine_type)
        accelerators = None
        if acc.kind == "gpu":
            accelerators = [
                container.NodePoolNodeConfigGuestAcceleratorArgs(
                    type=acc.gke_label,
                    count=shape.count,
                    gpu_driver_installation_config=container.NodePoolNodeConfigGuestAcceleratorGpuDriverInstallationConfigArgs(
                        gpu_driver_version="LATEST"
                    ),
                )
            ]
        reservation = (
            container.NodePoolNodeConfigReservationAffinityArgs(
                consume_reservation_type="SPECIFIC_RESERVATION",
                key="compute.googleapis.com/reservation-name",
                values=[pool.reservation or ""],
            )
            if pool.provisioning == "reservation"
            else container.NodePoolNodeConfigReservationAffinityArgs(
                consume_reservation_type="NO_RESERVATION"
            )
            if pool.provisioning == "queued"
            else None
        )
        return container.NodePool(
            f"{name}-{pool.name}",
            name=pool.name,
            project=s.project,
            cluster=args.cluster_id,
            location=s.region,
            node_locations=pool.node_locations,
            initial_node_count=0 if pool.provisioning == "queued" else pool.min_nodes,
            autoscaling=container.NodePoolAutoscalingArgs(
                min_node_count=pool.min_nodes,
                max_node_count=pool.max_nodes,
                location_policy="ANY",
            ),
            queued_provisioning=container.NodePoolQueuedProvisioningArgs(enabled=True)
            if pool.provisioning == "queued"
            else None,
            management=container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
            upgrade_settings=container.NodePoolUpgradeSettingsArgs(
                strategy="SURGE", max_surge=0, max_unavailable=1
            ),
            network_config=container.NodePoolNetworkConfigArgs(enable_private_nodes=True),
            node_config=hardened_node_config(
                machine_type=pool.machine_type,
                service_account=args.node_service_account,
                disk_type="pd-balanced" if acc.kind == "tpu" else "pd-ssd",
                disk_size_gb=200,
                labels={"resource-type": acc.kind, "gke-inference/accelerator": acc.key},
                resource_labels=s.common_labels,
                taint=(PROVISIONING_TAINT, pool.provisioning),
                spot=pool.provisioning == "spot",
                guest_accelerators=accelerators,
                reservation_affinity=reservation,
            ),
            opts=child_options(
                self,
                opts,
                ignore_changes=["initialNodeCount", "version"],
                custom_timeouts=pulumi.CustomTimeouts(create="45m", update="45m"),
            ),
        )
