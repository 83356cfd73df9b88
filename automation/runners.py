"""Run platform and workload stacks: through the Pulumi Automation API, or offline.

Both runners have one interface (:class:`Runner`), so the CLI and the service do
not care which one they drive:

- :class:`PulumiRunner` uses ``pulumi.automation``. Platform stacks
  (project ``gke-inference``, stack ``<env>``) run this repository's own
  program through a LocalWorkspace; workload stacks (project
  ``gke-inference-workloads``, stack ``<env>-<workload>``) run the inline
  :func:`~gke_inference.workloads.program.workload_program`. The policy pack is
  passed to every preview and update.
- :class:`OfflineRunner` runs the same programs under the mock runtime (the
  offline plan), checks the same policy pack in-process and records what an
  update would leave behind in a small JSON state file, so list/get/destroy
  behave as they would against a backend. It needs neither the CLI nor a cloud.

One operation per stack at a time: a second one in this process fails at once
with :class:`StackBusyError`, and so does the engine's own lock error
(``ConcurrentUpdateError``) from another process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pulumi import automation as auto

from gke_inference.automation.settings import AutomationSettings
from gke_inference.core.contract import (
    PLATFORM_PROJECT,
    WORKLOADS_PROJECT,
    platform_stack_name,
    workload_stack_name,
)
from gke_inference.workloads.spec import WorkloadSpec

SECRET_MASK = "[secret]"
OnOutput = Callable[[str], None]

INSTALL_HINT = (
    "Install it with `curl -fsSL https://get.pulumi.com | sh` (or `brew install pulumi/tap/pulumi`, "
    "see https://www.pulumi.com/docs/iac/download-install/) and make sure `pulumi` is on PATH "
    "(or set GKE_INFERENCE_PULUMI_ROOT to the installation), or use --runner offline to plan "
    "without it."
)


# --------------------------------------------------------------------------- errors


class AutomationError(Exception):
    """An operation could not run or failed; the message is meant for a person."""


class UnknownEnvironmentError(AutomationError):
    def __init__(self, environment: str, known: list[str]) -> None:
        self.environment = environment
        super().__init__(
            f"unknown environment {environment!r}; known: {', '.join(known) or 'none'} "
            "(one per Pulumi.<env>.yaml)"
        )


class StackBusyError(AutomationError):
    def __init__(self, stack: str, detail: str = "") -> None:
        self.stack = stack
        more = f" ({detail})" if detail else ""
        super().__init__(
            f"stack {stack} is busy: another operation is running on it{more}; retry when it ends"
        )


class NotDeployedError(AutomationError):
    def __init__(self, stack: str) -> None:
        self.stack = stack
        super().__init__(f"stack {stack} does not exist (nothing deployed)")


class PulumiCLIMissingError(AutomationError):
    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(f"The Pulumi CLI was not found ({command}). {INSTALL_HINT}")


class PolicyViolationError(AutomationError):
    """The policy pack rejected the stack; nothing was deployed."""

    def __init__(self, stack: str, violations: list[dict[str, str]]) -> None:
        self.stack = stack
        self.violations = violations
        lines = [f"  - [{v['level']}] {v['policy']}: {v['message']}" for v in violations]
        super().__init__(
            f"policy pack rejected {stack}: {len(violations)} mandatory violation(s)\n"
            + "\n".join(lines)
        )


# --------------------------------------------------------------------------- results


@dataclass
class StackResult:
    """What one operation did: changes by kind, stack outputs (secrets masked), policy."""

    stack: str
    operation: str
    outputs: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    policy: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "stack": self.stack,
            "operation": self.operation,
            "changes": self.changes,
            "outputs": self.outputs,
        }
        if self.policy is not None:
            doc["policy"] = self.policy
        return doc


class Runner(Protocol):
    """Stack operations for the CLI and the service."""

    name: str
    settings: AutomationSettings

    def environments(self) -> list[str]: ...

    def platform_preview(self, env: str, on_output: OnOutput | None = None) -> StackResult: ...

    def platform_up(self, env: str, on_output: OnOutput | None = None) -> StackResult: ...

    def platform_refresh(self, env: str, on_output: OnOutput | None = None) -> StackResult: ...

    def platform_destroy(self, env: str, on_output: OnOutput | None = None) -> StackResult: ...

    def platform_outputs(self, env: str) -> dict[str, Any]: ...

    def workload_preview(
        self, env: str, spec: WorkloadSpec, on_output: OnOutput | None = None
    ) -> StackResult: ...

    def workload_up(
        self, env: str, spec: WorkloadSpec, on_output: OnOutput | None = None
    ) -> StackResult: ...

    def workload_destroy(
        self, env: str, name: str, on_output: OnOutput | None = None
    ) -> StackResult: ...

    def workload_outputs(self, env: str, name: str) -> dict[str, Any]: ...

    def list_workloads(self, env: str) -> list[str]: ...


def _quiet(_: str) -> None:
    return None


class _StackLocks:
    """One operation per stack in this process; a second one fails instead of queueing."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: set[str] = set()

    @contextlib.contextmanager
    def hold(self, stack: str) -> Iterator[None]:
        with self._guard:
            if stack in self._held:
                raise StackBusyError(stack, "in this process")
            self._held.add(stack)
        try:
            yield
        finally:
            with self._guard:
                self._held.discard(stack)


