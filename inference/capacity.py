"""Accelerator capacity: static node pools (Standard) and NAP ceilings.

Every static pool is reachable by some pod (which class reaches which pool is
decided in :mod:`gke_inference.inference.compute_classes`, a pure function of
the settings, so specs are checked against it without this module's SDK):

- A pool that is not queued belongs to one compute class. GKE schedules the
  pods of a class on a manually created pool only when the pool carries the
  node label ``cloud.google.com/compute-class: <class>`` and the taint
  ``cloud.google.com/compute-class=<class>:NoSchedule``, and a pool belongs to
  one class (GKE, "About custom ComputeClasses", "Configure manually-created
  node pools for ComputeClass use"; pods that select the class need no
  toleration of their own, as on the nodes GKE auto-creates for it). The class
  names the pool in a ``nodepools`` priority rule ahead of its declarative
  rules, which is how GKE consumes a reservation bound to a manually created
  pool ("Consume reservations in manually created node pools").
- A queued pool (flex-start with queued provisioning, "DWS") belongs to no
  class: GKE adds its nodes only for a ProvisioningRequest, and only pods that
  consume one run there (batch ``capacity: queued``,
  :mod:`gke_inference.workloads.queued`). It carries the taint GKE documents
  for such pools, ``cloud.google.com/gke-queued=true:NoSchedule``, which only
  those Jobs tolerate.

In Autopilot no pool is created.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import container

from gke_inference.core.components import child_options
from gke_inference.core.settings import AcceleratorPool, PlatformSettings
from gke_inference.inference.catalog import CATALOG, lookup
from gke_inference.inference.compute_classes import COMPUTE_CLASS_LABEL, QUEUED_TAINT, pool_class
from gke_inference.platform.cluster import ResourceLimit, hardened_node_config


def nap_limits(settings: PlatformSettings) -> list[ResourceLimit]:
    """One node auto-provisioning ceiling per catalog accelerator (0 = never auto-create).

    The ceiling is ``inference.napMaxDevices`` or the catalog default for an
    accelerator that an enabled class uses, 0 for every other one
    (``InferenceSettings.nap_ceiling``; settings refuse a ceiling below one node).
    These limits are cluster-wide: GKE enforces them on the resources of all
    node pools, not just auto-provisioned ones, and the cluster autoscaler adds
    no node, in any pool, that would exceed one (GKE, "About node
    auto-provisioning": Resource limits; the cluster autoscaler's
    ``--gpu-total`` counts every GPU in the cluster). So the static pools'
    nodes count against them too: a ceiling below what the pools may hold
    stops them from growing.
    """
    return [
        ResourceLimit(acc.nap_resource, maximum=settings.inference.nap_ceiling(acc))
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
        labels = {"resource-type": acc.kind, "gke-inference/accelerator": acc.key}
        compute_class = pool_class(pool, s.inference.cost_optimized_classes)
        if compute_class is None:
            taint = QUEUED_TAINT
        else:
            labels[COMPUTE_CLASS_LABEL] = compute_class
            taint = (COMPUTE_CLASS_LABEL, compute_class)
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
                labels=labels,
                resource_labels=s.common_labels,
                taint=taint,
                spot=pool.provisioning == "spot",
                # Queued provisioning runs on flex-start VMs: GKE asks for both flags
                # on the pool ("you have to add --flex-start and --enable-queued-provisioning").
                flex_start=True if pool.provisioning == "queued" else None,
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
