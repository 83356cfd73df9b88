"""What model-serving pods read and write in Cloud Storage.

The weights come from the model's bucket (the platform's, or the one a
``gs://`` id names) through the Cloud Storage FUSE CSI driver, tuned for large
sequential reads; the model's folder is the mount root (``only-dir``), so the
server reads ``/models/config.json``. With ``model.loader: streamer`` the
server reads the folder's gs:// URI itself instead (workloads.loading).
Servers keep vLLM's compilation cache in a prefix of the platform model bucket
(workloads.compile_cache: read-write FUSE, write granted on that prefix only),
so only the first pod of a model, version and machine shape compiles from
scratch. Every grant is to the pod's Kubernetes service account through
Workload Identity: no keys.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import (
    VolumeArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.inference.model_storage import grant_bucket_access
from gke_inference.platform.identity import project_number
from gke_inference.workloads.compile_cache import CompileCache
from gke_inference.workloads.lifecycle import (
    RUN_AS,
)
from gke_inference.workloads.lora import ADAPTER_MOUNT
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.sizing import Sizing
from gke_inference.workloads.speculative import DRAFT_MOUNT

# Cloud Storage FUSE options for read-mostly model weights: cache metadata and
# file contents without expiry (weights never change under a path), read
# ranges into the cache, and download files with parallel streams.
FUSE_MOUNT_OPTIONS = (
    "implicit-dirs",
    "metadata-cache:ttl-secs:-1",
    "metadata-cache:stat-cache-max-size-mb:-1",
    "metadata-cache:type-cache-max-size-mb:-1",
    "metadata-cache:negative-ttl-secs:0",
    "file-cache:max-size-mb:-1",
    "file-cache:cache-file-for-range-read:true",
    "file-cache:enable-parallel-downloads:true",
    "file-system:kernel-list-cache-ttl-secs:-1",
)


def fuse_annotations() -> dict[str, str]:
    # Let the GCS FUSE sidecar use what it needs: limits of 0 mean unbounded.
    return {
        "gke-gcsfuse/volumes": "true",
        "gke-gcsfuse/cpu-limit": "0",
        "gke-gcsfuse/memory-limit": "0",
        "gke-gcsfuse/ephemeral-storage-limit": "0",
    }


def fuse_volume(
    name: str,
    bucket: pulumi.Input[str],
    *,
    only_dir: str = "",
    read_only: bool,
    uid: int = RUN_AS,
    cached: bool = False,
) -> VolumeArgs:
    """A Cloud Storage FUSE mount of ``bucket`` (of its ``only_dir`` prefix, when given).

    ``cached``: model weights, read-mostly (FUSE_MOUNT_OPTIONS); otherwise each
    file is read once (data, outputs) and no cache is worth its memory. A
    writable mount is owned by ``uid``.
    """
    options = list(FUSE_MOUNT_OPTIONS if cached else ("implicit-dirs",))
    if only_dir:
        options.append(f"only-dir:{only_dir}")
    if not read_only:
        options += [f"uid={uid}", f"gid={uid}"]
    return VolumeArgs(
        name=name,
        csi=k8s.core.v1.CSIVolumeSourceArgs(
            driver="gcsfuse.csi.storage.gke.io",
            read_only=read_only,
            volume_attributes={"bucketName": bucket, "mountOptions": ",".join(options)},
        ),
    )


def model_bucket(platform: PlatformRef, sizing: Sizing) -> str:
    """The bucket holding the weights: the one a ``gs://`` id names, else the platform's."""
    return sizing.model_bucket or platform.model_bucket


def model_location(platform: PlatformRef, sizing: Sizing) -> str:
    """What the server is given as ``--model``: the mount (FUSE or Hyperdisk ML), or for
    the streamer the weights' ``gs://<bucket>/<folder>`` (workloads.loading)."""
    if sizing.loader != "streamer":
        return sizing.model_path
    return f"gs://{model_bucket(platform, sizing)}/{sizing.model_dir}"


def weights_claim(workload: str, sizing: Sizing, disk_gib: int) -> str | None:
    """The Hyperdisk ML claim holding the weights (workloads.hyperdisk), or None. Its
    name changes with what was copied and how it is provisioned (folder, zones,
    throughput, size): a claim's source and class are immutable, so a change is a
    new claim, filled and bound before the pods move to it."""
    settings = sizing.hyperdisk_ml
    if settings is None:
        return None
    parts = [sizing.model_bucket or "", sizing.model_dir, *settings.zones]
    key = "|".join([*parts, str(settings.throughput_mi_bps), str(disk_gib)])
    return f"{workload}-weights-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def model_volume(platform: PlatformRef, sizing: Sizing, claim: str | None = None) -> VolumeArgs:
    """The weights: the Hyperdisk ML ``claim`` read-only, else the model's folder of its
    bucket as a FUSE mount root, read-only, cached."""
    if claim is not None:
        return VolumeArgs(
            name="model",
            persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                claim_name=claim, read_only=True
            ),
        )
    return fuse_volume(
        "model",
        model_bucket(platform, sizing),
        only_dir=sizing.model_dir,
        read_only=True,
        cached=True,
    )


