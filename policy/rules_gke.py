"""GKE control plane and node rules (names follow the CIS GKE pack).

Missing props are read as the provider default where that default is safe
(pulumi-gcp: ``enableShieldedNodes`` defaults to true, ``enableLegacyAbac`` to
false, ``deletionProtection`` to true, integrity monitoring to true, node
auto-repair/auto-upgrade to enabled). Where the default is unsafe (secure boot
defaults to false, the node service account to the Compute Engine default) a
missing prop is a violation. Autopilot clusters (``enableAutopilot: true``)
enforce Shielded Nodes, secure boot, the metadata server, Dataplane V2 and
Workload Identity themselves, so those rules pass for them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import ResourceValidationArgs

from gke_inference.core.networks import too_public
from gke_inference.policy.base import ADVISORY, Messages, ResourceCheck, Rules
from gke_inference.policy.config import is_prod, param
from gke_inference.policy.props import falsy, get, items, obj, truthy

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
PUBLIC_CIDRS = ("0.0.0.0/0", "::/0")
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")

RULES = Rules()
_NODES = (CLUSTER, NODE_POOL)


def autopilot(props: Mapping[str, Any]) -> bool:
    return truthy(props.get("enableAutopilot"))


def _production_only(args: ResourceValidationArgs) -> None:
    if not is_prod(args, args.urn):
        args.not_applicable("not a production stack (see prodStacks)")


# --------------------------------------------------------------------------- control plane


@RULES.resource(CLUSTER, "gke-private-nodes-enabled")
def _private_nodes(args: ResourceValidationArgs) -> Messages:
    """GKE nodes have only private IP addresses."""
    if not truthy(get(args.props, "privateClusterConfig", "enablePrivateNodes")):
        yield (
            f"Cluster {args.name} gives its nodes public IP addresses. "
            "Set privateClusterConfig.enablePrivateNodes to true "
            "(egress goes through Cloud NAT)."
        )


@RULES.resource(CLUSTER, "gke-control-plane-not-public", params=("minPublicPrefixLength",))
def _control_plane(args: ResourceValidationArgs) -> Messages:
    """The GKE control plane has a private endpoint, or its public endpoint only admits
    authorized networks that together cover no more public addresses than one block of
    minPublicPrefixLength (never 0.0.0.0/0, nor the internet in halves)."""
    props = args.props
    if truthy(get(props, "privateClusterConfig", "enablePrivateEndpoint")):
        return
    if falsy(get(props, "controlPlaneEndpointsConfig", "ipEndpointsConfig", "enabled")):
        return  # no IP endpoint at all; only the IAM-authenticated DNS endpoint
    authorized = props.get("masterAuthorizedNetworksConfig")
    if not isinstance(authorized, Mapping):  # the block's presence is what enables it
        yield (
            f"Cluster {args.name} has a public control-plane endpoint open to the internet. "
            "Set privateClusterConfig.enablePrivateEndpoint to true, or configure "
            "masterAuthorizedNetworksConfig.cidrBlocks with your admin networks."
        )
        return
    public = [
        obj(block).get("cidrBlock")
        for block in items(authorized.get("cidrBlocks"))
        if obj(block).get("cidrBlock") in PUBLIC_CIDRS
    ]
    if public:
        yield (
            f"Cluster {args.name} authorizes {', '.join(map(str, public))} on its public "
            "control-plane endpoint. Remove that entry from "
            "masterAuthorizedNetworksConfig.cidrBlocks or set "
            "privateClusterConfig.enablePrivateEndpoint to true."
        )
    else:
        blocks = [str(obj(b).get("cidrBlock")) for b in items(authorized.get("cidrBlocks"))]
        try:
            why = too_public(blocks, int(param(args, "minPublicPrefixLength")))
        except ValueError:
            why = f"{', '.join(blocks)} are not all IPv4 CIDRs"
        if why:
            yield (
                f"Cluster {args.name}: its authorized networks {why} on the public "
                "control-plane endpoint. Narrow masterAuthorizedNetworksConfig.cidrBlocks "
                "or set privateClusterConfig.enablePrivateEndpoint to true."
            )
    if truthy(authorized.get("gcpPublicCidrsAccessEnabled")):
        yield (
            f"Cluster {args.name} lets every Google Cloud public IP reach its public endpoint. "
            "Set masterAuthorizedNetworksConfig.gcpPublicCidrsAccessEnabled to false."
        )


@RULES.resource(CLUSTER, "gke-shielded-nodes-enabled")
def _shielded_nodes(args: ResourceValidationArgs) -> Messages:
    """Shielded GKE Nodes stay on (the default; Autopilot always has them)."""
    if not autopilot(args.props) and falsy(args.props.get("enableShieldedNodes")):
        yield (
            f"Cluster {args.name} turns Shielded GKE Nodes off. "
            "Remove enableShieldedNodes or set it to true."
        )


@RULES.resource(CLUSTER, "gke-workload-identity-enabled")
def _workload_identity(args: ResourceValidationArgs) -> Messages:
    """Pods reach Google APIs through Workload Identity, not node credentials."""
    if autopilot(args.props) or get(args.props, "workloadIdentityConfig", "workloadPool"):
        return
    yield (
        f"Cluster {args.name} has no Workload Identity. Set "
        "workloadIdentityConfig.workloadPool to '<project>.svc.id.goog'."
    )


@RULES.resource(CLUSTER, "gke-legacy-abac-disabled")
def _legacy_abac(args: ResourceValidationArgs) -> Messages:
    """Legacy ABAC authorization is disabled."""
    if truthy(args.props.get("enableLegacyAbac")):
        yield (
            f"Cluster {args.name} enables legacy ABAC, which bypasses RBAC. "
            "Remove enableLegacyAbac or set it to false."
        )


@RULES.resource(CLUSTER, "gke-client-certificate-auth-disabled")
def _client_auth(args: ResourceValidationArgs) -> Messages:
    """No client certificate or basic-auth credentials are issued for the cluster."""
    auth = obj(args.props.get("masterAuth"))
    if truthy(get(auth, "clientCertificateConfig", "issueClientCertificate")):
        yield (
            f"Cluster {args.name} issues a client certificate (a non-revocable admin "
            "credential). Set masterAuth.clientCertificateConfig.issueClientCertificate "
            "to false."
        )
    if auth.get("username") or auth.get("password"):
        yield (
            f"Cluster {args.name} enables basic authentication. Remove "
            "masterAuth.username and masterAuth.password."
        )


@RULES.resource(CLUSTER, "gke-release-channel-enabled")
def _release_channel(args: ResourceValidationArgs) -> Messages:
    """The cluster is enrolled in a GKE release channel."""
    channel = get(args.props, "releaseChannel", "channel")
    if channel not in RELEASE_CHANNELS:
        yield (
            f"Cluster {args.name} is not enrolled in a release channel (got {channel!r}). "
            f"Set releaseChannel.channel to one of {', '.join(RELEASE_CHANNELS)}."
        )


@RULES.resource(CLUSTER, "gke-network-policy-enabled")
def _network_policy(args: ResourceValidationArgs) -> Messages:
    """NetworkPolicies are enforced (GKE Dataplane V2 or the network policy add-on)."""
    props = args.props
    if autopilot(props) or props.get("datapathProvider") == "ADVANCED_DATAPATH":
        return
    if truthy(get(props, "networkPolicy", "enabled")) and not truthy(
        get(props, "addonsConfig", "networkPolicyConfig", "disabled")
    ):
        return
    yield (
        f"Cluster {args.name} cannot enforce NetworkPolicies. Set datapathProvider to "
        "ADVANCED_DATAPATH (GKE Dataplane V2) or enable networkPolicy."
    )


def _secrets_encryption_missing(props: Mapping[str, Any]) -> bool:
    encryption = obj(props.get("databaseEncryption"))
    return encryption.get("state") != "ENCRYPTED" or not encryption.get("keyName")


@RULES.resource(CLUSTER, "gke-secrets-encryption-kms-enabled", params=("prodStacks",))
def _secrets_prod(args: ResourceValidationArgs) -> Messages:
    """Production clusters encrypt Kubernetes Secrets with a Cloud KMS key."""
    _production_only(args)
    if _secrets_encryption_missing(args.props):
        yield (
            f"Production cluster {args.name} stores Secrets without application-layer "
            "encryption. Set databaseEncryption to {state: ENCRYPTED, keyName: <Cloud KMS "
            "key>}."
        )


@RULES.resource(
    CLUSTER, "gke-secrets-encryption-kms-recommended", params=("prodStacks",), level=ADVISORY
)
def _secrets_other(args: ResourceValidationArgs) -> Messages:
    """Non-production clusters should encrypt Kubernetes Secrets with a Cloud KMS key."""
    if is_prod(args, args.urn):
        args.not_applicable("production stacks are checked by gke-secrets-encryption-kms-enabled")
    if _secrets_encryption_missing(args.props):
        yield (
            f"Cluster {args.name} stores Secrets without application-layer encryption. "
            "Set databaseEncryption to {state: ENCRYPTED, keyName: <Cloud KMS key>} "
            "(required in production stacks)."
        )


@RULES.resource(CLUSTER, "gke-deletion-protection-enabled", params=("prodStacks",))
def _deletion_protection(args: ResourceValidationArgs) -> Messages:
    """Production clusters keep deletion protection on."""
    _production_only(args)
    if falsy(args.props.get("deletionProtection")):
        yield (
            f"Production cluster {args.name} can be deleted by a stray destroy. "
            "Set deletionProtection to true."
        )


@RULES.resource(CLUSTER, "gke-binary-authorization-enabled", params=("prodStacks",))
def _binary_authorization(args: ResourceValidationArgs) -> Messages:
    """Production clusters enforce the project's Binary Authorization policy."""
    _production_only(args)
    binauthz = obj(args.props.get("binaryAuthorization"))
    mode = binauthz.get("evaluationMode")
    if mode == "PROJECT_SINGLETON_POLICY_ENFORCE" or (
        mode is None and truthy(binauthz.get("enabled"))
    ):
        return
    yield (
        f"Production cluster {args.name} admits unattested images (binaryAuthorization "
        f"evaluationMode {mode!r}). Set binaryAuthorization.evaluationMode to "
        "PROJECT_SINGLETON_POLICY_ENFORCE."
    )


