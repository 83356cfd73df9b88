"""The runbooks' steps that can run offline, run through the CLI as the runbooks write them.

``docs/teardown.md``: workloads first (the platform destroy is refused while
any is deployed), then the platform; the production retirement takes the
reviewed config change *and* the retirement policy config. Each step goes
through ``gke_inference.cli.main`` with ``--runner offline`` and a state dir
of its own; the config change is read from the runbook's own ``pulumi config
set`` lines, so the test breaks when the runbook and the code part ways.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.automation.deployability import environment_settings
from gke_inference.automation.settings import DEFAULT_ORGANIZATION
from gke_inference.cli import main
from gke_inference.core.contract import PLATFORM_PROJECT, qualified_workload_stack
from gke_inference.core.stack_config import parse_override
from gke_inference.offline.recording import Plan
from tests.support.examples import EXAMPLE_STACKS

REPO = Path(__file__).resolve().parents[1]
TEARDOWN = REPO / "docs" / "teardown.md"
DEFAULT_CONFIG = REPO / "policy" / "default-config.json"
RETIRE_CONFIG = REPO / "policy" / "retire-config.json"
EXAMPLE = str(REPO / "workloads" / "examples" / "gemma-3-1b-l4.yaml")
OFFLINE = ("--runner", "offline")
#: prod asks for confirmation unless stdin is a terminal and the user says yes
PROD = ("--yes", *OFFLINE)
#: Types the retirement change leaves protected: runbook step 4 unprotects them.
ALWAYS_PROTECTED = (
    "gcp:kms/keyRing:KeyRing",
    "gcp:kms/cryptoKey:CryptoKey",
    "gcp:artifactregistry/repository:Repository",
)
#: The pack's rules that apply to production stacks only (they read prodStacks).
PRODUCTION_RULES = (
    "gke-secrets-encryption-kms-enabled",
    "gke-deletion-protection-enabled",
    "gke-binary-authorization-enabled",
)


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.delenv("GKE_INFERENCE_POLICY_CONFIG", raising=False)
    monkeypatch.chdir(REPO)
    return tmp_path / "xdg" / "gke-inference"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def project_copy(tmp_path: Path) -> Path:
    """The platform project (stack files and program) in a folder a test may change."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", "__main__.py"):
        shutil.copy(REPO / name, root / name)
    return root


def runbook_config_changes(stack: str) -> list[str]:
    """``pulumi config set -s <stack> [--path] KEY VALUE`` lines of the teardown runbook,
    as ``KEY=VALUE`` overrides."""
    pattern = re.compile(
        rf"^\s*pulumi config set -s {stack} (?:--path )?(?P<key>\S+) (?P<value>\S+)\s*$",
        re.MULTILINE,
    )
    return [f"{m['key']}={m['value']}" for m in pattern.finditer(TEARDOWN.read_text())]


