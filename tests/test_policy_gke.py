"""GKE cluster and node rules on real platform plans and edited copies of them.

Each case takes a shipped plan (compliant), deep-copies it, flips one input of
the recorded cluster or node pool, and expects exactly the named rule to fire.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from gke_inference.offline.policy_check import PolicyReport, check_resources
from gke_inference.offline.recording import Plan, RecordedResource
from gke_inference.policy.pack import policy_named

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"

Mutation = Callable[[dict[str, Any]], None]


def run(resources: list[RecordedResource], name: str, config: Any = None) -> PolicyReport:
    return check_resources(resources, config, policies=[policy_named(name)])


def edited(
    plan: Plan, type_: str, mutate: Mutation, name: str | None = None
) -> list[RecordedResource]:
    """A deep copy of the plan's resources with ``mutate`` applied to one resource's inputs."""
    resources = copy.deepcopy(plan.resources)
    targets = [r for r in resources if r.type == type_ and (name is None or r.name == name)]
    assert targets, f"no {type_} in the plan"
    mutate(targets[0].inputs)
    return resources


def setter(*path: str, value: Any) -> Mutation:
    def mutate(inputs: dict[str, Any]) -> None:
        node = inputs
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    return mutate


def deleter(*path: str) -> Mutation:
    def mutate(inputs: dict[str, Any]) -> None:
        node = inputs
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


STANDARD = ("prod",)
AUTOPILOT = ("prod", "cluster.mode=autopilot")
# Where a cluster keeps the node auto-provisioning defaults.
AUTO_PROVISIONING = ("clusterAutoscaling", "autoProvisioningDefaults")

# (rule, plan, resource type, mutation) — the mutation must make exactly that rule fire.
CASES: list[tuple[str, tuple[str, ...], str, Mutation]] = [
    (
        "gke-private-nodes-enabled",
        STANDARD,
        CLUSTER,
        setter("privateClusterConfig", "enablePrivateNodes", value=False),
    ),
    ("gke-private-nodes-enabled", AUTOPILOT, CLUSTER, deleter("privateClusterConfig")),
    (
        "gke-control-plane-not-public",
        STANDARD,
        CLUSTER,
        lambda i: (
            i["privateClusterConfig"].update(enablePrivateEndpoint=False),
            i["masterAuthorizedNetworksConfig"].update(
                cidrBlocks=[{"cidrBlock": "0.0.0.0/0", "displayName": "any"}]
            ),
        ),
    ),
    (
        "gke-control-plane-not-public",
        STANDARD,
        CLUSTER,
        lambda i: (
            i["privateClusterConfig"].update(enablePrivateEndpoint=False),
            i.pop("masterAuthorizedNetworksConfig"),
        ),
    ),
    (
        "gke-control-plane-not-public",
        STANDARD,
        CLUSTER,
        lambda i: (
            i["privateClusterConfig"].update(enablePrivateEndpoint=False),
            i["masterAuthorizedNetworksConfig"].update(gcpPublicCidrsAccessEnabled=True),
        ),
    ),
    ("gke-shielded-nodes-enabled", STANDARD, CLUSTER, setter("enableShieldedNodes", value=False)),
    ("gke-workload-identity-enabled", STANDARD, CLUSTER, deleter("workloadIdentityConfig")),
    ("gke-legacy-abac-disabled", STANDARD, CLUSTER, setter("enableLegacyAbac", value=True)),
    (
        "gke-client-certificate-auth-disabled",
        STANDARD,
        CLUSTER,
        setter("masterAuth", "clientCertificateConfig", "issueClientCertificate", value=True),
    ),
    (
        "gke-client-certificate-auth-disabled",
        AUTOPILOT,
        CLUSTER,
        setter("masterAuth", "username", value="admin"),
    ),
    (
        "gke-release-channel-enabled",
        STANDARD,
        CLUSTER,
        setter("releaseChannel", "channel", value="UNSPECIFIED"),
    ),
    ("gke-release-channel-enabled", AUTOPILOT, CLUSTER, deleter("releaseChannel")),
    ("gke-network-policy-enabled", STANDARD, CLUSTER, deleter("datapathProvider")),
    (
        "gke-secrets-encryption-kms-enabled",
        STANDARD,
        CLUSTER,
        setter("databaseEncryption", "state", value="DECRYPTED"),
    ),
    ("gke-secrets-encryption-kms-enabled", AUTOPILOT, CLUSTER, deleter("databaseEncryption")),
    (
        "gke-deletion-protection-enabled",
        STANDARD,
        CLUSTER,
        setter("deletionProtection", value=False),
    ),
    (
        "gke-binary-authorization-enabled",
        STANDARD,
        CLUSTER,
        setter("binaryAuthorization", "evaluationMode", value="DISABLED"),
    ),
    ("gke-logging-monitoring-enabled", STANDARD, CLUSTER, setter("loggingService", value="none")),
    (
        "gke-logging-monitoring-enabled",
        AUTOPILOT,
        CLUSTER,
        setter("monitoringConfig", "enableComponents", value=[]),
    ),
    (
        "gke-shielded-nodes-secure-boot",
        STANDARD,
        NODE_POOL,
        setter("nodeConfig", "shieldedInstanceConfig", "enableSecureBoot", value=False),
    ),
    (
        "gke-shielded-nodes-secure-boot",
        STANDARD,
        NODE_POOL,
        deleter("nodeConfig", "shieldedInstanceConfig"),
    ),
    (
        "gke-shielded-nodes-secure-boot",
        STANDARD,
        CLUSTER,
        deleter(*AUTO_PROVISIONING, "shieldedInstanceConfig"),
    ),
    (
        "gke-shielded-nodes-secure-boot",
        STANDARD,
        CLUSTER,
        setter("nodeConfig", "shieldedInstanceConfig", "enableSecureBoot", value=False),
    ),
    (
        "gke-shielded-nodes-integrity-monitoring",
        STANDARD,
        NODE_POOL,
        setter("nodeConfig", "shieldedInstanceConfig", "enableIntegrityMonitoring", value=False),
    ),
    (
        "gke-shielded-nodes-integrity-monitoring",
        STANDARD,
        CLUSTER,
        setter(
            *AUTO_PROVISIONING, "shieldedInstanceConfig", "enableIntegrityMonitoring", value=False
        ),
    ),
    (
        "gke-not-using-default-service-account",
        STANDARD,
        NODE_POOL,
        deleter("nodeConfig", "serviceAccount"),
    ),
    (
        "gke-not-using-default-service-account",
        STANDARD,
        NODE_POOL,
        setter("nodeConfig", "serviceAccount", value="default"),
    ),
    (
        "gke-not-using-default-service-account",
        STANDARD,
        CLUSTER,
        setter(
            "nodeConfig",
            "serviceAccount",
            value="123456789012-compute@developer.gserviceaccount.com",
        ),
    ),
    (
        "gke-not-using-default-service-account",
        AUTOPILOT,
        CLUSTER,
        deleter(*AUTO_PROVISIONING, "serviceAccount"),
    ),
    (
        "gke-metadata-server-enabled",
        STANDARD,
        NODE_POOL,
        setter("nodeConfig", "workloadMetadataConfig", "mode", value="GCE_METADATA"),
    ),
    (
        "gke-metadata-server-enabled",
        STANDARD,
        CLUSTER,
        deleter("nodeConfig", "workloadMetadataConfig"),
    ),
    (
        "gke-legacy-metadata-endpoints-disabled",
        STANDARD,
        NODE_POOL,
        setter("nodeConfig", "metadata", "disable-legacy-endpoints", value="false"),
    ),
    # A node pool's own management block, then the auto-provisioning defaults of a cluster.
    *(
        (rule, STANDARD, type_, setter(*where, "management", field, value=False))
        for rule, field in (
            ("gke-node-auto-repair-enabled", "autoRepair"),
            ("gke-node-auto-upgrade-enabled", "autoUpgrade"),
        )
        for type_, where in ((NODE_POOL, ()), (CLUSTER, AUTO_PROVISIONING))
    ),
]


@pytest.mark.parametrize(
    ("rule", "plan_args", "type_", "mutate"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_rule_passes_on_the_shipped_plan_and_fires_on_the_edited_one(
    plan_of: Callable[..., Plan],
    rule: str,
    plan_args: tuple[str, ...],
    type_: str,
    mutate: Mutation,
) -> None:
    plan = plan_of(*plan_args)
    assert run(plan.resources, rule).violations == []

    report = run(edited(plan, type_, mutate), rule)

    assert [v.policy for v in report.violations] == [rule] * len(report.violations)
    assert report.violations, f"{rule} did not fire"
    assert all(v.level == "mandatory" for v in report.violations)
    target = next(r for r in plan.resources if r.type == type_)
    assert report.violations[0].urn == target.urn
    assert "Set" in report.violations[0].message or "Remove" in report.violations[0].message


def test_missing_props_read_as_safe_provider_defaults(plan_of: Callable[..., Plan]) -> None:
    def strip(inputs: dict[str, Any]) -> None:
        for key in ("enableShieldedNodes", "enableLegacyAbac", "deletionProtection", "masterAuth"):
            inputs.pop(key)
        inputs["nodeConfig"]["shieldedInstanceConfig"].pop("enableIntegrityMonitoring")
        inputs["clusterAutoscaling"]["autoProvisioningDefaults"].pop("management")

    resources = edited(plan_of(*STANDARD), CLUSTER, strip)
    for rule in (
        "gke-shielded-nodes-enabled",
        "gke-legacy-abac-disabled",
        "gke-deletion-protection-enabled",
        "gke-client-certificate-auth-disabled",
        "gke-shielded-nodes-integrity-monitoring",
        "gke-node-auto-repair-enabled",
        "gke-node-auto-upgrade-enabled",
    ):
        assert run(resources, rule).violations == [], rule


def test_autopilot_satisfies_node_rules_by_construction(plan_of: Callable[..., Plan]) -> None:
    plan = plan_of(*AUTOPILOT)
    cluster = plan.one(CLUSTER)
    assert cluster.inputs["enableAutopilot"] is True
    assert "nodeConfig" not in cluster.inputs and "enableShieldedNodes" not in cluster.inputs

    def worst_case(inputs: dict[str, Any]) -> None:
        inputs.pop("datapathProvider")
        inputs.pop("workloadIdentityConfig")
        inputs["enableShieldedNodes"] = False

    resources = edited(plan, CLUSTER, worst_case)
    for rule in (
        "gke-shielded-nodes-enabled",
        "gke-shielded-nodes-secure-boot",
        "gke-shielded-nodes-integrity-monitoring",
        "gke-metadata-server-enabled",
        "gke-network-policy-enabled",
        "gke-workload-identity-enabled",
    ):
        assert run(resources, rule).violations == [], rule


def test_standard_cluster_without_node_config_and_default_pool_kept_is_flagged(
    plan_of: Callable[..., Plan],
) -> None:
    def mutate(inputs: dict[str, Any]) -> None:
        inputs.pop("nodeConfig")
        inputs["removeDefaultNodePool"] = False

    report = run(
        edited(plan_of(*STANDARD), CLUSTER, mutate), "gke-not-using-default-service-account"
    )
    assert len(report.violations) == 1
    assert "Compute Engine default" in report.violations[0].message


def test_control_plane_private_endpoint_makes_authorized_networks_moot(
    plan_of: Callable[..., Plan],
) -> None:
    mutate = setter(
        "masterAuthorizedNetworksConfig", "cidrBlocks", value=[{"cidrBlock": "0.0.0.0/0"}]
    )
    resources = edited(plan_of(*STANDARD), CLUSTER, mutate)
    assert run(resources, "gke-control-plane-not-public").violations == []


def test_control_plane_with_admin_networks_only_passes(plan_of: Callable[..., Plan]) -> None:
    def mutate(inputs: dict[str, Any]) -> None:
        inputs["privateClusterConfig"]["enablePrivateEndpoint"] = False
        inputs["masterAuthorizedNetworksConfig"]["cidrBlocks"] = [{"cidrBlock": "203.0.113.0/24"}]

    assert (
        run(edited(plan_of(*STANDARD), CLUSTER, mutate), "gke-control-plane-not-public").violations
        == []
    )


def test_secrets_encryption_is_mandatory_in_prod_and_advisory_elsewhere(
    plan_of: Callable[..., Plan],
) -> None:
    dev = plan_of("dev", "security.secretsEncryption=false")
    assert "databaseEncryption" not in dev.one(CLUSTER).inputs or (
        dev.one(CLUSTER).inputs["databaseEncryption"].get("state") != "ENCRYPTED"
    )
    mandatory = run(dev.resources, "gke-secrets-encryption-kms-enabled")
    assert mandatory.violations == []
    assert [n for n, _, _ in mandatory.not_applicable] == ["gke-secrets-encryption-kms-enabled"]
    advisory = run(dev.resources, "gke-secrets-encryption-kms-recommended")
    assert [(v.policy, v.level) for v in advisory.violations] == [
        ("gke-secrets-encryption-kms-recommended", "advisory")
    ]
    # The same dev plan is production once the config says so.
    config = {"gke-secrets-encryption-kms-enabled": {"prodStacks": ["prod", "dev"]}}
    assert [
        v.level for v in run(dev.resources, "gke-secrets-encryption-kms-enabled", config).violations
    ] == ["mandatory"]
    prod = plan_of("prod")
    assert run(prod.resources, "gke-secrets-encryption-kms-recommended").violations == []


def test_prod_only_rules_do_not_apply_to_dev(plan_of: Callable[..., Plan]) -> None:
    dev = plan_of("dev")
    assert dev.one(CLUSTER).inputs["deletionProtection"] is False
    assert dev.one(CLUSTER).inputs["binaryAuthorization"]["evaluationMode"] == "DISABLED"
    for rule in ("gke-deletion-protection-enabled", "gke-binary-authorization-enabled"):
        report = run(dev.resources, rule)
        assert report.violations == []
        assert report.not_applicable and report.not_applicable[0][0] == rule


@pytest.mark.parametrize(
    ("blocks", "config", "refused"),
    [
        (["0.0.0.0/1", "128.0.0.0/1"], None, True),  # the internet in two halves
        (["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2", "192.0.0.0/2"], None, True),
        (["34.0.0.0/15"], None, True),  # one public /15: twice the default limit
        (["34.0.0.0/16"], None, False),  # exactly the limit
        (["34.0.0.0/17", "34.0.128.0/17"], None, False),  # a /16 in halves: the limit
        (["34.0.0.0/16", "34.0.0.0/17"], None, False),  # overlaps count once
        (["10.0.0.0/8", "198.51.100.0/24"], None, False),  # private and documentation space
        (["34.0.0.0/16"], {"gke-control-plane-not-public": {"minPublicPrefixLength": 24}}, True),
    ],
)
def test_authorized_networks_are_judged_by_the_public_space_they_cover(
    plan_of: Callable[..., Plan], blocks: list[str], config: Any, refused: bool
) -> None:
    def mutate(inputs: dict[str, Any]) -> None:
        inputs["privateClusterConfig"]["enablePrivateEndpoint"] = False
        inputs["masterAuthorizedNetworksConfig"]["cidrBlocks"] = [{"cidrBlock": b} for b in blocks]

    resources = edited(plan_of(*STANDARD), CLUSTER, mutate)
    violations = run(resources, "gke-control-plane-not-public", config).violations
    assert bool(violations) is refused, violations
    if refused:
        assert "public addresses, more than a /" in violations[0].message
