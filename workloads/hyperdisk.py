"""``model.loader: hyperdisk-ml``: the weights on a Hyperdisk ML volume every replica
attaches read-only.

Hyperdisk ML is block storage built for one writer, then many readers: a disk is
filled read-write on one node, and once attached read-only it becomes
``READ_ONLY_MANY`` and can be attached to up to 2,500 VMs (Compute Engine
release notes, July 2024). The pd.csi.storage.gke.io driver (its controller,
commit b560165c) creates a read-only Hyperdisk ML claim without a source as a
read-write disk "so they can be hydrated", switches the disk to READ_ONLY_MANY
at the first read-only attach, and for ``enable-multi-zone-provisioning``
creates one zonal disk per allowed zone, only read-only and only from a
content source. So the weights go through four steps, each an object here and
each waiting for the one before:

1. a staging claim (``ReadWriteOnce``, one zone, the minimum 400 MiB/s);
2. a fill Job: ``gcloud storage rsync`` of the model's folder onto it, as the
   server's uid, fails when ``config.json`` is missing, then ``sync`` so the
   snapshot sees every byte (Pulumi waits for the Job to complete; a download
   Job, when the spec has one, completes before it starts);
3. a ``VolumeSnapshot`` of the staging claim (its own ``VolumeSnapshotClass``);
4. the serving claim (``ReadOnlyMany``, multi-zone in ``hyperdiskMl.zones``,
   ``hyperdiskMl.throughputMiBps``) restored from the snapshot; the provisioner
   waits for the snapshot to be ready, Pulumi for the claim to bind, and the
   serving pods mount it read-only at ``/models``.

Why not GKE Volume Populator (``GCPDataSource``), Google's own path for this:
its transfer Job is created by GKE with the workload's Kubernetes service
account, so it runs in the workload namespace, where this platform enforces
Pod Security ``restricted`` and denies egress by default; the Job's pod spec
and labels are not published, so neither its admission nor a NetworkPolicy
for it can be written or checked. The fill Job here is this project's own,
built to the same restricted profile and isolated like every other pod.

The serving claim's name carries a digest of what it holds and how it is
provisioned (workloads.storage.weights_claim): a new model folder, zone list,
throughput or size is a new claim, filled and bound before pods move to it.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    EnvVarArgs,
    ResourceRequirementsArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.workloads.kinds import Deployment
from gke_inference.workloads.lifecycle import user_env
from gke_inference.workloads.loading import hyperdisk_gib
from gke_inference.workloads.network_policy import isolate
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.pods import container_security, labels_for, pinned_image, pod_security
from gke_inference.workloads.storage import (
    model_bucket,
    service_account_with_bucket_access,
    weights_claim,
)

DRIVER = "pd.csi.storage.gke.io"
DISK_TYPE = "hyperdisk-ml"
STAGING_THROUGHPUT_MIBPS = 400  # Hyperdisk ML's minimum: the fill is bounded by GCS anyway
SNAPSHOT_API = "snapshot.storage.k8s.io/v1"
ZONE_LABEL = "topology.gke.io/zone"
FILL_MOUNT = "/weights"
FILL_BACKOFF_LIMIT = 2

FILL_SCRIPT = """set -eu
src="gs://$MODEL_BUCKET/$MODEL_DIR"
gcloud storage ls "$src/config.json" >/dev/null || {
  echo "no config.json under $src: the weights must be in the bucket before they are copied" >&2
  exit 1
}
gcloud storage rsync --recursive "$src" "$WEIGHTS_DIR"
test -f "$WEIGHTS_DIR/config.json"
sync
echo "copied $src to the staging disk ($(du -sh "$WEIGHTS_DIR" | cut -f1))"
"""


def fill_deadline_seconds(disk_gib: int) -> int:
    """Setup plus ~30 s per GiB (the staging disk writes at 400 MiB/s, GCS reads faster)."""
    return 900 + 30 * disk_gib


def _storage_class(
    name: str,
    resource_name: pulumi.Input[str],
    zones: list[str],
    throughput_mi_bps: int,
    opts: pulumi.ResourceOptions,
    *,
    multi_zone: bool,
) -> k8s.storage.v1.StorageClass:
    parameters = {
        "type": DISK_TYPE,
        "provisioned-throughput-on-create": f"{throughput_mi_bps}Mi",
    }
    if multi_zone:
        parameters["enable-multi-zone-provisioning"] = "true"
    return k8s.storage.v1.StorageClass(
        name,
        metadata=ObjectMetaArgs(name=resource_name),
        provisioner=DRIVER,
        parameters=parameters,
        reclaim_policy="Delete",
        allow_volume_expansion=False,
        # Immediate: the disks exist (and the snapshot restores) before any pod asks.
        volume_binding_mode="Immediate",
        allowed_topologies=[
            k8s.core.v1.TopologySelectorTermArgs(
                match_label_expressions=[
                    k8s.core.v1.TopologySelectorLabelRequirementArgs(key=ZONE_LABEL, values=zones)
                ]
            )
        ],
        opts=opts,
    )


class HyperdiskWeights(pulumi.ComponentResource):
    """The staging claim, its fill Job, the snapshot and the serving claim (module doc)."""

    claim_name: str

    def __init__(
        self,
        name: str,
        deployment: Deployment,
        platform: PlatformRef,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("gke-inference:workloads:HyperdiskWeights", name, None, opts)
        spec, sizing = deployment.spec, deployment.require_sizing()
        settings = sizing.hyperdisk_ml
        assert settings is not None and spec.model is not None
        k8s_opts = child_options(self, opts)
        namespace = platform.workload_namespace
        disk_gib = hyperdisk_gib(spec, sizing)
        claim = weights_claim(spec.name, sizing, disk_gib)
        assert claim is not None
        self.claim_name = claim
        staging = f"{claim}-stage"
        account = f"{spec.name}-weights"
        labels = {
            **labels_for(spec.name, spec.kind),
            "app.kubernetes.io/name": account,
            "app.kubernetes.io/component": "weights",
        }
        # Cluster-scoped names must be unique across namespaces.
        cluster_name = pulumi.Output.concat(namespace, "-", claim)

        def after(*resources: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=list(resources))
            )

        staging_class = _storage_class(
            f"{name}-staging-class",
            pulumi.Output.concat(cluster_name, "-stage"),
            settings.zones[:1],
            STAGING_THROUGHPUT_MIBPS,
            k8s_opts,
            multi_zone=False,
        )
        serving_class = _storage_class(
            f"{name}-serving-class",
            cluster_name,
            settings.zones,
            settings.throughput_mi_bps,
            k8s_opts,
            multi_zone=True,
        )
        size = {"storage": f"{disk_gib}Gi"}
        staging_claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-staging",
            metadata=ObjectMetaArgs(name=staging, namespace=namespace, labels=labels),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteOnce"],
                storage_class_name=staging_class.metadata.name,
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests=size),
            ),
            opts=after(staging_class),
        )
        reader = service_account_with_bucket_access(
            f"{name}-fill", account, platform, [(model_bucket(platform, sizing), "read")], self,
            k8s_opts,
        )  # fmt: skip
        # Nothing calls it; it reads the bucket (Google APIs), nothing else.
        isolate(
            f"{name}-fill",
            ObjectMetaArgs(name=account, namespace=namespace, labels=labels),
            {"app.kubernetes.io/name": account},
            platform,
            k8s_opts,
        )
        deadline = fill_deadline_seconds(disk_gib)
        # No probes: it runs to completion and nothing calls it; a hang is bounded by
        # activeDeadlineSeconds, a failure by backoffLimit.
        fill = k8s.batch.v1.Job(
            f"{name}-fill-job",
            metadata=ObjectMetaArgs(
                # a new claim is a new fill (the old Job stays with the old claim)
                name=f"{claim}-fill",
                annotations={"pulumi.com/timeoutSeconds": str(deadline + 600)},
                namespace=namespace, labels=labels,
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=FILL_BACKOFF_LIMIT,
                active_deadline_seconds=deadline,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account,
                        automount_service_account_token=False,
                        restart_policy="Never",
                        # the staging disk's root becomes the server uid's (fsGroup)
                        security_context=pod_security(),
                        containers=[
                            ContainerArgs(
                                name="fill",
                                image=pinned_image(platform, "cloud-sdk"),
                                command=["/bin/sh", "-c", FILL_SCRIPT],
                                env=[
                                    EnvVarArgs(
                                        name="MODEL_BUCKET", value=model_bucket(platform, sizing)
                                    ),
                                    EnvVarArgs(name="MODEL_DIR", value=sizing.model_dir),
                                    EnvVarArgs(name="WEIGHTS_DIR", value=FILL_MOUNT),
                                    EnvVarArgs(name="HOME", value="/tmp/home"),
                                    EnvVarArgs(name="CLOUDSDK_CONFIG", value="/tmp/gcloud"),
                                    *user_env(),
                                ],
                                resources=ResourceRequirementsArgs(
                                    requests={"cpu": "4", "memory": "4Gi"},
                                    limits={"memory": "4Gi"},
                                ),
                                security_context=container_security(),
                                volume_mounts=[
                                    VolumeMountArgs(name="weights", mount_path=FILL_MOUNT),
                                    VolumeMountArgs(name="tmp", mount_path="/tmp"),
                                ],
                            )
                        ],
                        volumes=[
                            VolumeArgs(
                                name="weights",
                                persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                                    claim_name=staging
                                ),
                            ),
                            VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
                        ],
                    ),
                ),
            ),
            opts=after(staging_claim, reader),
        )  # fmt: skip
        snapshot_class = pulumi.CustomResource(
            f"kubernetes:{SNAPSHOT_API}:VolumeSnapshotClass",
            f"{name}-snapshot-class",
            {
                "apiVersion": SNAPSHOT_API,
                "kind": "VolumeSnapshotClass",
                "metadata": {"name": cluster_name},
                "driver": DRIVER,
                "deletionPolicy": "Delete",
            },
            opts=k8s_opts,
        )
        snapshot = k8s.apiextensions.CustomResource(
            f"{name}-snapshot",
            api_version=SNAPSHOT_API,
            kind="VolumeSnapshot",
            metadata=ObjectMetaArgs(name=claim, namespace=namespace, labels=labels),
            spec={
                "volumeSnapshotClassName": cluster_name,
                "source": {"persistentVolumeClaimName": staging},
            },
            opts=after(fill, snapshot_class),
        )
        k8s.core.v1.PersistentVolumeClaim(
            f"{name}-serving",
            metadata=ObjectMetaArgs(
                name=claim,
                # the provisioner waits for the snapshot, then restores one disk per zone
                annotations={"pulumi.com/timeoutSeconds": str(3600 + 10 * disk_gib)},
                namespace=namespace,
                labels=labels,
            ),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadOnlyMany"],
                storage_class_name=serving_class.metadata.name,
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests=size),
                data_source=k8s.core.v1.TypedLocalObjectReferenceArgs(
                    api_group="snapshot.storage.k8s.io", kind="VolumeSnapshot", name=claim
                ),
            ),
            opts=after(snapshot, serving_class),
        )
        self.register_outputs({"claim": claim})


def hyperdisk_weights_for(
    deployment: Deployment, platform: PlatformRef, opts: pulumi.ResourceOptions
) -> HyperdiskWeights | None:
    """The weights' Hyperdisk ML volume in front of a serving component, or None."""
    sizing = deployment.sizing
    if sizing is None or sizing.hyperdisk_ml is None:
        return None
    return HyperdiskWeights(f"{deployment.spec.name}-hyperdisk", deployment, platform, opts)
