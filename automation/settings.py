"""Where stacks live and how they are reached: backend, secrets, organization, state.

Everything comes from the environment so the CLI, the service and CI agree:

- ``PULUMI_BACKEND_URL``: the state backend (``file://...``, ``gs://bucket``, Pulumi
  Cloud). Default: a local file backend under the user's state directory.
- ``PULUMI_SECRETS_PROVIDER``: ``passphrase`` (default; needs
  ``PULUMI_CONFIG_PASSPHRASE`` or ``PULUMI_CONFIG_PASSPHRASE_FILE``), ``gcpkms://...``.
- ``GKE_INFERENCE_ORGANIZATION``: organization of the platform StackReference
  (``<org>/gke-inference/<env>``); DIY backends require ``organization``.
- ``GKE_INFERENCE_POLICY_CONFIG``: a ``--policy-pack-config`` JSON file.
- ``GKE_INFERENCE_PULUMI_ROOT``: a Pulumi installation (``<root>/bin/pulumi``)
  instead of ``pulumi`` on PATH.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ORGANIZATION = "organization"
DEFAULT_SECRETS_PROVIDER = "passphrase"


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/gke-inference``, else ``~/.local/state/gke-inference``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).absolute() / "gke-inference"


@dataclass(frozen=True)
class AutomationSettings:
    project_dir: Path
    backend_url: str
    state_dir: Path
    secrets_provider: str = DEFAULT_SECRETS_PROVIDER
    organization: str = DEFAULT_ORGANIZATION
    policy_config: Path | None = None
    pulumi_root: str | None = None

    @property
    def policy_pack(self) -> Path:
        """The CrossGuard pack applied to every preview and update."""
        return self.project_dir / "policy"

    def environments(self) -> list[str]:
        """Environments are the platform stack files ``Pulumi.<env>.yaml``."""
        return sorted(
            p.name[len("Pulumi.") : -len(".yaml")] for p in self.project_dir.glob("Pulumi.*.yaml")
        )

    @classmethod
    def from_env(
        cls,
        project_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> AutomationSettings:
        from gke_inference.core.stack_config import find_project_dir

        env = os.environ if environ is None else environ
        root = (project_dir or find_project_dir()).resolve()
        state = state_dir(env)
        backend = env.get("PULUMI_BACKEND_URL") or (state / "pulumi-backend").as_uri()
        policy_config = env.get("GKE_INFERENCE_POLICY_CONFIG")
        return cls(
            project_dir=root,
            backend_url=backend,
            state_dir=state,
            secrets_provider=env.get("PULUMI_SECRETS_PROVIDER") or DEFAULT_SECRETS_PROVIDER,
            organization=env.get("GKE_INFERENCE_ORGANIZATION") or DEFAULT_ORGANIZATION,
            policy_config=Path(policy_config) if policy_config else None,
            pulumi_root=env.get("GKE_INFERENCE_PULUMI_ROOT") or None,
        )
