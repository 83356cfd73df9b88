"""Why a stack operation could not run or failed; every message is meant for a person.

The CLI maps these to exit codes (``automation/cli.py``), the service records
them on the operation (``automation/worker.py``).
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
