"""Terminal conventions every command shares.

- Results go to stdout, everything else (progress, prompts, errors) to
  stderr, so ``--format json`` output stays parseable when piped.
- :func:`progress` says what a slow step is doing, only when stderr is a
  terminal: a script's captured stderr then holds only problems.
- :func:`silence_stdout`: after the reader of stdout went away (``| head``,
  a pager quit), the rest of the output goes to devnull and the command exits
  0 quietly, as the Python docs recommend for ``BrokenPipeError`` (the entry
  point catches it); :func:`write_line` does the same for a running
  operation's log, so the operation goes on.
- :class:`Parser` shows each option's default in ``--help``;
  :func:`add_format_options` adds ``--format text|json`` and ``--json``;
  :func:`bounded_int` and :func:`checked` validate an option's value in
  argparse, so a bad one is ``error: argument --port: ...`` and exit 2.
- :func:`confirm` asks "Do you want to perform this update?" as Pulumi does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

PROMPT_ANSWERS = {"yes": True, "y": True, "no": False, "n": False}


def progress(message: str) -> None:
    """Write ``message`` to stderr when stderr is a terminal."""
    stream = sys.stderr
    if stream.isatty():
        stream.write(message + "\n")
        stream.flush()


def silence_stdout() -> None:
    """Send the rest of stdout to devnull (its reader closed the pipe)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (captured in tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def write_line(line: str) -> None:
    """Print one line to stdout now; a closed pipe silences stdout instead of failing.

    For output streamed while an operation runs: the operation goes on (and
    finishes) when the reader of its log went away.
    """
    try:
        sys.stdout.write(line.rstrip("\n") + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()


def stdin_is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream if stream is not None else sys.stdin
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced
        return False


def confirm(question: str, stdin: TextIO | None = None, stderr: TextIO | None = None) -> bool:
    """Ask ``question`` (answer yes or no) on stderr and read the answer from stdin.

    Anything but yes/y/no/n asks again; end of input is no.
    """
    stdin = stdin if stdin is not None else sys.stdin
    stderr = stderr if stderr is not None else sys.stderr
    while True:
        stderr.write(f"{question} yes/no: ")
        stderr.flush()
        line = stdin.readline()
        if not line:
            stderr.write("\n")
            return False
        answer = PROMPT_ANSWERS.get(line.strip().lower())
        if answer is not None:
            return answer
        stderr.write("please answer yes or no\n")


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows an option's default, ``(default: ...)``, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        default = action.default
        if (
            text is None
            or "default" in text  # the help already says it
            or not action.option_strings
            or default is None
            or default is False
            or default == []
            or default == argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """Every parser and subparser of the CLI (subparsers inherit the class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_format_options(parser: argparse.ArgumentParser) -> None:
    """``--format text|json`` and its alias ``--json``."""
    parser.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as --format json"
    )


def bounded_int(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer from {minimum} to {maximum}, got {text[:40]!r}"
            ) from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def checked(problem: Callable[[str], str | None]) -> Callable[[str], str]:
    """An argparse ``type`` from a check that returns why a value is refused (or None)."""

    def parse(text: str) -> str:
        why = problem(text)
        if why is not None:
            raise argparse.ArgumentTypeError(why)
        return text

    parse.__name__ = "value"
    return parse
