"""Command line: ``gke-inference plan`` and friends."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gke_inference.core.console import (
    Parser,
    add_format_options,
    bounded_int,
    checked,
    progress,
    silence_stdout,
)
from gke_inference.core.errors import ExitCode, Problem, UserInputError

DISTRIBUTION = "gke-inference"  # [project] name in pyproject.toml


def version() -> str:
    """The installed distribution's version (package metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def _plan(args: argparse.Namespace) -> int:
    from gke_inference.offline.planning import plan_platform
    from gke_inference.offline.render import render_tree

    if args.manifests:
        _check_manifests_dir(args.manifests)  # before the plan: it takes seconds
    policy_config = None if args.no_policy else _policy_config(args.policy_config)
    progress(f"planning {args.stack} offline (the provider SDKs load first: a few seconds)...")
    if args.workload:
        from gke_inference.offline.planning import plan_workload

        plan = plan_workload(args.stack, args.workload, args.config, args.organization)
    else:
        plan = plan_platform(args.stack, args.config)
    if args.manifests and not _write_manifests(plan, args.manifests):
        return ExitCode.INVALID_MANIFESTS
    report = (
        None if args.no_policy else _run_policy(plan.resources, policy_config, args.policy_config)
    )
    if args.format == "json":
        doc = plan.to_json()
        if report is not None:
            doc["policy"] = report.to_json()
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(render_tree(plan) + "\n")
        if report is not None:
            from gke_inference.offline.policy_check import render_report

            sys.stdout.write("\n" + render_report(report) + "\n")
    return ExitCode.VIOLATION if report is not None and report.mandatory else ExitCode.OK


def _check_manifests_dir(directory: str) -> None:
    """``--manifests DIR`` must be a directory this user can write, or creatable as one."""
    path = Path(directory)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path and not path.is_dir():
        why = "is a file, not a directory; give a directory (created if missing)"
    elif not existing.is_dir():
        why = f"cannot be created: {existing} is a file, not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        what = "is" if existing == path else f"cannot be created: {existing} is"
        why = f"{what} not a writable directory"
    else:
        return
    raise UserInputError("Cannot write manifests", [Problem(f"--manifests {directory}", why)])


def _write_manifests(plan: Any, directory: str) -> bool:
    """Write one YAML file per Kubernetes object and validate them strictly."""
    from gke_inference.offline.manifests import (
        ManifestError,
        kubernetes_objects,
        omitted,
        validate_manifests,
        write_manifests,
    )

    try:
        problems = validate_manifests(kubernetes_objects(plan))
        written = write_manifests(plan, directory)
    except ManifestError as exc:
        raise UserInputError("Cannot write manifests", [Problem(directory, str(exc))]) from None
    except OSError as exc:  # not writable after all (read-only file system, quota, ...)
        where = exc.filename or directory
        raise UserInputError(
            "Cannot write manifests",
            [Problem(f"--manifests {directory}", f"{where}: {exc.strerror or exc}")],
        ) from None
    for note in omitted(plan):
        sys.stderr.write(f"note: {note}\n")
    sys.stderr.write(f"wrote {len(written)} manifests to {directory}\n")
    if problems:
        sys.stderr.write(f"error: {len(problems)} manifests fail strict schema validation\n")
        for problem in problems:
            sys.stderr.write(problem.render() + "\n")
        return False
    return True


def _policy_config_error(exc: Any) -> UserInputError:
    return UserInputError(
        "Cannot use the policy config",
        [Problem(exc.source, problem) for problem in exc.problems],
    )


def _policy_config(config_file: str | None) -> dict[str, Any] | None:
    """The ``--policy-config`` file, read before any work; problems are exit 2."""
    from gke_inference.policy.config import PolicyConfigError, load_config_file

    if not config_file:
        return None
    try:
        return load_config_file(config_file)
    except PolicyConfigError as exc:
        raise _policy_config_error(exc) from None


def _run_policy(resources: Any, config: dict[str, Any] | None, config_file: str | None) -> Any:
    """Run the policy pack in-process; config problems become a UserInputError (exit 2)."""
    from gke_inference.offline.policy_check import check_resources
    from gke_inference.policy.config import PolicyConfigError

    try:
        return check_resources(resources, config, source=config_file or "policy config")
    except PolicyConfigError as exc:
        raise _policy_config_error(exc) from None


