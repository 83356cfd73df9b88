"""CLI commands over the offline runner, the Pulumi runner's wiring, and the missing-CLI error."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pulumi import automation as auto

from gke_inference.automation.deployability import (
    checked_deployment,
    environment_classes,
    environment_settings,
)
from gke_inference.automation.errors import (
    INSTALL_HINT,
    NotDeployedError,
    PolicyViolationError,
    PulumiCLIMissingError,
    StackBusyError,
)
from gke_inference.automation.offline_runner import OfflineRunner
from gke_inference.automation.pulumi_runner import PulumiRunner, policy_violations_from_output
from gke_inference.automation.runner import PlatformStack, StackOperation, WorkloadStack
from gke_inference.automation.settings import AutomationSettings
from gke_inference.cli import main
from gke_inference.core.errors import SpecError
from gke_inference.workloads.spec import load_spec, parse_spec
from tests.support.offline import cli_state_file, deploy_platforms
from tests.support.pinning import pinned_project_copy

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "workloads/examples/gemma-3-1b-l4.yaml")
LLAMA = str(REPO / "workloads/examples/llama-3-3-70b-h100.yaml")  # gpu-h100-80gb-x4: prod only
NOT_IN_DEV = "'gpu-h100-80gb-x4', which this environment does not enable"


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state dir (offline state, default backend, service db)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.chdir(REPO)
    return tmp_path / "xdg" / "gke-inference"


def platforms(*envs: str) -> None:
    """Deploy the platform stacks of ``envs`` offline, where the CLI keeps its state."""
    settings = AutomationSettings.from_env()
    deploy_platforms(settings, cli_state_file(settings), *envs)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def latest_spec(tmp_path: Path) -> str:
    spec = yaml.safe_load(Path(EXAMPLE).read_text(encoding="utf-8"))
    spec["server"]["image"] = "us-docker.pkg.dev/acme/vllm/vllm-openai:latest"
    path = tmp_path / "latest.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- offline CLI


def test_workload_lifecycle_offline(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    offline = ("--runner", "offline")
    platforms("dev")
    code, out, _ = run(capsys, "workload", "preview", "--stack", "dev", "--file", EXAMPLE, *offline)
    assert code == 0
    assert out.startswith("Previewing update (organization/gke-inference-workloads/dev-gemma-3-1b)")
    assert "+ kubernetes:apps/v1:Deployment gemma-3-1b-server create" in out
    assert run(capsys, "workload", "list", "--stack", "dev", *offline)[1].startswith("no workloads")

    code, out, _ = run(capsys, "workload", "up", "--stack", "dev", "--file", EXAMPLE, *offline)
    assert code == 0
    created = int(re.search(r"Resources: (\d+) to create", out).group(1))  # type: ignore[union-attr]
    assert "Policies:" in out and 'computeClass: "gpu-l4-x1"' in out
    assert out.rstrip().endswith("up of organization/gke-inference-workloads/dev-gemma-3-1b: done")
    assert (state / "offline-state.json").exists()  # a later command sees it

    code, out, _ = run(capsys, "workload", "list", "--stack", "dev", "--format", "json", *offline)
    assert (code, json.loads(out)) == (0, ["gemma-3-1b"])
    code, out, _ = run(
        capsys, "workload", "outputs", "--stack", "dev", "--name", "gemma-3-1b", *offline
    )
    assert json.loads(out)["url"] == "http://gemma-3-1b.inference.svc.cluster.local:8000"

    code, out, _ = run(capsys, "workload", "up", "--stack", "dev", "--file", EXAMPLE, *offline)
    assert f"Resources: {created} unchanged" in out

    code, out, _ = run(capsys, "workload", "destroy", "--stack", "dev", "--file", EXAMPLE, *offline)
    assert code == 0 and f"Resources: {created} to delete" in out
    code, _, err = run(
        capsys, "workload", "destroy", "--stack", "dev", "--name", "gemma-3-1b", *offline
    )
    assert code == 2 and "does not exist" in err


def test_policy_violation_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = latest_spec(tmp_path)
    platforms("dev")
    code, out, err = run(
        capsys, "workload", "up", "--stack", "dev", "--file", spec, "--runner", "offline"
    )
    assert code == 1
    assert "[mandatory]  k8s-image-tag-pinned" in out
    assert "policy pack rejected" in err
    assert run(capsys, "workload", "list", "--stack", "dev", "--runner", "offline")[1].startswith(
        "no workloads"
    )


def test_user_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "workload", "up", "--stack", "staging", "--file", EXAMPLE, "--runner", "offline"
    )
    assert code == 2 and "unknown environment 'staging'" in err
    code, _, err = run(capsys, "workload", "up", "--stack", "dev", "--runner", "offline")
    assert code == 2 and "--file" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad_Name\nkind: online\naccelerator: l4\n", encoding="utf-8")
    code, _, err = run(
        capsys, "workload", "preview", "--stack", "dev", "--file", str(bad), "--runner", "offline"
    )
    assert code == 2 and "name" in err


def test_undeployable_spec_exits_2_before_any_operation(
    capsys: pytest.CaptureFixture[str], state: Path, tmp_path: Path
) -> None:
    offline = ("--runner", "offline")
    for command in ("up", "preview"):
        code, out, err = run(
            capsys, "workload", command, "--stack", "dev", "--file", LLAMA, *offline
        )
        assert code == 2, command
        assert NOT_IN_DEV in err and "inference.accelerators" in err
        assert out == ""  # no "Updating (...)": the operation never started
    # a spec deployment_for rejects (one batch replica would span two nodes)
    spec = yaml.safe_load(Path(LLAMA).read_text(encoding="utf-8"))
    batch = {"input": "gs://acme-in/x", "output": "gs://acme-out/y", "shards": 4}
    two_nodes = tmp_path / "two-nodes.yaml"
    two_nodes.write_text(
        yaml.safe_dump(
            {**spec, "kind": "batch", "accelerator": "l4", "concurrency": 64, "batch": batch}
        )
    )
    code, out, err = run(
        capsys, "workload", "up", "--stack", "dev", "--file", str(two_nodes), *offline
    )
    assert code == 2 and "pipeline parallelism" in err and out == ""
    assert not (state / "offline-state.json").exists()
    assert run(capsys, "workload", "list", "--stack", "dev", *offline)[1].startswith("no workloads")


def test_deployability_is_per_environment() -> None:
    llama = load_spec(LLAMA)
    assert checked_deployment(REPO, "prod", llama).compute_class == "gpu-h100-80gb-x4"
    with pytest.raises(SpecError, match=NOT_IN_DEV):
        checked_deployment(REPO, "dev", llama)
    # the same classes the platform program exports as computeClasses
    classes = environment_classes(environment_settings(REPO, "dev"))
    assert classes["l4-x1"] == "gpu-l4-x1" and classes["l4-x1-co"] == "gpu-l4-x1-co"
    assert "h100-80gb-x4" not in classes


def test_production_rules_apply_before_any_operation() -> None:
    # One replica is refused in prod (a node drain would take the endpoint down),
    # accepted in dev; the service and the CLI ask the same question first.
    data = yaml.safe_load(Path(EXAMPLE).read_text())
    data["scaling"]["minReplicas"] = 1
    single = parse_spec(data)
    assert checked_deployment(REPO, "dev", single).spec.scaling.min_replicas == 1
    with pytest.raises(SpecError) as info:
        checked_deployment(REPO, "prod", single)
    assert info.value.problems[0].path == "scaling.minReplicas"


def test_targets_name_their_stacks() -> None:
    spec = load_spec(EXAMPLE)
    assert WorkloadStack.of("dev", spec) == WorkloadStack("dev", "gemma-3-1b", spec)
    assert WorkloadStack("dev", "a").stack_name("acme") == "acme/gke-inference-workloads/dev-a"
    assert PlatformStack("prod").stack_name("acme") == "acme/gke-inference/prod"
    with pytest.raises(ValueError, match="not 'other'"):
        WorkloadStack("dev", "other", spec)


def test_platform_commands_offline(capsys: pytest.CaptureFixture[str]) -> None:
    offline = ("--runner", "offline")
    code, out, _ = run(capsys, "platform", "preview", "--stack", "dev", *offline)
    assert code == 0 and "gcp:container/cluster:Cluster" in out
    code, out, _ = run(capsys, "platform", "up", "--stack", "dev", *offline)
    assert code == 0 and 'kubeconfig: "[secret]"' in out
    code, out, _ = run(capsys, "platform", "outputs", "--stack", "dev", *offline)
    assert json.loads(out)["kubeconfig"] == "[secret]"
    assert run(capsys, "workload", "up", "--stack", "dev", "--file", EXAMPLE, *offline)[0] == 0
    code, _, err = run(capsys, "platform", "destroy", "--stack", "dev", *offline)
    assert code == 2 and "destroy them first" in err  # a user error: nothing was done
    assert (
        run(capsys, "workload", "destroy", "--stack", "dev", "--name", "gemma-3-1b", *offline)[0]
        == 0
    )
    # The registries and the KMS key ring are protected in every environment: the engine
    # refuses to delete them (exit 4, as a Pulumi failure) and the stack is left as it was.
    code, out, err = run(capsys, "platform", "destroy", "--stack", "dev", *offline)
    assert code == 4 and "cannot be deleted because it is protected" in err
    assert "gcp:kms/keyRing:KeyRing::base-secrets-ring" in err
    assert json.loads(run(capsys, "platform", "outputs", "--stack", "dev", *offline)[1])


def test_promote_shows_the_plan_diff_then_deploys(capsys: pytest.CaptureFixture[str]) -> None:
    offline = ("--runner", "offline")
    promote = ("promote", "--file", EXAMPLE, "--from", "dev", "--to", "prod", "--yes", *offline)
    platforms("dev", "prod")
    code, _, err = run(capsys, *promote)
    assert code == 2 and "not deployed in dev" in err
    assert run(capsys, "workload", "up", "--stack", "dev", "--file", EXAMPLE, *offline)[0] == 0
    code, out, _ = run(capsys, *promote)
    assert code == 0
    assert "--- organization/gke-inference-workloads/dev-gemma-3-1b (plan)" in out
    assert "+++ organization/gke-inference-workloads/prod-gemma-3-1b (plan)" in out
    assert '-    "environment": "dev",' in out and '+    "environment": "prod",' in out
    diff_end = out.index("Updating (organization/gke-inference-workloads/prod-gemma-3-1b)")
    assert out.index("+++") < diff_end  # the diff comes first, then the deployment
    code, out, _ = run(capsys, "workload", "list", "--stack", "prod", "--format", "json", *offline)
    assert json.loads(out) == ["gemma-3-1b"]


# --------------------------------------------------------------------------- missing CLI


def test_missing_cli_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")
    for argv in (
        ("workload", "up", "--stack", "dev", "--file", EXAMPLE),  # default runner: pulumi
        ("workload", "list", "--stack", "dev", "--runner", "pulumi"),
        ("platform", "preview", "--stack", "dev"),
        ("serve", "--runner", "pulumi"),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2, argv
        assert "The Pulumi CLI was not found (no `pulumi` on PATH)" in err
        assert "https://get.pulumi.com" in err and "--runner offline" in err


def test_missing_cli_with_a_configured_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GKE_INFERENCE_PULUMI_ROOT", str(tmp_path / "nowhere"))
    runner = PulumiRunner(AutomationSettings.from_env(REPO))
    with pytest.raises(PulumiCLIMissingError, match="nowhere/bin/pulumi"):
        runner.outputs(PlatformStack("dev"))


def test_sdk_file_not_found_maps_to_missing_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past our own check, the SDK raises FileNotFoundError without the CLI; it is mapped too."""
    monkeypatch.setenv("PATH", "")
    runner = PulumiRunner(AutomationSettings.from_env(REPO))
    monkeypatch.setattr(runner, "check_cli", lambda: None)
    with pytest.raises(PulumiCLIMissingError) as missing:
        runner.run("preview", WorkloadStack.of("dev", load_spec(EXAMPLE)))
    assert INSTALL_HINT in str(missing.value)
    with pytest.raises(PulumiCLIMissingError), runner._mapped_errors("dev"):
        auto.create_or_select_stack("dev", work_dir=str(REPO))