@RULES.resource(CLUSTER, "gke-logging-monitoring-enabled")
def _logging_monitoring(args: ResourceValidationArgs) -> Messages:
    """Cloud Logging and Cloud Monitoring stay on for system components."""
    props = args.props
    for service, config in (
        ("loggingService", "loggingConfig"),
        ("monitoringService", "monitoringConfig"),
    ):
        if props.get(service) == "none":
            yield f"Cluster {args.name} sets {service} to 'none'. Remove it."
        components = get(props, config, "enableComponents")
        if components is not None and "SYSTEM_COMPONENTS" not in items(components):
            yield (
                f"Cluster {args.name} disables system {config[:-6]} "
                f"({config}.enableComponents={list(items(components))}). "
                f"Set {config}.enableComponents to a list that includes SYSTEM_COMPONENTS."
            )


# --------------------------------------------------------------------------- nodes


def node_configs(args: ResourceValidationArgs) -> list[tuple[str, Mapping[str, Any]]]:
    """(where, config) of every node configuration of a cluster or node pool.

    A node pool always has one (missing = provider defaults). A Standard cluster
    contributes ``nodeConfig`` unless the default pool is removed without one,
    and ``clusterAutoscaling.autoProvisioningDefaults`` when node
    auto-provisioning is on or defaults are given. Autopilot clusters contribute
    nothing: Google manages those nodes.
    """
    props = args.props
    if args.resource_type == NODE_POOL:
        return [("nodeConfig", obj(props.get("nodeConfig")))]
    if autopilot(props):
        return []
    found: list[tuple[str, Mapping[str, Any]]] = []
    if "nodeConfig" in props or not truthy(props.get("removeDefaultNodePool")):
        found.append(("nodeConfig", obj(props.get("nodeConfig"))))
    autoscaling = obj(props.get("clusterAutoscaling"))
    if "autoProvisioningDefaults" in autoscaling or truthy(autoscaling.get("enabled")):
        found.append(
            (
                "clusterAutoscaling.autoProvisioningDefaults",
                obj(autoscaling.get("autoProvisioningDefaults")),
            )
        )
    return found


