"""The runner without Pulumi: offline plans, the policy pack in-process, state in a JSON file.

It runs the same programs as the Pulumi runner under the mock runtime
(:func:`~gke_inference.offline.planning.plan_platform` and
:func:`~gke_inference.offline.planning.plan_deployment`), checks the same
policy pack and records what an update would leave behind, so list, outputs
and destroy behave as they would against a backend. It needs neither the CLI
nor a cloud.

It is never more optimistic than the engine: a change of an input that forces
a replacement (:mod:`~gke_inference.offline.replacements`, from the providers'
sources) is a ``+-`` replace with the paths that force it; deleting or
replacing a resource the state marks protected fails with the engine's message
and changes nothing; a workload stack whose platform stack was never deployed
fails as its StackReference would (``unknown stack``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gke_inference.automation.errors import (
    NotDeployedError,
    PlatformNotDeployedError,
    PolicyViolationError,
    ProtectedResourceError,
    delete_protected_message,
    replace_protected_message,
)
from gke_inference.automation.runner import (
    Job,
    OnOutput,
    PlatformStack,
    RunnerBase,
    StackResult,
    Target,
)
from gke_inference.automation.settings import AutomationSettings
from gke_inference.offline.planning import plan_deployment, plan_platform
from gke_inference.offline.recording import Plan, RecordedResource
from gke_inference.offline.replacements import replacement_reasons
from gke_inference.workloads.kinds import Deployment

# run_offline swaps the process's Pulumi runtime settings: one program at a time.
_PROGRAM_LOCK = threading.RLock()

_VERBS = {
    "preview": "Previewing update",
    "up": "Updating",
    "destroy": "Destroying",
    "refresh": "Refreshing",
}


class _PlatformPlanCache:
    """Platform plans per environment; replanned when the stack files change (~3 s each)."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str, tuple[int, ...]], Plan] = {}

    def get(self, project_dir: Path, env: str) -> Plan:
        files = [project_dir / "Pulumi.yaml", project_dir / f"Pulumi.{env}.yaml"]
        key = (str(project_dir), env, tuple(f.stat().st_mtime_ns for f in files))
        with _PROGRAM_LOCK:
            if key not in self._plans:
                self._plans[key] = plan_platform(env, project_dir=project_dir)
            return self._plans[key]


_PLATFORM_PLANS = _PlatformPlanCache()


def _short_urn(urn: str) -> str:
    """``urn:pulumi:stack::project::a$b$type::name`` -> ``type name``."""
    parts = urn.split("::")
    if len(parts) < 4:
        return urn
    return f"{parts[2].rsplit('$', 1)[-1]} {parts[3]}"


def _fingerprint(resource: RecordedResource) -> str:
    return hashlib.sha256(
        json.dumps(resource.to_json(), sort_keys=True, default=str).encode()
    ).hexdigest()


def _snapshot(plan: Plan) -> dict[str, dict[str, Any]]:
    """What the state keeps per resource: enough to diff it path by path next time."""
    return {
        r.urn: {
            "type": r.type,
            "custom": r.custom,
            "protect": r.protect,
            # plain JSON (secrets are already masked by the recording)
            "inputs": json.loads(json.dumps(r.inputs, default=str)),
            "fingerprint": _fingerprint(r),
        }
        for r in plan.resources
    }


def _recorded(entry: Any) -> dict[str, Any]:
    """A state entry; state files of older versions kept only the fingerprint."""
    if isinstance(entry, dict):
        return entry
    return {"fingerprint": entry}


@dataclass
class _Step:
    op: str  # create | update | replace | delete | same
    urn: str
    reasons: list[str] = field(default_factory=list)
    protected: bool = False  # the state marks the resource protected


def _steps(before: dict[str, Any], after: dict[str, dict[str, Any]]) -> list[_Step]:
    """The engine's steps from the recorded state to the plan: creates, updates and
    replacements (input paths that force one, :mod:`~gke_inference.offline.replacements`),
    deletes. A replacement needs the old inputs: a state entry of an older version
    without them is diffed as an update."""
    steps: list[_Step] = []
    for urn in sorted(after):
        new = after[urn]
        if urn not in before:
            steps.append(_Step("create", urn))
            continue
        old = _recorded(before[urn])
        if old.get("fingerprint") == new["fingerprint"]:
            steps.append(_Step("same", urn))
            continue
        reasons: list[str] = []
        if new.get("custom") and "inputs" in old:
            reasons = replacement_reasons(new["type"], old["inputs"], new["inputs"])
        op = "replace" if reasons else "update"
        # Pulumi refuses a replacement only when old and new state are both protected.
        protected = bool(old.get("protect")) and bool(new.get("protect"))
        steps.append(_Step(op, urn, reasons, protected))
    for urn in sorted(set(before) - set(after)):
        steps.append(_Step("delete", urn, protected=bool(_recorded(before[urn]).get("protect"))))
    return steps


_MARKS = {"create": "+", "update": "~", "replace": "+-", "delete": "-"}


def _show(steps: list[_Step], on_output: OnOutput) -> dict[str, int]:
    """Print one line per change (``+-`` with the paths that force a replacement) and
    count the steps by kind, as ``pulumi preview`` summarises them."""
    changes: dict[str, int] = {}
    for step in steps:
        changes[step.op] = changes.get(step.op, 0) + 1
        if step.op == "same":
            continue
        why = f" ({', '.join(step.reasons)})" if step.reasons else ""
        on_output(f"    {_MARKS[step.op]} {_short_urn(step.urn)} {step.op}{why}")
    return changes