# --------------------------------------------------------------------------- Pulumi runner wiring


class FakeStack:
    """Stands in for auto.Stack: records what the runner asks of the engine."""

    def __init__(self, name: str, calls: list[tuple[str, Any]]) -> None:
        self.name = name
        self.calls = calls
        self.workspace = self

    def set_config(self, key: str, value: auto.ConfigValue, path: bool = False) -> None:
        self.calls.append(("set_config", (key, value.value)))

    def up(self, **kwargs: Any) -> auto.UpResult:
        self.calls.append(("up", kwargs))
        kwargs["on_output"]("Updating (fake)")
        summary = auto.UpdateSummary(
            "update", None, "", {}, {}, "succeeded", resource_changes={auto.OpType.CREATE: 3}
        )  # type: ignore[arg-type]
        outputs = {
            "url": auto.OutputValue("http://x", False),
            "token": auto.OutputValue("s3cr3t", True),
        }
        return auto.UpResult("", "", summary, outputs)

    def preview(self, **kwargs: Any) -> auto.PreviewResult:
        self.calls.append(("preview", kwargs))
        return auto.PreviewResult("", "", {auto.OpType.SAME: 2})

    def destroy(self, **kwargs: Any) -> auto.DestroyResult:
        self.calls.append(("destroy", kwargs))
        summary = auto.UpdateSummary("destroy", None, "", {}, {}, "succeeded", resource_changes={})  # type: ignore[arg-type]
        return auto.DestroyResult("", "", summary)

    def remove_stack(self, name: str) -> None:
        self.calls.append(("remove_stack", name))


