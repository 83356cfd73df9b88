"""The pack as the Pulumi CLI loads it, and its configuration."""

from __future__ import annotations

import json
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi_policy
import pytest
import yaml

from gke_inference.offline.policy_check import check_resources
from gke_inference.offline.recording import Plan
from gke_inference.policy.base import Rules
from gke_inference.policy.config import PARAMETERS, PolicyConfigError, resolve_pack_config
from gke_inference.policy.pack import ALL_POLICIES, PACK_NAME

POLICY_DIR = Path(__file__).resolve().parents[1] / "policy"


def test_main_builds_the_pack_with_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[dict[str, Any]] = []

    def fake_pack(**kwargs: Any) -> None:  # the real one starts a server and never returns
        built.append(kwargs)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", fake_pack)
    runpy.run_path(str(POLICY_DIR / "__main__.py"), run_name="__main__")

    assert len(built) == 1
    pack = built[0]
    assert pack["name"] == PACK_NAME == "gke-inference-baseline"
    assert pack["enforcement_level"] in (
        pulumi_policy.EnforcementLevel.MANDATORY,
        pulumi_policy.EnforcementLevel.ADVISORY,
    )
    policies = pack["policies"]
    assert policies == ALL_POLICIES
    names = [p.name for p in policies]
    assert len(names) == len(set(names)), "policy names must be unique"
    for policy in policies:
        assert isinstance(
            policy, pulumi_policy.ResourceValidationPolicy | pulumi_policy.StackValidationPolicy
        )
        assert policy.description.strip().endswith("."), policy.name
        assert policy.enforcement_level in (
            pulumi_policy.EnforcementLevel.MANDATORY,
            pulumi_policy.EnforcementLevel.ADVISORY,
        )
        if policy.config_schema is not None:
            for key, spec in policy.config_schema.properties.items():
                assert spec == PARAMETERS[key]
                assert {"type", "default", "description"} <= set(spec)
    # The initial config is valid against the schema the CLI will check it with.
    resolve_pack_config(policies, None, initial_config=pack["initial_config"])


def test_pulumi_policy_yaml_uses_the_project_venv() -> None:
    doc = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert doc["runtime"] == {"name": "python", "options": {"virtualenv": "../.venv"}}
    assert doc["version"] and doc["description"]
    assert "pulumi-policy" in (POLICY_DIR / "requirements.txt").read_text()


def test_default_config_file_is_the_documented_default() -> None:
    shipped = json.loads((POLICY_DIR / "default-config.json").read_text())
    resolved = resolve_pack_config(ALL_POLICIES, shipped, source="default-config.json")
    defaults = resolve_pack_config(ALL_POLICIES, None)
    assert set(shipped) == {p.name for p in ALL_POLICIES}
    assert {k: (v.level, v.properties) for k, v in resolved.items()} == {
        k: (v.level, v.properties) for k, v in defaults.items()
    }


def test_config_resolution_follows_the_cli() -> None:
    resolved = resolve_pack_config(
        ALL_POLICIES,
        {
            "all": "advisory",
            "gke-private-nodes-enabled": "mandatory",
            "kms-key-rotation-period": {"enforcementLevel": "disabled", "maxRotationDays": 30},
        },
    )
    assert resolved["gke-shielded-nodes-enabled"].level.value == "advisory"
    assert resolved["gke-private-nodes-enabled"].level.value == "mandatory"
    assert resolved["kms-key-rotation-period"].level.value == "disabled"
    assert resolved["kms-key-rotation-period"].properties == {"maxRotationDays": 30}
    assert resolved["gcp-required-labels"].properties == {"requiredLabels": ["environment"]}


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"no-such-policy": "advisory"}, "no-such-policy: no policy of that name"),
        ({"all": "loud"}, "all: enforcement level must be one of"),
        ({"kms-key-rotation-period": {"maxRotationDays": "90"}}, "expected integer"),
        ({"kms-key-rotation-period": {"maxRotationDays": 0}}, "must be >= 1"),
        ({"gcp-required-labels": {"requiredLabels": [1]}}, "requiredLabels[0]: expected string"),
        ({"gke-private-nodes-enabled": {"prodStacks": ["prod"]}}, "unknown property"),
    ],
)
def test_bad_config_is_reported_with_its_path(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(PolicyConfigError) as caught:
        resolve_pack_config(ALL_POLICIES, config, source="cfg.json")
    assert any(fragment in p for p in caught.value.problems), caught.value.problems


def test_levels_from_config_change_the_offline_result(plan_of: Callable[..., Plan]) -> None:
    import copy

    resources = copy.deepcopy(plan_of("dev").resources)
    cluster = next(r for r in resources if r.type == "gcp:container/cluster:Cluster")
    cluster.inputs["privateClusterConfig"]["enablePrivateNodes"] = False

    def levels(config: Any) -> list[tuple[str, str]]:
        report = check_resources(resources, config)
        return [
            (v.policy, v.level)
            for v in report.violations
            if v.policy == "gke-private-nodes-enabled"
        ]

    assert levels(None) == [("gke-private-nodes-enabled", "mandatory")]
    assert levels({"gke-private-nodes-enabled": "advisory"}) == [
        ("gke-private-nodes-enabled", "advisory")
    ]
    assert levels({"all": "advisory"}) == [("gke-private-nodes-enabled", "advisory")]
    assert levels({"all": "disabled"}) == []


def test_a_check_without_a_docstring_cannot_become_a_policy() -> None:
    # The description of a policy is its check's docstring (python -OO would drop it).
    def check(args: Any) -> list[str]:
        return []

    with pytest.raises(TypeError, match="no docstring"):
        Rules().resource("gcp:storage/bucket:Bucket", "bucket-something")(check)
