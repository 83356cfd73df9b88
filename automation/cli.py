"""``gke-inference platform|workload|promote|serve``: the Automation API from a shell.

Registered on the main parser by :func:`add_automation_commands`. Progress
lines are printed as the engine (or the offline plan) produces them.

Exit codes (:class:`~gke_inference.core.errors.ExitCode`): 0 ok, 1 the policy
pack rejected the stack, 2 a user error (bad spec, a spec the environment
cannot deploy, unknown environment, no Pulumi CLI, stack busy or missing, a
production change not confirmed), 4 the operation failed in Pulumi.

Confirmation: ``up`` and ``destroy`` of a production environment (settings
``environment: prod`` or ``production: true``), and ``promote`` to one, ask
"Do you want to perform this update?" on a terminal, after a preview (skipped
with ``--skip-preview``); ``--yes`` (``-y``) approves without asking. Without
a terminal on stdin and without ``--yes`` they refuse (exit 2) before any
stack operation.
"""

from __future__ import annotations

import argparse
import difflib
import json
import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gke_inference.core.console import (
    add_format_options,
    bounded_int,
    confirm,
    progress,
    stdin_is_terminal,
    write_line,
)
from gke_inference.core.errors import ExitCode, Problem, UserInputError

if TYPE_CHECKING:
    from gke_inference.automation.runner import Runner, StackResult
    from gke_inference.workloads.spec import WorkloadSpec

RUNNERS = ("pulumi", "offline")


def _print(line: str) -> None:
    # An operation keeps going when the reader of its log went away (| head).
    write_line(line)


def _error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def _runner(args: argparse.Namespace) -> Runner:
    """The ``--runner``, configured from the environment (:class:`AutomationSettings`)."""
    from gke_inference.automation.settings import AutomationSettings

    settings = AutomationSettings.from_env()
    if args.runner == "offline":
        from gke_inference.automation.offline_runner import OfflineRunner

        return OfflineRunner(settings, state_file=settings.state_dir / "offline-state.json")
    from gke_inference.automation.pulumi_runner import PulumiRunner

    return PulumiRunner(settings)


class NotConfirmedError(Exception):
    """A production change was not confirmed (exit 2, nothing was done)."""


def is_production(runner: Runner, environment: str) -> bool:
    """Whether ``environment``'s settings say production (``environment: prod`` or
    ``production: true``). Settings that cannot be read fall back to the name
    ``prod``: the operation itself reports what is wrong with them."""
    from gke_inference.automation.deployability import environment_settings

    try:
        return environment_settings(runner.settings.project_dir, environment).is_production
    except UserInputError:
        return environment == "prod"


def _approve(
    args: argparse.Namespace,
    runner: Runner,
    environment: str,
    what: str,
    preview: Callable[[], object] | None = None,
    *,
    kind: str = "update",
) -> None:
    """Ask before a change to a production environment; raise NotConfirmedError if not approved.

    ``what`` names the change ("platform up of prod"), ``kind`` is ``update`` or
    ``destroy``; ``preview`` shows the change first (unless ``--skip-preview``).
    Nothing is asked outside production or with --yes.
    """
    if args.yes or not is_production(runner, environment):
        return
    if not stdin_is_terminal():
        raise NotConfirmedError(
            f"{what}: {environment} is a production environment and stdin is not a "
            "terminal to confirm on; pass --yes (-y) to approve"
        )
    if preview is not None and not getattr(args, "skip_preview", False):
        preview()
    if not confirm(f"Do you want to perform this {kind}?"):
        raise NotConfirmedError(f"confirmation declined, not proceeding with the {kind}")


