"""Every image the project pins, by name, and how a digest pins it.

The program names each image it runs by a tag (``vllm/vllm-openai:v0.11.2``);
a tag can be pushed again, a digest cannot. A production stack therefore pins
every image here by digest: the digests are configuration
(``gke-inference:images.digests.<name>``, see ``scripts/pin_images.py``), since
an offline plan cannot ask a registry what a tag points to. The platform exports
them (``imageDigests``) and workload stacks append them to the references they
render (``image@sha256:...``: the kubelet pulls by the digest and ignores the tag).

Where each image is pulled from:

- ``remote``: through the platform's Artifact Registry remote repository of its
  upstream (cached, scanned, and inside Binary Authorization's allow-list);
- ``team``: the platform's own Docker repository (images this project builds);
- ``system``: as published by Google for GKE (``gcr.io/gke-release``), which
  Binary Authorization exempts as a GKE system image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Upstream = Literal["docker-hub", "registry-k8s", "ghcr", "nvcr", "quay"]

#: The registry host behind each upstream a remote repository can proxy: the
#: registry creates the remotes from it, workloads name images through it.
UPSTREAM_HOSTS: dict[Upstream, str] = {
    "docker-hub": "docker.io",
    "registry-k8s": "registry.k8s.io",
    "ghcr": "ghcr.io",
    "nvcr": "nvcr.io",
    "quay": "quay.io",
}

Source = Literal["remote", "team", "system"]

DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"
_DIGEST_SUFFIX = re.compile(r"@sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class PinnedImage:
    name: str
    ref: str  # repository path and tag, relative to where ``source`` says
    source: Source
    upstream: Upstream | None = None  # for ``remote``
    used_by: str = ""

    @property
    def public_ref(self) -> str:
        """The reference as published (what ``crane digest`` / ``docker buildx imagetools
        inspect`` takes), or the team repository's path for ``team`` images."""
        if self.source == "remote" and self.upstream is not None:
            return f"{UPSTREAM_HOSTS[self.upstream]}/{self.ref}"
        return self.ref


def _pinned(*images: PinnedImage) -> dict[str, PinnedImage]:
    return {image.name: image for image in images}


#: Every image the platform or a workload stack renders, by the name its digest is
#: configured under.
PINNED_IMAGES: dict[str, PinnedImage] = _pinned(
    PinnedImage("vllm-gpu", "vllm/vllm-openai:v0.11.2", "remote", "docker-hub", "online/streaming/batch servers on GPUs"),
    PinnedImage("vllm-tpu", "vllm/vllm-tpu:v0.11.1", "remote", "docker-hub", "online servers on TPUs"),
    PinnedImage("cloud-sdk", "google/cloud-sdk:573.0.0-slim", "remote", "docker-hub", "model download (gcloud storage)"),
    PinnedImage("python", "python:3.12.12-slim-bookworm", "remote", "docker-hub", "model download (Hugging Face fetch)"),
    PinnedImage("epp", "gateway-api-inference-extension/epp:v1.5.0", "remote", "registry-k8s", "InferencePool endpoint picker"),
    PinnedImage("lws-controller", "lws/lws:v0.10.0", "remote", "registry-k8s", "LeaderWorkerSet controller (platform)"),
    PinnedImage("metrics-adapter", "gcr.io/gke-release/custom-metrics-stackdriver-adapter:v0.16.7-gke.0", "system", None, "custom metrics adapter (platform)"),
    PinnedImage("worker", "gke-inference-worker:0.1.0", "team", None, "batch and streaming worker (worker/)"),
)  # fmt: skip


def has_digest(image: str) -> bool:
    """Is ``image`` pinned by digest (``image@sha256:<64 hex>``, tag or not)?"""
    return _DIGEST_SUFFIX.search(image) is not None


def with_digest(image: str, digest: str | None) -> str:
    """``image`` pinned by ``digest`` (kept as it is when it has one or none is given)."""
    if not digest or has_digest(image):
        return image
    return f"{image}@{digest}"


def without_digest(image: str) -> str:
    return _DIGEST_SUFFIX.sub("", image)


def image_tag(image: str) -> str:
    """The tag of ``image`` (``unknown`` when it has none), digest or not."""
    last = without_digest(image).rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[-1] if ":" in last else "unknown"
