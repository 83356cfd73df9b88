"""`gke-inference plan` runs the pack; `gke-inference policy check FILE` checks saved plans."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gke_inference.cli import main
from gke_inference.core.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]
CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"

_saved: dict[tuple[str, ...], dict[str, Any]] = {}


def saved_plan(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    if args not in _saved:
        code = main(["plan", *args, "--format", "json"])
        doc = json.loads(capsys.readouterr().out)
        assert code == ExitCode.OK, doc["policy"]
        _saved[args] = doc
    return json.loads(json.dumps(_saved[args]))


@pytest.mark.parametrize(
    "args",
    [
        ("--stack", "dev"),
        ("--stack", "prod"),
        ("--stack", "dev", "--config", "cluster.mode=autopilot"),
        ("--stack", "prod", "--config", "cluster.mode=autopilot"),
    ],
    ids=["dev", "prod", "dev-autopilot", "prod-autopilot"],
)
def test_shipped_stacks_have_no_mandatory_violations(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> None:
    doc = saved_plan(capsys, *args)
    policy = doc["policy"]
    assert policy["checked"] == len(doc["resources"]) - 1  # every resource but the stack itself
    assert [v for v in policy["violations"] if v["level"] == "mandatory"] == []
    for violation in policy["violations"]:
        assert set(violation) == {"policy", "level", "urn", "message"}
        assert violation["level"] == "advisory"


def test_text_plan_lists_violations_after_the_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack", "dev"]) == ExitCode.OK
    out = capsys.readouterr().out
    tree_end = out.index("Outputs:")
    summary = out.index("Policy gke-inference-baseline:")
    assert summary > tree_end
    assert "0 mandatory" in out[summary:]


def write(tmp_path: Path, doc: dict[str, Any], name: str = "plan.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


def edit(
    doc: dict[str, Any], type_: str, mutate: Callable[[dict[str, Any]], Any]
) -> dict[str, Any]:
    resource = next(r for r in doc["resources"] if r["type"] == type_)
    mutate(resource["inputs"])
    return doc


PUBLIC_EDITS: list[tuple[str, str, Callable[[dict[str, Any]], Any], str]] = [
    (
        "private-nodes-off",
        CLUSTER,
        lambda i: i["privateClusterConfig"].update(enablePrivateNodes=False),
        "gke-private-nodes-enabled",
    ),
    (
        "open-endpoint",
        CLUSTER,
        lambda i: (
            i["privateClusterConfig"].update(enablePrivateEndpoint=False),
            i["masterAuthorizedNetworksConfig"].update(cidrBlocks=[{"cidrBlock": "0.0.0.0/0"}]),
        ),
        "gke-control-plane-not-public",
    ),
    (
        "shielded-nodes-off",
        CLUSTER,
        lambda i: i.update(enableShieldedNodes=False),
        "gke-shielded-nodes-enabled",
    ),
    (
        "secure-boot-off",
        NODE_POOL,
        lambda i: i["nodeConfig"]["shieldedInstanceConfig"].update(enableSecureBoot=False),
        "gke-shielded-nodes-secure-boot",
    ),
]


@pytest.mark.parametrize(
    ("label", "type_", "mutate", "rule"), PUBLIC_EDITS, ids=[e[0] for e in PUBLIC_EDITS]
)
def test_policy_check_fails_an_edited_plan(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    label: str,
    type_: str,
    mutate: Callable[[dict[str, Any]], Any],
    rule: str,
) -> None:
    doc = saved_plan(capsys, "--stack", "prod")
    clean = write(tmp_path, doc, "clean.json")
    assert main(["policy", "check", clean]) == ExitCode.OK
    capsys.readouterr()

    bad = write(tmp_path, edit(doc, type_, mutate))
    assert main(["policy", "check", bad]) == ExitCode.VIOLATION
    out = capsys.readouterr().out
    assert f"[mandatory]  {rule}" in out

    assert main(["policy", "check", bad, "--format", "json"]) == ExitCode.VIOLATION
    report = json.loads(capsys.readouterr().out)["policy"]
    assert rule in {v["policy"] for v in report["violations"] if v["level"] == "mandatory"}


def test_policy_config_can_downgrade_a_rule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = edit(
        saved_plan(capsys, "--stack", "dev"), CLUSTER, lambda i: i.update(enableShieldedNodes=False)
    )
    plan = write(tmp_path, doc)
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"gke-shielded-nodes-enabled": {"enforcementLevel": "advisory"}}))
    assert main(["policy", "check", plan, "--policy-config", str(config)]) == ExitCode.OK
    assert "[advisory]  gke-shielded-nodes-enabled" in capsys.readouterr().out


def test_bad_inputs_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.json")
    assert main(["policy", "check", missing]) == ExitCode.USER_ERROR
    assert "cannot read" in capsys.readouterr().err

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["policy", "check", str(broken)]) == ExitCode.USER_ERROR
    assert "not JSON" in capsys.readouterr().err

    other = write(tmp_path, {"hello": "world"}, "other.json")
    assert main(["policy", "check", other]) == ExitCode.USER_ERROR
    assert "not a plan" in capsys.readouterr().err

    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"gke-nope": "advisory"}))
    assert main(["plan", "--stack", "dev", "--policy-config", str(config)]) == ExitCode.USER_ERROR
    assert "gke-nope: no policy of that name" in capsys.readouterr().err


def test_no_policy_skips_the_pack(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--stack", "dev", "--format", "json", "--no-policy"]) == ExitCode.OK
    assert "policy" not in json.loads(capsys.readouterr().out)


def test_module_entry_point_reads_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    doc = edit(
        saved_plan(capsys, "--stack", "prod"),
        CLUSTER,
        lambda i: i["privateClusterConfig"].update(enablePrivateNodes=False),
    )
    done = subprocess.run(
        [sys.executable, "-m", "gke_inference", "policy", "check", "-"],
        input=json.dumps(doc),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == ExitCode.VIOLATION, done.stderr
    assert "[mandatory]  gke-private-nodes-enabled" in done.stdout