def _load_plan(path: str) -> Any:
    """The resources of a saved plan (``-``: stdin): UTF-8 JSON of bounded depth."""
    from gke_inference.core import safe_yaml
    from gke_inference.offline.policy_check import PlanFileError, resources_from_plan_json

    source = "stdin" if path == "-" else path
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        data = safe_yaml.load_json(safe_yaml.decode(raw))
    except OSError as exc:
        raise PlanFileError(source, f"cannot read: {exc.strerror or exc}") from None
    except safe_yaml.UnsafeInputError as exc:
        raise PlanFileError(source, exc.detail) from None
    except json.JSONDecodeError as exc:
        raise PlanFileError(
            source, f"not JSON ({exc}); save a plan with `gke-inference plan --format json`"
        ) from None
    return resources_from_plan_json(data, source)


def _policy_check(args: argparse.Namespace) -> int:
    from gke_inference.offline.policy_check import PlanFileError, render_report

    config = _policy_config(args.policy_config)
    try:
        resources = _load_plan(args.file)
    except PlanFileError as exc:
        raise UserInputError("Cannot check the plan", [Problem(exc.source, exc.detail)]) from None
    report = _run_policy(resources, config, args.policy_config)
    if args.format == "json":
        sys.stdout.write(json.dumps({"policy": report.to_json()}, indent=2) + "\n")
    else:
        sys.stdout.write(render_report(report) + "\n")
    return ExitCode.VIOLATION if report.mandatory else ExitCode.OK


