"""The structure the code must keep: layers, module size, SDK internals, one outputs contract.

Layers, bottom to top (a module may import its own layer and the ones below):

    catalog (data) < core < platform < inference < workloads < policy < offline
    < automation < entry points (CLI, platform program)

The worker is a separate distribution and imports nothing of gke_inference.
Imports are read from the source (module level and inside functions, and
``TYPE_CHECKING`` blocks), so a lazy import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from gke_inference.core.contract import (
    SECRET_OUTPUTS,
    PlatformOutputs,
    export_platform_outputs,
)
from gke_inference.core.errors import SpecError
from gke_inference.offline.planning import plan_workload
from gke_inference.workloads.kinds import KINDS, deployment_for
from gke_inference.workloads.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
# Folder (as shipped) -> import name, as pyproject.toml's package-dir maps them.
FOLDERS = {
    "gke_inference": "gke_inference",
    "platform": "gke_inference.platform",
    "inference": "gke_inference.inference",
    "workloads": "gke_inference.workloads",
    "policy": "gke_inference.policy",
    "automation": "gke_inference.automation",
}
# Module prefix -> layer rank; the longest matching prefix decides.
LAYERS = {
    "gke_inference.inference.catalog": 0,
    "gke_inference.core": 1,
    "gke_inference.platform": 2,
    "gke_inference.inference": 3,
    "gke_inference.workloads": 4,
    "gke_inference.policy": 5,
    "gke_inference.offline": 6,
    "gke_inference.automation": 7,
    "gke_inference.cli": 8,
    "gke_inference.__main__": 8,
    "gke_inference.program": 8,
}
MAX_LINES = 500
REASON = "Over 500 lines because"


def shipped_modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([package, *parts])] = path
    return out


MODULES = shipped_modules()


def rank(module: str) -> int | None:
    best = max(
        (p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None
    )
    return None if best is None else LAYERS[best]


def imports_of(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from pkg import module` imports that module (and pkg's __init__,
            # which must then be empty of project imports: checked as its own module).
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in MODULES else base)
    return found


def test_the_layout_is_what_the_layers_name() -> None:
    modules = shipped_modules()
    unranked = sorted(m for m in modules if rank(m) is None)
    assert unranked == [], "give every shipped module a layer"
    for prefix in LAYERS:
        assert any(m == prefix or m.startswith(prefix + ".") for m in modules), prefix


def test_no_layer_imports_one_above_it() -> None:
    upward = []
    for module, path in shipped_modules().items():
        own = rank(module)
        assert own is not None
        for imported in imports_of(path, module):
            other = rank(imported)
            if other is not None and other > own and imported in shipped_modules():
                upward.append(f"{module} (layer {own}) imports {imported} (layer {other})")
    assert upward == []


def test_the_core_imports_only_the_catalog_of_the_layers_above_it() -> None:
    for module, path in shipped_modules().items():
        if rank(module) != 1:
            continue
        project = {i for i in imports_of(path, module) if i.startswith("gke_inference.")}
        outside = {
            i
            for i in project
            if not i.startswith(("gke_inference.core", "gke_inference.inference.catalog"))
        }
        assert outside == set(), module


def test_the_worker_stands_alone() -> None:
    for path in sorted((REPO / "worker").rglob("*.py")):
        names = imports_of(path, "gke_inference_worker.x")
        assert not {n for n in names if n.startswith("gke_inference.")}, path


def test_private_sdk_names_are_used_in_one_module() -> None:
    owner = "gke_inference.core.sdk_internals"
    users = sorted(
        module
        for module, path in shipped_modules().items()
        if module != owner and any(i.startswith("pulumi.runtime") for i in imports_of(path, module))
    )
    assert users == []


def test_long_modules_say_why() -> None:
    long = []
    for module, path in shipped_modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES and REASON not in (
            ast.get_docstring(ast.parse(text)) or ""
        ):
            long.append(f"{module}: {text.count(chr(10))} lines")
    assert long == []


# --------------------------------------------------------------------------- outputs contract


def test_the_platform_exports_exactly_the_contract(plan_of) -> None:  # type: ignore[no-untyped-def]
    for stack in ("dev", "prod"):
        plan = plan_of(stack)
        assert set(plan.outputs) == PlatformOutputs.all_keys()
        assert set(plan.secret_outputs) == set(SECRET_OUTPUTS)


def test_the_contract_refuses_an_incomplete_or_unknown_export() -> None:
    values = {field: "x" for field in PlatformOutputs.keys().values()}
    exported: dict[str, object] = {}
    export_platform_outputs(exported.__setitem__, values, {"kubeconfig": "k"})
    assert set(exported) == PlatformOutputs.all_keys()
    with pytest.raises(ValueError, match="missing \\['model_bucket'\\]"):
        export_platform_outputs(
            print, {k: v for k, v in values.items() if k != "model_bucket"}, {"kubeconfig": "k"}
        )
    with pytest.raises(ValueError, match="not in the contract \\['bucket'\\]"):
        export_platform_outputs(print, {**values, "bucket": "b"}, {"kubeconfig": "k"})


def test_workloads_read_the_contract_back_with_its_types(plan_of) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    plan = plan_of("prod")

    async def value_of(key: str) -> object:
        return plan.outputs.get(key)

    outputs = asyncio.run(PlatformOutputs.read(value_of, stack="prod", environment="prod"))
    assert outputs.gateway_backend_timeout_seconds == 3600
    assert isinstance(outputs.gateway_backend_timeout_seconds, int)
    assert outputs.compute_classes["h100-80gb-x4"] == "gpu-h100-80gb-x4"
    assert outputs.model_bucket == plan.outputs["modelBucket"]

    async def old_platform(key: str) -> object:  # deployed before the timeout was exported
        return None if key == "gatewayBackendTimeoutSeconds" else plan.outputs.get(key)

    older = asyncio.run(PlatformOutputs.read(old_platform, stack="prod", environment="prod"))
    assert older.gateway_backend_timeout_seconds == 3600

    async def no_bucket(key: str) -> object:
        return None if key == "modelBucket" else plan.outputs.get(key)

    with pytest.raises(SpecError, match="missing modelBucket"):
        asyncio.run(PlatformOutputs.read(no_bucket, stack="prod", environment="prod"))


@pytest.mark.parametrize(("example", "timeout", "expected"), [
    ("gemma-3-1b-l4.yaml", 900, 900),  # online: the environment's timeout
    ("comfyui-l4.yaml", 900, 600),  # ComfyUI asks for less than the environment allows
    ("comfyui-l4.yaml", 300, 300),  # ... and never more
])  # fmt: skip
def test_the_gateway_backend_timeout_reaches_the_workloads(
    example: str, timeout: int, expected: int
) -> None:
    plan = plan_workload(
        "dev",
        str(REPO / "workloads" / "examples" / example),
        [f"inference.gateway.backendTimeoutSeconds={timeout}"],
        project_dir=REPO,
    )
    policy = plan.one("kubernetes:networking.gke.io/v1:GCPBackendPolicy")
    assert policy.inputs["spec"]["default"]["timeoutSec"] == expected


# --------------------------------------------------------------------------- kinds


def test_every_kind_is_built_and_serving_kinds_are_sized() -> None:
    assert set(KINDS) == {"online", "batch", "streaming", "comfyui"}
    online = deployment_for(parse_spec({
        "name": "g", "kind": "online", "accelerator": "l4",
        "model": {"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"},
    }))  # fmt: skip
    assert online.sizing is not None and online.compute_class == online.sizing.compute_class
    comfy = deployment_for(parse_spec({
        "name": "c", "kind": "comfyui", "accelerator": "l4", "costOptimized": True,
        "comfyui": {"image": "docker.io/acme/comfyui:1.0"},
    }))  # fmt: skip
    assert (comfy.sizing, comfy.compute_class) == (None, "gpu-l4-x1-co")


def _two_node_spec(kind: str) -> dict[str, Any]:
    # Llama 3.3 70B on L4 needs two nodes of 8 (pipeline parallelism).
    data = {
        "name": "big", "kind": kind, "accelerator": "l4", "concurrency": 16,
        "model": {"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"},
        "batch": {"input": "gs://acme-in/x", "output": "gs://acme-out/y", "shards": 4},
    }  # fmt: skip
    if kind != "batch":
        del data["batch"]
    return data


def test_a_batch_spec_that_needs_two_nodes_is_refused_before_any_resource() -> None:
    # A batch Job runs one pod per shard: a replica cannot span nodes there.
    with pytest.raises(SpecError) as info:
        deployment_for(parse_spec(_two_node_spec("batch")))
    assert "2 nodes of g2-standard-96" in str(info.value)
    assert "BatchInference runs a replica on one node" in str(info.value)
    assert "shapes that fit one node:" in str(info.value)


@pytest.mark.parametrize("kind", ["online", "streaming"])
def test_serving_kinds_span_nodes_as_one_group(kind: str) -> None:
    deployment = deployment_for(parse_spec(_two_node_spec(kind)))
    assert KINDS[kind].multi_host
    sizing = deployment.require_sizing()
    assert (sizing.nodes, sizing.devices_per_pod, sizing.devices) == (2, 8, 16)


def test_streaming_bounds_are_spec_errors() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec({
            "name": "s", "kind": "streaming", "accelerator": "l4",
            "model": {"id": "google/gemma-3-1b-it", "preset": "gemma-3-1b"},
            "streaming": {"minBackoffSeconds": 60, "maxBackoffSeconds": 10, "minWorkers": 5, "maxWorkers": 2},
        })  # fmt: skip
    assert "streaming: minBackoffSeconds must not exceed maxBackoffSeconds" in str(info.value)
    assert "maxWorkers must be >= minWorkers" in str(info.value)


def test_validating_a_spec_loads_no_provider_sdk() -> None:
    # The service and the CLI check specs (sizing, deployability) without the
    # Kubernetes or Google Cloud SDKs; components are imported when built.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gke_inference.workloads.kinds import deployment_for\n"
        "from gke_inference.workloads.spec import load_spec\n"
        f"deployment_for(load_spec({str(REPO / 'workloads/examples/batch-llama-8b-l4.yaml')!r}))\n"
        "print(sorted(m for m in ('pulumi_kubernetes', 'pulumi_gcp') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