def _refuse_protected(stack: str, steps: list[_Step], on_output: OnOutput) -> None:
    """Fail as the engine does when a step would delete or replace a protected resource."""
    messages = [
        delete_protected_message(s.urn) if s.op == "delete" else replace_protected_message(s.urn)
        for s in steps
        if s.protected and s.op in ("delete", "replace")
    ]
    if messages:
        for message in messages:
            on_output(f"error: {message}")
        raise ProtectedResourceError(stack, messages)


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


class OfflineRunner(RunnerBase):
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
    #
    # {"platform": {<env>: record}, "workloads": {<qualified stack>: record}}; a record
    # holds the outputs and, per resource URN, its type, custom and protect flags, inputs
    # (secrets masked) and a fingerprint (workloads also their spec).

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
    def _locked(self) -> Iterator[None]:
        """The state, locked against this process's threads and other processes (two
        service replicas share one state file, as they share one Pulumi backend)."""
        with self._state_lock:
            if self.state_file is None:
                yield
                return
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.state_file.with_name(self.state_file.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        with self._locked():
            state = self._load()
            yield state
            self._save(state)

    def _slot(self, target: Target) -> tuple[str, str]:
        """Where the target's record lives in the state."""
        if isinstance(target, PlatformStack):
            return "platform", target.environment
        return "workloads", self.stack_name(target)

    def _deployed(self, target: Target) -> dict[str, Any] | None:
        section, key = self._slot(target)
        with self._locked():
            record: dict[str, Any] | None = self._load()[section].get(key)
        return record

    # -- plans -------------------------------------------------------------

    def platform_plan(self, env: str) -> Plan:
        self._check_env(env)
        return _PLATFORM_PLANS.get(self.settings.project_dir, env)

    def workload_plan(self, env: str, deployment: Deployment) -> Plan:
        """The offline plan of ``<env>-<workload>`` on top of the platform plan of ``env``."""
        platform = self.platform_plan(env)
        with _PROGRAM_LOCK:
            return plan_deployment(deployment, env, self.settings.organization, platform)

    def _plan(self, job: Job) -> Plan:
        """The plan of a preview or up: the platform's, or the checked workload's."""
        env = job.target.environment
        if job.deployment is not None:
            return self.workload_plan(env, job.deployment)
        return self.platform_plan(env)

    def _policy(self, stack: str, plan: Plan, on_output: OnOutput) -> dict[str, Any]:
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

    # -- operations ----------------------------------------------------------

    def _execute(self, job: Job, on_output: OnOutput) -> StackResult:
        on_output(f"{_VERBS[job.operation]} ({job.stack}) [offline plan, no cloud changes]")
        if self.delay is not None:
            self.delay(job.operation, job.stack)
        if job.operation in ("preview", "up"):
            return _finish(self._deploy(job, on_output), on_output)
        if job.operation == "refresh":
            return _finish(StackResult(job.stack, "refresh", self.outputs(job.target)), on_output)
        return _finish(self._destroy(job, on_output), on_output)

    def _destroy(self, job: Job, on_output: OnOutput) -> StackResult:
        """Delete every recorded resource; a protected one stops it before anything changes."""
        section, key = self._slot(job.target)
        with self._state() as state:
            deployed = state[section].get(key)
            if deployed is None:
                raise NotDeployedError(job.stack)
            steps = _steps(deployed.get("resources", {}), {})
            changes = _show(steps, on_output)
            _refuse_protected(job.stack, steps, on_output)
            del state[section][key]
        return StackResult(job.stack, "destroy", changes=changes)

    def _require_platform(self, job: Job) -> None:
        """A workload stack reads its platform through a StackReference: no platform
        stack, no operation (the engine fails that read with ``unknown stack``)."""
        if isinstance(job.target, PlatformStack):
            return
        env = job.target.environment
        if self._deployed(PlatformStack(env)) is None:
            raise PlatformNotDeployedError(job.stack, self.stack_name(PlatformStack(env)), env)

    def _deploy(self, job: Job, on_output: OnOutput) -> StackResult:
        """Preview or up: plan, diff against the recorded state, run the policy pack.

        A step that would delete or replace a protected resource fails the
        operation as the engine does (a preview shows the diff first); an ``up``
        then changes nothing.
        """
        self._require_platform(job)
        plan = self._plan(job)
        before = (self._deployed(job.target) or {}).get("resources", {})
        after = _snapshot(plan)
        steps = _steps(dict(before), after)
        changes = _show(steps, on_output)
        _refuse_protected(job.stack, steps, on_output)
        policy = self._policy(job.stack, plan, on_output)
        if job.operation == "up":
            record: dict[str, Any] = {"outputs": plan.outputs, "resources": after}
            if job.deployment is not None:  # a workload stack: keep what was deployed
                spec = job.deployment.spec
                record = {
                    "environment": job.target.environment,
                    "workload": spec.name,
                    "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
                    **record,
                }
            section, key = self._slot(job.target)
            with self._state() as state:
                state[section][key] = record
        # what the cloud computes (endpoint, CA certificate) is shown as Pulumi's preview
        # shows it, not as the mock's stand-ins; the state keeps the stand-ins
        return StackResult(job.stack, job.operation, plan.shown_outputs(), changes, policy)

    def outputs(self, target: Target) -> dict[str, Any]:
        self._check_env(target.environment)
        deployed = self._deployed(target)
        if deployed is None:
            raise NotDeployedError(self.stack_name(target))
        return dict(deployed["outputs"])

    def list_workloads(self, env: str) -> list[str]:
        self._check_env(env)
        with self._locked():
            stacks = list(self._load()["workloads"])
        return self._workload_names(env, stacks)