def _size(args: argparse.Namespace) -> int:
    from gke_inference.workloads.kinds import KINDS, Deployment, deployment_for
    from gke_inference.workloads.sizing import single_device_shape, size
    from gke_inference.workloads.sizing_table import sizing_table
    from gke_inference.workloads.spec import load_spec

    spec = load_spec(args.spec)
    if args.devices is not None and KINDS[spec.kind].serves_model:
        forced = size(spec, devices=args.devices)  # the shape asked for, not the smallest
        deployment = Deployment(spec, forced, forced.compute_class)
    else:
        deployment = deployment_for(spec)  # ComfyUI: not sized, its one-device class
    sizing = deployment.sizing
    compute_class = deployment.compute_class
    weights = _weights(deployment)
    if sizing is None:
        machine_type = single_device_shape(spec).machine_type  # the one device of the class
        accelerator = spec.accelerator
    else:
        machine_type, accelerator = sizing.shape.machine_type, sizing.accelerator.key
    if args.format == "json":
        doc: dict[str, Any] = {
            "workload": spec.name,
            "kind": spec.kind,
            "accelerator": accelerator,
            "machineType": machine_type,
            "computeClass": compute_class,
            "devices": sizing.devices if sizing else 1,
            "tensorParallel": sizing.tensor_parallel if sizing else None,
            "pipelineParallel": sizing.pipeline_parallel if sizing else None,
            "weightsGiB": round(sizing.weights_gib, 2) if sizing else None,
            "kvCacheGiB": round(sizing.kv_cache_gib, 2) if sizing else None,
            "usableGiB": round(sizing.usable_gib, 2) if sizing else None,
            "vllmArgs": _server_args(sizing, weights),
            "weights": weights,
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return ExitCode.OK
    if sizing is not None:
        sys.stdout.write(f"Sizing of {spec.name} ({spec.model.id if spec.model else ''})\n\n")
        sys.stdout.write(sizing_table(sizing) + "\n")
    else:
        acc = spec.accelerator_info
        rows = [
            ("kind", f"{spec.kind} (not sized: one device per replica)"),
            ("accelerator", f"{acc.display_name} ({acc.gke_label})"),
            ("machine type", f"{machine_type} (1 per node)"),
            ("compute class", compute_class),
            ("devices per replica", "1"),
        ]
        width = max(len(k) for k, _ in rows)
        sys.stdout.write(f"Shape of {spec.name} ({spec.kind})\n\n")
        sys.stdout.write("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows) + "\n")
    sys.stdout.write(f"\nweights: {weights['location']}\n  {weights['note']}\n")
    if sizing is not None:
        sys.stdout.write(
            "\nvLLM arguments:\n  " + "\n  ".join(_server_args(sizing, weights)) + "\n"
        )
    return ExitCode.OK


def _server_args(sizing: Any, weights: dict[str, Any]) -> list[str]:
    """The server's flags; the streamer reads the weights' gs:// folder, not the mount."""
    if sizing is None:
        return []
    streamed = weights["location"] if sizing.loader == "streamer" else None
    return list(sizing.vllm_args(model=streamed))


def _weights(deployment: Any) -> dict[str, Any]:
    """Where the weights are expected and whether a download Job fetches them first."""
    from gke_inference.workloads.model_download import needs_download, weights_location

    spec = deployment.spec
    if spec.model is None:  # ComfyUI: checkpoints under the model bucket's comfyui/ prefix
        from gke_inference.workloads.comfyui import MODEL_PREFIX

        return {
            "location": f"gs://<modelBucket>/{MODEL_PREFIX}/",
            "download": False,
            "note": "checkpoints are staged by hand (mounted read-only at /models)",
        }
    download = needs_download(deployment)
    location = weights_location(spec)
    if spec.model.in_bucket:
        note = "read from this bucket as is (a gs:// model is never downloaded)"
    elif download:
        token = spec.hugging_face_token_secret
        how = f"with the token in secret {token}" if token else "anonymously (public model)"
        note = f"a download Job copies {spec.model.id} from Hugging Face first, {how}"
    else:
        note = "no download Job: the weights must already be there (staged by hand)"
    return {"location": location, "download": download, "note": note}


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy-config",
        metavar="FILE",
        help="policy pack config (the JSON of `pulumi preview --policy-pack-config`)",
    )


def _organization_problem(value: str) -> str | None:
    from gke_inference.core.validation import pulumi_organization_problem  # loads pydantic

    return pulumi_organization_problem(value)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gke-inference",
        description="GKE inference reference architecture as a Pulumi program.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser(
        "plan",
        help="show offline what `pulumi up` would register (no cloud, no CLI needed)",
    )
    plan.add_argument("--stack", "-s", default="dev", help="environment: dev, prod, ...")
    add_format_options(plan)
    plan.add_argument(
        "--config",
        "-c",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a config value (pulumi config set --path syntax), repeatable",
    )
    _add_policy_options(plan)
    plan.add_argument(
        "--workload",
        "-w",
        metavar="SPEC",
        help="plan the workload stack <stack>-<name> of this spec on top of the platform plan",
    )
    plan.add_argument(
        "--organization",
        default="organization",
        type=checked(_organization_problem),
        help="organization in the platform StackReference (organization/gke-inference/<stack>)",
    )
    plan.add_argument(
        "--manifests",
        metavar="DIR",
        help="also write every Kubernetes object as YAML (kubectl apply -f DIR), validated strictly",
    )
    plan.add_argument(
        "--no-policy", action="store_true", help="skip the policy pack (exit code ignores it)"
    )
    plan.set_defaults(handler=_plan)

    sizer = sub.add_parser(
        "size", help="size a workload spec: devices, parallelism, vLLM flags, compute class"
    )
    sizer.add_argument("spec", metavar="SPEC", help="workload spec file (YAML or JSON)")
    sizer.add_argument(
        "--devices", type=bounded_int(1, 64), help="require this many devices per node"
    )
    add_format_options(sizer)
    sizer.set_defaults(handler=_size)

    policy = sub.add_parser("policy", help="run the policy pack offline")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser(
        "check",
        help="check a saved `plan --format json` file (exit 1 on a mandatory violation)",
    )
    check.add_argument("file", metavar="FILE", help="saved plan JSON, or - for stdin")
    add_format_options(check)
    _add_policy_options(check)
    check.set_defaults(handler=_policy_check)

    from gke_inference.automation.cli import add_automation_commands

    add_automation_commands(sub)  # platform, workload, promote, serve
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            code: int = args.handler(args)
        except UserInputError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return ExitCode.USER_ERROR
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        # The reader went away (``| head``, a pager quit): not an error of this
        # command. As the Python docs recommend, point stdout at devnull so the
        # interpreter's final flush does not fail again, and exit quietly.
        silence_stdout()
        return ExitCode.OK
    return code


if __name__ == "__main__":
    raise SystemExit(main())
