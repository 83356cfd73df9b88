"""The security baseline of the platform stack, read from real offline plans."""

from __future__ import annotations

from typing import Any

import pytest

from gke_inference.offline.recording import SECRET_MASK, Plan, RecordedResource

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
CONTRACT_KEYS = {
    "projectId", "region", "clusterName", "clusterLocation", "clusterEndpoint",
    "clusterCaCertificate", "kubeconfig", "workloadIdentityPool", "artifactRegistry", "mode",
}  # fmt: skip


def cluster_of(plan: Plan) -> dict[str, Any]:
    return plan.one(CLUSTER).inputs


def node_sa(plan: Plan) -> str:
    return str(plan.one("gcp:serviceaccount/account:Account").inputs["accountId"])


def test_nodes_and_endpoint_are_private(any_plan: Plan) -> None:
    cluster = cluster_of(any_plan)
    private = cluster["privateClusterConfig"]
    assert private["enablePrivateNodes"] is True
    assert private["enablePrivateEndpoint"] is True
    for block in cluster["masterAuthorizedNetworksConfig"].get("cidrBlocks", []):
        assert not block["cidrBlock"].endswith("/0")
    assert cluster["masterAuthorizedNetworksConfig"]["gcpPublicCidrsAccessEnabled"] is False
    assert cluster["controlPlaneEndpointsConfig"]["dnsEndpointConfig"]["allowExternalTraffic"]
    for pool in any_plan.by_type(NODE_POOL):
        assert pool.inputs["networkConfig"]["enablePrivateNodes"] is True


def test_workload_identity_and_hardening(any_plan: Plan) -> None:
    cluster = cluster_of(any_plan)
    project = any_plan.outputs["projectId"]
    assert cluster["workloadIdentityConfig"]["workloadPool"] == f"{project}.svc.id.goog"
    assert cluster["enableLegacyAbac"] is False
    assert cluster["masterAuth"]["clientCertificateConfig"]["issueClientCertificate"] is False
    assert cluster["datapathProvider"] == "ADVANCED_DATAPATH"
    assert cluster["releaseChannel"]["channel"] in {"RAPID", "REGULAR", "STABLE"}
    assert cluster["monitoringConfig"]["managedPrometheus"]["enabled"] is True
    assert "DCGM" in cluster["monitoringConfig"]["enableComponents"]
    assert cluster["addonsConfig"]["gcsFuseCsiDriverConfig"]["enabled"] is True
    assert cluster["gatewayApiConfig"]["channel"] == "CHANNEL_STANDARD"
    assert cluster["dnsConfig"]["clusterDns"] == "CLOUD_DNS"


def test_nodes_use_dedicated_identity_and_shielded_vms(any_plan: Plan) -> None:
    cluster = cluster_of(any_plan)
    account = node_sa(any_plan)
    expected_email = f"{account}@{any_plan.outputs['projectId']}.iam.gserviceaccount.com"
    nap = cluster["clusterAutoscaling"]["autoProvisioningDefaults"]
    assert nap["serviceAccount"] == expected_email
    assert not expected_email.endswith("-compute@developer.gserviceaccount.com")
    roles = {
        r.inputs["role"]
        for r in any_plan.by_type("gcp:projects/iAMMember:IAMMember")
        if r.inputs["member"] == f"serviceAccount:{expected_email}"
    }
    assert roles == {"roles/container.defaultNodeServiceAccount"}
    if any_plan.outputs["mode"] == "autopilot":
        return  # Autopilot nodes are Shielded GKE nodes by construction
    assert cluster["enableShieldedNodes"] is True
    assert nap["shieldedInstanceConfig"] == {
        "enableSecureBoot": True,
        "enableIntegrityMonitoring": True,
    }
    assert nap["management"] == {"autoRepair": True, "autoUpgrade": True}
    assert cluster["nodeConfig"]["serviceAccount"] == expected_email
    pools = any_plan.by_type(NODE_POOL)
    assert pools, "Standard mode has a system node pool"
    for pool in pools:
        config = pool.inputs["nodeConfig"]
        assert config["serviceAccount"] == expected_email
        assert config["shieldedInstanceConfig"] == {
            "enableSecureBoot": True,
            "enableIntegrityMonitoring": True,
        }
        assert config["workloadMetadataConfig"]["mode"] == "GKE_METADATA"
        assert config["metadata"]["disable-legacy-endpoints"] == "true"
        assert pool.inputs["management"] == {"autoRepair": True, "autoUpgrade": True}


