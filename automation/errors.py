"""Why a stack operation could not run or failed; every message is meant for a person.

The CLI maps these to exit codes (``automation/cli.py``), the service records
them on the operation (``automation/worker.py``).

Which exit code: a stack that is busy or missing, an unknown environment or a
missing CLI is the user's to fix and nothing was done (2, as the CLI maps
``StackBusyError``, ``NotDeployedError``, ``UnknownEnvironmentError`` and
``PulumiCLIMissingError``); so is a workload stack whose environment has no
platform stack yet (:class:`PlatformNotDeployedError`, a ``NotDeployedError``:
deploy the platform first). A refusal before any operation starts (a platform
that still has workloads) is a
:class:`~gke_inference.core.errors.UserInputError` (2). What the engine refused
while running (a protected resource, :class:`ProtectedResourceError`) or any
other failure is 4, as it is for the Pulumi runner.
"""

from __future__ import annotations

INSTALL_HINT = (
    "Install it with `curl -fsSL https://get.pulumi.com | sh` (or `brew install pulumi/tap/pulumi`, "
    "see https://www.pulumi.com/docs/iac/download-install/) and make sure `pulumi` is on PATH "
    "(or set GKE_INFERENCE_PULUMI_ROOT to the installation), or use --runner offline to plan "
    "without it."
)


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


class PlatformNotDeployedError(NotDeployedError):
    """A workload stack's ``StackReference`` names a platform stack that does not exist.

    Pulumi fails the read of ``pulumi:pulumi:StackReference`` with
    ``unknown stack "<org>/gke-inference/<env>"`` (the engine's builtin provider,
    e.g. https://github.com/pulumi/pulumi/issues/2407); nothing is deployed.
    It is a ``NotDeployedError`` (exit 2): the user deploys the platform first.
    """

    def __init__(self, stack: str, platform_stack: str, environment: str) -> None:
        self.platform_stack = platform_stack
        self.environment = environment
        AutomationError.__init__(
            self,
            f"{stack}: pulumi:pulumi:StackReference {platform_stack}: unknown stack "
            f'"{platform_stack}": the platform of {environment} is not deployed; deploy it '
            f"first: gke-inference platform up --stack {environment}",
        )
        self.stack = stack


def _unprotect_hint(urn: str) -> str:
    return (
        "remove `protect` from it in the program and `pulumi up`, or run "
        f"`pulumi state unprotect '{urn}'`"
    )


def delete_protected_message(urn: str) -> str:
    """The engine's refusal to delete a protected resource, in the shape Pulumi reports it
    (pulumi/pulumi ``pkg/resource/deploy/step.go``: the resource, "cannot be deleted because
    it is protected", and the two ways to unprotect it), worded here."""
    return (
        f'resource "{urn}" cannot be deleted because it is protected; to delete it, '
        + _unprotect_hint(urn)
    )


def replace_protected_message(urn: str) -> str:
    """The engine's refusal to replace a protected resource, in Pulumi's shape
    (``pkg/resource/deploy/step_generator.go``: "unable to replace resource", protected)."""
    return (
        f'unable to replace resource "{urn}": it is protected; to replace it, '
        + _unprotect_hint(urn)
    )


class ProtectedResourceError(AutomationError):
    """The operation would delete or replace a protected resource; nothing was changed."""

    def __init__(self, stack: str, messages: list[str]) -> None:
        self.stack = stack
        self.messages = messages
        # the CLI prints "error: " before the first line, as Pulumi prints each diagnostic
        super().__init__("\nerror: ".join(messages))


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
