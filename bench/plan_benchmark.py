"""Benchmark of the offline plan (run by hand: .venv/bin/python bench/plan_benchmark.py).

Prints, for the platform plan of dev and prod, the wall time and the Pulumi
SDK's own floor measured in the same process: the same provider modules
imported and the same number of resources (same type tokens and parents)
registered under the mock runtime with empty inputs. Then the time to plan
1, 10 and 50 workload stacks against one platform plan, and peak memory.

Targets (issue 8): platform plan within 1.3x of the floor; each additional
workload plan under 50 ms after warm-up.
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gke_inference.offline.planning import plan_platform, plan_workload  # noqa: E402
from gke_inference.offline.recording import Plan, run_offline  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), result


def _classes() -> dict[str, type[pulumi.CustomResource]]:
    """Every loaded resource class by its type token (provider SDK classes included)."""
    found: dict[str, type[pulumi.CustomResource]] = {}
    stack: list[type] = [pulumi.CustomResource]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        token = cls.__dict__.get("pulumi_type")
        if isinstance(token, str):
            found.setdefault(token, cls)
    return found


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def floor_program(plan: Plan) -> Callable[[], None]:
    """The SDK's floor for this plan: the same provider classes, the same number of
    resources with the same parents, and trivial inputs (top-level scalars only:
    names, ids, references the classes require; no nested settings, no applies)."""
    ordered = sorted(plan.resources, key=lambda r: r.urn.count("$"))  # parents first
    classes = _classes()

    def program() -> None:
        made: dict[str, pulumi.Resource] = {}
        for r in ordered:
            if r.type == "pulumi:pulumi:Stack":
                continue
            opts = pulumi.ResourceOptions(parent=made.get(r.parent or ""))
            if not r.custom:
                made[r.urn] = pulumi.ComponentResource(r.type, r.name, None, opts)
                continue
            cls = classes.get(r.type)
            scalars = {
                _snake(k): v
                for k, v in r.inputs.items()
                if isinstance(v, str | int | float | bool) and k not in ("id", "urn")
            }
            if r.type == "pulumi:providers:kubernetes":
                made[r.urn] = k8s.Provider(r.name, opts=opts)
            elif r.type.startswith("kubernetes:") and cls is None:
                made[r.urn] = k8s.apiextensions.CustomResource(
                    r.name, api_version=str(r.inputs.get("apiVersion")),
                    kind=str(r.inputs.get("kind")), opts=opts,
                )  # fmt: skip
            elif cls is not None:
                try:
                    made[r.urn] = cls(r.name, opts=opts, **scalars)
                except TypeError:
                    made[r.urn] = pulumi.CustomResource(r.type, r.name, {}, opts)
            else:
                made[r.urn] = pulumi.CustomResource(r.type, r.name, {}, opts)

    return program


def cold_cli(stack: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "gke_inference", "plan", "--stack", stack, "--no-policy", "--format", "json"],
        cwd=REPO, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    print(
        f"cold CLI (new process, imports included): dev {cold_cli('dev'):.2f} s, prod {cold_cli('prod'):.2f} s"
    )
    plan_platform("dev", project_dir=REPO)  # warm-up: imports, bytecode, caches
    for stack in ("dev", "prod"):
        seconds, plan = timed(lambda s=stack: plan_platform(s, project_dir=REPO), args.repeat)
        assert isinstance(plan, Plan)
        floor, _ = timed(
            lambda p=plan: run_offline(
                floor_program(p), project=p.project, stack=p.stack, config={}
            ),
            args.repeat,
        )
        print(
            f"platform plan {stack}: {seconds * 1000:.0f} ms for {len(plan.resources)} resources; "
            f"SDK floor {floor * 1000:.0f} ms; ratio {seconds / floor:.2f} (target <= 1.30)"
        )

    example = str(REPO / "workloads" / "examples" / "gemma-3-1b-l4.yaml")
    platform = plan_platform("dev", project_dir=REPO)
    plan_workload("dev", example, project_dir=REPO, platform=platform)  # warm-up
    for count in (1, 10, 50):
        start = time.perf_counter()
        for _ in range(count):
            plan_workload("dev", example, project_dir=REPO, platform=platform)
        total = time.perf_counter() - start
        print(
            f"{count:>2} workload plans: {total * 1000:.0f} ms total, {total / count * 1000:.1f} ms each (target < 50 ms)"
        )
    workload = plan_workload("dev", example, project_dir=REPO, platform=platform)
    floor, _ = timed(
        lambda: run_offline(
            floor_program(workload), project=workload.project, stack=workload.stack, config={}
        ),
        args.repeat,
    )
    print(
        f"SDK floor of one workload plan ({len(workload.resources)} resources, trivial inputs): "
        f"{floor * 1000:.1f} ms"
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS): {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
