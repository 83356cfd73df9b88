"""Network: custom-mode VPC, node subnet with pod/service ranges, proxy-only subnet, NAT."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import compute

from gke_inference.core.components import child_options
from gke_inference.core.settings import NetworkSettings

POD_RANGE = "pods"
SERVICE_RANGE = "services"


@dataclass
class NetworkArgs:
    project: str
    region: str
    name: str
    settings: NetworkSettings


class Network(pulumi.ComponentResource):
    """The VPC the cluster lives in, created here or brought by the user."""

    network_id: pulumi.Output[str]
    subnetwork_id: pulumi.Output[str]
    pod_range_name: str
    service_range_name: str

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gke-inference:platform:Network", name, None, opts)
        s = args.settings
        if s.mode == "existing":
            assert s.existing is not None  # guaranteed by settings validation
            base = f"projects/{args.project}"
            self.network_id = pulumi.Output.from_input(
                f"{base}/global/networks/{s.existing.network}"
            )
            self.subnetwork_id = pulumi.Output.from_input(
                f"{base}/regions/{args.region}/subnetworks/{s.existing.subnetwork}"
            )
            self.pod_range_name = s.existing.pod_range_name
            self.service_range_name = s.existing.service_range_name
            self.register_outputs(
                {"networkId": self.network_id, "subnetworkId": self.subnetwork_id}
            )
            return

        child = child_options(self, opts)
        vpc = compute.Network(
            f"{name}-vpc",
            name=args.name,
            project=args.project,
            auto_create_subnetworks=False,
            routing_mode="GLOBAL",
            description="gke-inference VPC (custom mode)",
            opts=child,
        )
        log_config = (
            compute.SubnetworkLogConfigArgs(
                aggregation_interval="INTERVAL_5_SEC",
                flow_sampling=0.5,
                metadata="INCLUDE_ALL_METADATA",
            )
            if s.flow_logs
            else None
        )
        nodes = compute.Subnetwork(
            f"{name}-nodes",
            name=f"{args.name}-nodes",
            project=args.project,
            region=args.region,
            network=vpc.id,
            ip_cidr_range=str(s.node_cidr),
            private_ip_google_access=True,
            stack_type="IPV4_ONLY",
            secondary_ip_ranges=[
                compute.SubnetworkSecondaryIpRangeArgs(
                    range_name=POD_RANGE, ip_cidr_range=str(s.pod_cidr)
                ),
                compute.SubnetworkSecondaryIpRangeArgs(
                    range_name=SERVICE_RANGE, ip_cidr_range=str(s.service_cidr)
                ),
            ],
            log_config=log_config,
            opts=child,
        )
        # Internal Application Load Balancers (the gke-l7-rilb Gateway) need a
        # regional proxy-only subnet in the same VPC.
        compute.Subnetwork(
            f"{name}-proxy-only",
            name=f"{args.name}-proxy-only",
            project=args.project,
            region=args.region,
            network=vpc.id,
            ip_cidr_range=str(s.proxy_only_cidr),
            purpose="REGIONAL_MANAGED_PROXY",
            role="ACTIVE",
            opts=child,
        )
        router = compute.Router(
            f"{name}-router",
            name=f"{args.name}-router",
            project=args.project,
            region=args.region,
            network=vpc.id,
            opts=child,
        )
        # Private nodes have no external IPs; NAT gives them egress (model hubs,
        # public registries behind the Artifact Registry remote repositories).
        compute.RouterNat(
            f"{name}-nat",
            name=f"{args.name}-nat",
            project=args.project,
            region=args.region,
            router=router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            enable_dynamic_port_allocation=True,
            min_ports_per_vm=64,
            max_ports_per_vm=4096,
            log_config=compute.RouterNatLogConfigArgs(enable=True, filter=s.nat_logging),
            opts=child,
        )
        self.network_id = vpc.id
        self.subnetwork_id = nodes.id
        self.pod_range_name = POD_RANGE
        self.service_range_name = SERVICE_RANGE
        self.register_outputs({"networkId": self.network_id, "subnetworkId": self.subnetwork_id})
