"""Model weights in Cloud Storage, readable by workloads through Workload Identity."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
from pulumi_gcp import storage

from gke_inference.core.components import child_options
from gke_inference.inference.workload_identity import ksa_principal

SECONDS_PER_DAY = 86_400


@dataclass
class ModelBucketArgs:
    project: str
    region: str
    name: str
    soft_delete_days: int
    protected: bool
    labels: dict[str, str]
    project_number: pulumi.Input[str]
    cache_zones: list[str] = field(default_factory=list)  # Anywhere Cache, one per zone
    cache_ttl_hours: int = 168


class ModelBucket(pulumi.ComponentResource):
    """A regional bucket with hierarchical namespace, for fast GCS FUSE reads, and
    optionally Anywhere Cache instances in the zones that read it.

    Versioning policy: off. Hierarchical-namespace buckets do not support
    object versioning; accidental deletes are recoverable through soft delete
    (``softDeleteDays``), and model directories are written once per revision.
    """

    bucket: storage.Bucket
    name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ModelBucketArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:inference:ModelBucket", name, None, opts)
        self.bucket = storage.Bucket(
            f"{name}-bucket",
            name=args.name,
            project=args.project,
            location=args.region.upper(),
            storage_class="STANDARD",
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            hierarchical_namespace=storage.BucketHierarchicalNamespaceArgs(enabled=True),
            versioning=storage.BucketVersioningArgs(enabled=False),
            soft_delete_policy=storage.BucketSoftDeletePolicyArgs(
                retention_duration_seconds=args.soft_delete_days * SECONDS_PER_DAY
            ),
            force_destroy=not args.protected,
            labels=args.labels,
            opts=child_options(self, opts, protect=args.protected),
        )
        self.name = self.bucket.name
        # Anywhere Cache: an SSD read cache in each serving zone, filled on the first read
        # from that zone, so the second node to load a model reads it from the zone
        # (admission policy: the deprecated field is left to its only behaviour).
        self.caches = [
            storage.AnywhereCache(
                f"{name}-cache-{zone}",
                bucket=self.bucket.name,
                zone=zone,
                ttl=f"{args.cache_ttl_hours * 3600}s",
                opts=child_options(self, opts, depends_on=[self.bucket]),
            )
            for zone in args.cache_zones
        ]
        self.register_outputs({"name": self.name})


# bucket-metadata: storage.buckets.get (and objects.list), which a client calling
# buckets.get before it lists needs besides read (the Run:ai streamer's GCS client).
BUCKET_ROLES = {
    "read": "roles/storage.objectViewer",
    "write": "roles/storage.objectUser",
    "bucket-metadata": "roles/storage.legacyBucketReader",
}


def grant_bucket_access(
    name: str,
    bucket: pulumi.Input[str],
    access: str,
    project: pulumi.Input[str],
    number: pulumi.Input[str],
    namespace: pulumi.Input[str],
    service_account: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    *,
    prefix: str | None = None,
) -> storage.BucketIAMMember:
    """Bucket access for a Kubernetes service account through its Workload Identity principal.

    ``prefix``: only on objects under it (an IAM condition on the object name).
    Listing is checked on the bucket itself, so the account lists through a
    plain read grant on the same bucket.

    Workload stacks grant themselves access with the bucket name they read
    from the platform stack's outputs (they never hold the ModelBucket itself).
    """
    return storage.BucketIAMMember(
        name,
        bucket=bucket,
        role=BUCKET_ROLES[access],
        member=ksa_principal(project, number, namespace, service_account),
        condition=None
        if prefix is None
        else storage.BucketIAMMemberConditionArgs(
            title=f"prefix-{access}",
            description=f"{access} under {prefix}/ only",
            expression=pulumi.Output.concat(
                'resource.name.startsWith("projects/_/buckets/', bucket, f'/objects/{prefix}/")'
            ),
        ),
        opts=opts,
    )
