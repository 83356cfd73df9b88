"""Errors a user can cause and fix, reported without a traceback."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, what was given, what is accepted."""

    path: str
    message: str

    def render(self) -> str:
        return f"  - {self.path}: {self.message}"


class UserInputError(pulumi.RunError):
    """Bad input from a person (stack config, workload spec, CLI flag).

    It subclasses ``pulumi.RunError`` so that, under ``pulumi up``, the language
    host prints the message without a Python traceback. The offline tools catch
    it and exit with code 2.
    """

    def __init__(self, subject: str, problems: list[Problem]) -> None:
        self.subject = subject
        self.problems = problems
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{subject}: {count} {noun}"] + [p.render() for p in problems]
        super().__init__("\n".join(lines))


class SettingsError(UserInputError):
    """The stack configuration cannot be used; nothing was registered."""


class SpecError(UserInputError):
    """A workload spec cannot be used; nothing was registered."""


class ExitCode(enum.IntEnum):
    """Exit codes of every command (gke-inference plan/size/policy and the automation ones)."""

    OK = 0
    VIOLATION = 1  # the policy pack found a mandatory violation
    USER_ERROR = 2  # bad config, spec, flag or environment; nothing was done
    INVALID_MANIFESTS = 3  # a rendered manifest fails strict schema validation
    OPERATION_FAILED = 4  # Pulumi (or the cloud) failed
