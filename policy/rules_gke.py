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

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from gke_inference.policy.base import ADVISORY, resource_policy
from gke_inference.policy.config import is_prod
from gke_inference.policy.props import falsy, get, items, obj, truthy

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
PUBLIC_CIDRS = ("0.0.0.0/0", "::/0")
RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")


def autopilot(props: Mapping[str, Any]) -> bool:
    return truthy(props.get("enableAutopilot"))


# --------------------------------------------------------------------------- control plane


def _private_nodes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not truthy(get(args.props, "privateClusterConfig", "enablePrivateNodes")):
        report(
            f"Cluster {args.name} gives its nodes public IP addresses. "
            "Set privateClusterConfig.enablePrivateNodes to true "
            "(egress goes through Cloud NAT).",
            None,
        )


def _control_plane(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if truthy(get(props, "privateClusterConfig", "enablePrivateEndpoint")):
        return
    if falsy(get(props, "controlPlaneEndpointsConfig", "ipEndpointsConfig", "enabled")):
        return  # no IP endpoint at all; only the IAM-authenticated DNS endpoint
    authorized = props.get("masterAuthorizedNetworksConfig")
    if not isinstance(authorized, Mapping):  # the block's presence is what enables it
        report(
            f"Cluster {args.name} has a public control-plane endpoint open to the internet. "
            "Set privateClusterConfig.enablePrivateEndpoint to true, or configure "
            "masterAuthorizedNetworksConfig.cidrBlocks with your admin networks.",
            None,
        )
        return
    public = [
        obj(block).get("cidrBlock")
        for block in items(authorized.get("cidrBlocks"))
        if obj(block).get("cidrBlock") in PUBLIC_CIDRS
    ]
    if public:
        report(
            f"Cluster {args.name} authorizes {', '.join(map(str, public))} on its public "
            "control-plane endpoint. Remove that entry from "
            "masterAuthorizedNetworksConfig.cidrBlocks or set "
            "privateClusterConfig.enablePrivateEndpoint to true.",
            None,
        )
    if truthy(authorized.get("gcpPublicCidrsAccessEnabled")):
        report(
            f"Cluster {args.name} lets every Google Cloud public IP reach its public endpoint. "
            "Set masterAuthorizedNetworksConfig.gcpPublicCidrsAccessEnabled to false.",
            None,
        )


def _shielded_nodes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if autopilot(args.props):
        return
    if falsy(args.props.get("enableShieldedNodes")):
        report(
            f"Cluster {args.name} turns Shielded GKE Nodes off. "
            "Remove enableShieldedNodes or set it to true.",
            None,
        )


def _workload_identity(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if autopilot(args.props):
        return
    if not get(args.props, "workloadIdentityConfig", "workloadPool"):
        report(
            f"Cluster {args.name} has no Workload Identity. Set "
            "workloadIdentityConfig.workloadPool to '<project>.svc.id.goog'.",
            None,
        )


def _legacy_abac(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if truthy(args.props.get("enableLegacyAbac")):
        report(
            f"Cluster {args.name} enables legacy ABAC, which bypasses RBAC. "
            "Remove enableLegacyAbac or set it to false.",
            None,
        )


def _client_auth(args: ResourceValidationArgs, report: ReportViolation) -> None:
    auth = obj(args.props.get("masterAuth"))
    if truthy(get(auth, "clientCertificateConfig", "issueClientCertificate")):
        report(
            f"Cluster {args.name} issues a client certificate (a non-revocable admin "
            "credential). Set masterAuth.clientCertificateConfig.issueClientCertificate "
            "to false.",
            None,
        )
    if auth.get("username") or auth.get("password"):
        report(
            f"Cluster {args.name} enables basic authentication. Remove "
            "masterAuth.username and masterAuth.password.",
            None,
        )


def _release_channel(args: ResourceValidationArgs, report: ReportViolation) -> None:
    channel = get(args.props, "releaseChannel", "channel")
    if channel not in RELEASE_CHANNELS:
        report(
            f"Cluster {args.name} is not enrolled in a release channel (got {channel!r}). "
            f"Set releaseChannel.channel to one of {', '.join(RELEASE_CHANNELS)}.",
            None,
        )


def _network_policy(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    if autopilot(props) or props.get("datapathProvider") == "ADVANCED_DATAPATH":
        return
    if truthy(get(props, "networkPolicy", "enabled")) and not truthy(
        get(props, "addonsConfig", "networkPolicyConfig", "disabled")
    ):
        return
    report(
        f"Cluster {args.name} cannot enforce NetworkPolicies. Set datapathProvider to "
        "ADVANCED_DATAPATH (GKE Dataplane V2) or enable networkPolicy.",
        None,
    )


def _secrets_encryption_missing(props: Mapping[str, Any]) -> bool:
    encryption = obj(props.get("databaseEncryption"))
    return encryption.get("state") != "ENCRYPTED" or not encryption.get("keyName")


def _secrets_prod(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not is_prod(args, args.urn):
        args.not_applicable("not a production stack (see prodStacks)")
    if _secrets_encryption_missing(args.props):
        report(
            f"Production cluster {args.name} stores Secrets without application-layer "
            "encryption. Set databaseEncryption to {state: ENCRYPTED, keyName: <Cloud KMS "
            "key>}.",
            None,
        )


def _secrets_other(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if is_prod(args, args.urn):
        args.not_applicable("production stacks are checked by gke-secrets-encryption-kms-enabled")
    if _secrets_encryption_missing(args.props):
        report(
            f"Cluster {args.name} stores Secrets without application-layer encryption. "
            "Set databaseEncryption to {state: ENCRYPTED, keyName: <Cloud KMS key>} "
            "(required in production stacks).",
            None,
        )


def _deletion_protection(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not is_prod(args, args.urn):
        args.not_applicable("not a production stack (see prodStacks)")
    if falsy(args.props.get("deletionProtection")):
        report(
            f"Production cluster {args.name} can be deleted by a stray destroy. "
            "Set deletionProtection to true.",
            None,
        )


def _binary_authorization(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not is_prod(args, args.urn):
        args.not_applicable("not a production stack (see prodStacks)")
    binauthz = obj(args.props.get("binaryAuthorization"))
    mode = binauthz.get("evaluationMode")
    if mode == "PROJECT_SINGLETON_POLICY_ENFORCE" or (
        mode is None and truthy(binauthz.get("enabled"))
    ):
        return
    report(
        f"Production cluster {args.name} admits unattested images (binaryAuthorization "
        f"evaluationMode {mode!r}). Set binaryAuthorization.evaluationMode to "
        "PROJECT_SINGLETON_POLICY_ENFORCE.",
        None,
    )


def _logging_monitoring(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props = args.props
    for service, config in (
        ("loggingService", "loggingConfig"),
        ("monitoringService", "monitoringConfig"),
    ):
        if props.get(service) == "none":
            report(f"Cluster {args.name} sets {service} to 'none'. Remove it.", None)
        components = get(props, config, "enableComponents")
        if components is not None and "SYSTEM_COMPONENTS" not in items(components):
            report(
                f"Cluster {args.name} disables system {config[:-6]} "
                f"({config}.enableComponents={list(items(components))}). "
                f"Set {config}.enableComponents to a list that includes SYSTEM_COMPONENTS.",
                None,
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


def _kind(args: ResourceValidationArgs) -> str:
    return "node pool" if args.resource_type == NODE_POOL else "cluster"


def _secure_boot(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, config in node_configs(args):
        if not truthy(get(config, "shieldedInstanceConfig", "enableSecureBoot")):
            report(
                f"{_kind(args).capitalize()} {args.name} boots nodes without Secure Boot "
                "(the provider default is false). Set "
                f"{where}.shieldedInstanceConfig.enableSecureBoot to true.",
                None,
            )


def _integrity_monitoring(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, config in node_configs(args):
        if falsy(get(config, "shieldedInstanceConfig", "enableIntegrityMonitoring")):
            report(
                f"{_kind(args).capitalize()} {args.name} turns integrity monitoring off. Set "
                f"{where}.shieldedInstanceConfig.enableIntegrityMonitoring to true.",
                None,
            )


def default_service_account(account: Any) -> bool:
    if not isinstance(account, str) or not account or account == "default":
        return True
    return account.endswith("-compute@developer.gserviceaccount.com")


def _service_account(args: ResourceValidationArgs, report: ReportViolation) -> None:
    configs = node_configs(args)
    if args.resource_type == CLUSTER and autopilot(args.props):
        defaults = get(args.props, "clusterAutoscaling", "autoProvisioningDefaults")
        configs = [("clusterAutoscaling.autoProvisioningDefaults", obj(defaults))]
    for where, config in configs:
        account = config.get("serviceAccount")
        if default_service_account(account):
            shown = account or "unset (Compute Engine default)"
            report(
                f"{_kind(args).capitalize()} {args.name} runs nodes as {shown}, which has "
                f"project Editor. Set {where}.serviceAccount to a dedicated, "
                "least-privilege service account.",
                None,
            )


def _metadata_server(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, config in node_configs(args):
        if where != "nodeConfig":
            continue  # auto-provisioned nodes follow the cluster's Workload Identity setting
        mode = get(config, "workloadMetadataConfig", "mode")
        if mode != "GKE_METADATA":
            report(
                f"{_kind(args).capitalize()} {args.name} exposes the node's metadata to pods "
                f"(workloadMetadataConfig.mode={mode!r}). Set "
                f"{where}.workloadMetadataConfig.mode to GKE_METADATA.",
                None,
            )


def _legacy_metadata(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, config in node_configs(args):
        value = get(config, "metadata", "disable-legacy-endpoints")
        if falsy(value):
            report(
                f"{_kind(args).capitalize()} {args.name} re-enables the legacy metadata "
                f"endpoints. Remove {where}.metadata.disable-legacy-endpoints or set it to "
                "'true'.",
                None,
            )


def _management_blocks(args: ResourceValidationArgs) -> list[tuple[str, Mapping[str, Any]]]:
    if args.resource_type == NODE_POOL:
        return [("management", obj(args.props.get("management")))]
    return [
        (f"{where}.management", obj(config.get("management")))
        for where, config in node_configs(args)
        if where != "nodeConfig"
    ]


def _auto_repair(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, management in _management_blocks(args):
        if falsy(management.get("autoRepair")):
            report(
                f"{_kind(args).capitalize()} {args.name} turns node auto-repair off. "
                f"Set {where}.autoRepair to true.",
                None,
            )


def _auto_upgrade(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, management in _management_blocks(args):
        if falsy(management.get("autoUpgrade")):
            report(
                f"{_kind(args).capitalize()} {args.name} turns node auto-upgrade off. "
                f"Set {where}.autoUpgrade to true.",
                None,
            )


_CLUSTER = (CLUSTER,)
_NODES = (CLUSTER, NODE_POOL)

POLICIES: list[ResourceValidationPolicy] = [
    resource_policy(
        "gke-private-nodes-enabled",
        "GKE nodes have only private IP addresses.",
        types=_CLUSTER,
        check=_private_nodes,
    ),
    resource_policy(
        "gke-control-plane-not-public",
        "The GKE control plane has a private endpoint, or its public endpoint only admits "
        "authorized networks (never 0.0.0.0/0).",
        types=_CLUSTER,
        check=_control_plane,
    ),
    resource_policy(
        "gke-shielded-nodes-enabled",
        "Shielded GKE Nodes stay on (the default; Autopilot always has them).",
        types=_CLUSTER,
        check=_shielded_nodes,
    ),
    resource_policy(
        "gke-workload-identity-enabled",
        "Pods reach Google APIs through Workload Identity, not node credentials.",
        types=_CLUSTER,
        check=_workload_identity,
    ),
    resource_policy(
        "gke-legacy-abac-disabled",
        "Legacy ABAC authorization is disabled.",
        types=_CLUSTER,
        check=_legacy_abac,
    ),
    resource_policy(
        "gke-client-certificate-auth-disabled",
        "No client certificate or basic-auth credentials are issued for the cluster.",
        types=_CLUSTER,
        check=_client_auth,
    ),
    resource_policy(
        "gke-release-channel-enabled",
        "The cluster is enrolled in a GKE release channel.",
        types=_CLUSTER,
        check=_release_channel,
    ),
    resource_policy(
        "gke-network-policy-enabled",
        "NetworkPolicies are enforced (GKE Dataplane V2 or the network policy add-on).",
        types=_CLUSTER,
        check=_network_policy,
    ),
    resource_policy(
        "gke-secrets-encryption-kms-enabled",
        "Production clusters encrypt Kubernetes Secrets with a Cloud KMS key.",
        types=_CLUSTER,
        check=_secrets_prod,
        params=("prodStacks",),
    ),
    resource_policy(
        "gke-secrets-encryption-kms-recommended",
        "Non-production clusters should encrypt Kubernetes Secrets with a Cloud KMS key.",
        types=_CLUSTER,
        check=_secrets_other,
        params=("prodStacks",),
        level=ADVISORY,
    ),
    resource_policy(
        "gke-deletion-protection-enabled",
        "Production clusters keep deletion protection on.",
        types=_CLUSTER,
        check=_deletion_protection,
        params=("prodStacks",),
    ),
    resource_policy(
        "gke-binary-authorization-enabled",
        "Production clusters enforce the project's Binary Authorization policy.",
        types=_CLUSTER,
        check=_binary_authorization,
        params=("prodStacks",),
    ),
    resource_policy(
        "gke-logging-monitoring-enabled",
        "Cloud Logging and Cloud Monitoring stay on for system components.",
        types=_CLUSTER,
        check=_logging_monitoring,
    ),
    resource_policy(
        "gke-shielded-nodes-secure-boot",
        "Nodes boot with Secure Boot (cluster nodeConfig, node auto-provisioning defaults, "
        "node pools).",
        types=_NODES,
        check=_secure_boot,
    ),
    resource_policy(
        "gke-shielded-nodes-integrity-monitoring",
        "Nodes keep Shielded VM integrity monitoring on.",
        types=_NODES,
        check=_integrity_monitoring,
    ),
    resource_policy(
        "gke-not-using-default-service-account",
        "Nodes run as a dedicated service account, not the Compute Engine default.",
        types=_NODES,
        check=_service_account,
    ),
    resource_policy(
        "gke-metadata-server-enabled",
        "Node pools use the GKE metadata server (workloadMetadataConfig.mode GKE_METADATA).",
        types=_NODES,
        check=_metadata_server,
    ),
    resource_policy(
        "gke-legacy-metadata-endpoints-disabled",
        "The legacy Compute Engine metadata endpoints stay disabled on nodes.",
        types=_NODES,
        check=_legacy_metadata,
    ),
    resource_policy(
        "gke-node-auto-repair-enabled",
        "Node pools and auto-provisioned nodes keep auto-repair on.",
        types=_NODES,
        check=_auto_repair,
    ),
    resource_policy(
        "gke-node-auto-upgrade-enabled",
        "Node pools and auto-provisioned nodes keep auto-upgrade on.",
        types=_NODES,
        check=_auto_upgrade,
    ),
]
