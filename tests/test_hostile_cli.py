"""Hostile input to the CLI, the spec files and the stack config (issue 15, CLI part).

Every mistake a person (or an attacker handing us a file) can make is exit 2
with one clear message naming the field or file and what is accepted: never a
traceback, never minutes of CPU or gigabytes of memory, never exit 1/3/4.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.cli import main
from gke_inference.core import safe_yaml
from gke_inference.core.errors import (
    MAX_SHOWN_VALUE,
    Problem,
    SettingsError,
    SpecError,
    show_value,
)
from gke_inference.core.settings import parse_settings, project_config
from gke_inference.core.stack_config import load_stack_config, parse_override, to_engine_config
from gke_inference.workloads.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "workloads/examples"
EXAMPLE = EXAMPLES / "gemma-3-1b-l4.yaml"
TOKEN = "hostile-cli-token-0123456789abcdef"


def example(name: str = "gemma-3-1b-l4.yaml") -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


def write_spec(tmp_path: Path, data: dict[str, Any], name: str = "spec.yaml") -> str:
    file = tmp_path / name
    file.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(file)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)``: its exit code (argparse's too), stdout and stderr."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse refuses a value with exit 2
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err, err
    assert err.count("error:") == 1, err  # one message, not a cascade
    for needle in needles:
        assert needle in err, err


def bomb(levels: int, leaf: str = '"lol"', flow: bool = False) -> str:
    """A "billion laughs" document: each level repeats the one below nine times."""
    rows = [f"l0: &l0 [{', '.join([leaf] * 9)}]"]
    for i in range(1, levels):
        rows.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    if flow:
        return "{" + ", ".join(rows) + "}"
    return "\n".join(rows) + "\n"


# ------------------------------------------------------------------ 1. alias bombs


def test_a_yaml_alias_bomb_spec_is_refused_in_seconds(tmp_path: Path) -> None:
    """~700 bytes that expand to 387 million strings: refused before anything expands."""
    spec = tmp_path / "bomb.yaml"
    spec.write_text(bomb(9) + "name: *l8\nkind: online\naccelerator: l4\n", encoding="utf-8")
    assert spec.stat().st_size < 800
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gke_inference.cli", "size", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,  # today: minutes and gigabytes (the error message repr()s the expansion)
        cwd=REPO,
    )
    assert time.monotonic() - started < 30
    assert_one_clear_error(proc.returncode, proc.stderr, str(spec))
    assert f"YAML aliases expand beyond {safe_yaml.MAX_ALIAS_NODES} nodes" in proc.stderr
    assert len(proc.stderr) < 1000


def test_a_yaml_alias_bomb_in_a_config_value_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    override = "labels.team=" + bomb(6, leaf="l", flow=True)
    with pytest.raises(SettingsError) as info:
        parse_override(override, "gke-inference")
    (problem,) = info.value.problems
    assert problem.path == "labels.team"
    assert "YAML aliases expand beyond" in problem.message
    code, _, err = run(capsys, "plan", "-s", "dev", "--no-policy", "-c", override)
    assert_one_clear_error(code, err, "--config", "YAML aliases expand beyond")


def test_aliases_within_the_bound_still_work() -> None:
    text = (
        "base: &base {minNodes: 0, maxNodes: 2}\npools: [*base, *base, {<<: *base, maxNodes: 4}]\n"
    )
    data = safe_yaml.load_yaml(text)
    assert data["pools"] == [
        {"minNodes": 0, "maxNodes": 2},
        {"minNodes": 0, "maxNodes": 2},
        {"minNodes": 0, "maxNodes": 4},
    ]


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(safe_yaml.UnsafeInputError, match="cycle"):
        safe_yaml.load_yaml("a: &a [1, *a]\n")


def test_error_messages_cap_the_values_they_show() -> None:
    shared: Any = ["lol"] * 9
    for _ in range(9):  # 9**10 strings if walked: the repr must not walk them
        shared = [shared] * 9
    started = time.monotonic()
    shown = show_value(shared)
    assert time.monotonic() - started < 1
    assert len(shown) <= MAX_SHOWN_VALUE
    deep: list[Any] = []
    node = deep
    for _ in range(10_000):
        node.append([])
        node = node[0]
    assert len(show_value(deep)) <= MAX_SHOWN_VALUE  # no RecursionError
    assert len(show_value("x" * 1_000_000)) <= MAX_SHOWN_VALUE
    rendered = Problem("p" * 10_000, "m" * 1_000_000).render()
    assert len(rendered) < 3000
    # Where problems render values: a spec value of a megabyte shows a few dozen bytes.
    data = example()
    data["name"] = "N" * 1_000_000
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    assert len(str(info.value)) < 1000


# --------------------------------------------------------------- 2. files and flags


def test_a_spec_that_is_not_utf8_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "latin1.yaml"
    spec.write_bytes(EXAMPLE.read_bytes().replace(b"gemma-3-1b\n", b"gemma-3-1b \xe9\n", 1))
    code, _, err = run(capsys, "size", str(spec))
    assert_one_clear_error(code, err, str(spec), "is not UTF-8 text (byte 0xe9 at offset")


def test_a_plan_file_that_is_not_utf8_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(b'{"resources": ["\xff"]}')
    code, _, err = run(capsys, "policy", "check", str(plan))
    assert_one_clear_error(code, err, str(plan), "is not UTF-8 text")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(plan.read_bytes())))
    code, _, err = run(capsys, "policy", "check", "-")
    assert_one_clear_error(code, err, "stdin", "is not UTF-8 text")


def test_a_policy_config_that_is_not_utf8_is_exit_2_before_planning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "policy.json"
    config.write_bytes(b'{"all": "advisory\xff"}')
    started = time.monotonic()
    code, _, err = run(capsys, "plan", "-s", "dev", "--policy-config", str(config))
    assert_one_clear_error(code, err, str(config), "is not UTF-8 text")
    assert time.monotonic() - started < 5  # refused before the plan (several seconds)


def test_a_stack_file_that_is_not_utf8_is_a_settings_error(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    stack = project / "Pulumi.dev.yaml"
    stack.write_bytes(stack.read_bytes() + b"# caf\xe9\n")
    with pytest.raises(SettingsError) as info:
        load_stack_config(project, "dev")
    assert "is not UTF-8 text" in str(info.value)


def _deep_json(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("levels", [100, 100_000])
def test_deeply_nested_input_is_exit_2(
    levels: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = _deep_json(levels)
    expected = f"nested more than {safe_yaml.MAX_DEPTH} levels deep"
    spec_json = tmp_path / "spec.json"
    spec_json.write_text(json.dumps(example())[:-1] + f', "extra": {deep}}}', encoding="utf-8")
    code, _, err = run(capsys, "size", str(spec_json))
    assert_one_clear_error(code, err, str(spec_json), expected)
    plan = tmp_path / "plan.json"
    plan.write_text(f'{{"resources": {deep}}}', encoding="utf-8")
    code, _, err = run(capsys, "policy", "check", str(plan))
    assert_one_clear_error(code, err, str(plan), expected)
    config = tmp_path / "policy.json"
    config.write_text(f'{{"all": {deep}}}', encoding="utf-8")
    code, _, err = run(capsys, "policy", "check", str(plan), "--policy-config", str(config))
    assert_one_clear_error(code, err, str(config), expected)


@pytest.mark.parametrize("levels", [990, 100_000])
def test_a_deeply_nested_yaml_spec_is_exit_2(
    levels: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "deep.yaml"
    spec.write_text(EXAMPLE.read_text() + f"extra: {_deep_json(levels)}\n", encoding="utf-8")
    code, _, err = run(capsys, "size", str(spec))
    assert_one_clear_error(code, err, f"nested more than {safe_yaml.MAX_DEPTH} levels deep")


def test_a_config_path_of_thousands_of_segments_is_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = ".".join(["cluster"] * 5000)
    code, _, err = run(capsys, "plan", "-s", "dev", "--no-policy", "-c", f"{path}=1")
    assert_one_clear_error(code, err, "--config", f"more than {safe_yaml.MAX_DEPTH} segments")
    assert len(err) < 1000


@pytest.mark.parametrize("number", [".inf", "-.inf", ".nan", ".NaN", ".Inf"])
def test_spec_numbers_must_be_finite(
    number: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(EXAMPLE.read_text().replace("target: 10", f"target: {number}"))
    code, _, err = run(capsys, "size", str(spec))
    assert_one_clear_error(code, err, "scaling.target", "finite number")
    data = example()
    data["scaling"]["target"] = float("inf")
    with pytest.raises(SpecError, match=r"scaling\.target: Input should be a finite number"):
        parse_spec(data)


def test_a_spec_with_an_infinite_number_does_not_crash_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(EXAMPLE.read_text().replace("target: 10", "target: .inf"))
    code, _, err = run(capsys, "plan", "-s", "dev", "--no-policy", "-w", str(spec))
    assert_one_clear_error(code, err, "scaling.target", "finite number")


def test_manifests_into_an_existing_file_is_exit_2_before_planning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "manifests"
    file.write_text("not a directory")
    started = time.monotonic()
    code, _, err = run(capsys, "plan", "-s", "dev", "--no-policy", "--manifests", str(file))
    assert_one_clear_error(code, err, f"--manifests {file}", "is a file, not a directory")
    code, _, err = run(capsys, "plan", "-s", "dev", "--no-policy", "--manifests", str(file / "sub"))
    assert_one_clear_error(code, err, f"{file} is a file, not a directory")
    assert time.monotonic() - started < 5
    assert file.read_text() == "not a directory"


def test_manifests_into_an_unwritable_directory_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the check see what a user would
        real_access = os.access

        def access(path: Any, mode: int, **kwargs: Any) -> bool:
            if Path(path) == locked and mode & os.W_OK:
                return False
            return real_access(path, mode, **kwargs)

        monkeypatch.setattr(os, "access", access)
    try:
        for target in (locked, locked / "sub"):
            code, _, err = run(
                capsys, "plan", "-s", "dev", "--no-policy", "--manifests", str(target)
            )
            assert_one_clear_error(code, err, f"--manifests {target}", "not a writable directory")
    finally:
        locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_manifests_that_fail_to_write_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only file system passes the access check and fails at write time."""
    import gke_inference.offline.manifests as manifests

    def read_only(plan: Any, directory: Any) -> list[Path]:
        raise OSError(30, "Read-only file system", str(Path(directory) / "00-namespace.yaml"))

    monkeypatch.setattr(manifests, "write_manifests", read_only)
    target = tmp_path / "out"
    code, _, err = run(capsys, "plan", "-s", "dev", "--no-policy", "--manifests", str(target))
    assert_one_clear_error(code, err, f"--manifests {target}", "Read-only file system")


