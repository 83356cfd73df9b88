"""CLI conventions: --version, --json, defaults in --help, quiet pipes, progress on stderr."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gke_inference.cli import build_parser, main, version
from gke_inference.core import console

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "workloads/examples/gemma-3-1b-l4.yaml")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return found


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version as dist_version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"gke-inference {dist_version('gke-inference')}\n"
    assert version() == dist_version("gke-inference")


def test_every_subcommand_shows_its_defaults_and_has_json_and_short_stack() -> None:
    commands = _subparsers(build_parser())
    assert {"plan", "size", "policy check", "platform", "workload", "promote", "serve"} <= set(
        commands
    )
    for name, parser in commands.items():
        text = " ".join(parser.format_help().split())
        options = {o: a for a in parser._actions for o in a.option_strings}
        if "--format" in options:
            assert "--json" in options, name  # the alias wherever --format is
        if "--stack" in options:
            assert "-s" in options, name
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default in (None, False, [], argparse.SUPPRESS):
                continue
            assert action.help, (name, action.option_strings)  # every option says what it does
            shown = f"default: {default}" in text or "default" in action.help
            assert shown, (name, action.option_strings)
    plan_help = " ".join(commands["plan"].format_help().split())
    assert "environment: dev, prod, ... (default: dev)" in plan_help
    assert "(default: text)" in plan_help


def test_json_is_an_alias_of_format_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["size", EXAMPLE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["workload"] == "gemma-3-1b"
    args = build_parser().parse_args(["plan", "--json"])
    assert args.format == "json"
    assert build_parser().parse_args(["policy", "check", "-", "--json"]).format == "json"
    assert build_parser().parse_args(["workload", "list", "-s", "dev", "--json"]).format == "json"


def test_plan_sums_up_what_it_would_create(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "-s", "dev", "--no-policy"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Offline plan of gke-inference/dev"
    assert lines[2] == "Resources:"
    created = int(lines[3].split()[1])
    assert lines[3] == f"    + {created} to create"
    by_type = lines.index("By type:")
    counts = {}
    for line in lines[by_type + 1 :]:
        if not line.strip():
            break
        count, type_ = line.split()
        counts[type_] = int(count)
    assert sum(counts.values()) == created
    assert counts["gcp:container/cluster:Cluster"] == 1
    assert counts["pulumi:pulumi:Stack"] == 1
    assert out.index("By type:") < out.index("pulumi:pulumi:Stack  gke-inference-dev")


def test_a_workload_plan_counts_its_stack_reference_as_a_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", "-s", "dev", "--no-policy", "--workload", EXAMPLE]) == 0
    out = capsys.readouterr().out
    assert "\n    > 1 to read\n" in out


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "gke_inference.cli", *argv]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_reader_that_closes_the_pipe_is_not_an_error(fmt: str, tmp_path: Path) -> None:
    # `gke-inference plan | head -1`: head reads a line and exits; the plan
    # (larger than a pipe's buffer in JSON) then writes into a closed pipe.
    proc = subprocess.Popen(
        _cli("plan", "-s", "dev", "--format", fmt),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert first
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert err == ""


def test_an_operation_goes_on_when_its_log_reader_goes_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    silenced: list[bool] = []
    monkeypatch.setattr(sys, "stdout", Closed())
    monkeypatch.setattr(console, "silence_stdout", lambda: silenced.append(True))
    console.write_line("one")  # no exception: the operation keeps going
    assert silenced == [True]


def test_progress_goes_to_stderr_only_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["plan", "-s", "dev", "--no-policy", "--json"]) == 0
    out, err = capsys.readouterr()
    json.loads(out)
    assert err == ""  # not a terminal: nothing but problems on stderr
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["plan", "-s", "dev", "--no-policy", "--json"]) == 0
    out, err = capsys.readouterr()
    json.loads(out)  # stdout stays clean JSON
    assert err.startswith("planning dev offline (the provider SDKs load first")


def test_confirm_reads_yes_or_no_and_asks_again_otherwise() -> None:
    err = io.StringIO()
    assert console.confirm("Go?", io.StringIO("maybe\nyes\n"), err) is True
    assert err.getvalue() == "Go? yes/no: please answer yes or no\nGo? yes/no: "
    assert console.confirm("Go?", io.StringIO("n\n"), io.StringIO()) is False
    assert console.confirm("Go?", io.StringIO(""), io.StringIO()) is False  # end of input: no