def test_system_pool_is_tainted_and_autoscaled(plan_of: Any) -> None:
    pool = plan_of("dev").one(NODE_POOL, "base-gke-system")
    taints = pool.inputs["nodeConfig"]["taints"]
    assert {"key": "components.gke.io/gke-managed-components", "value": "true",
            "effect": "NO_SCHEDULE"} in taints  # fmt: skip
    assert pool.inputs["autoscaling"]["maxNodeCount"] >= pool.inputs["autoscaling"]["minNodeCount"]
    assert plan_of("dev").one(CLUSTER).inputs["removeDefaultNodePool"] is True


def test_autopilot_has_no_node_pools(plan_of: Any) -> None:
    plan = plan_of("dev", "cluster.mode=autopilot")
    assert plan.by_type(NODE_POOL) == []
    cluster = cluster_of(plan)
    assert cluster["enableAutopilot"] is True
    assert "nodeConfig" not in cluster and "removeDefaultNodePool" not in cluster
    assert plan.outputs["mode"] == "autopilot"


def test_prod_encrypts_secrets_with_its_own_protected_kms_key(plan_of: Any) -> None:
    plan = plan_of("prod")
    key = plan.one("gcp:kms/cryptoKey:CryptoKey")
    ring = plan.one("gcp:kms/keyRing:KeyRing")
    assert key.protect and ring.protect
    assert key.inputs["rotationPeriod"] == "7776000s"
    encryption = cluster_of(plan)["databaseEncryption"]
    assert encryption["state"] == "ENCRYPTED"
    assert encryption["keyName"].endswith("/keyRings/inf-prod-keyring/cryptoKeys/gke-secrets")
    grant = plan.one("gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
    assert grant.inputs["member"].endswith("@container-engine-robot.iam.gserviceaccount.com")
    # The cluster waits for the grant: GKE checks key access when it is created.
    cluster = plan.one(CLUSTER)
    assert grant.urn in cluster.depends_on


def test_dev_can_turn_kms_off_but_prod_cannot(plan_of: Any) -> None:
    plan = plan_of("dev", "security.secretsEncryption=false")
    assert plan.by_type("gcp:kms/cryptoKey:CryptoKey") == []
    assert cluster_of(plan)["databaseEncryption"]["state"] == "DECRYPTED"


def test_deletion_protection_and_binauthz_follow_the_environment(plan_of: Any) -> None:
    prod, dev = plan_of("prod"), plan_of("dev")
    assert cluster_of(prod)["deletionProtection"] is True
    assert prod.one(CLUSTER).protect is True
    assert cluster_of(prod)["binaryAuthorization"]["evaluationMode"] == (
        "PROJECT_SINGLETON_POLICY_ENFORCE"
    )
    policy = prod.one("gcp:binaryauthorization/policy:Policy").inputs
    assert policy["defaultAdmissionRule"]["evaluationMode"] == "ALWAYS_DENY"
    assert policy["admissionWhitelistPatterns"] == [
        {"namePattern": "us-central1-docker.pkg.dev/acme-inference-prod/**"}
    ]
    assert cluster_of(dev)["deletionProtection"] is False
    assert dev.one(CLUSTER).protect is False
    assert dev.by_type("gcp:binaryauthorization/policy:Policy") == []


def test_registries_are_protected_and_pulled_by_nodes_only(any_plan: Plan) -> None:
    repos = any_plan.by_type("gcp:artifactregistry/repository:Repository")
    modes = {r.inputs["repositoryId"]: r.inputs["mode"] for r in repos}
    assert modes["inference"] == "STANDARD_REPOSITORY"
    assert modes["docker-hub"] == "REMOTE_REPOSITORY"
    assert all(r.protect for r in repos)
    readers = any_plan.by_type("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
    assert {r.inputs["repository"] for r in readers} == set(modes)
    assert all(r.inputs["role"] == "roles/artifactregistry.reader" for r in readers)


def test_network_is_custom_mode_with_explicit_ranges(plan_of: Any) -> None:
    plan = plan_of("dev")
    vpc = plan.one("gcp:compute/network:Network").inputs
    assert vpc["autoCreateSubnetworks"] is False
    nodes = plan.one("gcp:compute/subnetwork:Subnetwork", "base-network-nodes").inputs
    assert nodes["privateIpGoogleAccess"] is True
    assert {r["rangeName"] for r in nodes["secondaryIpRanges"]} == {"pods", "services"}
    proxy = plan.one("gcp:compute/subnetwork:Subnetwork", "base-network-proxy-only").inputs
    assert proxy["purpose"] == "REGIONAL_MANAGED_PROXY"
    assert plan.one("gcp:compute/routerNat:RouterNat").inputs["natIpAllocateOption"] == "AUTO_ONLY"
    assert "logConfig" not in nodes  # dev: flow logs off
    prod_nodes = plan_of("prod").one("gcp:compute/subnetwork:Subnetwork", "base-network-nodes")
    assert prod_nodes.inputs["logConfig"]["metadata"] == "INCLUDE_ALL_METADATA"


def test_existing_network_creates_no_vpc(plan_of: Any) -> None:
    plan = plan_of(
        "dev",
        "network.mode=existing",
        "network.existing.network=shared-vpc",
        "network.existing.subnetwork=gke-nodes",
        "network.existing.podRangeName=gke-pods",
        "network.existing.serviceRangeName=gke-svc",
    )
    assert plan.by_type("gcp:compute/network:Network") == []
    cluster = cluster_of(plan)
    assert cluster["network"].endswith("/global/networks/shared-vpc")
    assert cluster["ipAllocationPolicy"]["clusterSecondaryRangeName"] == "gke-pods"


def test_regional_high_availability(plan_of: Any) -> None:
    prod = cluster_of(plan_of("prod"))
    assert prod["location"] == "us-central1"  # regional control plane
    assert prod["nodeLocations"] == ["us-central1-a", "us-central1-b", "us-central1-c"]


def test_outputs_contract_and_secret_kubeconfig(any_plan: Plan) -> None:
    assert set(any_plan.outputs) >= CONTRACT_KEYS
    assert any_plan.outputs["kubeconfig"] == SECRET_MASK
    assert "kubeconfig" in any_plan.secret_outputs
    assert any_plan.outputs["clusterName"] == cluster_of(any_plan)["name"]


def test_every_resource_belongs_to_a_component(any_plan: Plan) -> None:
    by_urn: dict[str, RecordedResource] = {r.urn: r for r in any_plan.resources}
    for r in any_plan.resources:
        if r.type == "pulumi:pulumi:Stack":
            continue
        assert r.parent in by_urn, r.urn
        if r.custom:
            assert not by_urn[r.parent].custom, f"{r.name} must be parented to a component"


def test_cloud_resources_wait_for_the_apis(plan_of: Any) -> None:
    plan = plan_of("dev")
    apis = {r.urn for r in plan.by_type("gcp:projects/service:Service")}
    assert len(apis) >= 15
    vpc = plan.one("gcp:compute/network:Network")
    assert apis <= set(vpc.depends_on)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_labels_on_labelable_resources(plan_of: Any, stack: str) -> None:
    plan = plan_of(stack)
    cluster = cluster_of(plan)
    assert cluster["resourceLabels"]["environment"] == stack
    assert cluster["resourceLabels"]["team"] == "ml-platform"
    for repo in plan.by_type("gcp:artifactregistry/repository:Repository"):
        assert repo.inputs["labels"]["environment"] == stack