class _RunnerBase:
    name = "base"

    def __init__(self, settings: AutomationSettings) -> None:
        self.settings = settings
        self._locks = _StackLocks()

    def environments(self) -> list[str]:
        return self.settings.environments()

    def _check_env(self, env: str) -> None:
        known = self.environments()
        if env not in known:
            raise UnknownEnvironmentError(env, known)

    def platform_stack(self, env: str) -> str:
        return platform_stack_name(self.settings.organization, env)

    def workload_stack(self, env: str, name: str) -> str:
        return f"{self.settings.organization}/{WORKLOADS_PROJECT}/{workload_stack_name(env, name)}"

    def _workload_names(self, env: str, stacks: list[str]) -> list[str]:
        """Workload names of ``env`` among short stack names ``<env>-<workload>``.

        ``prod-eu-x`` belongs to environment ``prod-eu``, not to ``prod``.
        """
        longer = [e for e in self.environments() if e != env and e.startswith(f"{env}-")]
        names = []
        for stack in stacks:
            short = stack.rsplit("/", 1)[-1]
            if not short.startswith(f"{env}-"):
                continue
            if any(short.startswith(f"{other}-") for other in longer):
                continue
            names.append(short[len(env) + 1 :])
        return sorted(names)

    def _refuse_platform_destroy_with_workloads(self, env: str) -> None:
        deployed = self.list_workloads(env)
        if deployed:
            raise AutomationError(
                f"environment {env} still has workloads deployed ({', '.join(deployed)}); "
                "destroy them first: gke-inference workload destroy --stack "
                f"{env} --name NAME"
            )

    def list_workloads(self, env: str) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError


# --------------------------------------------------------------------------- Pulumi CLI


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
    plain: dict[str, Any] = {}
    for key, output in outputs.items():
        plain[key] = SECRET_MASK if output.secret else output.value
    return plain


def _changes(op_map: auto.OpMap | None) -> dict[str, int]:
    if not op_map:
        return {}
    return {kind.value: int(count) for kind, count in op_map.items()}


