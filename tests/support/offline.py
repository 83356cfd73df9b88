"""Offline state for tests: platform stacks deployed the way `platform up` deploys them."""

from __future__ import annotations

from pathlib import Path

from gke_inference.automation.offline_runner import OfflineRunner
from gke_inference.automation.runner import PlatformStack
from gke_inference.automation.settings import AutomationSettings


def deploy_platforms(settings: AutomationSettings, state_file: Path | None, *envs: str) -> None:
    """``platform up`` of each environment into ``state_file`` (the CLI's is
    ``settings.state_dir / "offline-state.json"``): a workload stack needs its
    platform stack, as a StackReference does."""
    runner = OfflineRunner(settings, state_file=state_file)
    for env in envs:
        runner.run("up", PlatformStack(env))


def cli_state_file(settings: AutomationSettings) -> Path:
    return settings.state_dir / "offline-state.json"
