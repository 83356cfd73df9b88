"""A plan's JSON as a preview shows it: schema integers as ints, maps sorted, unknowns marked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gke_inference.cli import main
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.recording import UNKNOWN, Plan
from gke_inference.offline.schema import args_class, conform_json, typed_inputs

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "workloads/examples/gemma-3-1b-l4.yaml")


def _floats(value: Any, path: str = "") -> list[str]:
    if isinstance(value, float):
        return [f"{path}={value}"]
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in _floats(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in _floats(v, f"{path}[{i}]")]
    return []


def _doc(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["plan", *argv, "--json", "--no-policy"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def _one(doc: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in doc["resources"] if r["type"] == type_)
    return found


def test_integers_stay_integers(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _doc(capsys, "-s", "dev")
    pool = _one(doc, "gcp:container/nodePool:NodePool")["inputs"]
    assert type(pool["initialNodeCount"]) is int
    assert type(pool["autoscaling"]["maxNodeCount"]) is int
    assert type(pool["nodeConfig"]["guestAccelerators"][0]["count"]) is int  # list of input types
    assert type(doc["outputs"]["gatewayBackendTimeoutSeconds"]) is int  # the contract says int
    # A custom resource: its crd-schemas/ file says integer.
    compute_class = _one(doc, "kubernetes:cloud.google.com/v1:ComputeClass")["inputs"]
    assert type(compute_class["spec"]["priorities"][0]["gpu"]["count"]) is int
    # What is left as a float is a number the schema says is one: JSONSchemaProps'
    # minimum/maximum are doubles (the InferenceModelRewrite CRD's weight bounds).
    bounds = (
        "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition.spec.versions[0].schema"
        ".openAPIV3Schema.properties.spec.properties.rules.items.properties.targets.items"
        ".properties.weight."
    )
    crd_floats = [f"{bounds}maximum=1000000.0", f"{bounds}minimum=1.0"]
    left = [f for r in doc["resources"] for f in _floats(r["inputs"], r["type"])]
    assert sorted(left) == crd_floats
    prod = _doc(capsys, "-s", "prod")
    left = [f for r in prod["resources"] for f in _floats(r["inputs"], r["type"])]
    assert sorted(left) == sorted(
        ["gcp:compute/subnetwork:Subnetwork.logConfig.flowSampling=0.5", *crd_floats]
    )


def test_kubernetes_integers_of_a_workload_plan(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _doc(capsys, "-s", "dev", "--workload", EXAMPLE)
    deployment = _one(doc, "kubernetes:apps/v1:Deployment")["inputs"]
    assert type(deployment["spec"]["replicas"]) is int
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert type(container["ports"][0]["containerPort"]) is int
    assert [f for r in doc["resources"] for f in _floats(r["inputs"], r["type"])] == []


def test_maps_are_sorted(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _doc(capsys, "-s", "dev")

    def check(value: Any) -> None:
        if isinstance(value, dict):
            assert list(value) == sorted(value)
            for item in value.values():
                check(item)
        elif isinstance(value, list):
            for item in value:
                check(item)

    for resource in doc["resources"]:
        check(resource["inputs"])
    check(doc["outputs"])


def test_what_only_the_cloud_knows_is_unknown(
    capsys: pytest.CaptureFixture[str], plan_of: Callable[..., Plan]
) -> None:
    doc = _doc(capsys, "-s", "dev")
    assert doc["unknownOutputs"] == ["clusterCaCertificate", "clusterEndpoint"]
    assert doc["outputs"]["clusterEndpoint"] == UNKNOWN == "[unknown]"
    assert doc["outputs"]["clusterCaCertificate"] == UNKNOWN
    assert doc["outputs"]["kubeconfig"] == "[secret]"
    assert doc["outputs"]["clusterName"] == "inf-dev"  # known from the inputs
    assert main(["plan", "-s", "dev", "--no-policy"]) == 0
    text = capsys.readouterr().out
    assert "  clusterEndpoint: [unknown]\n" in text
    # The plan itself keeps the stand-ins: a workload plan reads them through
    # its StackReference as the real platform stack's values.
    platform = plan_of("dev")
    assert platform.outputs["clusterEndpoint"] not in ("", UNKNOWN)
    workload = plan_workload("dev", EXAMPLE, project_dir=REPO, platform=platform)
    assert workload.unknown_outputs == []
    assert workload.to_json()["unknownOutputs"] == []


def test_every_provider_type_of_the_plans_has_its_sdk_args_class(
    plan_of: Callable[..., Plan],
) -> None:
    types = {r.type for stack in ("dev", "prod") for r in plan_of(stack).resources}
    provider = {t for t in types if t.startswith("gcp:")}
    assert provider and all(args_class(t) is not None for t in provider), [
        t for t in provider if args_class(t) is None
    ]
    assert args_class("kubernetes:apps/v1:Deployment") is not None
    assert args_class("kubernetes:cloud.google.com/v1:ComputeClass") is None  # a CRD
    assert args_class("gke-inference:platform:BasePlatform") is None  # a component


def test_conversion_follows_the_schema_not_the_value() -> None:
    # A string-typed field keeps a string; an int-or-string port becomes an int.
    inputs = {"spec": {"ports": [{"port": 80.0, "targetPort": 8000.0, "name": "http"}]}}
    typed = typed_inputs("kubernetes:core/v1:Service", inputs)
    port = typed["spec"]["ports"][0]
    assert type(port["port"]) is int and type(port["targetPort"]) is int
    # Unknown types are left as recorded.
    assert typed_inputs("gke-inference:x:Y", {"n": 1.0}) == {"n": 1.0}
    schema = {"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}}
    assert conform_json({"a": 2.0, "b": 2.0}, schema, schema) == {"a": 2, "b": 2.0}
