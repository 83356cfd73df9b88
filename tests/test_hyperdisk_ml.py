"""``model.loader: hyperdisk-ml``: weights copied once to a disk every replica reads.

Checked against what runs it: the four steps wait for each other in the order
the driver needs (a staging disk written read-write, a snapshot after the fill
Job, a multi-zone read-only restore), the claims carry the access modes the
pd.csi.storage.gke.io driver turns into read-write-single for the fill and
READ_ONLY_MANY for the servers, and the fill script itself runs (with a
stand-in ``gcloud`` over a laid-out bucket) before the server's ``--model`` is
resolved against what the restored disk shows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gke_inference.core.errors import SpecError
from gke_inference.offline.manifests import kubernetes_objects, validate_manifests
from gke_inference.offline.planning import plan_workload
from gke_inference.offline.recording import Plan, RecordedResource
from gke_inference.workloads import hyperdisk
from gke_inference.workloads.kinds import deployment_for, require_deployable_in
from gke_inference.workloads.loading import hyperdisk_gib, load_seconds
from gke_inference.workloads.sizing import size
from gke_inference.workloads.sizing_table import sizing_table
from gke_inference.workloads.spec import parse_spec
from gke_inference.workloads.storage import weights_claim
from tests.test_runtime_filesystem import SHARDS, lay_out_bucket

REPO = Path(__file__).resolve().parents[1]
ZONES = ["us-east4-a", "us-east4-b"]
PVC = "kubernetes:core/v1:PersistentVolumeClaim"


def disk_spec(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "llama-disk",
        "kind": "online",
        "model": {
            "id": "meta-llama/Llama-3.1-8B-Instruct",
            "preset": "llama-3.1-8b",
            "loader": "hyperdisk-ml",
            "hyperdiskMl": {"zones": ZONES},
        },
        "accelerator": "l4",
        "tensorParallel": 2,
    }
    data.update(changes)
    return data


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    file = tmp_path_factory.mktemp("hdml") / "disk.yaml"
    file.write_text(yaml.safe_dump(disk_spec()))
    return plan_workload("dev", str(file), project_dir=REPO)


def one(plan: Plan, type_: str, name_suffix: str) -> RecordedResource:
    (found,) = [r for r in plan.by_type(type_) if r.name.endswith(name_suffix)]
    return found


def server_pod(plan: Plan) -> dict[str, Any]:
    (deployment,) = [
        d
        for d in plan.by_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"] == "llama-disk"
    ]
    return dict(deployment.inputs["spec"]["template"]["spec"])


def test_each_step_waits_for_the_one_before(planned: Plan) -> None:
    staging = one(planned, PVC, "-staging")
    fill = one(planned, "kubernetes:batch/v1:Job", "-fill-job")
    snapshot = one(planned, "kubernetes:snapshot.storage.k8s.io/v1:VolumeSnapshot", "-snapshot")
    serving = one(planned, PVC, "-serving")
    assert staging.urn in fill.depends_on
    assert fill.urn in snapshot.depends_on
    assert snapshot.urn in serving.depends_on
    (deployment,) = [
        d
        for d in planned.by_type("kubernetes:apps/v1:Deployment")
        if d.inputs["metadata"]["name"] == "llama-disk"
    ]
    # the serving component (the Deployment's parent) waits for the bound volume
    component = next(r for r in planned.resources if r.urn == deployment.parent)
    assert serving.urn in component.depends_on
    assert validate_manifests(kubernetes_objects(planned)) == []


def test_the_claims_get_the_access_the_driver_needs(planned: Plan) -> None:
    staging = one(planned, PVC, "-staging").inputs
    serving = one(planned, PVC, "-serving").inputs
    # RWO: written on one node; the driver creates it read-write
    assert staging["spec"]["accessModes"] == ["ReadWriteOnce"]
    # ROX only: the provisioner marks the PV csi.readOnly, the attacher publishes
    # read-only, the driver switches the disk to READ_ONLY_MANY (multi-attach)
    assert serving["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert serving["spec"]["dataSource"] == {
        "apiGroup": "snapshot.storage.k8s.io",
        "kind": "VolumeSnapshot",
        "name": serving["metadata"]["name"],
    }
    assert staging["spec"]["resources"] == serving["spec"]["resources"]  # restore >= source
    classes = {
        r.name: r.inputs for r in planned.by_type("kubernetes:storage.k8s.io/v1:StorageClass")
    }
    (stage_class,) = [c for n, c in classes.items() if n.endswith("-staging-class")]
    (serve_class,) = [c for n, c in classes.items() if n.endswith("-serving-class")]
    for c in (stage_class, serve_class):
        assert c["provisioner"] == "pd.csi.storage.gke.io"
        assert c["parameters"]["type"] == "hyperdisk-ml"
        assert c["volumeBindingMode"] == "Immediate"
    assert serve_class["parameters"]["enable-multi-zone-provisioning"] == "true"
    assert serve_class["parameters"]["provisioned-throughput-on-create"] == "2400Mi"
    assert "enable-multi-zone-provisioning" not in stage_class["parameters"]
    zones = [
        t["matchLabelExpressions"][0]["values"]
        for t in (stage_class["allowedTopologies"][0], serve_class["allowedTopologies"][0])
    ]
    assert zones == [ZONES[:1], ZONES]


def test_servers_mount_the_restored_claim_read_only_and_need_no_fuse_for_weights(
    planned: Plan,
) -> None:
    pod = server_pod(planned)
    serving = one(planned, PVC, "-serving").inputs
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model"]["persistentVolumeClaim"] == {
        "claimName": serving["metadata"]["name"],
        "readOnly": True,
    }
    assert not pod.get("initContainers")  # no prefetch
    (server,) = pod["containers"]
    assert "--model=/models" in server["args"]
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert mounts["model"] == {"name": "model", "mountPath": "/models", "readOnly": True}
    assert not any(a.startswith("--load-format") for a in server["args"])


def test_the_fill_job_reads_the_bucket_and_nothing_writes_it(planned: Plan) -> None:
    fill = one(planned, "kubernetes:batch/v1:Job", "-fill-job").inputs
    pod = fill["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "llama-disk-weights"
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] == 10000
    grants = [
        r.inputs
        for r in planned.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
        if r.inputs["member"].endswith("/sa/llama-disk-weights")
    ]
    assert [(g["bucket"], g["role"]) for g in grants] == [
        ("acme-inference-dev-inf-dev-models", "roles/storage.objectViewer")
    ]
    (policy,) = [
        r.inputs["spec"]
        for r in planned.by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if r.inputs["metadata"]["name"] == "llama-disk-weights"
    ]
    assert policy["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "llama-disk-weights"}
    }
    assert not policy.get("ingress")  # nothing calls it
    assert policy["policyTypes"] == ["Ingress", "Egress"]


def test_the_servers_no_longer_read_the_weights_bucket(tmp_path: Path) -> None:
    data = disk_spec()
    data["model"] = {**data["model"], "id": "gs://team-b-models/llama-8b"}
    file = tmp_path / "disk.yaml"
    file.write_text(yaml.safe_dump(data))
    plan = plan_workload("dev", str(file), project_dir=REPO)
    grants = {
        (r.inputs["member"].rsplit("/", 1)[1], r.inputs["bucket"], r.inputs["role"])
        for r in plan.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
    }
    platform = "acme-inference-dev-inf-dev-models"
    assert grants == {
        ("llama-disk-weights", "team-b-models", "roles/storage.objectViewer"),  # the fill
        # the server: its compile cache only
        ("llama-disk", platform, "roles/storage.objectViewer"),
        ("llama-disk", platform, "roles/storage.objectUser"),
    }


def _fake_gcloud(bin_dir: Path, gcs: Path) -> None:
    """``gcloud storage ls|rsync`` over a directory standing for Cloud Storage."""
    script = bin_dir / "gcloud"
    script.write_text(
        f"""#!/bin/sh
