"""The offline runner is never more optimistic than the Pulumi engine.

Replacements (input paths that force one, from the providers' sources), the
``protect`` option, StackReferences to a platform that was never deployed,
and the exit codes and HTTP statuses of what a user must fix.
"""

from __future__ import annotations

import importlib
import json
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pulumi import automation as auto

from gke_inference.automation.errors import (
    NotDeployedError,
    PlatformNotDeployedError,
    ProtectedResourceError,
)
from gke_inference.automation.offline_runner import OfflineRunner
from gke_inference.automation.pulumi_runner import PulumiRunner
from gke_inference.automation.runner import PlatformStack, WorkloadsRemainError, WorkloadStack
from gke_inference.automation.service import create_app
from gke_inference.automation.settings import AutomationSettings
from gke_inference.automation.store import Operation, SQLStore, new_id
from gke_inference.cli import main
from gke_inference.core.errors import UserInputError
from gke_inference.offline.planning import plan_deployment
from gke_inference.offline.replacements import (
    known_types,
    parse_path,
    replacement_reasons,
    rules_for,
    sources,
)
from gke_inference.workloads.kinds import deployment_for
from gke_inference.workloads.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "workloads/examples/gemma-3-1b-l4.yaml")
LLAMA = REPO / "workloads/examples/llama-3-3-70b-h100.yaml"  # not deployable in dev
TOKEN = "t0ken-for-faithful-tests-0123456789"
CLUSTER = "gcp:container/cluster:Cluster base-gke-cluster"