def _project_copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml"):
        shutil.copy(REPO / name, project / name)
    return project


def test_an_unquoted_timestamp_in_a_config_override_is_accepted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Pulumi keeps an unquoted timestamp as its text; so does --config."""
    key, path, value = parse_override(
        "cluster.maintenanceWindow.startTime=2026-01-03T03:00:00Z", "gke-inference"
    )
    assert (key, path, value) == (
        "gke-inference:cluster",
        ["maintenanceWindow", "startTime"],
        "2026-01-03T03:00:00Z",
    )
    code, out, err = run(
        capsys,
        "plan", "-s", "dev", "--no-policy", "--json",
        "-c", "cluster.maintenanceWindow.startTime=2026-01-03T02:00:00Z",
        "-c", "cluster.maintenanceWindow.endTime=2026-01-03T10:00:00Z",
    )  # fmt: skip
    assert code == 0, err
    assert "2026-01-03T02:00:00Z" in out


def test_an_unquoted_timestamp_in_the_stack_file_is_accepted(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    stack = project / "Pulumi.dev.yaml"
    text = stack.read_text(encoding="utf-8").replace(
        "    releaseChannel: RAPID\n",
        "    releaseChannel: RAPID\n"
        "    maintenanceWindow:\n"
        "      startTime: 2026-01-03T02:00:00Z\n"
        "      endTime: 2026-01-03T10:00:00Z\n",
    )
    assert "maintenanceWindow" in text
    stack.write_text(text, encoding="utf-8")
    config = load_stack_config(project, "dev")
    window = config["gke-inference:cluster"]["maintenanceWindow"]
    assert window["startTime"] == "2026-01-03T02:00:00Z"
    engine = to_engine_config(config)  # what `pulumi up` hands the program: JSON text
    settings = parse_settings(project_config(engine), "dev")
    assert settings.cluster.maintenance_window.start_time.isoformat() == "2026-01-03T02:00:00+00:00"


def test_a_date_only_maintenance_window_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys,
        "plan", "-s", "dev", "--no-policy",
        "-c", "cluster.maintenanceWindow.startTime=2026-01-03",
    )  # fmt: skip
    assert_one_clear_error(code, err, "maintenanceWindow.startTime")


def test_binary_and_set_values_are_refused_in_files() -> None:
    for text in ("a: !!binary aGVsbG8=\n", "a: !!set {x, y}\n"):
        with pytest.raises(yaml.YAMLError, match="not accepted"):
            safe_yaml.load_yaml(text)


@pytest.fixture
def serve_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What serve needs to get as far as listening (so that today's failure shows)."""
    monkeypatch.setenv("GKE_INFERENCE_API_TOKEN", TOKEN)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "99999", "argument --port: must be from 1 to 65535, got 99999"),
        ("--port", "0", "argument --port: must be from 1 to 65535, got 0"),
        ("--port", "http", "argument --port: must be an integer from 1 to 65535, got 'http'"),
        ("--workers", "0", "argument --workers: must be from 1 to 64, got 0"),
        ("--workers", "-3", "argument --workers: must be from 1 to 64, got -3"),
    ],
)
def test_serve_validates_its_options(
    option: str,
    value: str,
    message: str,
    serve_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "serve", "--runner", "offline", option, value)
    assert_one_clear_error(code, err, message)


