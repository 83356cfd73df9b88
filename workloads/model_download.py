"""ModelDownload: copy a Hugging Face model into the platform's model bucket, once.

Serving pods read weights only from the bucket (``HF_HUB_OFFLINE=1``), so a
workload whose model is a Hugging Face id gets this Job in front of it; the
serving component depends on it, and Pulumi waits for the Job to complete.

The pod runs three steps, each as non-root with a read-only root filesystem:

1. ``prepare`` (Google Cloud CLI): skip everything when the bucket already
   holds this revision (a marker written at the end of a successful copy) or a
   model staged by hand (``config.json`` present); otherwise read the Hugging
   Face token from Secret Manager into a memory-backed volume (never an env
   var, never a log line).
2. ``download`` (Python): install a pinned ``huggingface_hub`` into a venv
   under /tmp and download the snapshot onto a generic ephemeral volume sized
   from the model (node boot disks are too small for large models).
3. ``upload`` (Google Cloud CLI): ``gcloud storage cp -r`` into the bucket;
   ``config.json`` goes last and the marker after it, so a half-finished copy
   is never taken for a complete one.

When the workload stack creates it (:func:`needs_download`): the kind serves
a model, the model is a Hugging Face id (a ``gs://`` model is read where it is,
never downloaded), and ``model.download`` says so:

- unset (None): download iff the spec names ``huggingFaceTokenSecret``. Without
  a token the weights must already be in the bucket (staged once by the
  platform team, or by any earlier workload with a token): an anonymous
  download fails for gated models (Gemma, Llama) and would then block every
  ``pulumi up`` of a workload that worked before.
- true: download, with the token when one is named, anonymously otherwise
  (public models; anonymous Hub downloads are rate-limited). An anonymous Job
  has no Secret Manager grant, no secret volume and no ``TOKEN_SECRET``;
  ``huggingface_hub`` gets ``token=False`` and never looks for a token.
- false: never; the weights are staged by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_gcp import secretmanager
from pulumi_kubernetes.core.v1 import (
    ContainerArgs,
    EnvVarArgs,
    ResourceRequirementsArgs,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.inference.workload_identity import ksa_principal
from gke_inference.platform.identity import project_number
from gke_inference.workloads.kinds import Deployment
from gke_inference.workloads.lifecycle import user_env
from gke_inference.workloads.loading import checkpoint_gib
from gke_inference.workloads.network_policy import isolate
from gke_inference.workloads.platform_ref import PlatformRef
from gke_inference.workloads.pods import (
    container_security,
    labels_for,
    pinned_image,
    pod_security,
)
from gke_inference.workloads.sizing import Sizing
from gke_inference.workloads.spec import WorkloadSpec
from gke_inference.workloads.storage import service_account_with_bucket_access

# Pinned images and tools. Both come through the platform's Docker Hub remote
# repository like the vLLM images, so Binary Authorization can allow this
# project's registry only; Google's Cloud SDK image is published there as
# google/cloud-sdk (Google keeps each version about a year: bump it yearly).
HUGGINGFACE_HUB_VERSION = "0.36.0"
STORAGE_CLASS = "standard-rwo"  # GKE's default balanced persistent disk
MARKER = ".gke-inference-download"
BACKOFF_LIMIT = 2
TTL_AFTER_FINISHED_SECONDS = 86_400  # keep the finished pod's logs for a day
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"

_SKIP_IF_PRESENT = f"""set -eu
dest="gs://$MODEL_BUCKET/$MODEL_PATH"
marker="$(gcloud storage cat "$dest/{MARKER}" 2>/dev/null || true)"
if [ "$marker" = "$MODEL_REVISION" ]; then
  echo "revision $MODEL_REVISION of $MODEL_ID already in $dest"; touch /work/skip; exit 0
fi
if [ -z "$marker" ] && gcloud storage ls "$dest/config.json" >/dev/null 2>&1; then
  echo "$dest holds a model staged without this job; leaving it as is"; touch /work/skip; exit 0
fi
"""

_READ_TOKEN = """gcloud secrets versions access latest --secret="$TOKEN_SECRET" --project="$PROJECT_ID" \\
  --out-file=/secrets/hf-token --quiet
echo "read the Hugging Face token from secret $TOKEN_SECRET"
"""

_ANONYMOUS = """echo "no huggingFaceTokenSecret: downloading anonymously (public models only)"
"""

# With a token secret the token is read from the memory volume; without one,
# token=False: huggingface_hub sends no token and does not look for a stored one.
_TOKEN_FROM_FILE = 'open("/secrets/hf-token").read().strip()'
_NO_TOKEN = "False"


def _download_script(token_expression: str, hint: str) -> str:
    return f"""set -eu