def _urn(env: str, parent: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{env}::gke-inference::{parent}${type_}::{name}"


def cluster_urn(env: str) -> str:
    return _urn(
        env,
        "gke-inference:platform:GkeCluster",
        "gcp:container/cluster:Cluster",
        "base-gke-cluster",
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's stack files (the program and policy pack are the repo's),
    so a test can change an environment's config."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml"):
        (root / name).write_text((REPO / name).read_text(encoding="utf-8"), encoding="utf-8")
    (root / "__main__.py").symlink_to(REPO / "__main__.py")
    (root / "policy").symlink_to(REPO / "policy")
    return root


@pytest.fixture
def runner(project: Path, tmp_path: Path) -> OfflineRunner:
    settings = AutomationSettings(project, (tmp_path / "backend").as_uri(), tmp_path / "state")
    return OfflineRunner(settings, state_file=tmp_path / "offline.json")


def edit(project: Path, env: str, old: str, new: str) -> None:
    path = project / f"Pulumi.{env}.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def run(runner: OfflineRunner, operation: Any, target: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    return runner.run(operation, target, lines.append), lines


def state_bytes(runner: OfflineRunner) -> bytes:
    assert runner.state_file is not None
    return runner.state_file.read_bytes()


# --------------------------------------------------------------------------- replacements


def test_switching_dev_to_autopilot_replaces_the_cluster(
    runner: OfflineRunner, project: Path
) -> None:
    run(runner, "up", PlatformStack("dev"))
    before = state_bytes(runner)
    edit(project, "dev", "mode: standard", "mode: autopilot")
    result, lines = run(runner, "preview", PlatformStack("dev"))
    replaced = [line for line in lines if line.startswith(f"    +- {CLUSTER} replace (")]
    assert len(replaced) == 1 and "enableAutopilot" in replaced[0], lines
    assert result.changes["replace"] >= 1
    summary = next(line for line in lines if line.startswith("Resources: "))
    assert f"{result.changes['replace']} to replace" in summary
    assert state_bytes(runner) == before  # a preview records nothing


def test_a_label_change_is_an_update(runner: OfflineRunner, project: Path) -> None:
    run(runner, "up", PlatformStack("dev"))
    edit(project, "dev", "cost-center: rnd-4711", "cost-center: rnd-4712")
    result, lines = run(runner, "preview", PlatformStack("dev"))
    assert f"    ~ {CLUSTER} update" in lines
    assert not [line for line in lines if line.lstrip().startswith("+-")]
    assert "replace" not in result.changes and result.changes["update"] >= 1


def test_state_keeps_inputs_and_an_up_records_the_replacement(
    runner: OfflineRunner, project: Path
) -> None:
    run(runner, "up", PlatformStack("dev"))
    state = json.loads(state_bytes(runner))
    cluster = state["platform"]["dev"]["resources"][cluster_urn("dev")]
    assert cluster["type"] == "gcp:container/cluster:Cluster"
    assert cluster["inputs"]["name"] == "inf-dev" and cluster["protect"] is False
    edit(project, "dev", "mode: standard", "mode: autopilot")
    result, _ = run(runner, "up", PlatformStack("dev"))  # dev's cluster is not protected
    assert result.changes["replace"] >= 1
    state = json.loads(state_bytes(runner))
    assert state["platform"]["dev"]["resources"][cluster_urn("dev")]["inputs"]["enableAutopilot"]
    result, lines = run(runner, "preview", PlatformStack("dev"))
    assert set(result.changes) == {"same"}, lines


def test_a_state_without_inputs_diffs_as_updates(runner: OfflineRunner, project: Path) -> None:
    """State files of older versions kept a fingerprint only: no replacement can be derived."""
    run(runner, "up", PlatformStack("dev"))
    assert runner.state_file is not None
    state = json.loads(state_bytes(runner))
    resources = state["platform"]["dev"]["resources"]
    state["platform"]["dev"]["resources"] = {u: r["fingerprint"] for u, r in resources.items()}
    runner.state_file.write_text(json.dumps(state), encoding="utf-8")
    result, _ = run(runner, "preview", PlatformStack("dev"))
    assert set(result.changes) == {"same"}
    edit(project, "dev", "mode: standard", "mode: autopilot")
    result, lines = run(runner, "preview", PlatformStack("dev"))
    assert f"    ~ {CLUSTER} update" in lines


NODE_POOL = "gcp:container/nodePool:NodePool"


@pytest.mark.parametrize(
    ("type_", "old", "new", "reasons"),
    [
        # google_container_node_pool: machine type, disk and labels update in place
        (NODE_POOL, {"nodeConfig": {"machineType": "g2-standard-8"}},
         {"nodeConfig": {"machineType": "g2-standard-24"}}, []),
        (NODE_POOL, {"nodeConfig": {"labels": {"a": "1"}}}, {"nodeConfig": {"labels": {"a": "2"}}}, []),
        (NODE_POOL, {"nodeConfig": {"spot": False}}, {"nodeConfig": {"spot": True}}, ["nodeConfig.spot"]),
        (NODE_POOL, {"name": "a", "location": "x"}, {"name": "b", "location": "y"}, ["location", "name"]),
        (NODE_POOL, {"nodeConfig": {"guestAccelerators": [{"type": "nvidia-l4", "count": 1}]}},
         {"nodeConfig": {"guestAccelerators": [{"type": "nvidia-h100-80gb", "count": 1}]}},
         ["nodeConfig.guestAccelerators[0].type"]),
        (NODE_POOL, {"nodeConfig": {}}, {"nodeConfig": {"guestAccelerators": [{"count": 1}]}},
         ["nodeConfig.guestAccelerators"]),
        (NODE_POOL, {"autoscaling": {"maxNodeCount": 2}}, {"autoscaling": {"maxNodeCount": 4}}, []),
        (NODE_POOL, {"queuedProvisioning": {"enabled": True}}, {}, ["queuedProvisioning"]),
        # google_container_cluster
        ("gcp:container/cluster:Cluster", {"network": "a"}, {"network": "b"}, ["network"]),
        ("gcp:container/cluster:Cluster", {}, {"enableAutopilot": True}, ["enableAutopilot"]),
        ("gcp:container/cluster:Cluster", {"resourceLabels": {"a": "1"}},
         {"resourceLabels": {"a": "2"}}, []),
        ("gcp:container/cluster:Cluster", {"privateClusterConfig": {"masterIpv4CidrBlock": "a"}},
         {"privateClusterConfig": {"masterIpv4CidrBlock": "b"}},
         ["privateClusterConfig.masterIpv4CidrBlock"]),
        ("gcp:container/cluster:Cluster", {}, {"nodeConfig": {"machineType": "e2"}}, ["nodeConfig"]),
        ("gcp:storage/bucket:Bucket", {"location": "US"}, {"location": "EU"}, ["location"]),
        ("gcp:storage/bucket:Bucket", {"labels": {"a": "1"}}, {"labels": {"a": "2"}}, []),
        ("gcp:kms/keyRing:KeyRing", {"location": "a"}, {"location": "b"}, ["location"]),
        ("gcp:projects/iAMMember:IAMMember", {"role": "a"}, {"role": "b"}, ["role"]),
        # pulumi-kubernetes forceNewProperties
        ("kubernetes:apps/v1:Deployment", {"spec": {"selector": {"matchLabels": {"a": "1"}}}},
         {"spec": {"selector": {"matchLabels": {"a": "2"}}}}, ["spec.selector"]),
        ("kubernetes:apps/v1:Deployment",
         {"spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}},
         {"spec": {"template": {"spec": {"containers": [{"image": "b"}]}}}}, []),
        ("kubernetes:batch/v1:Job",
         {"spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}},
         {"spec": {"template": {"spec": {"containers": [{"image": "b"}]}}}}, ["spec.template"]),
        ("kubernetes:core/v1:Service", {"spec": {"clusterIP": "None"}}, {"spec": {}}, ["spec.clusterIP"]),
        ("kubernetes:core/v1:Service", {"spec": {"ports": [{"port": 80}]}},
         {"spec": {"ports": [{"port": 8000}]}}, []),
        ("kubernetes:core/v1:ConfigMap", {"data": {"a": "1"}}, {"data": {"a": "2"}}, ["data"]),
        ("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", {"roleRef": {"name": "a"}},
         {"roleRef": {"name": "b"}}, ["roleRef"]),
        ("kubernetes:cloud.google.com/v1:ComputeClass", {"metadata": {"name": "a"}},
         {"metadata": {"name": "b"}}, ["metadata.name"]),
        ("kubernetes:cloud.google.com/v1:ComputeClass", {"spec": {"priorities": [1]}},
         {"spec": {"priorities": [2]}}, []),
        ("kubernetes:core/v1:Namespace", {"metadata": {"labels": {"a": "1"}}},
         {"metadata": {"labels": {"a": "2"}}}, []),
        # a component has no provider: its inputs never replace it
        ("gke-inference:platform:GkeCluster", {"name": "a"}, {"name": "b"}, []),
    ],
)  # fmt: skip
def test_replacement_reasons(
    type_: str, old: dict[str, Any], new: dict[str, Any], reasons: list[str]
) -> None:
    assert replacement_reasons(type_, old, new) == reasons


def test_paths() -> None:
    assert parse_path("nodePools[*].nodeConfig") == ("nodePools", "*", "nodeConfig")
    assert rules_for("kubernetes:core/v1:Pod").on_change == (
        ("metadata", "name"),
        ("metadata", "namespace"),
    )
    assert replacement_reasons(
        "kubernetes:core/v1:ConfigMap",
        {"data": {"a.b/c": "1"}},
        {"data": {"a.b/c": "2"}},
    ) == ["data"]


def _registered_types() -> set[str]:
    from tests.conftest import platform_plan

    types: set[str] = set()
    for env in ("dev", "prod"):
        plan = platform_plan(env)
        types |= {r.type for r in plan.resources if r.custom}
        for example in sorted((REPO / "workloads/examples").glob("*.yaml")):
            try:
                deployment = deployment_for(load_spec(str(example)))
                workload = plan_deployment(deployment, env, "organization", plan)
            except UserInputError:
                continue  # not deployable in this environment
            types |= {r.type for r in workload.resources if r.custom}
    return types


def test_every_registered_type_has_rules() -> None:
    """A new Google resource type needs its ForceNew paths in the table."""
    types = _registered_types()
    google = {t for t in types if t.startswith("gcp:")}
    assert google and not google - set(known_types()), sorted(google - set(known_types()))
    for type_ in types:
        if type_.startswith("kubernetes:"):
            assert ("metadata", "name") in rules_for(type_).on_change


def test_the_table_names_inputs_of_the_installed_sdk() -> None:
    """Every Google path is a chain of input properties of pulumi_gcp's Args classes."""
    for type_ in known_types():
        if not type_.startswith("gcp:"):
            continue
        rules = rules_for(type_)
        module, _, cls = type_.split(":")[1].split("/")[0], None, type_.rsplit(":", 1)[1]
        package = importlib.import_module(f"pulumi_gcp.{module}")
        inputs = importlib.import_module(f"pulumi_gcp.{module}._inputs")
        for pattern in (*rules.on_change, *rules.on_count):
            current: Any = getattr(package, f"{cls}Args")
            for segment in (s for s in pattern if s != "*"):
                assert current is not None, (type_, pattern)
                names = {
                    p.fget._pulumi_name: p
                    for p in vars(current).values()
                    if isinstance(p, property) and hasattr(p.fget, "_pulumi_name")
                }
                assert segment in names, (type_, pattern, segment)
                found = re.search(
                    r"ForwardRef\('(\w+Args)'\)", str(names[segment].fget.__annotations__)
                )
                current = getattr(inputs, found.group(1)) if found else None


def test_the_table_names_the_installed_provider_versions() -> None:
    """Upgrading pulumi-gcp or pulumi-kubernetes means regenerating the table."""
    assert sources()["gcp"]["version"] == version("pulumi_gcp")
    assert sources()["kubernetes"]["version"] == version("pulumi_kubernetes")
    assert re.fullmatch(r"[0-9a-f]{40}", sources()["gcp"]["upstreamCommit"])


# --------------------------------------------------------------------------- protect


def delete_refusal(urn: str) -> str:
    return (
        f'resource "{urn}" cannot be deleted because it is protected; to delete it, remove '
        f"`protect` from it in the program and `pulumi up`, or run "
        f"`pulumi state unprotect '{urn}'`"
    )


def test_destroy_of_prod_refuses_protected_resources(runner: OfflineRunner) -> None:
    run(runner, "up", PlatformStack("prod"))
    before = state_bytes(runner)
    with pytest.raises(ProtectedResourceError) as refused:
        run(runner, "destroy", PlatformStack("prod"))
    assert delete_refusal(cluster_urn("prod")) in refused.value.messages
    bucket = _urn(
        "prod", "gke-inference:inference:ModelBucket", "gcp:storage/bucket:Bucket",
        "inference-models-bucket",
    )  # fmt: skip
    assert delete_refusal(bucket) in refused.value.messages
    assert any("gcp:kms/keyRing:KeyRing::" in m for m in refused.value.messages)
    assert state_bytes(runner) == before  # nothing was deleted
    assert runner.outputs(PlatformStack("prod"))["clusterName"] == "inf-prod"


def test_an_up_that_would_replace_a_protected_resource_fails(
    runner: OfflineRunner, project: Path
) -> None:
    run(runner, "up", PlatformStack("prod"))
    before = state_bytes(runner)
    edit(project, "prod", "mode: standard", "mode: autopilot")
    urn = cluster_urn("prod")
    refusal = (
        f'unable to replace resource "{urn}": it is protected; to replace it, remove '
        f"`protect` from it in the program and `pulumi up`, or run "
        f"`pulumi state unprotect '{urn}'`"
    )
    lines: list[str] = []
    with pytest.raises(ProtectedResourceError) as refused:
        runner.run("preview", PlatformStack("prod"), lines.append)
    assert refusal in refused.value.messages
    assert any(line.startswith(f"    +- {CLUSTER} replace (") for line in lines)  # diff first
    with pytest.raises(ProtectedResourceError):
        runner.run("up", PlatformStack("prod"))
    assert state_bytes(runner) == before


def test_an_up_that_would_delete_a_protected_resource_fails(runner: OfflineRunner) -> None:
    run(runner, "up", PlatformStack("dev"))
    assert runner.state_file is not None
    state = json.loads(state_bytes(runner))
    gone = _urn("dev", "gke-inference:platform:GkeCluster", "gcp:storage/bucket:Bucket", "old")
    state["platform"]["dev"]["resources"][gone] = {
        "type": "gcp:storage/bucket:Bucket", "custom": True, "protect": True,
        "inputs": {}, "fingerprint": "x",
    }  # fmt: skip
    runner.state_file.write_text(json.dumps(state), encoding="utf-8")
    before = state_bytes(runner)
    with pytest.raises(ProtectedResourceError) as refused:
        run(runner, "up", PlatformStack("dev"))
    assert refused.value.messages == [delete_refusal(gone)]
    assert state_bytes(runner) == before


# --------------------------------------------------------------------------- stack references


def test_a_workload_needs_its_platform_stack(runner: OfflineRunner) -> None:
    spec = load_spec(EXAMPLE)
    for operation in ("preview", "up"):
        with pytest.raises(PlatformNotDeployedError) as missing:
            runner.run(operation, WorkloadStack.of("dev", spec))
        assert isinstance(missing.value, NotDeployedError)  # exit 2: deploy the platform first
        assert 'unknown stack "organization/gke-inference/dev"' in str(missing.value)
        assert "gke-inference platform up --stack dev" in str(missing.value)
    assert runner.list_workloads("dev") == []
    run(runner, "up", PlatformStack("dev"))
    assert run(runner, "up", WorkloadStack.of("dev", spec))[0].changes["create"] > 0


@pytest.fixture
def cli_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.chdir(REPO)
    return tmp_path / "xdg" / "gke-inference"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--runner", "offline"])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_workload_and_promote_without_a_platform_exit_2(
    capsys: pytest.CaptureFixture[str], cli_state: Path
) -> None:
    for command in ("preview", "up"):
        code, _, err = cli(capsys, "workload", command, "--stack", "dev", "--file", EXAMPLE)
        assert code == 2 and 'unknown stack "organization/gke-inference/dev"' in err
    assert cli(capsys, "platform", "up", "--stack", "dev")[0] == 0
    assert cli(capsys, "workload", "up", "--stack", "dev", "--file", EXAMPLE)[0] == 0
    code, out, err = cli(
        capsys, "promote", "--file", EXAMPLE, "--from", "dev", "--to", "prod", "--yes"
    )
    assert code == 2 and 'unknown stack "organization/gke-inference/prod"' in err
    assert "Promoting" not in out  # refused before a diff against a platform that is not there
    assert cli(capsys, "workload", "list", "--stack", "prod")[1].startswith("no workloads")


def test_the_pulumi_runner_maps_unknown_stack_alike(tmp_path: Path) -> None:
    settings = AutomationSettings(REPO, (tmp_path / "b").as_uri(), tmp_path / "s")
    runner = PulumiRunner(settings)
    failure = auto.CommandError(
        auto.CommandResult(
            stdout="",
            stderr='error: Preview failed: unknown stack "organization/gke-inference/dev"',
            code=255,
        )
    )
    stack = "organization/gke-inference-workloads/dev-gemma-3-1b"
    with (
        pytest.raises(PlatformNotDeployedError),
        runner._mapped_errors(stack, WorkloadStack("dev", "gemma-3-1b")),
    ):
        raise failure


# --------------------------------------------------------------------------- user errors


def test_destroying_a_platform_with_workloads_is_a_user_error(runner: OfflineRunner) -> None:
    run(runner, "up", PlatformStack("dev"))
    run(runner, "up", WorkloadStack.of("dev", load_spec(EXAMPLE)))
    with pytest.raises(WorkloadsRemainError) as refused:
        runner.run("destroy", PlatformStack("dev"))
    assert isinstance(refused.value, UserInputError)  # exit 2, HTTP 422
    assert "still has workloads deployed (gemma-3-1b)" in str(refused.value)


def test_service_rechecks_a_stored_spec_before_accepting_a_preview(
    runner: OfflineRunner, store: SQLStore
) -> None:
    """A preview without a body is 422 when the environment no longer takes the stored spec."""
    llama = yaml.safe_load(LLAMA.read_text(encoding="utf-8"))
    operation = Operation(new_id(), "dev", llama["name"], "up", spec=llama)
    store.submit(operation, workload_spec=llama)  # recorded before dev stopped taking it
    store.finish(operation.id, "failed", error="for the test")
    with TestClient(create_app(runner, store, token=TOKEN)) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        response = client.post(
            f"/v1/environments/dev/workloads/{llama['name']}/preview", headers=auth
        )
        assert response.status_code == 422, response.text
        assert "does not enable" in response.text
        assert store.active_operation("dev", llama["name"]) is None  # nothing was queued
        # a workload never submitted: 404, as the CLI's destroy of it is exit 2
        assert (
            client.delete("/v1/environments/dev/workloads/never", headers=auth).status_code == 404
        )
