"""Human-readable views of a plan: a resource tree with the settings that matter."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from gke_inference.offline.recording import Plan, RecordedResource

# For each resource type, the input paths a reviewer wants to see at a glance.
KEY_SETTINGS: dict[str, tuple[str, ...]] = {
    "gcp:container/cluster:Cluster": (
        "name", "location", "enableAutopilot", "releaseChannel.channel",
        "privateClusterConfig.enablePrivateNodes", "privateClusterConfig.enablePrivateEndpoint",
        "masterAuthorizedNetworksConfig.cidrBlocks",
        "controlPlaneEndpointsConfig.dnsEndpointConfig.allowExternalTraffic",
        "enableShieldedNodes", "workloadIdentityConfig.workloadPool", "datapathProvider",
        "databaseEncryption.state", "binaryAuthorization.evaluationMode", "deletionProtection",
        "nodeConfig.serviceAccount", "clusterAutoscaling.autoscalingProfile",
        "monitoringConfig.managedPrometheus.enabled", "gatewayApiConfig.channel",
        "nodePoolDefaults.nodeConfigDefaults.gcfsConfig.enabled",
    ),
    "gcp:container/nodePool:NodePool": (
        "name", "nodeConfig.machineType", "autoscaling", "nodeConfig.serviceAccount",
        "nodeConfig.shieldedInstanceConfig", "nodeConfig.workloadMetadataConfig.mode",
        "nodeConfig.guestAccelerators", "nodeConfig.spot", "nodeConfig.taints",
        "management",
    ),
    "gcp:compute/subnetwork:Subnetwork": (
        "name", "ipCidrRange", "purpose", "privateIpGoogleAccess", "secondaryIpRanges",
    ),
    "gcp:compute/network:Network": ("name", "autoCreateSubnetworks", "routingMode"),
    "gcp:compute/routerNat:RouterNat": ("name", "sourceSubnetworkIpRangesToNat"),
    "gcp:kms/cryptoKey:CryptoKey": ("name", "rotationPeriod", "purpose"),
    "gcp:kms/keyRing:KeyRing": ("name", "location"),
    "gcp:artifactregistry/repository:Repository": ("repositoryId", "mode", "dockerConfig"),
    "gcp:serviceaccount/account:Account": ("accountId",),
    "gcp:projects/iAMMember:IAMMember": ("role", "member"),
    "gcp:projects/service:Service": ("service",),
    "gcp:binaryauthorization/policy:Policy": (
        "defaultAdmissionRule.evaluationMode", "admissionWhitelistPatterns",
    ),
    "gcp:storage/bucket:Bucket": ("name", "uniformBucketLevelAccess", "versioning"),
}  # fmt: skip
DEFAULT_KEYS = ("name", "metadata.name", "kind", "role", "member")


def _get(inputs: dict[str, Any], path: str) -> Any:
    value: Any = inputs
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _compact(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_compact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    return str(value)


def summary(resource: RecordedResource) -> str:
    keys = KEY_SETTINGS.get(resource.type, DEFAULT_KEYS)
    parts = []
    for key in keys:
        value = _get(resource.inputs, key)
        if value is not None and value != [] and value != {}:
            parts.append(f"{key}={_compact(value)}")
    return ", ".join(parts)


def change_summary(plan: Plan) -> list[str]:
    """What ``pulumi up`` of an empty stack would do, as ``pulumi preview`` sums it up.

    ``+ N to create`` counts every registered resource (the stack and components
    included, as Pulumi counts them); reads (StackReferences, ``get`` calls) are
    not created. Then the count per type, the largest first.
    """
    created = [r for r in plan.resources if not r.read]
    reads = len(plan.resources) - len(created)
    lines = ["Resources:", f"    + {len(created)} to create"]
    if reads:
        lines.append(f"    > {reads} to read")
    counts: dict[str, int] = defaultdict(int)
    for r in created:
        counts[r.type] += 1
    width = len(str(max(counts.values(), default=0)))
    lines += ["", "By type:"]
    for type_, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"    {str(count).rjust(width)}  {type_}")
    return lines


def render_tree(plan: Plan) -> str:
    children: dict[str | None, list[RecordedResource]] = defaultdict(list)
    for r in plan.resources:
        children[r.parent].append(r)
    lines: list[str] = [f"Offline plan of {plan.project}/{plan.stack}", ""]
    lines += [*change_summary(plan), ""]

    def walk(resource: RecordedResource, depth: int) -> None:
        flags = []
        if resource.protect:
            flags.append("protected")
        if resource.read:
            flags.append("read")
        flag_text = f" [{', '.join(flags)}]" if flags else ""
        lines.append(f"{'  ' * depth}{resource.type}  {resource.name}{flag_text}")
        if resource.custom:
            detail = summary(resource)
            if detail:
                lines.append(f"{'  ' * (depth + 2)}{detail}")
        kids = sorted(children.get(resource.urn, []), key=lambda r: (r.custom, r.type, r.name))
        for kid in kids:
            walk(kid, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    custom = sum(1 for r in plan.resources if r.custom)
    lines += ["", f"{len(plan.resources)} resources ({custom} cloud/cluster resources)", ""]
    lines.append("Outputs:")
    for key, value in plan.shown_outputs().items():  # cloud-computed ones: [unknown]
        lines.append(f"  {key}: {_compact(value)}")
    return "\n".join(lines)
