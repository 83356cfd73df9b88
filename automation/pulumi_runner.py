"""The runner over the Pulumi Automation API (``pulumi.automation``); the CLI must be installed.

Platform stacks (project ``gke-inference``, stack ``<env>``) run this
repository's own program through a LocalWorkspace; workload stacks (project
``gke-inference-workloads``, stack ``<env>-<workload>``) run the inline
:func:`~gke_inference.workloads.program.workload_program`. The policy pack is
passed to every preview and update.

Every operation goes through :meth:`PulumiRunner._execute`, which maps the
engine's errors once: its lock error to ``StackBusyError``, a missing stack to
``NotDeployedError``, a policy rejection to ``PolicyViolationError`` and a
missing CLI to ``PulumiCLIMissingError``, a StackReference to a platform
stack that does not exist to ``PlatformNotDeployedError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from gke_inference.automation.errors import (
    INSTALL_HINT,
    AutomationError,
    NotDeployedError,
    PlatformNotDeployedError,
    PolicyViolationError,
    PulumiCLIMissingError,
    StackBusyError,
)
from gke_inference.automation.runner import (
    Job,
    OnOutput,
    PlatformStack,
    RunnerBase,
    StackResult,
    Target,
    WorkloadStack,
)
from gke_inference.automation.settings import AutomationSettings
from gke_inference.core.contract import PLATFORM_PROJECT, SECRET_MASK, WORKLOADS_PROJECT
from gke_inference.workloads.kinds import Deployment

_MANDATORY = re.compile(r"\[mandatory\]\s+(?P<policy>[\w.-]+)\s*(?P<rest>.*)")


def policy_violations_from_output(text: str) -> list[dict[str, str]]:
    """Mandatory violations as the CLI prints them (``- [mandatory]  rule  (type: name)``)."""
    found: list[dict[str, str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = _MANDATORY.search(line)
        if not match:
            continue
        message = match.group("rest").strip()
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if following and not following.startswith("-") and "[" not in following[:2]:
            message = f"{message} {following}".strip()
        found.append(
            {"policy": match.group("policy"), "level": "mandatory", "urn": "", "message": message}
        )
    return found


def masked_outputs(outputs: auto.OutputMap) -> dict[str, Any]:
    """Automation API ``OutputMap`` -> plain values, secrets replaced by a mask."""
    return {key: SECRET_MASK if out.secret else out.value for key, out in outputs.items()}


def _changes(op_map: auto.OpMap | None) -> dict[str, int]:
    if not op_map:
        return {}
    return {kind.value: int(count) for kind, count in op_map.items()}


def _tail(text: str, lines: int = 15) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n" + "\n".join(kept) if kept else ""


def _noop_program() -> None:
    """Selecting a stack for outputs/destroy needs no program."""


class PulumiRunner(RunnerBase):
    """The Automation API over the Pulumi CLI (which must be installed)."""

    name = "pulumi"

    def __init__(self, settings: AutomationSettings) -> None:
        super().__init__(settings)
        self._command_lock = threading.Lock()
        self._command: auto.PulumiCommand | None = None

    # -- the CLI -------------------------------------------------------------

    def command_path(self) -> str:
        root = self.settings.pulumi_root
        return os.path.join(root, "bin", "pulumi") if root else "pulumi"

    def check_cli(self) -> None:
        """Fail early with :class:`PulumiCLIMissingError` when there is no CLI."""
        path = self.command_path()
        if shutil.which(path) is None:
            raise PulumiCLIMissingError(path if os.sep in path else f"no `{path}` on PATH")

    def _pulumi_command(self) -> auto.PulumiCommand:
        with self._command_lock:
            if self._command is None:
                self.check_cli()
                try:
                    self._command = auto.PulumiCommand(root=self.settings.pulumi_root)
                except FileNotFoundError:
                    raise PulumiCLIMissingError(self.command_path()) from None
                except subprocess.CalledProcessError as exc:
                    raise AutomationError(
                        f"`{self.command_path()} version` failed (exit {exc.returncode}); "
                        f"reinstall the CLI. {INSTALL_HINT}"
                    ) from None
            return self._command

    @contextlib.contextmanager
    def _mapped_errors(self, stack: str, target: Target | None = None) -> Iterator[None]:
        """The engine's errors as :mod:`~gke_inference.automation.errors` (the one place).

        A workload stack whose ``StackReference`` finds no platform stack
        (``unknown stack "<org>/gke-inference/<env>"``) is a
        :class:`PlatformNotDeployedError`, as the offline runner reports it.
        """
        try:
            yield
        except auto.ConcurrentUpdateError as exc:
            raise StackBusyError(stack, "the backend holds its lock") from exc
        except auto.StackNotFoundError:
            raise NotDeployedError(stack) from None
        except auto.CommandError as exc:
            text = str(exc)
            if isinstance(target, WorkloadStack):
                platform = self.stack_name(PlatformStack(target.environment))
                if f'unknown stack "{platform}"' in text:
                    raise PlatformNotDeployedError(stack, platform, target.environment) from None
            violations = policy_violations_from_output(text)
            if violations:
                raise PolicyViolationError(stack, violations) from None
            raise AutomationError(f"pulumi failed on {stack}:{_tail(text)}") from None
        except FileNotFoundError:
            raise PulumiCLIMissingError(self.command_path()) from None

    # -- workspaces ------------------------------------------------------------

    def _env_vars(self) -> dict[str, str]:
        backend = self.settings.backend_url
        if backend.startswith("file://"):
            Path(backend[len("file://") :]).mkdir(parents=True, exist_ok=True)
        return {
            "PULUMI_BACKEND_URL": backend,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_ORGANIZATION": self.settings.organization,
        }

    def _workspace_dir(self) -> Path:
        """A stable work dir for the inline project, so stack config files persist."""
        path = self.settings.state_dir / "workspaces" / WORKLOADS_PROJECT
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _workspace(self, project: str) -> dict[str, Any]:
        """LocalWorkspace settings (all but the work dir) for one of the two projects."""
        project_settings = None  # the platform project: Pulumi.yaml of the repository
        if project == WORKLOADS_PROJECT:
            project_settings = auto.ProjectSettings(
                name=WORKLOADS_PROJECT,
                runtime="python",
                description="GKE inference model deployments, one stack per <env>-<workload>",
            )
        return {
            "env_vars": self._env_vars(),
            "secrets_provider": self.settings.secrets_provider,
            "project_settings": project_settings,
            "pulumi_command": self._pulumi_command(),
        }

    def _policy_args(self) -> dict[str, Any]:
        config = self.settings.policy_config
        return {
            "policy_packs": [str(self.settings.policy_pack)],
            "policy_pack_configs": [str(config)] if config else None,
        }

    def _stack(self, target: Target, deployment: Deployment | None) -> auto.Stack:
        """The target's stack: the platform program, the workload program, or (without a
        deployment) an existing workload stack."""
        name = self.stack_name(target)
        if isinstance(target, PlatformStack):
            return auto.create_or_select_stack(
                stack_name=name,
                work_dir=str(self.settings.project_dir),
                opts=auto.LocalWorkspaceOptions(**self._workspace(PLATFORM_PROJECT)),
            )
        opts = auto.LocalWorkspaceOptions(
            work_dir=str(self._workspace_dir()), **self._workspace(WORKLOADS_PROJECT)
        )
        if deployment is None:
            return auto.select_stack(
                stack_name=name, project_name=WORKLOADS_PROJECT, program=_noop_program, opts=opts
            )
        # Imported when a workload stack runs: it loads the Kubernetes SDK.
        from gke_inference.workloads.program import workload_program

        env = target.environment
        stack = auto.create_or_select_stack(
            stack_name=name,
            project_name=WORKLOADS_PROJECT,
            program=workload_program(deployment, env, self.settings.organization),
            opts=opts,
        )
        stack.set_config("environment", auto.ConfigValue(env))
        spec = deployment.spec.model_dump(mode="json", by_alias=True)
        stack.set_config("spec", auto.ConfigValue(json.dumps(spec)))
        return stack

    # -- operations ----------------------------------------------------------

    def _execute(self, job: Job, on_output: OnOutput) -> StackResult:
        with self._mapped_errors(job.stack, job.target):
            stack = self._stack(job.target, job.deployment)
            return self._operate(stack, job, on_output)

    def _operate(self, stack: auto.Stack, job: Job, on_output: OnOutput) -> StackResult:
        name, operation = job.stack, job.operation
        if operation == "preview":
            preview = stack.preview(on_output=on_output, color="never", **self._policy_args())
            return StackResult(name, operation, changes=_changes(preview.change_summary))
        if operation == "up":
            up = stack.up(
                on_output=on_output, color="never", show_secrets=False, **self._policy_args()
            )
            return StackResult(
                name,
                operation,
                outputs=masked_outputs(up.outputs),
                changes=_changes(up.summary.resource_changes),
            )
        if operation == "refresh":
            refresh = stack.refresh(on_output=on_output, color="never", show_secrets=False)
            return StackResult(
                name,
                operation,
                outputs=masked_outputs(stack.outputs()),
                changes=_changes(refresh.summary.resource_changes),
            )
        destroy = stack.destroy(on_output=on_output, color="never", show_secrets=False)
        if isinstance(job.target, WorkloadStack):
            stack.workspace.remove_stack(name)
        return StackResult(name, operation, changes=_changes(destroy.summary.resource_changes))

    def outputs(self, target: Target) -> dict[str, Any]:
        self._check_env(target.environment)
        name = self.stack_name(target)
        with self._mapped_errors(name):
            return masked_outputs(self._stack(target, None).outputs())

    def list_workloads(self, env: str) -> list[str]:
        self._check_env(env)
        with self._mapped_errors(f"{WORKLOADS_PROJECT}/*"):
            workspace = auto.LocalWorkspace(
                work_dir=str(self._workspace_dir()), **self._workspace(WORKLOADS_PROJECT)
            )
            return self._workload_names(env, [s.name for s in workspace.list_stacks()])