class PulumiRunner(_RunnerBase):
    """The Automation API over the Pulumi CLI (which must be installed)."""

    name = "pulumi"

    def __init__(self, settings: AutomationSettings) -> None:
        super().__init__(settings)
        self._command_lock = threading.Lock()
        self._command: auto.PulumiCommand | None = None

    # -- plumbing ----------------------------------------------------------

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

    def _env_vars(self) -> dict[str, str]:
        backend = self.settings.backend_url
        if backend.startswith("file://"):
            Path(backend[len("file://") :]).mkdir(parents=True, exist_ok=True)
        return {
            "PULUMI_BACKEND_URL": backend,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_ORGANIZATION": self.settings.organization,
        }

    def _options(self, *, project: str, work_dir: Path | None = None) -> auto.LocalWorkspaceOptions:
        project_settings = None
        if project == WORKLOADS_PROJECT:
            project_settings = auto.ProjectSettings(
                name=WORKLOADS_PROJECT,
                runtime="python",
                description="GKE inference model deployments, one stack per <env>-<workload>",
            )
        return auto.LocalWorkspaceOptions(
            work_dir=str(work_dir) if work_dir else None,
            env_vars=self._env_vars(),
            secrets_provider=self.settings.secrets_provider,
            project_settings=project_settings,
            pulumi_command=self._pulumi_command(),
        )

    def _policy_args(self) -> dict[str, Any]:
        config = self.settings.policy_config
        return {
            "policy_packs": [str(self.settings.policy_pack)],
            "policy_pack_configs": [str(config)] if config else None,
        }

    @contextlib.contextmanager
    def _mapped_errors(self, stack: str) -> Iterator[None]:
        try:
            yield
        except auto.ConcurrentUpdateError as exc:
            raise StackBusyError(stack, "the backend holds its lock") from exc
        except auto.StackNotFoundError:
            raise NotDeployedError(stack) from None
        except auto.CommandError as exc:
            text = str(exc)
            violations = policy_violations_from_output(text)
            if violations:
                raise PolicyViolationError(stack, violations) from None
            raise AutomationError(f"pulumi failed on {stack}:{_tail(text)}") from None
        except FileNotFoundError:
            raise PulumiCLIMissingError(self.command_path()) from None

    def _workspace_dir(self) -> Path:
        """A stable work dir for the inline project, so stack config files persist."""
        path = self.settings.state_dir / "workspaces" / WORKLOADS_PROJECT
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _platform(self, env: str) -> auto.Stack:
        self._check_env(env)
        return auto.create_or_select_stack(
            stack_name=self.platform_stack(env),
            work_dir=str(self.settings.project_dir),
            opts=self._options(project=PLATFORM_PROJECT),
        )

    def _workload(self, env: str, spec: WorkloadSpec) -> auto.Stack:
        from gke_inference.workloads.kinds import deployment_for
        from gke_inference.workloads.program import workload_program

        self._check_env(env)
        stack = auto.create_or_select_stack(
            stack_name=self.workload_stack(env, spec.name),
            project_name=WORKLOADS_PROJECT,
            program=workload_program(deployment_for(spec), env, self.settings.organization),
            opts=self._options(project=WORKLOADS_PROJECT, work_dir=self._workspace_dir()),
        )
        stack.set_config("environment", auto.ConfigValue(env))
        stack.set_config(
            "spec", auto.ConfigValue(json.dumps(spec.model_dump(mode="json", by_alias=True)))
        )
        return stack

    def _existing_workload(self, env: str, name: str) -> auto.Stack:
        self._check_env(env)
        return auto.select_stack(
            stack_name=self.workload_stack(env, name),
            project_name=WORKLOADS_PROJECT,
            program=_noop_program,
            opts=self._options(project=WORKLOADS_PROJECT, work_dir=self._workspace_dir()),
        )

    # -- platform ----------------------------------------------------------

    def platform_preview(self, env: str, on_output: OnOutput | None = None) -> StackResult:
        name = self.platform_stack(env)
        with self._locks.hold(name), self._mapped_errors(name):
            result = self._platform(env).preview(
                on_output=on_output or _quiet, color="never", **self._policy_args()
            )
            return StackResult(name, "preview", changes=_changes(result.change_summary))

    def platform_up(self, env: str, on_output: OnOutput | None = None) -> StackResult:
        name = self.platform_stack(env)
        with self._locks.hold(name), self._mapped_errors(name):
            result = self._platform(env).up(
                on_output=on_output or _quiet,
                color="never",
                show_secrets=False,
                **self._policy_args(),
            )
            return StackResult(
                name,
                "up",
                outputs=masked_outputs(result.outputs),
                changes=_changes(result.summary.resource_changes),
            )

    def platform_refresh(self, env: str, on_output: OnOutput | None = None) -> StackResult:
        name = self.platform_stack(env)
        with self._locks.hold(name), self._mapped_errors(name):
            stack = self._platform(env)
            result = stack.refresh(on_output=on_output or _quiet, color="never", show_secrets=False)
            return StackResult(
                name,
                "refresh",
                outputs=masked_outputs(stack.outputs()),
                changes=_changes(result.summary.resource_changes),
            )

    def platform_destroy(self, env: str, on_output: OnOutput | None = None) -> StackResult:
        name = self.platform_stack(env)
        self._refuse_platform_destroy_with_workloads(env)
        with self._locks.hold(name), self._mapped_errors(name):
            result = self._platform(env).destroy(
                on_output=on_output or _quiet, color="never", show_secrets=False
            )
            return StackResult(name, "destroy", changes=_changes(result.summary.resource_changes))

    def platform_outputs(self, env: str) -> dict[str, Any]:
        name = self.platform_stack(env)
        with self._mapped_errors(name):
            return masked_outputs(self._platform(env).outputs())

    # -- workloads ---------------------------------------------------------

    def workload_preview(
        self, env: str, spec: WorkloadSpec, on_output: OnOutput | None = None
    ) -> StackResult:
        name = self.workload_stack(env, spec.name)
        with self._locks.hold(name), self._mapped_errors(name):
            result = self._workload(env, spec).preview(
                on_output=on_output or _quiet, color="never", **self._policy_args()
            )
            return StackResult(name, "preview", changes=_changes(result.change_summary))

    def workload_up(
        self, env: str, spec: WorkloadSpec, on_output: OnOutput | None = None
    ) -> StackResult:
        name = self.workload_stack(env, spec.name)
        with self._locks.hold(name), self._mapped_errors(name):
            result = self._workload(env, spec).up(
                on_output=on_output or _quiet,
                color="never",
                show_secrets=False,
                **self._policy_args(),
            )
            return StackResult(
                name,
                "up",
                outputs=masked_outputs(result.outputs),
                changes=_changes(result.summary.resource_changes),
            )

    def workload_destroy(
        self, env: str, name: str, on_output: OnOutput | None = None
    ) -> StackResult:
        stack_name = self.workload_stack(env, name)
        with self._locks.hold(stack_name), self._mapped_errors(stack_name):
            stack = self._existing_workload(env, name)
            result = stack.destroy(on_output=on_output or _quiet, color="never", show_secrets=False)
            stack.workspace.remove_stack(stack_name)
            return StackResult(
                stack_name, "destroy", changes=_changes(result.summary.resource_changes)
            )

    def workload_outputs(self, env: str, name: str) -> dict[str, Any]:
        stack_name = self.workload_stack(env, name)
        with self._mapped_errors(stack_name):
            return masked_outputs(self._existing_workload(env, name).outputs())

    def list_workloads(self, env: str) -> list[str]:
        self._check_env(env)
        with self._mapped_errors(f"{WORKLOADS_PROJECT}/*"):
            workspace = auto.LocalWorkspace(
                work_dir=str(self._workspace_dir()),
                env_vars=self._env_vars(),
                secrets_provider=self.settings.secrets_provider,
                project_settings=auto.ProjectSettings(name=WORKLOADS_PROJECT, runtime="python"),
                pulumi_command=self._pulumi_command(),
            )
            return self._workload_names(env, [s.name for s in workspace.list_stacks()])


