"""Errors a user can cause and fix, reported without a traceback."""

from __future__ import annotations

import enum
import reprlib
from dataclasses import dataclass
from typing import Any

import pulumi

#: Longest value (its repr) an error message shows; longer ones end in "...".
MAX_SHOWN_VALUE = 200
#: Longest path and message a Problem renders (the input may be hostile and huge).
MAX_SHOWN_PATH = 200
MAX_SHOWN_MESSAGE = 2000

# Bounded in breadth and depth: a repr never walks more of a value than it shows,
# so an expanded YAML alias bomb or a deeply nested list is shown in microseconds.
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 8
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = MAX_SHOWN_VALUE


def truncate(text: str, limit: int = MAX_SHOWN_VALUE) -> str:
    """``text`` cut to ``limit`` characters, ending in "..." when cut."""
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."


def show_value(value: Any, limit: int = MAX_SHOWN_VALUE) -> str:
    """The repr of a value for an error message, at most ``limit`` characters.

    Every value a message shows goes through here: the repr is bounded while it
    is built (reprlib), not only cut afterwards.
    """
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return truncate(text, limit)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where, what was given, what is accepted."""

    path: str
    message: str

    def render(self) -> str:
        path = truncate(self.path, MAX_SHOWN_PATH)
        return f"  - {path}: {truncate(self.message, MAX_SHOWN_MESSAGE)}"


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