def _owner(args: ResourceValidationArgs) -> str:
    """How messages name the resource: ``Cluster base`` or ``Node pool gpu``."""
    return f"{'Node pool' if args.resource_type == NODE_POOL else 'Cluster'} {args.name}"


def _turned_off(blocks: list[tuple[str, Mapping[str, Any]]], *path: str) -> Iterator[str]:
    """``<where>.<path>`` of each ``(where, block)`` that sets ``path`` to false."""
    for where, block in blocks:
        if falsy(get(block, *path)):
            yield ".".join((where, *path))


@RULES.resource(_NODES, "gke-shielded-nodes-secure-boot")
def _secure_boot(args: ResourceValidationArgs) -> Messages:
    """Nodes boot with Secure Boot (cluster nodeConfig, node auto-provisioning defaults,
    node pools)."""
    for where, config in node_configs(args):
        if not truthy(get(config, "shieldedInstanceConfig", "enableSecureBoot")):
            yield (
                f"{_owner(args)} boots nodes without Secure Boot "
                "(the provider default is false). Set "
                f"{where}.shieldedInstanceConfig.enableSecureBoot to true."
            )


@RULES.resource(_NODES, "gke-shielded-nodes-integrity-monitoring")
def _integrity_monitoring(args: ResourceValidationArgs) -> Messages:
    """Nodes keep Shielded VM integrity monitoring on."""
    blocks = node_configs(args)
    for field in _turned_off(blocks, "shieldedInstanceConfig", "enableIntegrityMonitoring"):
        yield f"{_owner(args)} turns integrity monitoring off. Set {field} to true."