@pytest.fixture
def wired(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[PulumiRunner, list[tuple[str, Any]]]:
    calls: list[tuple[str, Any]] = []
    settings = AutomationSettings(
        project_dir=REPO,
        backend_url=(tmp_path / "backend").as_uri(),
        state_dir=tmp_path / "state",
        policy_config=REPO / "policy/default-config.json",
    )
    runner = PulumiRunner(settings)
    runner._command = object()  # type: ignore[assignment]  # no CLI here

    def create_or_select_stack(stack_name: str, **kwargs: Any) -> FakeStack:
        calls.append(("create_or_select_stack", {"stack_name": stack_name, **kwargs}))
        return FakeStack(stack_name, calls)

    def select_stack(stack_name: str, **kwargs: Any) -> FakeStack:
        calls.append(("select_stack", {"stack_name": stack_name, **kwargs}))
        if "ghost" in stack_name:
            raise auto.StackNotFoundError(auto.CommandResult("", "no stack named 'x' found", 255))
        return FakeStack(stack_name, calls)

    monkeypatch.setattr(auto, "create_or_select_stack", create_or_select_stack)
    monkeypatch.setattr(auto, "select_stack", select_stack)
    return runner, calls


def test_pulumi_runner_workload_stacks(wired: tuple[PulumiRunner, list[tuple[str, Any]]]) -> None:
    runner, calls = wired
    lines: list[str] = []
    result = runner.run("up", WorkloadStack.of("dev", load_spec(EXAMPLE)), lines.append)
    create = calls[0][1]
    assert create["stack_name"] == "organization/gke-inference-workloads/dev-gemma-3-1b"
    assert create["project_name"] == "gke-inference-workloads"
    assert callable(create["program"])  # the inline workload program
    opts: auto.LocalWorkspaceOptions = create["opts"]
    assert opts.env_vars["PULUMI_BACKEND_URL"].startswith("file://")  # type: ignore[index]
    assert opts.secrets_provider == "passphrase"
    assert ("set_config", ("environment", "dev")) in calls
    up = next(kwargs for name, kwargs in calls if name == "up")
    assert up["policy_packs"] == [str(REPO / "policy")]
    assert up["policy_pack_configs"] == [str(REPO / "policy/default-config.json")]
    assert up["show_secrets"] is False
    assert lines == ["Updating (fake)"]
    assert result.outputs == {"url": "http://x", "token": "[secret]"}
    assert result.changes == {"create": 3}

    preview = runner.run("preview", WorkloadStack.of("dev", load_spec(EXAMPLE)))
    assert preview.changes == {"same": 2}
    assert next(k for n, k in calls if n == "preview")["policy_packs"] == [str(REPO / "policy")]

    runner.run("destroy", WorkloadStack("dev", "gemma-3-1b"))
    assert ("remove_stack", "organization/gke-inference-workloads/dev-gemma-3-1b") in calls
    with pytest.raises(NotDeployedError):
        runner.run("destroy", WorkloadStack("dev", "ghost"))


def test_pulumi_runner_platform_stacks(wired: tuple[PulumiRunner, list[tuple[str, Any]]]) -> None:
    runner, calls = wired
    runner.run("preview", PlatformStack("prod"))
    create = calls[0][1]
    assert create["stack_name"] == "organization/gke-inference/prod"
    assert create["work_dir"] == str(REPO)  # the repository's own program
    assert next(k for n, k in calls if n == "preview")["policy_packs"] == [str(REPO / "policy")]


def test_pulumi_runner_refuses_an_undeployable_spec_before_the_engine(
    wired: tuple[PulumiRunner, list[tuple[str, Any]]],
) -> None:
    runner, calls = wired
    operations: tuple[StackOperation, ...] = ("preview", "up")
    for operation in operations:
        with pytest.raises(SpecError, match=NOT_IN_DEV):
            runner.run(operation, WorkloadStack.of("dev", load_spec(LLAMA)))
    assert calls == []  # no stack was even selected


def test_engine_errors_are_mapped(wired: tuple[PulumiRunner, list[tuple[str, Any]]]) -> None:
    runner, _ = wired
    locked = auto.CommandResult("", "error: the stack is currently locked by 1 lock(s)", 255)
    with pytest.raises(StackBusyError, match="busy"), runner._mapped_errors("s"):
        raise auto.ConcurrentUpdateError(locked)
    policy_output = (
        "Policies:\n"
        "    ❌ gke-inference-baseline@v0.1.0 (local: policy)\n"
        "        - [mandatory]  k8s-image-tag-pinned  (kubernetes:apps/v1:Deployment: gemma)\n"
        "          Deployment gemma: container server image x:latest uses :latest\n"
    )
    with pytest.raises(PolicyViolationError) as rejected, runner._mapped_errors("s"):
        raise auto.CommandError(auto.CommandResult(policy_output, "", 255))
    assert rejected.value.violations[0]["policy"] == "k8s-image-tag-pinned"
    assert "uses :latest" in rejected.value.violations[0]["message"]
    assert policy_violations_from_output("no policy here") == []


def test_one_operation_per_stack_in_process(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow(operation: str, stack: str) -> None:
        entered.set()
        assert release.wait(30)

    settings = AutomationSettings(REPO, (tmp_path / "b").as_uri(), tmp_path / "s")
    runner = OfflineRunner(settings)
    runner.run("up", PlatformStack("dev"))  # workload stacks need their platform stacks
    runner.run("up", PlatformStack("prod"))
    runner.delay = slow
    spec = load_spec(EXAMPLE)
    worker = threading.Thread(target=runner.run, args=("up", WorkloadStack.of("dev", spec)))
    worker.start()
    assert entered.wait(30)
    with pytest.raises(StackBusyError, match="dev-gemma-3-1b is busy"):
        runner.run("preview", WorkloadStack.of("dev", spec))
    runner.delay = None
    runner.run("preview", WorkloadStack.of("prod", spec))  # another stack is free
    release.set()
    worker.join(30)
    assert runner.list_workloads("dev") == ["gemma-3-1b"]


def test_workload_names_respect_longer_environment_names(tmp_path: Path) -> None:
    for env in ("prod", "prod-eu"):
        (tmp_path / f"Pulumi.{env}.yaml").write_text("config: {}\n", encoding="utf-8")
    settings = AutomationSettings(tmp_path, (tmp_path / "b").as_uri(), tmp_path / "s")
    runner = OfflineRunner(settings)
    stacks = ["organization/gke-inference-workloads/prod-a", "prod-eu-b", "dev-c"]
    assert runner._workload_names("prod", stacks) == ["a"]
    assert runner._workload_names("prod-eu", stacks) == ["b"]


def test_settings_from_the_environment(tmp_path: Path) -> None:
    settings = AutomationSettings.from_env(
        REPO,
        {
            "XDG_STATE_HOME": str(tmp_path),
            "PULUMI_SECRETS_PROVIDER": "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
            "GKE_INFERENCE_ORGANIZATION": "acme",
        },
    )
    assert settings.backend_url == (tmp_path / "gke-inference" / "pulumi-backend").as_uri()
    assert settings.secrets_provider.startswith("gcpkms://")
    assert settings.organization == "acme"
    assert settings.environments() == ["dev", "prod"]
    gcs = AutomationSettings.from_env(REPO, {"PULUMI_BACKEND_URL": "gs://team-state"})
    assert gcs.backend_url == "gs://team-state"
    runner = PulumiRunner(settings)
    assert runner.stack_name(WorkloadStack("dev", "a")) == "acme/gke-inference-workloads/dev-a"


# --------------------------------------------------------------------------- serve


def test_serve_refuses_without_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GKE_INFERENCE_API_TOKEN", raising=False)
    code, _, err = run(capsys, "serve", "--runner", "offline")
    assert code == 2 and "GKE_INFERENCE_API_TOKEN" in err


def test_serve_end_to_end(tmp_path: Path) -> None:
    """The real entry point: `gke-inference serve` in its own process, stopped by PID."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "e2e-token-abcdef0123456789-0123456789"  # the 32 characters a token needs
    env = {
        **os.environ,
        "GKE_INFERENCE_API_TOKEN": token,
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
        "PYTHONUNBUFFERED": "1",
    }
    settings = AutomationSettings.from_env(project_dir=REPO, environ=env)
    deploy_platforms(settings, cli_state_file(settings), "dev")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gke_inference",
                "serve",
                "--runner",
                "offline",
                "--port",
                str(port),
            ]
            if (REPO / "gke_inference/__main__.py").exists()
            else [str(Path(sys.executable).parent / "gke-inference"), "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            spec = yaml.safe_load(Path(EXAMPLE).read_text(encoding="utf-8"))
            accepted = http.post("/v1/environments/dev/workloads", json=spec, headers=auth)
            assert accepted.status_code == 202
            operation = accepted.json()["operation"]
            while (doc := http.get(f"/v1/operations/{operation}", headers=auth).json())[
                "status"
            ] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline + 60
                time.sleep(0.1)
            assert doc["status"] == "succeeded", doc
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    output = log.read_text()
    assert "gke-inference service on http://127.0.0.1" in output
    assert token not in output
    assert (tmp_path / "xdg" / "gke-inference" / "service.db").exists()


# --------------------------------------------------------------------------- confirmation


def test_a_production_change_without_a_terminal_needs_yes(
    capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    offline = ("--runner", "offline")
    for argv in (
        ("platform", "up", "--stack", "prod"),
        ("platform", "destroy", "-s", "prod"),
        ("workload", "up", "--stack", "prod", "--file", EXAMPLE),
        ("workload", "destroy", "--stack", "prod", "--name", "gemma-3-1b"),
    ):
        code, out, err = run(capsys, *argv, *offline)
        assert code == 2, argv
        assert err.count("\n") == 1 and "pass --yes (-y) to approve" in err, err
        assert "prod is a production environment" in err
        assert out == ""  # refused before any stack operation (no preview either)
    assert not (state / "offline-state.json").exists()
    code, out, _ = run(capsys, "platform", "up", "--stack", "prod", "-y", *offline)
    assert code == 0 and "up of organization/gke-inference/prod: done" in out
    code, out, _ = run(capsys, "workload", "up", "-s", "prod", "-f", EXAMPLE, "--yes", *offline)
    assert code == 0 and "up of organization/gke-inference-workloads/prod-gemma-3-1b" in out


def test_dev_needs_no_confirmation(capsys: pytest.CaptureFixture[str]) -> None:
    offline = ("--runner", "offline")
    assert run(capsys, "platform", "up", "--stack", "dev", *offline)[0] == 0
    assert run(capsys, "workload", "up", "--stack", "dev", "--file", EXAMPLE, *offline)[0] == 0
    code, _, err = run(capsys, "workload", "destroy", "-s", "dev", "--name", "gemma-3-1b", *offline)
    assert code == 0 and err == ""


def test_promote_to_production_needs_yes_without_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    offline = ("--runner", "offline")
    platforms("dev", "prod")  # the target's platform is there: only the approval is missing
    assert run(capsys, "workload", "up", "--stack", "dev", "--file", EXAMPLE, *offline)[0] == 0
    promote = ("promote", "--file", EXAMPLE, "--from", "dev", "--to", "prod", *offline)
    code, out, err = run(capsys, *promote)
    assert code == 2 and "promote of gemma-3-1b to prod" in err and "--yes" in err
    assert "+++ organization/gke-inference-workloads/prod-gemma-3-1b (plan)" in out  # diff first
    assert "Updating" not in out
    assert run(capsys, "workload", "list", "--stack", "prod", *offline)[1].startswith(
        "no workloads"
    )


def test_production_is_what_the_settings_say(tmp_path: Path) -> None:
    from gke_inference.automation.cli import is_production

    runner = OfflineRunner(AutomationSettings.from_env())
    assert is_production(runner, "prod") is True
    assert is_production(runner, "dev") is False
    assert is_production(runner, "no-such-env") is False  # the operation reports it


def _on_a_terminal(
    argv: list[str], answers: list[str], env: dict[str, str], cwd: Path = REPO
) -> tuple[int, str, str]:
    """Run the CLI with stdin and stderr on a pseudo-terminal, answering each prompt."""
    import pty
    import select

    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gke_inference.cli", *argv],
        stdin=terminal,
        stderr=terminal,
        stdout=subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    os.close(terminal)
    seen = b""
    pending = list(answers)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if pending and seen.rstrip().endswith(b"yes/no:"):
                os.write(controller, pending.pop(0).encode() + b"\n")
        elif proc.poll() is not None:
            break
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    code = proc.wait(timeout=30)
    os.close(controller)
    return code, out, seen.decode(errors="replace")


def test_a_terminal_asks_before_a_production_update(state: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(state.parent)}
    argv = ["platform", "up", "--stack", "prod", "--runner", "offline"]
    project = pinned_project_copy(tmp_path / "project")
    code, out, terminal = _on_a_terminal([*argv, "--skip-preview"], ["no"], env, project)
    assert code == 2, terminal
    assert "Do you want to perform this update? yes/no:" in terminal
    assert "confirmation declined, not proceeding with the update" in terminal
    assert "Updating" not in out
    assert not (state / "offline-state.json").exists()
    code, out, terminal = _on_a_terminal(argv, ["maybe", "yes"], env, project)
    assert code == 0, terminal
    assert "please answer yes or no" in terminal
    assert "planning prod offline" in terminal  # progress: stderr is a terminal
    assert out.startswith("Previewing update (organization/gke-inference/prod)")  # then asked
    assert "up of organization/gke-inference/prod: done" in out
    assert (state / "offline-state.json").exists()
