"""``lora.routes``: a public model name the endpoint picker splits over adapters.

What the picker (GAIE v1.5.0) does with the rendered InferenceModelRewrite is
rehearsed from its own rules: an exact match on the body's ``model`` picks a
target by weight and writes it into the forwarded body, so every target must be
a name the pool's servers were started with (their ``--lora-modules``, parsed
with the pinned vLLM's table), and no rule may be one the picker would apply to
every request (no matches) or that would blank the model (no targets). The
picker only watches the kind if the platform installed its CRD and its Role
lets it list them.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gke_inference.core.errors import SpecError
from gke_inference.inference.inference_extension import REWRITE_SCHEMA_FILE, rewrite_schema
from gke_inference.offline.manifests import kubernetes_objects, validate_manifests
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.recording import Plan
from gke_inference.workloads.spec import parse_spec
from gke_inference.workloads.vllm_server import table
from tests.conftest import platform_plan

REPO = Path(__file__).resolve().parents[1]
REWRITE = "kubernetes:inference.networking.x-k8s.io/v1alpha2:InferenceModelRewrite"
ADAPTERS = [
    {"name": "support-v1", "path": "gs://acme-adapters/llama-8b/support-v1"},
    {"name": "support-v2", "path": "gs://acme-adapters/llama-8b/support-v2"},
    {"name": "sql", "path": "gs://acme-adapters/llama-8b/sql"},
]
ROUTES = [
    {
        "model": "support",
        "targets": [
            {"adapter": "support-v1", "weight": 90},
            {"adapter": "support-v2", "weight": 10},
        ],
    },
    {"model": "sql-latest", "targets": [{"adapter": "sql"}]},
]


def routed_spec(**lora: Any) -> dict[str, Any]:
    return {
        "name": "llama-lora",
        "kind": "online",
        "model": {"id": "meta-llama/Llama-3.1-8B-Instruct", "preset": "llama-3.1-8b"},
        "accelerator": "l4",
        "tensorParallel": 2,
        "routing": {"mode": "inference-pool"},
        "lora": {"maxLoras": 2, "adapters": ADAPTERS, "routes": ROUTES, **lora},
    }


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    file = tmp_path_factory.mktemp("routes") / "lora.yaml"
    file.write_text(yaml.safe_dump(routed_spec()))
    return plan_workload("dev", str(file), project_dir=REPO)


def served_names(plan: Plan) -> set[str]:
    """What the server answers to: --served-model-name and each --lora-modules name,
    parsed as the pinned vLLM's parser takes them (``nargs='+'``)."""
    (deployment,) = [
        d
        for d in plan.by_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"] == "llama-lora"
    ]
    (server,) = deployment.inputs["spec"]["template"]["spec"]["containers"]
    doc = table("0.11.2")["flags"]
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--lora-modules", nargs=doc["--lora-modules"]["nargs"])
    parser.add_argument("--served-model-name", nargs=doc["--served-model-name"]["nargs"])
    known, _ = parser.parse_known_args(server["args"])
    return {*known.served_model_name, *(m.split("=", 1)[0] for m in known.lora_modules)}


def picker_rewrite(rules: list[dict[str, Any]], model: str, rng: random.Random) -> str:
    """v1.5.0's choice (datastore modelrewritestore + director): the first rule with
    an exact match on ``model``, then a target by weight; no rule: unchanged."""
    for rule in rules:
        if any(m["model"]["value"] == model for m in rule["matches"]):
            targets = rule["targets"]
            return str(
                rng.choices([t["modelRewrite"] for t in targets], [t["weight"] for t in targets])[0]
            )
    return model


def test_routes_become_the_pools_model_rewrite(planned: Plan) -> None:
    (rewrite,) = planned.by_type(REWRITE)
    spec = rewrite.inputs["spec"]
    pool = planned.one("kubernetes:inference.networking.k8s.io/v1:InferencePool")
    assert spec["poolRef"] == {
        "group": "inference.networking.k8s.io",
        "kind": "InferencePool",
        "name": pool.inputs["metadata"]["name"],
    }
    assert rewrite.inputs["metadata"]["namespace"] == pool.inputs["metadata"]["namespace"]
    assert spec["rules"][0] == {
        "matches": [{"model": {"type": "Exact", "value": "support"}}],
        "targets": [
            {"modelRewrite": "support-v1", "weight": 90},
            {"modelRewrite": "support-v2", "weight": 10},
        ],
    }
    assert validate_manifests(kubernetes_objects(planned)) == []