def default_service_account(account: Any) -> bool:
    if not isinstance(account, str) or not account or account == "default":
        return True
    return account.endswith("-compute@developer.gserviceaccount.com")


@RULES.resource(_NODES, "gke-not-using-default-service-account")
def _service_account(args: ResourceValidationArgs) -> Messages:
    """Nodes run as a dedicated service account, not the Compute Engine default."""
    configs = node_configs(args)
    if args.resource_type == CLUSTER and autopilot(args.props):
        defaults = get(args.props, "clusterAutoscaling", "autoProvisioningDefaults")
        configs = [("clusterAutoscaling.autoProvisioningDefaults", obj(defaults))]
    for where, config in configs:
        account = config.get("serviceAccount")
        if default_service_account(account):
            shown = account or "unset (Compute Engine default)"
            yield (
                f"{_owner(args)} runs nodes as {shown}, which has project Editor. "
                f"Set {where}.serviceAccount to a dedicated, least-privilege service account."
            )


@RULES.resource(_NODES, "gke-metadata-server-enabled")
def _metadata_server(args: ResourceValidationArgs) -> Messages:
    """Node pools use the GKE metadata server (workloadMetadataConfig.mode GKE_METADATA)."""
    for where, config in node_configs(args):
        if where != "nodeConfig":
            continue  # auto-provisioned nodes follow the cluster's Workload Identity setting
        mode = get(config, "workloadMetadataConfig", "mode")
        if mode != "GKE_METADATA":
            yield (
                f"{_owner(args)} exposes the node's metadata to pods "
                f"(workloadMetadataConfig.mode={mode!r}). Set "
                f"{where}.workloadMetadataConfig.mode to GKE_METADATA."
            )


@RULES.resource(_NODES, "gke-legacy-metadata-endpoints-disabled")
def _legacy_metadata(args: ResourceValidationArgs) -> Messages:
    """The legacy Compute Engine metadata endpoints stay disabled on nodes."""
    for field in _turned_off(node_configs(args), "metadata", "disable-legacy-endpoints"):
        yield (
            f"{_owner(args)} re-enables the legacy metadata endpoints. "
            f"Remove {field} or set it to 'true'."
        )


def _management_blocks(args: ResourceValidationArgs) -> list[tuple[str, Mapping[str, Any]]]:
    if args.resource_type == NODE_POOL:
        return [("management", obj(args.props.get("management")))]
    return [
        (f"{where}.management", obj(config.get("management")))
        for where, config in node_configs(args)
        if where != "nodeConfig"
    ]


def _management_on(field: str, feature: str) -> ResourceCheck:
    """A check that node pools and auto-provisioned nodes keep ``management.<field>`` on."""

    def check(args: ResourceValidationArgs) -> Messages:
        for path in _turned_off(_management_blocks(args), field):
            yield f"{_owner(args)} turns node {feature} off. Set {path} to true."

    check.__doc__ = f"Node pools and auto-provisioned nodes keep {feature} on."
    return check


# policy, management field, how messages call it
for _name, _field, _feature in (
    ("gke-node-auto-repair-enabled", "autoRepair", "auto-repair"),
    ("gke-node-auto-upgrade-enabled", "autoUpgrade", "auto-upgrade"),
):
    RULES.resource(_NODES, _name)(_management_on(_field, _feature))

POLICIES = RULES.policies