set -eu
path_of() {{ printf '%s' "{gcs}/${{1#gs://}}"; }}
[ "$1" = storage ] || exit 2
case "$2" in
  ls) [ -e "$(path_of "$3")" ] ;;
  rsync) [ "$3" = --recursive ] && mkdir -p "$5" && cp -R "$(path_of "$4")/." "$5/" ;;
  *) exit 2 ;;
esac
"""
    )
    script.chmod(0o755)


def _run_fill(tmp_path: Path, gcs: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _fake_gcloud(bin_dir, gcs)
    return subprocess.run(
        ["/bin/sh", "-c", hyperdisk.FILL_SCRIPT],
        env={**env, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_fill_copies_the_folder_the_server_then_reads(planned: Plan, tmp_path: Path) -> None:
    fill = one(planned, "kubernetes:batch/v1:Job", "-fill-job").inputs
    (container,) = fill["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c", hyperdisk.FILL_SCRIPT]
    # the snapshot is taken after the Job: its writes must be on the disk, not in the
    # node's page cache, when the container exits
    lines = [line.strip() for line in hyperdisk.FILL_SCRIPT.splitlines()]
    copy = next(i for i, line in enumerate(lines) if line.startswith("gcloud storage rsync"))
    assert "sync" in lines[copy + 1 :]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["weights"]
    assert env["WEIGHTS_DIR"] == mount
    gcs = tmp_path / "gcs"
    lay_out_bucket(gcs, env["MODEL_BUCKET"], env["MODEL_DIR"])
    disk = tmp_path / "disk"
    done = _run_fill(tmp_path, gcs, {**env, "WEIGHTS_DIR": str(disk)})
    assert done.returncode == 0, done.stderr
    # The restored disk shows what the staging disk held; the server reads its root.
    (server,) = server_pod(planned)["containers"]
    model = next(a.split("=", 1)[1] for a in server["args"] if a.startswith("--model="))
    assert model == "/models"
    assert (disk / "config.json").is_file()
    assert {p.name for p in disk.glob("*.safetensors")} == set(SHARDS)
    assert not (disk / "other").exists()  # only the model's folder


def test_the_fill_fails_before_copying_an_incomplete_folder(planned: Plan, tmp_path: Path) -> None:
    fill = one(planned, "kubernetes:batch/v1:Job", "-fill-job").inputs
    (container,) = fill["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    gcs = tmp_path / "gcs"
    lay_out_bucket(gcs, env["MODEL_BUCKET"], env["MODEL_DIR"])
    (gcs / env["MODEL_BUCKET"] / env["MODEL_DIR"] / "config.json").unlink()  # mid-download
    disk = tmp_path / "disk"
    done = _run_fill(tmp_path, gcs, {**env, "WEIGHTS_DIR": str(disk)})
    assert done.returncode != 0 and "no config.json" in done.stderr
    assert not disk.exists()  # nothing copied, so no snapshot of half a model
    shutil.rmtree(gcs)


def test_a_changed_source_or_provisioning_is_a_new_claim() -> None:
    base = size(parse_spec(disk_spec()))
    spec = parse_spec(disk_spec())
    name = weights_claim("llama-disk", base, hyperdisk_gib(spec, base))
    assert name is not None and name.startswith("llama-disk-weights-")
    assert weights_claim("llama-disk", base, hyperdisk_gib(spec, base)) == name  # stable
    for model in (
        {"hyperdiskMl": {"zones": ZONES[:1]}},
        {"hyperdiskMl": {"zones": ZONES, "throughputMiBps": 4800}},
        {"id": "gs://team-b/llama-8b"},
    ):
        data = disk_spec()
        data["model"] = {**data["model"], **model}
        other = size(parse_spec(data))
        assert weights_claim("llama-disk", other, hyperdisk_gib(parse_spec(data), other)) != name


def test_the_startup_budget_reads_the_shared_throughput() -> None:
    """8B bf16 (15 GiB) with 2400 MiB/s shared by maxReplicas 3 one-node replicas:
    0.78 GiB/s each, never above 1 GiB/s."""
    sizing = size(parse_spec(disk_spec()))
    assert sizing.weight_readers == 3
    assert load_seconds(sizing) == -(-sizing.weights_gib // (2400 / 1024 / 3))
    fast = size(parse_spec(disk_spec(scaling={"minReplicas": 1, "maxReplicas": 1})))
    assert load_seconds(fast) == -(-fast.weights_gib // 1.0)  # the 1 GiB/s ceiling
    text = sizing_table(sizing)
    assert (
        "hyperdisk-ml: Hyperdisk ML volume attached read-only (2400 MiB/s shared by up to 3" in text
    )


@pytest.mark.parametrize(
    ("model", "path", "needle"),
    [
        ({"hyperdiskMl": None}, "model", "loader 'hyperdisk-ml' needs hyperdiskMl"),
        ({"loader": "fuse"}, "model", "hyperdiskMl is only for that loader"),
        ({"hyperdiskMl": {"zones": ["us-east4-a", "us-east4-a"]}}, "model.hyperdiskMl.zones",
         "us-east4-a is repeated"),
        ({"hyperdiskMl": {"zones": ["us-east4-a", "us-west1-b"]}}, "model.hyperdiskMl.zones",
         "us-east4, us-west1"),
        ({"hyperdiskMl": {"zones": ZONES, "throughputMiBps": 100}},
         "model.hyperdiskMl.throughputMiBps", "greater than or equal to 400"),
        ({"hyperdiskMl": {"zones": []}}, "model.hyperdiskMl.zones", "at least 1"),
    ],
)  # fmt: skip
def test_bad_disk_settings_name_the_field(model: dict[str, Any], path: str, needle: str) -> None:
    data = disk_spec()
    data["model"] = {k: v for k, v in {**data["model"], **model}.items() if v is not None}
    with pytest.raises(SpecError) as info:
        parse_spec(data)
    (problem,) = info.value.problems
    assert problem.path == path and needle in problem.message, problem


def _deploy_in(region: str) -> None:
    deployment = deployment_for(parse_spec(disk_spec()))
    require_deployable_in(
        deployment,
        environment="dev",
        classes={"l4": deployment.compute_class},
        gateway_exposure="internal",
        queued_pools={},
        admission=[],
        digests_required=False,
        region=region,
    )


def test_zones_outside_the_clusters_region_are_refused_before_anything_is_registered() -> None:
    with pytest.raises(SpecError) as info:
        _deploy_in("us-central1")
    assert [p.path for p in info.value.problems] == [
        "model.hyperdiskMl.zones[0]",
        "model.hyperdiskMl.zones[1]",
    ]
    assert "not in region 'us-central1'" in info.value.problems[0].message
    _deploy_in("us-east4")  # the same zones in the cluster's region pass
