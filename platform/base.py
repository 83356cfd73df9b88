"""BasePlatform: the secure foundation every inference workload stands on."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from gke_inference.core.settings import PlatformSettings
from gke_inference.platform.cluster import GkeCluster, GkeClusterArgs, ResourceLimit
from gke_inference.platform.identity import NodeIdentity, NodeIdentityArgs
from gke_inference.platform.kubeconfig import render_kubeconfig
from gke_inference.platform.network import Network, NetworkArgs
from gke_inference.platform.registry import ArtifactRegistry, ArtifactRegistryArgs
from gke_inference.platform.security import (
    BinaryAuthorization,
    BinaryAuthorizationArgs,
    SecretsEncryption,
    SecretsEncryptionArgs,
)
from gke_inference.platform.services import ProjectServices, ProjectServicesArgs


@dataclass
class BasePlatformArgs:
    settings: PlatformSettings
    # Node auto-provisioning ceilings contributed by the inference layer.
    nap_limits: list[ResourceLimit] = field(default_factory=list)


class BasePlatform(pulumi.ComponentResource):
    """Network, node identity, security controls, registry and the GKE cluster."""

    network: Network
    node_identity: NodeIdentity
    registry: ArtifactRegistry
    cluster: GkeCluster
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: BasePlatformArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:platform:BasePlatform", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        apis: list[pulumi.Resource] = []
        if s.security.enable_apis:
            apis = list(
                ProjectServices(f"{name}-apis", ProjectServicesArgs(s.project), child).services
            )
        after_apis = pulumi.ResourceOptions(parent=self, depends_on=apis)

        self.network = Network(
            f"{name}-network",
            NetworkArgs(
                project=s.project, region=s.region, name=s.cluster_name, settings=s.network
            ),
            after_apis,
        )
        self.node_identity = NodeIdentity(
            f"{name}-nodes",
            NodeIdentityArgs(project=s.project, account_id=f"{s.cluster_name}-nodes"),
            after_apis,
        )
        self.registry = ArtifactRegistry(
            f"{name}-registry",
            ArtifactRegistryArgs(
                project=s.project,
                region=s.region,
                settings=s.registry,
                immutable_tags=s.immutable_tags,
                labels=s.common_labels,
            ),
            after_apis,
        )
        self.registry.grant_read(f"{name}-nodes-pull", self.node_identity.member)

        secrets_key_id: pulumi.Output[str] | None = None
        cluster_deps: list[pulumi.Resource] = [*apis]
        if s.security.secrets_encryption:
            encryption = SecretsEncryption(
                f"{name}-secrets",
                SecretsEncryptionArgs(
                    project=s.project,
                    region=s.region,
                    name=s.cluster_name,
                    rotation_days=s.security.kms_rotation_days,
                    labels=s.common_labels,
                ),
                after_apis,
            )
            secrets_key_id = encryption.key_id
            # GKE validates key access at create time: grant first.
            cluster_deps.append(encryption.grant)
        if s.binary_authorization_enforced:
            cluster_deps.append(
                BinaryAuthorization(
                    f"{name}-binauthz", BinaryAuthorizationArgs(s.project, s.region), after_apis
                )
            )

        self.cluster = GkeCluster(
            f"{name}-gke",
            GkeClusterArgs(
                settings=s,
                network_id=self.network.network_id,
                subnetwork_id=self.network.subnetwork_id,
                pod_range_name=self.network.pod_range_name,
                service_range_name=self.network.service_range_name,
                node_service_account=self.node_identity.email,
                secrets_key_id=secrets_key_id,
                nap_limits=args.nap_limits,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=cluster_deps),
        )
        use_dns = s.cluster.dns_endpoint
        self.kubeconfig = pulumi.Output.secret(
            pulumi.Output.all(self.cluster.endpoint, self.cluster.ca_certificate).apply(
                lambda v: render_kubeconfig(s.cluster_name, v[0], v[1], use_dns)
            )
        )
        self.register_outputs(
            {
                "clusterName": self.cluster.name,
                "clusterEndpoint": self.cluster.endpoint,
                "artifactRegistry": self.registry.url,
            }
        )