def apply_to_stack_file(path: Path, overrides: list[str]) -> None:
    """What ``pulumi config set [--path]`` does to the stack file."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    config: dict[str, Any] = document.setdefault("config", {})
    for text in overrides:
        key, tokens, value = parse_override(text, PLATFORM_PROJECT)
        if not tokens:
            config[key] = value
            continue
        node = config.setdefault(key, {})
        for token in tokens[:-1]:
            node = node.setdefault(token, {})
        node[tokens[-1]] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def assert_destroyed_or_refused_for_always_protected(code: int, out: str, err: str) -> None:
    """A platform destroy succeeds, or (a runner that models ``protect``) is refused only
    for what the runbook releases with ``pulumi state unprotect``, which has no offline
    counterpart: never for the cluster or the model bucket."""
    if code == 0:
        return
    refused = re.findall(r'resource "(urn:pulumi:[^"]+)"\s+cannot be deleted', out + err)
    assert refused, out + err
    assert {urn.split("::")[2].split("$")[-1] for urn in refused} <= set(ALWAYS_PROTECTED)


# --------------------------------------------------------------------------- teardown


def test_teardown_workloads_first_then_platform(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "platform", "up", "--stack", "dev", *OFFLINE)[0] == 0
    assert run(capsys, "workload", "up", "--stack", "dev", "--file", EXAMPLE, *OFFLINE)[0] == 0

    # 1. list, and the platform destroy is refused while a workload is deployed
    code, out, _ = run(capsys, "workload", "list", "--stack", "dev", *OFFLINE)
    assert code == 0 and "gemma-3-1b" in out
    # (exit 4 today, AutomationError; nothing is destroyed either way)
    code, out, err = run(capsys, "platform", "destroy", "--stack", "dev", *OFFLINE)
    assert code == 2  # a user error, refused before any operation
    assert "still has workloads deployed (gemma-3-1b)" in out + err
    assert run(capsys, "platform", "outputs", "--stack", "dev", *OFFLINE)[0] == 0

    # destroy each workload by name, as the runbook does
    assert (
        run(capsys, "workload", "destroy", "--stack", "dev", "--name", "gemma-3-1b", *OFFLINE)[0]
        == 0
    )
    code, out, _ = run(capsys, "workload", "list", "--stack", "dev", *OFFLINE)
    assert code == 0 and out.startswith("no workloads")

    # 2. then the platform: refused only for what `pulumi state unprotect` must release
    assert_destroyed_or_refused_for_always_protected(
        *run(capsys, "platform", "destroy", "--stack", "dev", *OFFLINE)
    )


def test_runbook_retirement_change_is_what_the_settings_need() -> None:
    changes = runbook_config_changes("prod")
    assert changes == ["production=false", "security.binaryAuthorization=enforced"]


def test_prod_retirement_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = project_copy(tmp_path)
    monkeypatch.chdir(project)
    assert run(capsys, "platform", "up", "--stack", "prod", *PROD)[0] == 0
    assert run(capsys, "workload", "up", "--stack", "prod", "--file", EXAMPLE, *PROD)[0] == 0

    # 1. the reviewed config change
    apply_to_stack_file(project / "Pulumi.prod.yaml", runbook_config_changes("prod"))
    settings = environment_settings(project, "prod")
    assert not settings.is_production and settings.binary_authorization_enforced

    # 2. the shipped policy config refuses it with exactly one violation; the
    # retirement config admits it
    code, out, _ = run(capsys, "plan", "--stack", "prod", "--format", "json")
    assert code == 1
    violations = json.loads(out)["policy"]["violations"]
    assert [v["policy"] for v in violations] == ["gke-deletion-protection-enabled"]
    code, _, _ = run(capsys, "plan", "--stack", "prod", "--policy-config", str(RETIRE_CONFIG))
    assert code == 0

    # 3. apply it: refused without the retirement config, admitted with it
    code, out, err = run(capsys, "platform", "up", "--stack", "prod", *PROD)
    assert code == 1 and "gke-deletion-protection-enabled" in out + err
    monkeypatch.setenv("GKE_INFERENCE_POLICY_CONFIG", str(RETIRE_CONFIG))
    assert run(capsys, "platform", "up", "--stack", "prod", *PROD)[0] == 0

    # 5. workloads, then the platform
    assert run(capsys, "platform", "destroy", "--stack", "prod", *PROD)[0] != 0
    assert (
        run(capsys, "workload", "destroy", "--stack", "prod", "--name", "gemma-3-1b", *PROD)[0] == 0
    )
    # the retirement change released the cluster and the model bucket
    assert_destroyed_or_refused_for_always_protected(
        *run(capsys, "platform", "destroy", "--stack", "prod", *PROD)
    )


# --------------------------------------------------------------------------- policy config


def test_retire_config_is_the_default_with_deletion_protection_disabled() -> None:
    default = json.loads(DEFAULT_CONFIG.read_text())
    retire = json.loads(RETIRE_CONFIG.read_text())
    assert retire.pop("gke-deletion-protection-enabled") == {
        **default.pop("gke-deletion-protection-enabled"),
        "enforcementLevel": "disabled",
    }
    assert retire == default


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_production_stacks_are_the_packs_prod_stacks(stack: str) -> None:
    """A stack the settings make production is one the pack checks as production, and
    the other way round (the pack keys on the stack name, see docs/teardown.md)."""
    config = json.loads(DEFAULT_CONFIG.read_text())
    production = environment_settings(REPO, stack).is_production
    for rule in PRODUCTION_RULES:
        assert (stack in config[rule]["prodStacks"]) is production, rule


# --------------------------------------------------------------------------- other runbooks


def test_first_deploy_roles_cover_every_cloud_resource_type(plan_of: Callable[..., Plan]) -> None:
    """Each ``gcp:`` type the platform plans is in the roles table of docs/first-deploy.md."""
    text = (REPO / "docs" / "first-deploy.md").read_text(encoding="utf-8")
    table = text[text.index("| resources in the plan | role |") :].split("\n\n", 1)[0]
    named = {part for cell in re.findall(r"`([^`]+)`", table) for part in re.split(r"[/:]", cell)}
    for stack in ("dev", "prod"):
        for resource in plan_of(stack).resources:
            if resource.type.startswith("gcp:"):
                kind = resource.type.split(":")[1].split("/")[1]
                assert kind in named, f"{resource.type} has no role in docs/first-deploy.md"


def test_ci_loop_plans_each_example_where_it_can_be_deployed() -> None:
    text = (REPO / "docs" / "policy-checks-in-ci.md").read_text(encoding="utf-8")
    heredoc = text[text.index("<<'EXAMPLES'\n") : text.index("\nEXAMPLES\n")].splitlines()[1:]
    assert {spec: stack for stack, spec in (line.split() for line in heredoc)} == EXAMPLE_STACKS
    for doc in (REPO / "docs").glob("*.md"):
        assert "|| true" not in doc.read_text(encoding="utf-8"), doc.name


def test_rollback_names_the_workloads_project() -> None:
    text = (REPO / "docs" / "rollback-a-workload.md").read_text(encoding="utf-8")
    stack = re.search(r"^\s*STACK=(\S+)$", text, re.MULTILINE)
    assert stack is not None
    expected = qualified_workload_stack(DEFAULT_ORGANIZATION, "prod", "NAME")
    assert stack[1] == expected.replace("NAME", "<name>")
    assert 'pulumi stack history -s "$STACK"' in text