def test_serve_on_a_port_in_use_is_exit_2(
    serve_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "serve", "--runner", "offline", "--port", str(port))
    assert_one_clear_error(code, err, f"--port {port}", "cannot listen there")


def test_size_devices_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "size", str(EXAMPLE), "--devices", "0")
    assert_one_clear_error(code, err, "argument --devices: must be from 1 to 64, got 0")


# ------------------------------------------------- 3. what the platform decides


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--trust-remote-code"], "--trust-remote-code"),
        (["--trust_remote_code"], "--trust-remote-code"),
        (["--trust-remote"], "--trust-remote-code"),  # an abbreviation argparse expands
        (["--model=/etc/passwd"], "--model"),
        (["--model", "/etc/passwd"], "--model"),
        (["--served-model-name=gpt-4"], "--served-model-name"),
        (["--max_model_len=999999"], "--max-model-len"),
        (["-tp=8"], "--tensor-parallel-size"),
        (["-tp", "8"], "--tensor-parallel-size"),
        (["-qfp8"], "--quantization"),
        (["--no-enable-prefix-caching"], "--enable-prefix-caching"),
        (["--port=9000"], "--port"),
        (["--host=127.0.0.1"], "--host"),
        (["--config=/etc/vllm.yaml"], "--config"),
        (["--allowed-local-media-path=/"], "--allowed-local-media-path"),
        (["--api-key", "secret"], "--api-key"),
    ],
)
def test_extra_args_may_not_set_what_the_platform_decides(args: list[str], flag: str) -> None:
    for image in (None, "us-docker.pkg.dev/acme/vllm/vllm-openai:v0.12.0"):  # whatever the image
        data = example()
        data["server"]["extraArgs"] = ["--enable-chunked-prefill", *args]
        if image:
            data["server"]["image"] = image
        with pytest.raises(SpecError) as info:
            parse_spec(data)
        (problem,) = info.value.problems
        assert problem.path == "server.extraArgs"
        assert flag in problem.message


