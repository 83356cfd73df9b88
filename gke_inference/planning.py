"""Plan the platform stack offline: config file -> program under mocks -> Plan."""

from __future__ import annotations

import runpy
from pathlib import Path

from gke_inference.errors import Problem, SettingsError
from gke_inference.offline import Plan, RecordingMonitor, run_offline
from gke_inference.stack_config import load_stack_config, project_name, to_engine_config

PLATFORM_PROJECT = "gke-inference"


def find_project_dir(start: Path | None = None) -> Path:
    """The folder holding the platform's Pulumi.yaml: cwd or a parent, else the checkout."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").exists() and project_name(candidate) == PLATFORM_PROJECT:
            return candidate
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "Pulumi.yaml").exists():
        return checkout
    raise SettingsError(
        "Cannot find the platform project",
        [Problem("Pulumi.yaml", f"no {PLATFORM_PROJECT} project above {here}; run from the repo")],
    )


def plan_platform(
    stack: str,
    overrides: list[str] | None = None,
    project_dir: Path | None = None,
    monitor: RecordingMonitor | None = None,
) -> Plan:
    """Run the real ``__main__.py`` of the platform stack under the mock runtime."""
    root = project_dir or find_project_dir()
    config = load_stack_config(root, stack, overrides)
    program_file = str(root / "__main__.py")

    def program() -> None:
        runpy.run_path(program_file, run_name="__main__")

    return run_offline(
        program,
        project=project_name(root),
        stack=stack,
        config=to_engine_config(config),
        monitor=monitor,
    )


def plan_workload(
    stack: str,
    spec_file: str,
    overrides: list[str] | None = None,
    organization: str = "organization",
    project_dir: Path | None = None,
    platform: Plan | None = None,
) -> Plan:
    """Plan a workload stack offline on top of the platform plan of ``stack``.

    The platform stack is planned first (or ``platform`` is reused, when many
    workloads are planned against one environment); its outputs feed the mocked
    StackReference exactly as the real platform stack's outputs would.
    """
    from gke_inference.offline import PlanMocks
    from gke_inference.workloads.platform_ref import (
        WORKLOADS_PROJECT,
        platform_stack_name,
        workload_stack_name,
    )
    from gke_inference.workloads.program import workload_program
    from gke_inference.workloads.sizing import size
    from gke_inference.workloads.spec import load_spec

    spec = load_spec(spec_file)
    if spec.kind != "comfyui":
        size(spec)  # a spec that cannot fit fails before anything is planned
    if platform is None:
        platform = plan_platform(stack, overrides, project_dir)
    reference = platform_stack_name(organization, stack)
    mocks = PlanMocks(
        str(platform.outputs.get("projectId")),
        stack_outputs={reference: (platform.outputs, platform.secret_outputs)},
    )
    return run_offline(
        workload_program(spec, stack, organization),
        project=WORKLOADS_PROJECT,
        stack=workload_stack_name(stack, spec.name),
        config={},
        organization=organization,
        mocks=mocks,
    )
