"""Firewall, bucket, KMS and label rules on real recordings.

Firewalls and buckets come from small pulumi_gcp programs run through
``run_offline``; KMS keys and labels use the shipped platform plans and edited
copies of them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pulumi
import pytest
from pulumi_gcp import compute, storage

from gke_inference.offline.policy_check import PolicyReport, check_resources
from gke_inference.offline.recording import Plan, RecordedResource, run_offline
from gke_inference.policy.pack import policy_named


def run(resources: list[RecordedResource], name: str, config: Any = None) -> PolicyReport:
    return check_resources(resources, config, policies=[policy_named(name)])


def gcp_plan(program: Callable[[], None], stack: str = "dev") -> Plan:
    return run_offline(
        program, project="gke-inference", stack=stack, config={"gcp:project": "acme"}
    )


def firewall(**kwargs: Any) -> Plan:
    def program() -> None:
        compute.Firewall("fw", network="default", **kwargs)

    return gcp_plan(program)


@pytest.mark.parametrize(
    ("kwargs", "fires"),
    [
        ({"source_ranges": ["0.0.0.0/0"], "allows": [{"protocol": "tcp", "ports": ["22"]}]}, True),
        (
            {"source_ranges": ["::/0"], "allows": [{"protocol": "tcp", "ports": ["3000-4000"]}]},
            True,
        ),
        ({"source_ranges": ["0.0.0.0/0"], "allows": [{"protocol": "all"}]}, True),
        ({"source_ranges": ["0.0.0.0/0"], "allows": [{"protocol": "tcp"}]}, True),  # all ports
        ({"allows": [{"protocol": "tcp", "ports": ["22"]}]}, True),  # no source = 0.0.0.0/0
        (
            {
                "source_ranges": ["35.235.240.0/20"],
                "allows": [{"protocol": "tcp", "ports": ["22"]}],
            },
            False,
        ),
        (
            {
                "source_ranges": ["0.0.0.0/0"],
                "allows": [{"protocol": "tcp", "ports": ["443", "8000-8080"]}],
            },
            False,
        ),
        ({"source_ranges": ["0.0.0.0/0"], "allows": [{"protocol": "udp", "ports": ["22"]}]}, False),
        ({"source_ranges": ["0.0.0.0/0"], "denies": [{"protocol": "tcp", "ports": ["22"]}]}, False),
        (
            {
                "direction": "EGRESS",
                "destination_ranges": ["0.0.0.0/0"],
                "allows": [{"protocol": "tcp", "ports": ["22"]}],
            },
            False,
        ),
        ({"source_tags": ["bastion"], "allows": [{"protocol": "tcp", "ports": ["22"]}]}, False),
    ],
)
def test_firewall_admin_ports(kwargs: dict[str, Any], fires: bool) -> None:
    plan = firewall(**kwargs)
    assert plan.one("gcp:compute/firewall:Firewall").inputs  # a real recording
    violations = run(plan.resources, "firewall-no-public-admin-ingress").violations
    assert bool(violations) is fires, violations
    if fires:
        assert "Restrict sourceRanges" in violations[0].message


def bucket_plan(
    uniform: bool | None, member: str | None = None, members: list[str] | None = None
) -> Plan:
    def program() -> None:
        args: dict[str, Any] = {"location": "US", "labels": {"environment": "dev"}}
        if uniform is not None:
            args["uniform_bucket_level_access"] = uniform
        bucket = storage.Bucket("models", **args)
        if member:
            storage.BucketIAMMember(
                "reader", bucket=bucket.name, role="roles/storage.objectViewer", member=member
            )
        if members:
            storage.BucketIAMBinding(
                "readers", bucket=bucket.name, role="roles/storage.objectViewer", members=members
            )

    return gcp_plan(program)


def test_bucket_uniform_access() -> None:
    assert run(bucket_plan(True).resources, "storage-bucket-uniform-access").violations == []
    for uniform in (False, None):  # the provider default is false
        violations = run(bucket_plan(uniform).resources, "storage-bucket-uniform-access").violations
        assert len(violations) == 1
        assert "uniformBucketLevelAccess" in violations[0].message


def test_bucket_public_members() -> None:
    sa = "serviceAccount:reader@acme.iam.gserviceaccount.com"
    private = bucket_plan(True, member=sa, members=[sa, "group:ml@acme.com"])
    assert run(private.resources, "storage-bucket-no-public-access").violations == []
    public_member = bucket_plan(True, member="allUsers")
    assert len(run(public_member.resources, "storage-bucket-no-public-access").violations) == 1
    public_binding = bucket_plan(True, members=[sa, "allAuthenticatedUsers"])
    violations = run(public_binding.resources, "storage-bucket-no-public-access").violations
    assert len(violations) == 1 and "allAuthenticatedUsers" in violations[0].message


def test_the_inference_model_bucket_passes_when_present(plan_of: Callable[..., Plan]) -> None:
    plan = plan_of("prod")
    for name in ("storage-bucket-uniform-access", "storage-bucket-no-public-access"):
        assert run(plan.resources, name).violations == []


KEY = "gcp:kms/cryptoKey:CryptoKey"


def with_key(plan: Plan, mutate: Callable[[RecordedResource], None]) -> list[RecordedResource]:
    resources = copy.deepcopy(plan.resources)
    mutate(next(r for r in resources if r.type == KEY))
    return resources


def test_kms_key_must_be_protected(plan_of: Callable[..., Plan]) -> None:
    plan = plan_of("dev")
    assert plan.one(KEY).protect is True
    assert run(plan.resources, "kms-key-protected").violations == []

    def unprotect(r: RecordedResource) -> None:
        r.protect = False

    violations = run(with_key(plan, unprotect), "kms-key-protected").violations
    assert len(violations) == 1 and "protect=True" in violations[0].message


def test_kms_key_protection_from_a_real_program() -> None:
    from pulumi_gcp import kms

    def program() -> None:
        kms.CryptoKey(
            "loose", key_ring="projects/acme/locations/us/keyRings/r", rotation_period="86400s"
        )
        kms.CryptoKey(
            "kept",
            key_ring="projects/acme/locations/us/keyRings/r",
            rotation_period="86400s",
            opts=pulumi.ResourceOptions(protect=True),
        )

    violations = run(gcp_plan(program).resources, "kms-key-protected").violations
    assert [v.urn.rsplit("::", 1)[-1] for v in violations] == ["loose"]


@pytest.mark.parametrize(
    ("period", "config", "fires"),
    [
        ("7776000s", None, False),  # 90 days, the shipped value
        ("7776001s", None, True),
        (None, None, True),  # never rotates
        ("2592000s", {"kms-key-rotation-period": {"maxRotationDays": 30}}, False),
        ("7776000s", {"kms-key-rotation-period": {"maxRotationDays": 30}}, True),
    ],
)
def test_kms_rotation_period(
    plan_of: Callable[..., Plan], period: str | None, config: Any, fires: bool
) -> None:
    def set_period(r: RecordedResource) -> None:
        if period is None:
            r.inputs.pop("rotationPeriod")
        else:
            r.inputs["rotationPeriod"] = period

    violations = run(
        with_key(plan_of("prod"), set_period), "kms-key-rotation-period", config
    ).violations
    assert bool(violations) is fires, violations


def test_asymmetric_keys_are_not_rotated(plan_of: Callable[..., Plan]) -> None:
    def asymmetric(r: RecordedResource) -> None:
        r.inputs.pop("rotationPeriod")
        r.inputs["purpose"] = "ASYMMETRIC_SIGN"

    report = run(with_key(plan_of("prod"), asymmetric), "kms-key-rotation-period")
    assert report.violations == [] and report.not_applicable


LABELLED = {
    "gcp:container/cluster:Cluster": ("resourceLabels",),
    "gcp:container/nodePool:NodePool": ("nodeConfig", "resourceLabels"),
    "gcp:kms/cryptoKey:CryptoKey": ("labels",),
    "gcp:artifactregistry/repository:Repository": ("labels",),
}


@pytest.mark.parametrize("type_", sorted(LABELLED))
def test_environment_label_is_required(plan_of: Callable[..., Plan], type_: str) -> None:
    plan = plan_of("prod")
    assert run(plan.resources, "gcp-required-labels").violations == []
    resources = copy.deepcopy(plan.resources)
    target = next(r for r in resources if r.type == type_)
    node = target.inputs
    for key in LABELLED[type_]:
        node = node[key]
    del node["environment"]
    violations = run(resources, "gcp-required-labels").violations
    assert [v.urn for v in violations] == [target.urn]
    assert "environment" in violations[0].message


def test_required_labels_come_from_config_and_provider_defaults() -> None:
    def program() -> None:
        from pulumi_gcp import Provider

        labelled = Provider("labelled", project="acme", default_labels={"environment": "dev"})
        storage.Bucket(
            "inherits",
            location="US",
            uniform_bucket_level_access=True,
            opts=pulumi.ResourceOptions(provider=labelled),
        )
        storage.Bucket("bare", location="US", uniform_bucket_level_access=True)

    resources = gcp_plan(program).resources
    assert [
        v.urn.rsplit("::", 1)[-1] for v in run(resources, "gcp-required-labels").violations
    ] == ["bare"]
    config = {"gcp-required-labels": {"requiredLabels": ["environment", "team"]}}
    flagged = [
        v.urn.rsplit("::", 1)[-1] for v in run(resources, "gcp-required-labels", config).violations
    ]
    assert sorted(flagged) == ["bare", "inherits"]