def test_extra_args_the_platform_does_not_own_are_still_accepted() -> None:
    data = example()
    data["server"]["extraArgs"] = [
        "--enable-chunked-prefill",
        "--max-num-batched-tokens=8192",
        "--no-trust-remote-code",  # the safe default, spelled out
    ]
    assert parse_spec(data).server.extra_args == data["server"]["extraArgs"]


def test_the_owned_flags_are_every_flag_the_rendered_command_line_sets() -> None:
    """OWNED_FLAGS must follow the command line: every flag vllm_container renders."""
    from gke_inference.workloads.kinds import KINDS, deployment_for
    from gke_inference.workloads.pods import vllm_container
    from gke_inference.workloads.serving_spec import LoraSettings, SpeculativeSettings
    from gke_inference.workloads.vllm_server import OWNED_FLAGS, _refused_flag, table

    doc = table("0.11.2")
    rendered: set[str] = set()
    for file in sorted(EXAMPLES.glob("*.yaml")):
        spec = load_spec(file)
        if not KINDS[spec.kind].serves_model:
            continue
        sizing = deployment_for(spec).sizing
        assert sizing is not None
        variants = [
            sizing,
            dataclasses.replace(
                sizing, pipeline_parallel=2, quantization="fp8", kv_cache_dtype="fp8", block_size=16
            ),
            dataclasses.replace(sizing, loader="streamer"),
            dataclasses.replace(
                sizing,
                lora=LoraSettings.model_validate(
                    {"adapters": [{"name": "a", "path": "gs://acme-adapters/a"}]}
                ),
                speculative=SpeculativeSettings.model_validate({"method": "ngram"}),
            ),
        ]
        for variant in variants:
            args = vllm_container(variant, "registry.example/vllm:1", model="/models").args
            assert isinstance(args, list)
            rendered |= {_refused_flag(a, doc, OWNED_FLAGS) for a in args if a.startswith("-")}
    assert rendered - set(OWNED_FLAGS) == set()
    assert {"--model", "--host", "--pipeline-parallel-size", "--block-size"} <= rendered
    assert {"--load-format", "--model-loader-extra-config"} <= rendered
    assert {"--enable-lora", "--lora-modules", "--max-lora-rank", "--max-loras"} <= rendered
    assert "--speculative-config" in rendered


