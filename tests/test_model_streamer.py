"""``model.loader: streamer``: vLLM's Run:ai Model Streamer reads the weights from gs://.

What the pod is started with is checked against what the pinned server and the
streamer's GCS client do with it: the flags against vLLM's own parser table,
the extra-config keys and types against what RunaiModelStreamerLoader reads
(it ignores anything else without a word), the CPU buffer against the
container's memory limit, the assets cache against the writable mounts of a
read-only root, the IAM grants against the client's calls (buckets.get before
objects.list). The bucket-listing rehearsal is in tests/test_runtime_filesystem.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.core.errors import SpecError
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.policy_check import check_resources
from gke_inference.offline.recording import Plan
from gke_inference.workloads import loading
from gke_inference.workloads.kinds import deployment_for
from gke_inference.workloads.loading import startup_seconds
from gke_inference.workloads.sizing import size
from gke_inference.workloads.sizing_table import sizing_table
from gke_inference.workloads.spec import parse_spec
from gke_inference.workloads.vllm_server import flag_problems, server_version, table

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "workloads" / "examples"
GIB = 1024**3
IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"


def streamer_spec(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "llama-stream",
        "kind": "online",
        "model": {
            "id": "meta-llama/Llama-3.1-8B-Instruct",
            "preset": "llama-3.1-8b",
            "loader": "streamer",
        },
        "accelerator": "l4",
        "tensorParallel": 2,
    }
    data.update(changes)
    return data


def plan_of(tmp_path: Path, data: dict[str, Any]) -> Plan:
    file = tmp_path / f"{data['name']}.yaml"
    file.write_text(yaml.safe_dump(data))
    return plan_workload("dev", str(file), project_dir=REPO)


def server_pod(plan: Plan, kind: str = "kubernetes:apps/v1:Deployment") -> dict[str, Any]:
    resource = next(
        r for r in plan.by_type(kind)
        if r.inputs["spec"]["template"]["metadata"]["labels"].get("gke-inference/model-server")
    )  # fmt: skip
    return dict(resource.inputs["spec"]["template"])


def server_of(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod["spec"]
    every = [*spec.get("initContainers", []), *spec["containers"]]
    return next(c for c in every if c["name"] == "server")


def flag(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"{name}="))


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return plan_of(tmp_path_factory.mktemp("streamer"), streamer_spec())


def test_the_weights_need_no_mount_and_no_prefetch(streamed: Plan) -> None:
    pod = server_pod(streamed)
    assert not pod["spec"].get("initContainers")  # no prefetch
    # The one FUSE volume is the shared compile cache (workloads.compile_cache).
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert set(volumes) == {"tmp", "dshm", "vllm-cache", "gke-gcsfuse-cache"}
    assert "model" not in {m["name"] for m in server_of(pod)["volumeMounts"]}
    server = server_of(pod)
    assert flag(server["args"], "--model") == (
        "gs://acme-inference-dev-inf-dev-models/meta-llama/llama-3.1-8b-instruct"
    )
    assert check_resources(streamed.resources, None, source="default").mandatory == []


def test_with_the_compile_cache_in_the_pod_no_sidecar_is_injected(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, streamer_spec(server={"compileCache": "pod"}))
    pod = server_pod(plan)
    assert not pod["metadata"].get("annotations")  # no gke-gcsfuse/volumes: no sidecar
    assert {v["name"] for v in pod["spec"]["volumes"]} == {"tmp", "dshm"}


def test_the_flags_are_the_pinned_servers(streamed: Plan) -> None:
    args = server_of(server_pod(streamed))["args"]
    doc = table(server_version("vllm-gpu"))
    assert flag_problems(args, doc) == []
    assert flag(args, "--load-format") == loading.STREAMER_LOAD_FORMAT
    assert loading.STREAMER_LOAD_FORMAT in doc["flags"]["--load-format"]["acceptedValues"]


def test_extra_config_holds_only_what_the_loader_reads_with_its_types(streamed: Plan) -> None:
    """RunaiModelStreamerLoader checks isinstance(value, int) / (value, bool) and skips
    anything else: "32" or 32.0 would leave the streamer at its defaults."""
    server = server_of(server_pod(streamed))
    config = json.loads(flag(server["args"], "--model-loader-extra-config"))
    assert set(config) <= set(loading.STREAMER_EXTRA_CONFIG_TYPES)
    for key, value in config.items():
        assert type(value) is loading.STREAMER_EXTRA_CONFIG_TYPES[key], (key, value)
    assert config["distributed"] is True  # two ranks share the load
    assert config["concurrency"] == loading.STREAMER_CONCURRENCY


def test_the_cpu_buffer_fits_the_container_with_room_for_the_server(streamed: Plan) -> None:
    """The streamer's own default buffer is 40 GB; the container may use 16 GiB per GPU."""
    server = server_of(server_pod(streamed))
    config = json.loads(flag(server["args"], "--model-loader-extra-config"))
    limit_gib = int(server["resources"]["limits"]["memory"].removesuffix("Gi"))
    assert config["memory_limit"] / GIB <= limit_gib - 8 * 2  # >= 8 GiB per GPU left
    assert limit_gib < 40e9 / GIB  # why it is set at all


