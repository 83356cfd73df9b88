"""The platform/ folder must never shadow the standard library's platform module."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

from gke_inference.offline.planning import plan_platform
from gke_inference.offline.recording import run_offline

REPO = Path(__file__).resolve().parents[1]
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def _is_stdlib(module_file: str | None) -> bool:
    return module_file is not None and Path(module_file).resolve().parent == STDLIB


def test_platform_is_stdlib_in_the_tests() -> None:
    import platform

    assert _is_stdlib(platform.__file__)
    assert platform.system()
    assert not (REPO / "platform" / "__init__.py").exists()


def test_platform_is_stdlib_inside_the_program() -> None:
    seen: dict[str, str | None] = {}

    def program() -> None:
        # What the Pulumi language host does: the project dir first on sys.path.
        sys.path.insert(0, str(REPO))
        try:
            import platform

            seen["platform"] = platform.__file__
            import runpy

            runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")
            import gke_inference.platform.base as base

            seen["base"] = base.__file__
        finally:
            sys.path.remove(str(REPO))

    plan = run_offline(
        program,
        project="gke-inference",
        stack="dev",
        config={"gke-inference:project": "acme-inference-dev"},
    )
    assert _is_stdlib(seen["platform"])
    assert seen["base"] == str(REPO / "platform" / "base.py")
    assert plan.by_type("gcp:container/cluster:Cluster")
    assert plan_platform("dev", project_dir=REPO).resources


def test_platform_is_stdlib_for_a_program_run_from_the_repo_root() -> None:
    code = (
        "import sys; sys.path.insert(0, '.'); import platform, pulumi; "
        "import gke_inference.platform.cluster as c; "
        "print(platform.__file__); print(platform.system()); print(c.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    platform_file, system, cluster_file = result.stdout.split()
    assert _is_stdlib(platform_file)
    assert system
    assert cluster_file == str(REPO / "platform" / "cluster.py")