@pytest.mark.parametrize(
    "model_id",
    [
        "gs://acme-weights/../../x",
        "gs://acme-weights/a/./b",
        "gs://acme-weights/a//b",
        "gs://acme-weights/..",
    ],
)
def test_gs_model_ids_name_one_place(model_id: str, tmp_path: Path) -> None:
    data = example()
    data["model"]["id"] = model_id
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    (problem,) = info.value.problems
    assert problem.path == "model.id"
    assert "segment" in problem.message


@pytest.mark.parametrize("field", ["input", "output"])
def test_gs_batch_paths_name_one_place(field: str) -> None:
    data = example("batch-llama-8b-l4.yaml")
    data["batch"][field] = "gs://acme-inference-dev-batch/jobs/../../other-team"
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    (problem,) = info.value.problems
    assert problem.path == f"batch.{field}"
    assert "'..' segment" in problem.message


def test_gs_paths_with_plain_segments_are_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = example()
    data["model"]["id"] = "gs://acme-weights/gemma..3/1b/"
    assert parse_spec(data).model is not None
    data = example()
    data["model"]["id"] = "gs://acme-weights/../../x"
    code, out, err = run(capsys, "size", write_spec(tmp_path, data))
    assert_one_clear_error(code, err, "model.id")
    assert "/models/../" not in out


@pytest.mark.parametrize(
    "organization", ["a/b/../c", "../etc", "a", "-acme", "acme corp", "x" * 41]
)
def test_the_organization_is_a_pulumi_organization_name(
    organization: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "plan",
        "-s",
        "dev",
        "--no-policy",
        "-w",
        str(EXAMPLE),
        f"--organization={organization}",  # "-acme" would otherwise read as an option
    )
    assert_one_clear_error(code, err, "argument --organization", "Pulumi organization name")


def test_valid_organizations_are_accepted() -> None:
    from gke_inference.cli import build_parser

    for organization in ("organization", "acme", "acme-corp_ml", "A1b"):
        args = build_parser().parse_args(["plan", "--organization", organization])
        assert args.organization == organization


# --------------------------------------------------------- 4. strict spec numbers


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("concurrency",), True),
        (("concurrency",), "16"),
        (("concurrency",), 16.0),
        (("contextLength",), "8192"),
        (("costOptimized",), "true"),
        (("costOptimized",), 1),
        (("tensorParallel",), True),
        (("tensorParallel",), 2.0),
        (("scaling", "scaleDownStabilizationSeconds"), True),
        (("scaling", "target"), "10"),
        (("scaling", "target"), True),
        (("model", "prequantized"), "no"),
    ],
)
def test_spec_values_are_not_coerced(path: tuple[str, ...], value: Any) -> None:
    data = copy.deepcopy(example())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    (problem,) = info.value.problems
    assert problem.path == ".".join(path)
    assert repr(value) in problem.message


def test_spec_floats_still_take_integers() -> None:
    data = example()
    data["scaling"]["target"] = 10
    assert parse_spec(data).scaling.target == 10


@pytest.mark.parametrize("levels", [100, 5000])
def test_a_deeply_nested_spec_body_is_refused_clearly(levels: int) -> None:
    """A JSON body (the service) nests no deeper than a file may."""
    deep: Any = "x"
    for _ in range(levels):
        deep = {"k": deep}
    data = example()
    data["server"] = deep
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    (problem,) = info.value.problems
    assert problem == Problem("(top level)", f"nested more than {safe_yaml.MAX_DEPTH} levels deep")