def _progress(runner: Runner, environment: str) -> None:
    if runner.name == "offline":
        progress(f"planning {environment} offline (the provider SDKs load first: a few seconds)...")


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map automation errors to exit codes and one clear message (no traceback)."""

    def run(args: argparse.Namespace) -> int:
        from gke_inference.automation.errors import (
            AutomationError,
            NotDeployedError,
            PolicyViolationError,
            PulumiCLIMissingError,
            StackBusyError,
            UnknownEnvironmentError,
        )

        try:
            return handler(args)
        except NotConfirmedError as exc:
            _error(str(exc))
            return ExitCode.USER_ERROR
        except PolicyViolationError as exc:
            _error(str(exc))
            return ExitCode.VIOLATION
        except (
            PulumiCLIMissingError,
            StackBusyError,
            NotDeployedError,
            UnknownEnvironmentError,
        ) as exc:
            _error(str(exc))
            return ExitCode.USER_ERROR
        except AutomationError as exc:
            _error(str(exc))
            return ExitCode.OPERATION_FAILED

    return run


def _show_result(result: StackResult) -> None:
    _print(f"{result.operation} of {result.stack}: done")


def _show_outputs(outputs: dict[str, Any]) -> None:
    _print(json.dumps(outputs, indent=2, sort_keys=True))


# --------------------------------------------------------------------------- platform


def _platform(args: argparse.Namespace) -> int:
    from gke_inference.automation.runner import PlatformStack

    runner = _runner(args)
    target = PlatformStack(args.stack)
    command = args.platform_command
    if command == "outputs":
        _show_outputs(runner.outputs(target))
        return ExitCode.OK
    _progress(runner, args.stack)
    if command == "up":
        preview = lambda: runner.run("preview", target, _print)  # noqa: E731
        _approve(args, runner, args.stack, f"platform up of {args.stack}", preview)
    elif command == "destroy":
        what = f"platform destroy of {args.stack}"
        _approve(args, runner, args.stack, what, kind="destroy")
    _show_result(runner.run(command, target, _print))
    return ExitCode.OK


# --------------------------------------------------------------------------- workloads


def _load(file: str | None, command: str) -> WorkloadSpec:
    from gke_inference.workloads.spec import load_spec

    if not file:
        raise UserInputError(
            f"workload {command} needs a spec", [Problem("--file", "give the workload spec file")]
        )
    return load_spec(file)


def _workload(args: argparse.Namespace) -> int:
    from gke_inference.automation.runner import WorkloadStack

    runner = _runner(args)
    command = args.workload_command
    if command == "list":
        names = runner.list_workloads(args.stack)
        if args.format == "json":
            _print(json.dumps(names))
        else:
            _print("\n".join(names) if names else f"no workloads deployed in {args.stack}")
        return ExitCode.OK
    if command in ("destroy", "outputs"):
        name = args.name or (_load(args.file, command).name if args.file else None)
        if not name:
            raise UserInputError(
                f"workload {command} needs a name",
                [Problem("--name", "give --name NAME or --file SPEC")],
            )
        target = WorkloadStack(args.stack, name)
        if command == "outputs":
            _show_outputs(runner.outputs(target))
        else:
            what = f"workload destroy of {args.stack}-{name}"
            _approve(args, runner, args.stack, what, kind="destroy")
            _show_result(runner.run("destroy", target, _print))
        return ExitCode.OK
    spec = _load(args.file, command)
    workload = WorkloadStack.of(args.stack, spec)
    _progress(runner, args.stack)
    if command == "up":
        preview = lambda: runner.run("preview", workload, _print)  # noqa: E731
        _approve(args, runner, args.stack, f"workload up of {args.stack}-{spec.name}", preview)
    _show_result(runner.run(command, workload, _print))
    return ExitCode.OK


# --------------------------------------------------------------------------- promote


def _plan_lines(plan: Any) -> list[str]:
    """A plan as stable text: resources by type and name (URNs differ per stack), then outputs."""
    doc: dict[str, Any] = {}
    for resource in plan.resources:
        if resource.type == "pulumi:pulumi:Stack":
            continue
        doc[f"{resource.type} {resource.name}"] = resource.inputs
    doc["(outputs)"] = plan.shown_outputs()  # cloud-computed ones: [unknown]
    return json.dumps(doc, indent=2, sort_keys=True, default=str).splitlines()


def plan_diff(source: Any, target: Any, source_name: str, target_name: str) -> list[str]:
    return list(
        difflib.unified_diff(
            _plan_lines(source),
            _plan_lines(target),
            fromfile=source_name,
            tofile=target_name,
            lineterm="",
        )
    )


def _promote(args: argparse.Namespace) -> int:
    from gke_inference.automation.deployability import checked_deployment
    from gke_inference.automation.errors import NotDeployedError, PlatformNotDeployedError
    from gke_inference.automation.offline_runner import OfflineRunner
    from gke_inference.automation.runner import PlatformStack, WorkloadStack

    spec = _load(args.file, "promote")
    runner = _runner(args)
    if args.source == args.target:
        raise UserInputError(
            "Cannot promote", [Problem("--to", "must name another environment than --from")]
        )
    source, target = WorkloadStack.of(args.source, spec), WorkloadStack.of(args.target, spec)
    try:
        runner.outputs(source)
    except NotDeployedError:
        raise UserInputError(
            "Cannot promote",
            [
                Problem(
                    "--from",
                    f"{spec.name} is not deployed in {args.source}; deploy it there first "
                    f"(gke-inference workload up --stack {args.source} --file {args.file})",
                )
            ],
        ) from None
    # The target must be able to run it before the diff is shown (and before the update):
    # its platform deployed (the workload's StackReference reads it) and its classes.
    try:
        runner.outputs(PlatformStack(args.target))
    except NotDeployedError:
        raise PlatformNotDeployedError(
            runner.stack_name(target),
            runner.stack_name(PlatformStack(args.target)),
            args.target,
        ) from None
    deployment = checked_deployment(runner.settings.project_dir, args.target, spec)
    planner = OfflineRunner(runner.settings)
    progress(f"planning {spec.name} in {args.source} and {args.target} offline (a few seconds)...")
    diff = plan_diff(
        planner.workload_plan(args.source, deployment),
        planner.workload_plan(args.target, deployment),
        f"{runner.stack_name(source)} (plan)",
        f"{runner.stack_name(target)} (plan)",
    )
    _print(f"Promoting {spec.name}: {args.source} -> {args.target}")
    for line in diff or ["(the two plans are identical)"]:
        _print(line)
    # The diff above is the preview of this change.
    _approve(args, runner, args.target, f"promote of {spec.name} to {args.target}")
    _show_result(runner.run("up", target, _print))
    return ExitCode.OK


# --------------------------------------------------------------------------- serve

#: Most operations ``serve --workers`` runs in parallel (each is a Pulumi process).
MAX_WORKERS = 64


def _listen(host: str, port: int) -> socket.socket:
    """The service's listening socket, bound now: an address in use is one clear error.

    Bound as uvicorn binds (SO_REUSEADDR), and handed to it, so the port cannot
    be taken between this check and the server's start.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UserInputError(
            "Cannot start the service",
            [Problem(f"--host {host} --port {port}", f"cannot listen there: {reason}")],
        ) from None
    sock.set_inheritable(True)
    return sock


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gke_inference.automation.databases import open_store, redact_error, redact_url
    from gke_inference.automation.pulumi_runner import PulumiRunner
    from gke_inference.automation.service import ServiceConfigError, create_app
    from gke_inference.automation.settings import state_dir

    runner = _runner(args)
    if isinstance(runner, PulumiRunner):
        runner.check_cli()  # refuse to start a service that can only fail
    db = args.db or str(state_dir() / "service.db")
    try:
        store = open_store(db)
    except Exception as exc:  # noqa: BLE001 - any driver error: report it, do not start
        _error(
            f"cannot open the database {redact_url(db)}: {type(exc).__name__}: "
            f"{redact_error(str(exc), db)}"
        )
        return ExitCode.USER_ERROR
    try:
        app = create_app(runner, store, workers=args.workers)
    except ServiceConfigError as exc:
        store.close()
        _error(str(exc))
        return ExitCode.USER_ERROR
    try:
        sock = _listen(args.host, args.port)
    except UserInputError:
        store.close()
        raise
    _print(
        f"gke-inference service on http://{args.host}:{args.port} "
        f"(runner {runner.name}, database {redact_url(db)}, OpenAPI at /openapi.json)"
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        store.close()
    if not server.started:  # the app's startup failed; uvicorn logged why
        _error("the service did not start")
        return ExitCode.OPERATION_FAILED
    return ExitCode.OK


# --------------------------------------------------------------------------- parser


def _runner_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runner",
        choices=RUNNERS,
        default="pulumi",
        help="pulumi: the Automation API over the Pulumi CLI; offline: the offline "
        "plan and policy pack, state in $XDG_STATE_HOME/gke-inference (no CLI, no cloud)",
    )