if [ -e /work/skip ]; then exit 0; fi
python -m venv /tmp/venv
/tmp/venv/bin/pip install --quiet --no-cache-dir "huggingface_hub=={HUGGINGFACE_HUB_VERSION}"
exec /tmp/venv/bin/python - <<'EOF'
import os, sys
from huggingface_hub import snapshot_download
try:
    path = snapshot_download(
        repo_id=os.environ["MODEL_ID"],
        revision=os.environ["MODEL_REVISION"],
        local_dir="/work/model",
        token={token_expression},
        ignore_patterns=["original/*", "*.pth"],
        max_workers=16,
    )
except Exception as exc:
    sys.exit(f"download of {{os.environ['MODEL_ID']}} failed: {{type(exc).__name__}}: {{exc}} "
             "({hint})")
print("downloaded to", path)
EOF
"""


def prepare_script(with_token: bool) -> str:
    """Skip when the bucket holds the model; with a token, read it from Secret Manager."""
    return _SKIP_IF_PRESENT + (_READ_TOKEN if with_token else _ANONYMOUS)


def download_script(with_token: bool) -> str:
    if with_token:
        return _download_script(_TOKEN_FROM_FILE, "does the token have access to this model?")
    return _download_script(_NO_TOKEN, "gated models need huggingFaceTokenSecret")


_UPLOAD = f"""set -eu
if [ -e /work/skip ]; then exit 0; fi
dest="gs://$MODEL_BUCKET/$MODEL_PATH"
cd /work/model
rm -rf .cache
gcloud storage rsync --recursive --exclude='^config\\.json$' . "$dest"
gcloud storage cp config.json "$dest/config.json"
printf '%s' "$MODEL_REVISION" | gcloud storage cp - "$dest/{MARKER}"
echo "uploaded $MODEL_ID@$MODEL_REVISION to $dest"
"""


@dataclass
class ModelDownloadArgs:
    spec: WorkloadSpec
    sizing: Sizing
    platform: PlatformRef


def needs_download(deployment: Deployment) -> bool:
    """Whether a download Job runs before the server (see the module docstring)."""
    spec = deployment.spec
    model = spec.model
    if not deployment.kind.serves_model or model is None or model.in_bucket:
        return False
    if model.download is None:
        return spec.hugging_face_token_secret is not None
    return model.download


def weights_location(spec: WorkloadSpec, bucket: str = "<modelBucket>") -> str | None:
    """Where the server reads the weights: ``gs://<bucket>/<path>`` in the platform's model
    bucket (a platform stack output) for a Hugging Face id, the URI itself for ``gs://``."""
    if spec.model is None:
        return None
    if spec.model.in_bucket:
        return spec.model.id
    return f"gs://{bucket}/{spec.model.bucket_path}"


