"""Property-based tests over the stack settings and the workload spec.

- every generated valid input plans with 0 mandatory policy violations;
- every invalid input is a SettingsError/SpecError naming the field (exit 2 in the CLI);
- no input produces any other exception.

The budget is fixed and small in the normal test run; set
GKE_INFERENCE_FUZZ_EXAMPLES=200 (or more) for a longer campaign.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gke_inference.cli import main
from gke_inference.core.errors import SettingsError, SpecError
from gke_inference.core.settings import parse_settings
from gke_inference.offline.planning import plan_platform, plan_workload
from gke_inference.offline.policy_check import check_resources
from gke_inference.workloads.kinds import deployment_for
from gke_inference.workloads.sizing import size
from gke_inference.workloads.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
BUDGET = int(os.environ.get("GKE_INFERENCE_FUZZ_EXAMPLES", "0"))
PLAN_EXAMPLES = BUDGET or 6  # each valid example is a whole offline plan (~1-2 s)
CHEAP_EXAMPLES = max(BUDGET, 150)


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,  # a fixed budget per run; no example database to carry around
    )


# ----------------------------------------------------------------- valid settings

valid_overrides = st.fixed_dictionaries(
    {
        "cluster.mode": st.sampled_from(["standard", "autopilot"]),
        "cluster.releaseChannel": st.sampled_from(["RAPID", "REGULAR", "STABLE"]),
        "cluster.privateEndpoint": st.booleans(),
        "network.flowLogs": st.booleans(),
        "security.secretsEncryption": st.booleans(),
        "registry.keepRecentVersions": st.integers(1, 1000),
        "inference.costOptimizedClasses": st.booleans(),
        "inference.gateway.exposure": st.sampled_from(["internal", "external"]),
        "observability.alerts": st.booleans(),
    },
    optional={
        "cluster.systemPool.maxNodesPerZone": st.integers(3, 10),
        "security.kmsRotationDays": st.integers(1, 90),
    },
)


def as_overrides(values: dict[str, Any]) -> list[str]:
    out = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items()]
    if not values["cluster.privateEndpoint"]:
        out += ["cluster.authorizedNetworks[0].cidr=203.0.113.0/24",
                "cluster.authorizedNetworks[0].displayName=office"]  # fmt: skip
    if values["inference.gateway.exposure"] == "external":
        out.append("inference.gateway.certificate=models-cert")
    return out


@fuzz(PLAN_EXAMPLES)
@given(values=valid_overrides)
def test_valid_settings_plan_without_mandatory_violations(values: dict[str, Any]) -> None:
    plan = plan_platform("dev", as_overrides(values), project_dir=REPO)
    report = check_resources(plan.resources, None, source="default")
    assert report.mandatory == [], [v.message for v in report.mandatory]
    assert plan.outputs["mode"] == values["cluster.mode"]


# --------------------------------------------------------------- invalid settings

BASE = {"project": "acme-fuzz-1"}
junk = st.one_of(
    st.text(max_size=12), st.integers(-10, 10**6), st.floats(allow_nan=True), st.booleans(),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.none(),
)  # fmt: skip
FIELDS = [
    ("project",), ("region",), ("cluster", "mode"), ("cluster", "releaseChannel"),
    ("cluster", "authorizedNetworks"), ("network", "podCidr"), ("network", "nodeCidr"),
    ("security", "kmsRotationDays"), ("inference", "accelerators"), ("inference", "gateway", "exposure"),
    ("registry", "remotes"), ("labels",), ("cluster", "systemPool", "minNodesPerZone"),
]  # fmt: skip


def put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = {**data}
    node = out
    for key in path[:-1]:
        node[key] = dict(node.get(key) or {})
        node = node[key]
    node[path[-1]] = value
    return out


@fuzz(CHEAP_EXAMPLES)
@given(field=st.sampled_from(FIELDS), value=junk)
def test_invalid_settings_name_the_field(field: tuple[str, ...], value: Any) -> None:
    data = put(BASE, field, value)
    try:
        parse_settings(data, "dev")
    except SettingsError as exc:
        assert exc.problems
        head = "gke-inference:" + field[0]
        assert any(p.path.startswith(head) for p in exc.problems), (field, value, str(exc))
        for problem in exc.problems:
            assert problem.path and problem.message
    # Some junk is valid (e.g. an empty list of remotes): then it must plan-able in shape.


@fuzz(max(BUDGET // 10, 8))
@given(field=st.sampled_from(FIELDS), value=st.text(min_size=1, max_size=8).filter(str.isprintable))
def test_cli_reports_bad_overrides_without_traceback(field: tuple[str, ...], value: str) -> None:
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["plan", "--stack", "dev", "--no-policy", "-c", f"{'.'.join(field)}={value}"])
    assert code in (0, 2)
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert "gke-inference:" in err.getvalue() or "--config" in err.getvalue()


# ---------------------------------------------------------------- workload specs

SMALL_PRESETS = ["gemma-3-1b", "gemma-3-4b", "llama-3.1-8b", "qwen2.5-7b", "mistral-7b-v0.3"]
valid_specs = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"[a-z][a-z0-9]{2,10}", fullmatch=True),
        "kind": st.just("online"),
        "model": st.sampled_from(SMALL_PRESETS).map(lambda p: {"id": f"org/{p}", "preset": p}),
        "accelerator": st.just("l4"),
        "precision": st.sampled_from(["bf16", "fp8", "int8", "int4"]),
        "contextLength": st.sampled_from([1024, 2048, 4096, 8192]),
        "concurrency": st.integers(1, 16),
        "costOptimized": st.booleans(),
        "scaling": st.fixed_dictionaries(
            {
                "minReplicas": st.integers(1, 2),
                "maxReplicas": st.integers(2, 6),
                "metric": st.sampled_from(
                    ["queue-depth", "kv-cache", "requests-per-second", "running-requests"]
                ),
            }
        ),
    }
)


@fuzz(PLAN_EXAMPLES)
@given(data=valid_specs)
def test_valid_specs_plan_without_mandatory_violations(data: dict[str, Any]) -> None:
    spec = parse_spec(data)
    try:
        sizing = size(spec)
    except SpecError:
        return  # too big for the shapes dev enables: a clear error is the right outcome
    if sizing.shape.count > 4 or sizing.pipeline_parallel > 1:
        return  # dev enables L4 x1, x2 and x4 only
    try:
        deployment_for(spec)
    except SpecError:
        return  # e.g. a running-requests target above --max-num-seqs: refused, clearly
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "spec.yaml"
        file.write_text(yaml.safe_dump(data))
        plan = plan_workload("dev", str(file), project_dir=REPO)
    report = check_resources(plan.resources, None, source="default")
    assert report.mandatory == [], [v.message for v in report.mandatory]


SPEC_FIELDS = ["name", "kind", "model", "accelerator", "precision", "contextLength", "concurrency",
               "scaling", "routing", "server", "kvCacheDtype"]  # fmt: skip


@fuzz(CHEAP_EXAMPLES)
@given(field=st.sampled_from(SPEC_FIELDS), value=junk)
def test_invalid_specs_name_the_field(field: str, value: Any) -> None:
    data = {"name": "fuzz", "kind": "online", "model": {"id": "org/m", "preset": "gemma-3-1b"},
            "accelerator": "l4", field: value}  # fmt: skip
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        assert exc.problems
        assert all(p.path and p.message for p in exc.problems)
        return
    try:
        size(spec)
    except SpecError as exc:
        assert exc.problems


@fuzz(CHEAP_EXAMPLES)
@given(data=st.dictionaries(st.sampled_from([*SPEC_FIELDS, "bogus"]), junk, max_size=6))
def test_arbitrary_documents_never_crash(data: dict[str, Any]) -> None:
    with contextlib.suppress(SpecError):
        parse_spec(data)