def serving_buckets(platform: PlatformRef, sizing: Sizing) -> list[tuple[pulumi.Input[str], str]]:
    """Read access a model server's account needs: the model's bucket, and with a
    persisted compile cache the platform bucket too, where its prefix is listed
    (its write grant is conditioned on object names, which a listing is not); the
    streamer also reads the model bucket's metadata. A server that reads its weights
    from Hyperdisk ML does not read their bucket (the fill Job did, workloads.hyperdisk)."""
    buckets = [] if sizing.loader == "hyperdisk-ml" else [model_bucket(platform, sizing)]
    if sizing.compile_cache is not None and platform.model_bucket not in buckets:
        buckets.append(platform.model_bucket)
    grants: list[tuple[pulumi.Input[str], str]] = [(bucket, "read") for bucket in buckets]
    if sizing.loader == "streamer":
        # the streamer's GCS client lists through buckets.get (workloads.loading)
        grants.append((model_bucket(platform, sizing), "bucket-metadata"))
    for bucket in dict.fromkeys(split_gcs(folder.uri)[0] for folder in server_folders(sizing)):
        if bucket not in buckets:
            grants.append((bucket, "read"))
    return grants


def split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b/`` -> (``bucket``, ``a/b``)."""
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    return bucket, prefix.strip("/")


@dataclass(frozen=True)
class Folder:
    """A gs:// folder the server reads besides its weights, mounted read-only and cached."""

    volume: str  # the pod's volume name
    uri: str
    mount_path: str

    def volume_args(self) -> VolumeArgs:
        bucket, prefix = split_gcs(self.uri)
        return fuse_volume(self.volume, bucket, only_dir=prefix, read_only=True, cached=True)


def server_folders(sizing: Sizing) -> list[Folder]:
    """The LoRA adapters' folders (workloads.lora) and a speculative draft head's
    (workloads.speculative)."""
    folders = [
        Folder(f"adapter-{index}", adapter.path, f"{ADAPTER_MOUNT}/{adapter.name}")
        for index, adapter in enumerate(sizing.lora.adapters if sizing.lora else [])
    ]
    draft = sizing.speculative.draft if sizing.speculative is not None else None
    if draft is not None:
        folders.append(Folder("draft", draft.path, DRAFT_MOUNT))
    return folders


def compile_cache_volume(
    platform: PlatformRef, cache: CompileCache, vllm_version: str
) -> VolumeArgs:
    """The persisted compilation cache, read-write and owned by the server's uid."""
    return fuse_volume(
        cache.volume, platform.model_bucket, only_dir=cache.prefix(vllm_version), read_only=False
    )


def scratch_volumes(shm_gib: int, *, fuse: bool = True) -> list[VolumeArgs]:
    """/tmp (HOME, caches) and /dev/shm for tensor-parallel NCCL, plus the FUSE cache
    when the pod mounts a bucket."""
    volumes = [
        VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
        VolumeArgs(
            name="dshm",
            empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                medium="Memory", size_limit=f"{shm_gib}Gi"
            ),
        ),
    ]
    if fuse:
        # The FUSE sidecar's file cache lives in RAM: TPU hosts have no local SSD.
        volumes.append(
            VolumeArgs(
                name="gke-gcsfuse-cache",
                empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory"),
            )
        )
    return volumes


def service_account_with_bucket_access(
    name: str,
    workload: str,
    platform: PlatformRef,
    buckets: list[tuple[pulumi.Input[str], str]],
    parent: pulumi.Resource,
    k8s_opts: pulumi.ResourceOptions,
    *,
    write_prefix: tuple[str, str] | None = None,
) -> k8s.core.v1.ServiceAccount:
    """A Kubernetes service account and its bucket grants (Workload Identity, no keys).

    ``write_prefix`` (bucket, prefix): write on objects under that prefix only
    (an IAM condition on the object name); listing needs a read grant on that
    bucket among ``buckets``.
    """
    account = k8s.core.v1.ServiceAccount(
        f"{name}-ksa",
        metadata=ObjectMetaArgs(name=workload, namespace=platform.workload_namespace),
        automount_service_account_token=False,
        opts=k8s_opts,
    )
    number = project_number(platform.project_id)
    for index, (bucket, access) in enumerate(buckets):
        grant_bucket_access(
            f"{name}-bucket-{access}-{index}",
            bucket,
            access,
            platform.project_id,
            number,
            platform.workload_namespace,
            workload,
            pulumi.ResourceOptions(parent=parent),
        )
    if write_prefix is not None:
        bucket, prefix = write_prefix
        grant_bucket_access(
            f"{name}-bucket-prefix-write",
            bucket,
            "write",
            platform.project_id,
            number,
            platform.workload_namespace,
            workload,
            pulumi.ResourceOptions(parent=parent),
            prefix=prefix,
        )
    return account