class ModelDownload(pulumi.ComponentResource):
    job_name: str

    def __init__(
        self, name: str, args: ModelDownloadArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("gke-inference:workloads:ModelDownload", name, None, opts)
        spec, sizing, platform = args.spec, args.sizing, args.platform
        assert spec.model is not None and not spec.model.in_bucket  # see needs_download
        k8s_opts = child_options(self, opts)
        namespace = platform.workload_namespace
        account_name = f"{spec.name}-download"
        # Its own name: the server's Service, PDB and HPA select app.kubernetes.io/name
        # = the workload, and a re-download runs while the old servers still serve.
        labels = {
            **labels_for(spec.name, spec.kind),
            "app.kubernetes.io/name": account_name,
            "app.kubernetes.io/component": "download",
        }

        account = service_account_with_bucket_access(
            name, account_name, platform, [(platform.model_bucket, "write")], self, k8s_opts
        )
        grants: list[pulumi.Resource] = [account]
        secret = spec.hugging_face_token_secret
        if secret:
            number = project_number(platform.project_id)
            grants.append(
                secretmanager.SecretIamMember(
                    f"{name}-token-accessor",
                    project=platform.project_id,
                    secret_id=secret,
                    role=SECRET_ACCESSOR,
                    member=ksa_principal(platform.project_id, number, namespace, account_name),
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )

        size_gib = checkpoint_gib(spec, sizing)
        volume_gib = math.ceil(size_gib * 1.1) + 10
        deadline = 3600 + 60 * math.ceil(size_gib)  # ~1 min per GiB down and up, plus setup
        with_token = secret is not None
        env = [
            EnvVarArgs(name="MODEL_ID", value=spec.model.id),
            EnvVarArgs(name="MODEL_REVISION", value=spec.model.revision or "main"),
            EnvVarArgs(name="MODEL_BUCKET", value=platform.model_bucket),
            EnvVarArgs(name="MODEL_PATH", value=spec.model.bucket_path),
            EnvVarArgs(name="PROJECT_ID", value=platform.project_id),
            *([EnvVarArgs(name="TOKEN_SECRET", value=secret)] if secret else []),
            EnvVarArgs(name="HOME", value="/tmp/home"),
            EnvVarArgs(name="CLOUDSDK_CONFIG", value="/tmp/gcloud"),
            EnvVarArgs(name="HF_HOME", value="/tmp/hf"),
            EnvVarArgs(name="HF_HUB_DISABLE_TELEMETRY", value="1"),
            EnvVarArgs(name="PIP_DISABLE_PIP_VERSION_CHECK", value="1"),
            *user_env(),  # python:slim has no passwd entry for the uid the Job runs as
        ]
        mounts = [
            VolumeMountArgs(name="tmp", mount_path="/tmp"),
            VolumeMountArgs(name="work", mount_path="/work"),
        ]
        secret_mount = VolumeMountArgs(name="secrets", mount_path="/secrets")

        # No probes: each step runs to completion and nothing calls it; a hang is
        # bounded by the Job's activeDeadlineSeconds, a failure by its backoffLimit.
        def step(
            step_name: str, image: pulumi.Input[str], script: str, cpu: int, memory: str
        ) -> ContainerArgs:
            return ContainerArgs(
                name=step_name,
                image=image,
                command=["/bin/sh", "-c", script],
                env=env,
                resources=ResourceRequirementsArgs(
                    requests={"cpu": str(cpu), "memory": memory}, limits={"memory": memory}
                ),
                security_context=container_security(),
                volume_mounts=[
                    *mounts,
                    *([secret_mount] if with_token and step_name != "upload" else []),
                ],
            )

        self.job_name = account_name
        annotations = {
            # Pulumi waits for the Job to complete; give it the whole deadline.
            "pulumi.com/timeoutSeconds": str(deadline + 600),
        }
        cloud_sdk = pinned_image(platform, "cloud-sdk")
        # Nothing calls it; it reaches the bucket and, for Hugging Face ids, the Hub
        # (public HTTPS through Cloud NAT), which is the public-HTTPS rule.
        isolate(
            name,
            ObjectMetaArgs(name=account_name, namespace=namespace, labels=labels),
            {"app.kubernetes.io/name": account_name},
            platform,
            k8s_opts,
        )
        k8s.batch.v1.Job(
            f"{name}-job",
            metadata=ObjectMetaArgs(
                name=self.job_name, namespace=namespace, labels=labels, annotations=annotations
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=BACKOFF_LIMIT,
                active_deadline_seconds=deadline,
                ttl_seconds_after_finished=TTL_AFTER_FINISHED_SECONDS,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account_name,
                        automount_service_account_token=False,
                        restart_policy="Never",
                        security_context=pod_security(),
                        init_containers=[
                            step("prepare", cloud_sdk, prepare_script(with_token), 1, "512Mi"),
                            step(
                                "download",
                                pinned_image(platform, "python"),
                                download_script(with_token),
                                4,
                                "8Gi",
                            ),
                        ],
                        containers=[step("upload", cloud_sdk, _UPLOAD, 4, "4Gi")],
                        volumes=[
                            VolumeArgs(
                                name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()
                            ),
                            *(
                                [
                                    VolumeArgs(
                                        name="secrets",
                                        empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                                            medium="Memory", size_limit="1Mi"
                                        ),
                                    )
                                ]
                                if with_token
                                else []
                            ),
                            VolumeArgs(
                                name="work",
                                ephemeral=k8s.core.v1.EphemeralVolumeSourceArgs(
                                    volume_claim_template=k8s.core.v1.PersistentVolumeClaimTemplateArgs(
                                        metadata=ObjectMetaArgs(labels=labels),
                                        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                                            access_modes=["ReadWriteOnce"],
                                            storage_class_name=STORAGE_CLASS,
                                            resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                                                requests={"storage": f"{volume_gib}Gi"}
                                            ),
                                        ),
                                    )
                                ),
                            ),
                        ],
                    ),
                ),
            ),
            opts=child_options(self, opts, depends_on=grants),
        )
        self.register_outputs({"jobName": self.job_name, "destination": spec.model.bucket_path})


def model_download_for(
    deployment: Deployment, platform: PlatformRef, opts: pulumi.ResourceOptions
) -> ModelDownload | None:
    """The download in front of a serving component, or None (see :func:`needs_download`)."""
    if not needs_download(deployment):
        return None
    spec = deployment.spec
    args = ModelDownloadArgs(spec, deployment.require_sizing(), platform)
    return ModelDownload(f"{spec.name}-model-download", args, opts)