def _noop_program() -> None:
    """Selecting a stack for outputs/destroy needs no program."""


def _tail(text: str, lines: int = 15) -> str:
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n" + "\n".join(kept) if kept else ""


# --------------------------------------------------------------------------- offline


# run_offline swaps the process's Pulumi runtime settings: one program at a time.
_PROGRAM_LOCK = threading.RLock()


class _PlatformPlanCache:
    """Platform plans per environment; replanned when the stack files change (~3 s each)."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str, tuple[int, ...]], Any] = {}

    def get(self, project_dir: Path, env: str) -> Any:
        from gke_inference.offline.planning import plan_platform

        files = [project_dir / "Pulumi.yaml", project_dir / f"Pulumi.{env}.yaml"]
        key = (str(project_dir), env, tuple(f.stat().st_mtime_ns for f in files))
        with _PROGRAM_LOCK:
            if key not in self._plans:
                self._plans[key] = plan_platform(env, project_dir=project_dir)
            return self._plans[key]


_PLATFORM_PLANS = _PlatformPlanCache()


class OfflineRunner(_RunnerBase):
    """Same operations, run as offline plans; state kept in a JSON file (or in memory).

    ``delay(operation, stack)`` runs inside the stack lock before any work:
    tests inject a slow or blocking hook to make races real.
    """

    name = "offline"

    def __init__(
        self,
        settings: AutomationSettings,
        *,
        state_file: Path | None = None,
        delay: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(settings)
        self.state_file = state_file
        self.delay = delay
        self._state_lock = threading.Lock()
        self._memory: dict[str, Any] = {"platform": {}, "workloads": {}}

    # -- state -------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        if self.state_file is None:
            return self._memory
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"platform": {}, "workloads": {}}
        data.setdefault("platform", {})
        data.setdefault("workloads", {})
        return data

    def _save(self, state: dict[str, Any]) -> None:
        if self.state_file is None:
            self._memory = state
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.state_file)

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        with self._state_lock:
            state = self._load()
            yield state
            self._save(state)

    # -- plans -------------------------------------------------------------

    def platform_plan(self, env: str) -> Any:
        self._check_env(env)
        return _PLATFORM_PLANS.get(self.settings.project_dir, env)

    def workload_plan(self, env: str, spec: WorkloadSpec) -> Any:
        """The offline plan of ``<env>-<workload>`` on top of the platform plan of ``env``."""
        from gke_inference.offline.planning import plan_deployment
        from gke_inference.workloads.kinds import deployment_for

        deployment = deployment_for(spec)
        platform = self.platform_plan(env)
        with _PROGRAM_LOCK:
            return plan_deployment(deployment, env, self.settings.organization, platform)

    def _policy(self, stack: str, plan: Any, on_output: OnOutput) -> dict[str, Any]:
        """Run the pack as ``--policy-pack`` would; mandatory violations stop the operation."""
        from gke_inference.offline.policy_check import check_resources
        from gke_inference.policy.config import load_config_file

        path = self.settings.policy_config
        config = load_config_file(path) if path else None
        report = check_resources(plan.resources, config, source=str(path or "policy config"))
        on_output(f"Policies: {report.checked} resources checked by {self.settings.policy_pack}")
        for violation in report.violations:
            on_output(f"    - [{violation.level}]  {violation.policy}  ({violation.urn})")
            on_output(f"      {violation.message}")
        if report.mandatory:
            raise PolicyViolationError(stack, [v.to_json() for v in report.mandatory])
        return dict(report.to_json())

    @staticmethod
    def _fingerprints(plan: Any) -> dict[str, str]:
        return {
            r.urn: hashlib.sha256(
                json.dumps(r.to_json(), sort_keys=True, default=str).encode()
            ).hexdigest()
            for r in plan.resources
        }

    @staticmethod
    def _diff(before: dict[str, str], after: dict[str, str], on_output: OnOutput) -> dict[str, int]:
        changes = {"create": 0, "update": 0, "same": 0, "delete": 0}
        for urn in sorted(after):
            kind = (
                "create" if urn not in before else "same" if before[urn] == after[urn] else "update"
            )
            changes[kind] += 1
            if kind != "same":
                mark = "+" if kind == "create" else "~"
                on_output(f"    {mark} {_short_urn(urn)} {kind}")
        for urn in sorted(set(before) - set(after)):
            changes["delete"] += 1
            on_output(f"    - {_short_urn(urn)} delete")
        return {k: v for k, v in changes.items() if v}

    def _start(self, operation: str, stack: str, on_output: OnOutput) -> None:
        verb = {
            "preview": "Previewing update",
            "up": "Updating",
            "destroy": "Destroying",
            "refresh": "Refreshing",
        }[operation]
        on_output(f"{verb} ({stack}) [offline plan, no cloud changes]")
        if self.delay is not None:
            self.delay(operation, stack)

    @staticmethod
    def _finish(result: StackResult, on_output: OnOutput) -> StackResult:
        if result.outputs:
            on_output("Outputs:")
            for key in sorted(result.outputs):
                on_output(f"    {key}: {json.dumps(result.outputs[key])}")
        summary = ", ".join(
            f"{n} unchanged" if k == "same" else f"{n} to {k}"
            for k, n in sorted(result.changes.items())
        )
        on_output(f"Resources: {summary or 'no changes'}")
        return result

    # -- platform ----------------------------------------------------------

    def _platform_run(self, operation: str, env: str, on_output: OnOutput | None) -> StackResult:
        out = on_output or _quiet
        self._check_env(env)
        name = self.platform_stack(env)
        with self._locks.hold(name):
            self._start(operation, name, out)
            plan = self.platform_plan(env)
            with self._state_lock:
                before = dict(self._load()["platform"].get(env, {}).get("resources", {}))
            after = self._fingerprints(plan)
            changes = self._diff(before, after, out)
            policy = self._policy(name, plan, out)
            result = StackResult(name, operation, dict(plan.outputs), changes, policy)
            if operation == "up":
                with self._state() as state:
                    state["platform"][env] = {"outputs": plan.outputs, "resources": after}
            return self._finish(result, out)

    def platform_preview(self, env: str, on_output: OnOutput | None = None) -> StackResult:
        return self._platform_run("preview", env, on_output)

    def platform_up(self, env: str, on_output: OnOutput | None = None) -> StackResult:
        return self._platform_run("up", env, on_output)

    def platform_refresh(self, env: str, on_output: OnOutput | None = None) -> StackResult:
        out = on_output or _quiet
        self._check_env(env)
        name = self.platform_stack(env)
        with self._locks.hold(name):
            self._start("refresh", name, out)
            outputs = self.platform_outputs(env)
            return self._finish(StackResult(name, "refresh", outputs), out)

    def platform_destroy(self, env: str, on_output: OnOutput | None = None) -> StackResult:
        out = on_output or _quiet
        self._check_env(env)
        name = self.platform_stack(env)
        self._refuse_platform_destroy_with_workloads(env)
        with self._locks.hold(name):
            self._start("destroy", name, out)
            with self._state() as state:
                deployed = state["platform"].pop(env, None)
            if deployed is None:
                raise NotDeployedError(name)
            changes = self._diff(deployed.get("resources", {}), {}, out)
            return self._finish(StackResult(name, "destroy", changes=changes), out)

    def platform_outputs(self, env: str) -> dict[str, Any]:
        self._check_env(env)
        with self._state_lock:
            deployed = self._load()["platform"].get(env)
        if deployed is None:
            raise NotDeployedError(self.platform_stack(env))
        return dict(deployed["outputs"])

    # -- workloads ---------------------------------------------------------

    def _workload_run(
        self, operation: str, env: str, spec: WorkloadSpec, on_output: OnOutput | None
    ) -> StackResult:
        out = on_output or _quiet
        self._check_env(env)
        name = self.workload_stack(env, spec.name)
        with self._locks.hold(name):
            self._start(operation, name, out)
            plan = self.workload_plan(env, spec)
            with self._state_lock:
                before = dict(self._load()["workloads"].get(name, {}).get("resources", {}))
            after = self._fingerprints(plan)
            changes = self._diff(before, after, out)
            policy = self._policy(name, plan, out)
            result = StackResult(name, operation, dict(plan.outputs), changes, policy)
            if operation == "up":
                with self._state() as state:
                    state["workloads"][name] = {
                        "environment": env,
                        "workload": spec.name,
                        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                        "outputs": plan.outputs,
                        "resources": after,
                    }
            return self._finish(result, out)

    def workload_preview(
        self, env: str, spec: WorkloadSpec, on_output: OnOutput | None = None
    ) -> StackResult:
        return self._workload_run("preview", env, spec, on_output)

    def workload_up(
        self, env: str, spec: WorkloadSpec, on_output: OnOutput | None = None
    ) -> StackResult:
        return self._workload_run("up", env, spec, on_output)

    def workload_destroy(
        self, env: str, name: str, on_output: OnOutput | None = None
    ) -> StackResult:
        out = on_output or _quiet
        self._check_env(env)
        stack = self.workload_stack(env, name)
        with self._locks.hold(stack):
            self._start("destroy", stack, out)
            with self._state() as state:
                deployed = state["workloads"].pop(stack, None)
            if deployed is None:
                raise NotDeployedError(stack)
            changes = self._diff(deployed.get("resources", {}), {}, out)
            return self._finish(StackResult(stack, "destroy", changes=changes), out)

    def workload_outputs(self, env: str, name: str) -> dict[str, Any]:
        self._check_env(env)
        stack = self.workload_stack(env, name)
        with self._state_lock:
            deployed = self._load()["workloads"].get(stack)
        if deployed is None:
            raise NotDeployedError(stack)
        return dict(deployed["outputs"])

    def list_workloads(self, env: str) -> list[str]:
        self._check_env(env)
        with self._state_lock:
            stacks = list(self._load()["workloads"])
        return self._workload_names(env, stacks)


def _short_urn(urn: str) -> str:
    """``urn:pulumi:stack::project::a$b$type::name`` -> ``type name``."""
    parts = urn.split("::")
    if len(parts) < 4:
        return urn
    return f"{parts[2].rsplit('$', 1)[-1]} {parts[3]}"


def make_runner(
    kind: str,
    settings: AutomationSettings | None = None,
    *,
    state_file: Path | None = None,
) -> Runner:
    """``pulumi`` or ``offline``, configured from the environment by default."""
    resolved = settings or AutomationSettings.from_env()
    if kind == "pulumi":
        return PulumiRunner(resolved)
    if kind == "offline":
        return OfflineRunner(
            resolved, state_file=state_file or resolved.state_dir / "offline-state.json"
        )
    raise ValueError(f"unknown runner {kind!r}; use pulumi or offline")