def test_pulled_config_and_tokenizer_land_on_a_writable_mount(streamed: Plan) -> None:
    """vLLM pulls config and tokenizer into $VLLM_ASSETS_CACHE/model_streamer/<hash>,
    by default $XDG_CACHE_HOME/vllm/assets; the root filesystem is read-only."""
    pod = server_pod(streamed)
    server = server_of(pod)
    env = {e["name"]: e.get("value") for e in server["env"]}
    assets = Path(env.get("VLLM_ASSETS_CACHE") or Path(env["XDG_CACHE_HOME"]) / "vllm" / "assets")
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    writable = [
        Path(m["mountPath"])
        for m in server["volumeMounts"]
        if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]
    ]
    assert any(assets.is_relative_to(root) for root in writable), (assets, writable)


def test_the_identity_may_get_the_bucket_the_client_lists_through(streamed: Plan) -> None:
    """runai_model_streamer_gcs lists through Client.get_bucket (buckets.get), which
    roles/storage.objectViewer does not grant."""
    grants = {(r.inputs["bucket"], r.inputs["role"]) for r in streamed.by_type(IAM)}
    bucket = "acme-inference-dev-inf-dev-models"
    assert grants == {
        (bucket, "roles/storage.objectViewer"),
        (bucket, "roles/storage.legacyBucketReader"),
        (bucket, "roles/storage.objectUser"),  # the compile cache's prefix only
    }
    members = {r.inputs["member"] for r in streamed.by_type(IAM)}
    assert len(members) == 1 and "/sa/llama-stream" in members.pop()


def test_fuse_grants_no_bucket_metadata(tmp_path: Path) -> None:
    data = streamer_spec(name="llama-fuse")
    data["model"] = {**data["model"], "loader": "fuse"}
    data["server"] = {"compileCache": "pod"}
    roles = {r.inputs["role"] for r in plan_of(tmp_path, data).by_type(IAM)}
    assert roles == {"roles/storage.objectViewer"}


def test_the_startup_budget_follows_the_loader() -> None:
    """70B in bf16 (131.5 GiB): 132 s at 1 GiB/s streamed, 527 s through FUSE."""
    big = {"id": "meta-llama/Llama-3.3-70B-Instruct", "preset": "llama-3.3-70b"}
    fuse = size(parse_spec(streamer_spec(model=big, accelerator="h100-80gb", tensorParallel=4)))
    streamer = size(
        parse_spec(
            streamer_spec(
                model={**big, "loader": "streamer"}, accelerator="h100-80gb", tensorParallel=4
            )
        )
    )
    assert startup_seconds(fuse) == 120 + 527 + 180
    assert startup_seconds(streamer) == 120 + 132 + 180
    assert (
        "432 s = 120 s start + 132 s read at 1 GiB/s + 180 s warm-up (fuse would read in 527 s)"
        in sizing_table(streamer)
    )


def test_the_startup_probe_allows_the_streamed_budget(streamed: Plan) -> None:
    server = server_of(server_pod(streamed))
    sizing = size(parse_spec(streamer_spec()))
    probe = server["startupProbe"]
    assert probe["failureThreshold"] == math.ceil(startup_seconds(sizing) / probe["periodSeconds"])


def test_batch_streams_the_model_and_still_mounts_its_data(tmp_path: Path) -> None:
    data = yaml.safe_load((EXAMPLES / "batch-llama-8b-l4.yaml").read_text())
    data["model"]["loader"] = "streamer"
    plan = plan_of(tmp_path, data)
    pod = server_pod(plan, "kubernetes:batch/v1:Job")
    server = server_of(pod)
    assert flag(server["args"], "--model").startswith("gs://")
    assert "model" not in {v["name"] for v in pod["spec"]["volumes"]}
    assert pod["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"  # input/output
    assert "prefetch" not in {c["name"] for c in pod["spec"]["initContainers"]}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            {
                "name": "qwen-stream",
                "kind": "online",
                "model": {"id": "Qwen/Qwen3-32B", "preset": "qwen3-32b", "loader": "streamer"},
                "accelerator": "tpu-v6e",
                "server": {"type": "vllm-tpu"},
            },
            "vLLM TPU 0.18.0",
        ),
        (
            streamer_spec(
                model={
                    "id": "meta-llama/Llama-3.3-70B-Instruct",
                    "preset": "llama-3.3-70b",
                    "loader": "streamer",
                },
                tensorParallel=None,
            ),
            "spans 2 nodes",
        ),
    ],
)
def test_where_the_streamer_cannot_run_is_refused(data: dict[str, Any], needle: str) -> None:
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(SpecError) as info:
        deployment_for(parse_spec(data))
    (problem,) = info.value.problems
    assert problem.path == "model.loader" and needle in problem.message


def test_an_unknown_loader_is_refused() -> None:
    data = streamer_spec()
    data["model"] = {**data["model"], "loader": "runai"}
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    (problem,) = info.value.problems
    assert problem.path == "model.loader" and "'streamer'" in problem.message
