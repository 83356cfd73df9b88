"""Stack operations for the CLI and the service: what is run on which stack.

A *target* names a stack: :class:`PlatformStack` (project ``gke-inference``,
stack ``<env>``) or :class:`WorkloadStack` (project ``gke-inference-workloads``,
stack ``<env>-<workload>``, with the spec when the operation deploys it). A
:class:`Runner` runs one operation (:data:`StackOperation`) on a target and
returns a :class:`StackResult`:

- :class:`~gke_inference.automation.pulumi_runner.PulumiRunner`: the Pulumi
  Automation API over the CLI.
- :class:`~gke_inference.automation.offline_runner.OfflineRunner`: the offline
  plan and policy pack, with a small JSON state file; neither CLI nor cloud.

:meth:`RunnerBase.run` is the one entry point of both. Before anything starts
it checks the environment, that a spec can be deployed there
(:mod:`~gke_inference.automation.deployability`) and that a platform stack
has no workloads left to destroy; then it holds the stack's lock: one
operation per stack at a time, a second one in this process fails at once with
:class:`~gke_inference.automation.errors.StackBusyError`.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gke_inference.automation.deployability import checked_deployment
from gke_inference.automation.errors import (
    StackBusyError,
    UnknownEnvironmentError,
)
from gke_inference.automation.settings import AutomationSettings
from gke_inference.core.contract import platform_stack_name, qualified_workload_stack
from gke_inference.core.errors import Problem, UserInputError
from gke_inference.workloads.kinds import Deployment
from gke_inference.workloads.spec import WorkloadSpec

OnOutput = Callable[[str], None]
StackOperation = Literal["preview", "up", "refresh", "destroy"]
OPERATIONS: tuple[StackOperation, ...] = ("preview", "up", "refresh", "destroy")


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class PlatformStack:
    """The platform stack of an environment: ``<org>/gke-inference/<env>``."""

    environment: str

    def stack_name(self, organization: str) -> str:
        return platform_stack_name(organization, self.environment)


@dataclass(frozen=True)
class WorkloadStack:
    """A workload stack ``<org>/gke-inference-workloads/<env>-<name>``.

    ``spec`` is what ``preview`` and ``up`` deploy; ``destroy``, ``refresh`` and
    outputs need only the name.
    """

    environment: str
    name: str
    spec: WorkloadSpec | None = None

    def __post_init__(self) -> None:
        if self.spec is not None and self.spec.name != self.name:
            raise ValueError(f"the spec is workload {self.spec.name!r}, not {self.name!r}")

    @classmethod
    def of(cls, environment: str, spec: WorkloadSpec) -> WorkloadStack:
        return cls(environment, spec.name, spec)

    def stack_name(self, organization: str) -> str:
        return qualified_workload_stack(organization, self.environment, self.name)


Target = PlatformStack | WorkloadStack


class WorkloadsRemainError(UserInputError):
    """``destroy`` of a platform stack that still has workload stacks (exit 2)."""

    def __init__(self, stack: str, environment: str, workloads: list[str]) -> None:
        self.stack = stack
        self.environment = environment
        self.workloads = workloads
        super().__init__(
            f"Cannot destroy {stack}",
            [
                Problem(
                    "--stack",
                    f"environment {environment} still has workloads deployed "
                    f"({', '.join(workloads)}); destroy them first: gke-inference workload "
                    f"destroy --stack {environment} --name NAME",
                )
            ],
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


@dataclass(frozen=True)
class Job:
    """One checked operation, as :meth:`RunnerBase.run` hands it to a runner."""

    operation: StackOperation
    target: Target
    stack: str  # the fully qualified stack name
    deployment: Deployment | None  # set for preview/up of a workload stack


class Runner(Protocol):
    """Stack operations for the CLI and the service."""

    name: str
    settings: AutomationSettings

    def environments(self) -> list[str]: ...

    def stack_name(self, target: Target) -> str: ...

    def run(
        self, operation: StackOperation, target: Target, on_output: OnOutput | None = None
    ) -> StackResult: ...

    def outputs(self, target: Target) -> dict[str, Any]: ...

    def list_workloads(self, env: str) -> list[str]: ...


def quiet(_: str) -> None:
    return None


class StackLocks:
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


class RunnerBase(abc.ABC):
    """What both runners share: environments, stack names, the checks before an operation."""

    name: str  # "pulumi" or "offline"

    def __init__(self, settings: AutomationSettings) -> None:
        self.settings = settings
        self._locks = StackLocks()

    # -- implemented by each runner ------------------------------------------

    @abc.abstractmethod
    def _execute(self, job: Job, on_output: OnOutput) -> StackResult:
        """Run a checked job; called with the stack's lock held."""

    @abc.abstractmethod
    def outputs(self, target: Target) -> dict[str, Any]:
        """The stack's outputs, secrets masked; NotDeployedError when there is no stack."""

    @abc.abstractmethod
    def list_workloads(self, env: str) -> list[str]:
        """Names of the workloads with a stack in ``env``."""

    # -- shared ----------------------------------------------------------------

    def environments(self) -> list[str]:
        return self.settings.environments()

    def _check_env(self, env: str) -> None:
        known = self.environments()
        if env not in known:
            raise UnknownEnvironmentError(env, known)

    def stack_name(self, target: Target) -> str:
        return target.stack_name(self.settings.organization)

    def run(
        self, operation: StackOperation, target: Target, on_output: OnOutput | None = None
    ) -> StackResult:
        """Run ``operation`` on ``target``; refused before it starts when it cannot succeed."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; use {', '.join(OPERATIONS)}")
        env = target.environment
        self._check_env(env)
        deployment = None
        if isinstance(target, WorkloadStack) and operation in ("preview", "up"):
            if target.spec is None:
                raise ValueError(f"{operation} of workload {target.name} needs its spec")
            deployment = checked_deployment(self.settings.project_dir, env, target.spec)
        if isinstance(target, PlatformStack) and operation == "destroy":
            self._refuse_platform_destroy_with_workloads(env)
        job = Job(operation, target, self.stack_name(target), deployment)
        with self._locks.hold(job.stack):
            return self._execute(job, on_output or quiet)

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
        """A platform with workload stacks left is not destroyed: a user error (exit 2),
        refused before any operation, like a spec the environment cannot deploy."""
        deployed = self.list_workloads(env)
        if deployed:
            raise WorkloadsRemainError(self.stack_name(PlatformStack(env)), env, deployed)