def _approval_options(parser: argparse.ArgumentParser, *, preview: bool = True) -> None:
    parser.add_argument(
        "--yes",
        "-y",
        action="store_true",
        help="approve a change to a production environment without asking (needed "
        "when stdin is not a terminal)",
    )
    if preview:
        parser.add_argument(
            "--skip-preview",
            action="store_true",
            help="do not preview a production up before asking for confirmation",
        )


def add_automation_commands(sub: Any) -> None:
    """Register platform, workload, promote and serve on the main parser's subparsers."""
    platform = sub.add_parser("platform", help="preview, deploy or destroy a platform stack")
    platform.add_argument(
        "platform_command",
        choices=["up", "preview", "refresh", "destroy", "outputs"],
        help="the operation (up and destroy of production ask for confirmation)",
    )
    platform.add_argument("--stack", "-s", required=True, help="environment: dev, prod, ...")
    _approval_options(platform)
    _runner_option(platform)
    platform.set_defaults(handler=_guarded(_platform))

    workload = sub.add_parser(
        "workload", help="deploy, preview, destroy or list workload stacks <env>-<workload>"
    )
    workload.add_argument(
        "workload_command",
        choices=["up", "preview", "destroy", "list", "outputs"],
        help="the operation (up and destroy in production ask for confirmation)",
    )
    workload.add_argument("--stack", "-s", required=True, help="environment: dev, prod, ...")
    workload.add_argument("--file", "-f", metavar="SPEC", help="workload spec (YAML or JSON)")
    workload.add_argument("--name", help="workload name (destroy/outputs without --file)")
    add_format_options(workload)
    _approval_options(workload)
    _runner_option(workload)
    workload.set_defaults(handler=_guarded(_workload))

    promote = sub.add_parser(
        "promote", help="show the plan diff of a workload between two environments, then deploy"
    )
    promote.add_argument(
        "--file", "-f", metavar="SPEC", required=True, help="workload spec (YAML or JSON)"
    )
    promote.add_argument(
        "--from", dest="source", required=True, metavar="ENV", help="where it is deployed"
    )
    promote.add_argument(
        "--to", dest="target", required=True, metavar="ENV", help="where to deploy it"
    )
    _approval_options(promote, preview=False)  # the plan diff is the preview
    _runner_option(promote)
    promote.set_defaults(handler=_guarded(_promote))

    serve = sub.add_parser(
        "serve", help="run the HTTP service (needs GKE_INFERENCE_API_TOKEN in the environment)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=bounded_int(1, 65535), default=8080, help="port to listen on")
    serve.add_argument(
        "--db",
        metavar="PATH_OR_URL",
        help="SQLite file or postgresql:// URL (default $XDG_STATE_HOME/gke-inference/service.db)",
    )
    serve.add_argument(
        "--workers",
        type=bounded_int(1, MAX_WORKERS),
        default=4,
        help="operations run in parallel",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level",
    )
    _runner_option(serve)
    serve.set_defaults(handler=_guarded(_serve))