def test_every_rewrite_lands_on_a_name_the_servers_answer_to(planned: Plan) -> None:
    (rewrite,) = planned.by_type(REWRITE)
    rules = rewrite.inputs["spec"]["rules"]
    served = served_names(planned)
    for rule in rules:  # never a catch-all, never a blank model
        assert rule["matches"] and rule["targets"]
        assert {t["modelRewrite"] for t in rule["targets"]} <= served
    rng = random.Random(7)
    picks = [picker_rewrite(rules, "support", rng) for _ in range(10_000)]
    assert 0.88 < picks.count("support-v1") / len(picks) < 0.92
    assert set(picks) == {"support-v1", "support-v2"}
    assert picker_rewrite(rules, "sql-latest", rng) == "sql"
    # the base model and an adapter's own name pass through untouched
    assert picker_rewrite(rules, "meta-llama/Llama-3.1-8B-Instruct", rng) in served
    assert picker_rewrite(rules, "support-v2", rng) == "support-v2"


def test_the_picker_may_watch_rewrites(planned: Plan) -> None:
    (role,) = [
        r for r in planned.by_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
        if r.inputs["metadata"]["name"] == "llama-lora-epp"
    ]  # fmt: skip
    rules = {res: rule["verbs"] for rule in role.inputs["rules"] for res in rule["resources"]}
    assert set(rules["inferencemodelrewrites"]) == {"get", "list", "watch"}


def test_without_routes_no_rewrite_is_rendered(tmp_path: Path) -> None:
    data = routed_spec(routes=[])
    file = tmp_path / "lora.yaml"
    file.write_text(yaml.safe_dump(data))
    assert plan_workload("dev", str(file), project_dir=REPO).by_type(REWRITE) == []


def test_the_platform_installs_the_crd_the_workloads_are_checked_against(planned: Plan) -> None:
    """The served schema is the offline one minus additionalProperties: an object
    either accepts, the other does too; a weight out of bounds fails both."""
    crds = platform_plan("dev").by_type(
        "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
    )
    (crd,) = [
        c.inputs
        for c in crds
        if c.inputs["metadata"]["name"] == "inferencemodelrewrites.inference.networking.x-k8s.io"
    ]
    assert crd["spec"]["names"]["kind"] == "InferenceModelRewrite"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha2" and version["served"] and version["storage"]
    served = version["schema"]["openAPIV3Schema"]
    assert served == rewrite_schema()
    assert "additionalProperties" not in yaml.safe_dump(served)
    (rewrite,) = planned.by_type(REWRITE)
    good = {"apiVersion": "x/y", "kind": "K", "metadata": {}, "spec": rewrite.inputs["spec"]}
    jsonschema.validate(good, served)
    bad = yaml.safe_load(yaml.safe_dump(good))
    bad["spec"]["rules"][0]["targets"][0]["weight"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, served)
    offline = {**rewrite.inputs, "spec": bad["spec"]}
    problems = validate_manifests(
        [{"apiVersion": rewrite.inputs["apiVersion"], "kind": rewrite.inputs["kind"], **offline}]
    )
    assert problems and "weight" in str(problems[0])
    assert REWRITE_SCHEMA_FILE.endswith("_v1alpha2_InferenceModelRewrite.json")


@pytest.mark.parametrize(
    ("lora", "routing", "path", "needle"),
    [
        ({"routes": [{"model": "x", "targets": [{"adapter": "nope"}]}]}, None, "lora",
         "'nope', not among the adapters listed (support-v1, support-v2, sql)"),
        ({"routes": [ROUTES[1], ROUTES[1]]}, None, "lora", "sql-latest is repeated"),
        ({"routes": [{"model": "x", "targets": [{"adapter": "sql"}, {"adapter": "sql"}]}]}, None,
         "lora.routes[0]", "lists sql twice"),
        ({"routes": [{"model": "x", "targets": [{"adapter": "sql", "weight": 0}]}]}, None,
         "lora.routes[0].targets[0].weight", "greater than or equal to 1"),
        ({"routes": [{"model": "x", "targets": []}]}, None, "lora.routes[0].targets", "at least 1"),
        ({}, {"mode": "service"}, "(top level)", "lora.routes are applied by the endpoint picker"),
    ],
)  # fmt: skip
def test_bad_routes_name_the_field(
    lora: dict[str, Any], routing: dict[str, Any] | None, path: str, needle: str
) -> None:
    data = routed_spec(**lora)
    if routing is not None:
        data["routing"] = routing
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    (problem,) = info.value.problems
    assert problem.path == path and needle in problem.message, problem
