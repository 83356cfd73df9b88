"""Plan the platform stack offline: config file -> program under mocks -> Plan."""

from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path
from typing import Any

from gke_inference.core.contract import (
    WORKLOADS_PROJECT,
    PlatformOutputs,
    platform_stack_name,
    workload_stack_name,
)
from gke_inference.core.stack_config import (
    find_project_dir,
    load_stack_config,
    project_name,
    to_engine_config,
)
from gke_inference.offline.recording import Plan, PlanMocks, RecordingMonitor, run_offline
from gke_inference.workloads.kinds import Deployment, deployment_for
from gke_inference.workloads.program import workload_program
from gke_inference.workloads.spec import load_spec


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

    plan = run_offline(
        program,
        project=project_name(root),
        stack=stack,
        config=to_engine_config(config),
        monitor=monitor,
    )
    plan.outputs = typed_platform_outputs(plan.outputs)
    return plan


def typed_platform_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """The platform's outputs with the contract's integers as ints (the engine hands
    numbers over as floats): ``gatewayBackendTimeoutSeconds`` is 3600, not 3600.0."""
    integers = {
        f.metadata["output"] for f in dataclasses.fields(PlatformOutputs) if str(f.type) == "int"
    }
    return {
        key: int(value)
        if key in integers and isinstance(value, float) and value.is_integer()
        else value
        for key, value in outputs.items()
    }


def plan_workload(
    stack: str,
    spec_file: str,
    overrides: list[str] | None = None,
    organization: str = "organization",
    project_dir: Path | None = None,
    platform: Plan | None = None,
) -> Plan:
    """Plan the workload stack of a spec file offline on top of the platform plan of ``stack``.

    A spec that cannot be deployed (it does not fit its accelerator) fails
    before the platform is planned.
    """
    deployment = deployment_for(load_spec(spec_file))
    if platform is None:
        platform = plan_platform(stack, overrides, project_dir)
    return plan_deployment(deployment, stack, organization, platform)


def plan_deployment(
    deployment: Deployment, environment: str, organization: str, platform: Plan
) -> Plan:
    """The workload stack ``<env>-<workload>`` of one deployment on top of a platform plan.

    The platform plan's outputs feed the mocked StackReference exactly as the
    real platform stack's outputs would. Many workloads can be planned against
    one platform plan (tests, the offline runner).
    """
    mocks = PlanMocks(
        str(platform.outputs.get("projectId")),
        stack_outputs={
            platform_stack_name(organization, environment): (
                platform.outputs,
                platform.secret_outputs,
            )
        },
    )
    return run_offline(
        workload_program(deployment, environment, organization),
        project=WORKLOADS_PROJECT,
        stack=workload_stack_name(environment, deployment.spec.name),
        config={},
        organization=organization,
        mocks=mocks,
    )
