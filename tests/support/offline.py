"""Offline state for tests: platform stacks deployed the way `platform up` deploys them."""

from __future__ import annotations

from pathlib import Path

from gke_inference.automation.offline_runner import OfflineRunner
from gke_inference.automation.runner import PlatformStack
from gke_inference.automation.settings import AutomationSettings

REPO = Path(__file__).resolve().parents[2]


def offline_settings(tmp_path: Path) -> AutomationSettings:
    """Settings of a test's own file backend and state directory under ``tmp_path``."""
    return AutomationSettings(
        project_dir=REPO,
        backend_url=(tmp_path / "backend").as_uri(),
        state_dir=tmp_path / "state",
    )


def deploy_platforms(settings: AutomationSettings, state_file: Path | None, *envs: str) -> None:
    """``platform up`` of each environment into ``state_file`` (the CLI's is
    ``settings.state_dir / "offline-state.json"``): a workload stack needs its
    platform stack, as a StackReference does."""
    runner = OfflineRunner(settings, state_file=state_file)
    for env in envs:
        runner.run("up", PlatformStack(env))


def cli_state_file(settings: AutomationSettings) -> Path:
    return settings.state_dir / "offline-state.json"
