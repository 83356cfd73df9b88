"""Bad settings stop the run with one clear message, exit code 2, nothing registered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gke_inference.cli import main
from gke_inference.core.errors import SettingsError
from gke_inference.core.settings import parse_settings
from gke_inference.core.stack_config import parse_override
from gke_inference.offline.planning import plan_platform
from gke_inference.offline.recording import PlanMocks, RecordingMonitor

REPO = Path(__file__).resolve().parents[1]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        (["cluster.mode=hybrid"], "gke-inference:cluster.mode", "'standard' or 'autopilot'"),
        (
            [
                "cluster.authorizedNetworks[0].cidr=0.0.0.0/0",
                "cluster.authorizedNetworks[0].displayName=anyone",
            ],
            "gke-inference:cluster.authorizedNetworks[0].cidr",
            "0.0.0.0/0 would open the control plane",
        ),
        (
            [
                "cluster.authorizedNetworks[0].cidr=0.0.0.0/1",
                "cluster.authorizedNetworks[0].displayName=low-half",
                "cluster.authorizedNetworks[1].cidr=128.0.0.0/1",
                "cluster.authorizedNetworks[1].displayName=high-half",
            ],
            "gke-inference:cluster.authorizedNetworks",
            "0.0.0.0/1, 128.0.0.0/1 together open 3,702,258,432 public addresses, more than a "
            "/16 (65,536)",
        ),
        (
            ["network.podCidr=10.128.0.0/14"],
            "gke-inference:network.nodeCidr",
            "overlaps network.podCidr (10.128.0.0/14)",
        ),
        (["project="], "gke-inference:project", "must be a GCP project id"),
        (
            ["cluster.privateEndpoint=false"],
            "gke-inference:cluster.authorizedNetworks",
            "must list at least one CIDR",
        ),
        (
            ["cluster.sytemPool.machineType=x"],
            "gke-inference:cluster.sytemPool",
            "accepted: authorizedNetworks",
        ),
        (
            ["inference.nodePools[0].machineType=g2-standard-96"],
            "gke-inference:inference.nodePools[0].machineType",
            "'g2-standard-96' is not in inference.accelerators, so no compute class would use "
            "this pool; accepted: g2-standard-8, g2-standard-24",
        ),
        (
            ["inference.accelerators[4]=a3-highgpu-8g"],
            "gke-inference:inference.napMaxDevices.h100-80gb",
            "0 is below the 8 devices of one a3-highgpu-8g node",
        ),
    ],
)
def test_bad_setting_exits_2_naming_path_and_value(
    capsys: pytest.CaptureFixture[str], overrides: list[str], path: str, fragment: str
) -> None:
    args = ["--stack", "dev"]
    for item in overrides:
        args += ["--config", item]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert f"{path}:" in err
    assert fragment in err
    assert "Traceback" not in err


def test_all_problems_reported_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        capsys, "--stack", "dev",
        "-c", "cluster.mode=hybrid", "-c", "network.podCidr=10.128.0.0/14", "-c", "region=Mars",
    )  # fmt: skip
    assert code == 2
    assert "3 problems" in err or "4 problems" in err
    for path in ("cluster.mode", "network.nodeCidr", "region"):
        assert f"gke-inference:{path}:" in err


def test_missing_project_is_named_with_the_fix() -> None:
    with pytest.raises(SettingsError) as info:
        parse_settings({}, "dev")
    assert "gke-inference:project: is required but not set" in str(info.value)
    assert "pulumi config set gke-inference:project" in str(info.value)


def test_prod_refuses_to_drop_its_safeguards() -> None:
    with pytest.raises(SettingsError) as info:
        parse_settings(
            {
                "project": "acme-prod-1",
                "security": {"secretsEncryption": False, "binaryAuthorization": "disabled"},
                "cluster": {"deletionProtection": False},
            },
            "prod",
        )
    text = str(info.value)
    assert "3 problems" in text
    assert "security.secretsEncryption: must be true in a production stack" in text
    assert "cluster.deletionProtection: must be true" in text


def test_nothing_is_registered_when_settings_fail() -> None:
    monitor = RecordingMonitor(PlanMocks())
    with pytest.raises(SettingsError):
        plan_platform("dev", ["cluster.mode=hybrid"], project_dir=REPO, monitor=monitor)
    registered = {r.type for r in monitor.records.values()}
    assert registered <= {"pulumi:pulumi:Stack"}


def test_unknown_stack_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--stack", "staging")
    assert code == 2
    assert "accepted: dev, prod" in err


def test_console_script_has_no_traceback_for_user_errors() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gke_inference", "plan", "--stack", "dev", "-c", "cluster.mode=x"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "gke-inference:cluster.mode" in result.stderr
    assert "Traceback" not in result.stderr


def test_override_path_syntax() -> None:
    assert parse_override("cluster.mode=autopilot", "gke-inference") == (
        "gke-inference:cluster",
        ["mode"],
        "autopilot",
    )
    assert parse_override("cluster.authorizedNetworks[1].cidr=10.0.0.0/8", "gke-inference") == (
        "gke-inference:cluster",
        ["authorizedNetworks", 1, "cidr"],
        "10.0.0.0/8",
    )
    assert parse_override("gcp:project=x", "gke-inference") == ("gcp:project", [], "x")
    assert parse_override("security.kmsRotationDays=30", "gke-inference")[2] == 30
    with pytest.raises(SettingsError):
        parse_override("cluster.mode", "gke-inference")


@pytest.mark.parametrize("value", [True, 5, 3.5])
def test_cidrs_must_be_strings(value: object) -> None:
    # Found by the fuzz tests: ipaddress accepted True as 0.0.0.1/32.
    with pytest.raises(SettingsError) as info:
        parse_settings({"project": "acme-dev-1", "network": {"podCidr": value}}, "dev")
    assert "gke-inference:network.podCidr: must be an IPv4 CIDR string" in str(info.value)
