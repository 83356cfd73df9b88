"""How the weights reach the server (``model.loader``), and how long that takes.

- ``fuse`` (default): the model's folder of its bucket is a Cloud Storage
  FUSE mount at ``/models``; a prefetch sidecar reads every shard once into
  the FUSE file cache (workloads.storage, workloads.pods).
- ``streamer``: vLLM's Run:ai Model Streamer reads the safetensors shards
  straight from ``gs://<bucket>/<folder>`` into GPU memory through a bounded
  CPU buffer, many ranges at once (``--load-format=runai_streamer``). No FUSE
  sidecar, no file cache in the pod's memory, no mount.

What the server does with the streamer flags (vLLM v0.11.2, read in its
source): ``--model=gs://...`` is an object-storage URI (``runai_utils``: gs://
since 0.10.2); config, tokenizer and other small files are pulled into
``$VLLM_ASSETS_CACHE/model_streamer/<hash>`` (``$XDG_CACHE_HOME/vllm/assets``,
under the pod's writable /tmp here); only ``*.safetensors`` are streamed (a
folder with only ``.bin`` weights fails "Cannot find any safetensors model
weights"). ``RunaiModelStreamerLoader`` reads three keys of
``--model-loader-extra-config`` and ignores any key or type it does not
expect, silently: ``concurrency`` (int, exported as
RUNAI_STREAMER_CONCURRENCY), ``memory_limit`` (int bytes,
RUNAI_STREAMER_MEMORY_LIMIT) and ``distributed`` (bool). The streamer's own
defaults are 8 concurrent reads on object storage and a 40 GB CPU buffer:
more than the 16 GiB per device this project gives the container, so the
buffer is set explicitly (STREAMER_BUFFER_GIB_PER_DEVICE).

The GCS client of runai-model-streamer (``runai_model_streamer_gcs``) lists
the folder through ``Client.get_bucket``, a buckets.get call: besides
objects.get and objects.list (roles/storage.objectViewer) the pod's identity
needs storage.buckets.get, which roles/storage.legacyBucketReader grants on
the one bucket (workloads.storage.serving_buckets).

- ``hyperdisk-ml``: the model's folder is copied once to a Hyperdisk ML volume
  (one disk per listed zone, restored from one snapshot) that every replica
  attaches read-only at ``/models`` (workloads.hyperdisk). No FUSE, no
  prefetch: the server reads block storage at the volume's provisioned
  throughput.

Not offered where it cannot run: on TPUs, Google documents the streamer from
vLLM TPU 0.18.0 on (the pinned vllm-tpu is v0.11.1), and a replica that spans
nodes (pipeline stages on a Ray cluster) is left to FUSE: the streamer's
distributed mode shares one load across the ranks of one node's
tensor-parallel group, and the multi-node path is not rehearsed here.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Literal

from gke_inference.core.errors import Problem

if TYPE_CHECKING:
    from gke_inference.workloads.sizing import Sizing
    from gke_inference.workloads.spec import WorkloadSpec

Loader = Literal["fuse", "streamer", "hyperdisk-ml"]
GIB = 1024**3

# Cold read of the weights, per node. FUSE: 0.25 GiB/s (see sizing.startup_seconds
# for the gcsfuse benchmark figures). Streamer: 1 GiB/s. Run:ai's published
# benchmark (runai-model-streamer docs/benchmarks, Llama 3 8B, 15 GB from
# same-region S3 on a g5.12xlarge, 40 Gbps) loads in 28.2 s at concurrency 4,
# 8.5 s at 16, 4.9 s at 32 (~3 GB/s) and 5.0 s at 64; 1 GiB/s is a third of that,
# because accelerator nodes here have 16-200 Gbps NICs (g2-standard-8: 16 Gbps,
# 2 GB/s at best) and the probe must not kill a slow but healthy load.
READ_GIB_PER_SECOND: dict[Loader, float] = {"fuse": 0.25, "streamer": 1.0}
# Hyperdisk ML: the volume's provisioned throughput, shared by every node that may
# read the weights at once (maxReplicas x nodes per replica). Google publishes the
# volume's range (400-1,200,000 MiB/s) and "high aggregate throughput to many VMs",
# not how it divides or each machine type's cap, so the budget takes the share and
# never more than the streamer's 1 GiB/s per node.
HYPERDISK_READ_CEILING_GIB_PER_SECOND = 1.0
# 32 concurrent range reads: the knee of that benchmark (64 is no faster).
STREAMER_CONCURRENCY = 32
# CPU staging buffer per device of the pod: leaves 12 of the container's 16 GiB per
# device to the server process (tokenizer, CUDA context, Python).
STREAMER_BUFFER_GIB_PER_DEVICE = 4
STREAMER_LOAD_FORMAT = "runai_streamer"
# The keys and types RunaiModelStreamerLoader reads (others are ignored silently).
STREAMER_EXTRA_CONFIG_TYPES: dict[str, type] = {
    "concurrency": int,
    "memory_limit": int,
    "distributed": bool,
}


# The rest of the startup budget (startup probe, worker MODEL_READY_TIMEOUT_S): see
# startup_seconds.
STARTUP_MARGIN_SECONDS = 120
WARMUP_SECONDS = {"gpu": 180, "tpu": 1800}


def read_gib_per_second(sizing: Sizing, loader: Loader | None = None) -> float:
    """What one node reads the weights at with ``loader`` (default: the sizing's)."""
    loader = loader or sizing.loader
    if loader != "hyperdisk-ml":
        return READ_GIB_PER_SECOND[loader]
    assert sizing.hyperdisk_ml is not None
    share = sizing.hyperdisk_ml.throughput_mi_bps / 1024 / sizing.weight_readers
    return min(share, HYPERDISK_READ_CEILING_GIB_PER_SECOND)


def load_seconds(sizing: Sizing, loader: Loader | None = None) -> int:
    """The cold read of the weights at the loader's rate."""
    return math.ceil(sizing.weights_gib / read_gib_per_second(sizing, loader))


def startup_seconds(sizing: Sizing) -> int:
    """Budget from pod start to a healthy server on a cold node (startup probe).

    ``STARTUP_MARGIN_SECONDS + weights / READ_GIB_PER_SECOND[loader] +
    WARMUP_SECONDS[kind]``:

    - streamer, weights / 1 GiB/s: the figures above (70B bf16: 132 s).
    - fuse, weights / 0.25 GiB/s: the cold read of every shard through GCS FUSE into
      its file cache (parallel downloads, the prefetch sidecar's 16 readers).
      gcsfuse's published FIO benchmark (docs/benchmarks.md: n2-standard-96,
      100 Gbps, 128 readers) reaches ~7.5 GiB/s on 1 GiB files; one sequential
      reader measures ~0.15 GiB/s (its sequential_read benchmark). Accelerator
      nodes have 16-200 Gbps NICs and the FUSE sidecar shares their CPUs, and
      the server reads each shard a second time from the cache, so 0.25 GiB/s
      per node is the conservative figure: 70B in bf16 (131.5 GiB) gets 527 s.
    - warm-up: 180 s on GPUs (torch.compile and CUDA graph capture, whose
      cache lives in the pod's /tmp), 1800 s on TPUs (vLLM TPU precompiles
      every padded batch/sequence shape with XLA: tens of minutes on a cold
      cache for 30B-70B models). The XLA cache is persisted in the model bucket
      (``xla-cache/<model>/<vllm>/<topology>``), so only the first pod of a
      model, server version and topology pays it; the probe must still allow it.
    - 120 s margin: image pull from the regional remote repository, FUSE
      sidecar start, device plugin and the server's own process start.
    """
    return STARTUP_MARGIN_SECONDS + load_seconds(sizing) + WARMUP_SECONDS[sizing.accelerator.kind]


def startup_rows(sizing: Sizing) -> list[tuple[str, str]]:
    """`size` rows: the loader, and the startup budget with the other loader's read."""
    other: Loader = "streamer" if sizing.loader == "fuse" else "fuse"
    other_read = load_seconds(sizing, other)
    hyperdisk = sizing.hyperdisk_ml
    how = {
        "fuse": "Cloud Storage FUSE mount at the model folder, prefetched into its file cache",
        "streamer": f"Run:ai Model Streamer from gs:// ({STREAMER_CONCURRENCY} concurrent "
        f"reads, {STREAMER_BUFFER_GIB_PER_DEVICE * sizing.devices_per_pod} GiB CPU buffer)",
        "hyperdisk-ml": "Hyperdisk ML volume attached read-only"
        + (
            f" ({hyperdisk.throughput_mi_bps} MiB/s shared by up to {sizing.weight_readers} "
            f"nodes, in {', '.join(hyperdisk.zones)})"
            if hyperdisk
            else ""
        ),
    }
    return [
        ("weights loader", f"{sizing.loader}: {how[sizing.loader]}"),
        (
            "startup budget",
            f"{startup_seconds(sizing)} s = {STARTUP_MARGIN_SECONDS} s start + "
            f"{load_seconds(sizing)} s read at {read_gib_per_second(sizing):.3g} GiB/s + "
            f"{WARMUP_SECONDS[sizing.accelerator.kind]} s warm-up ({other} would read in "
            f"{other_read} s)",
        ),
    ]


def streamer_extra_config(sizing: Sizing) -> dict[str, int | bool]:
    """``--model-loader-extra-config`` for the streamer: its concurrency and buffer, and
    distributed streaming across a tensor-parallel group (each rank reads its share)."""
    config: dict[str, int | bool] = {
        "concurrency": STREAMER_CONCURRENCY,
        "memory_limit": STREAMER_BUFFER_GIB_PER_DEVICE * sizing.devices_per_pod * GIB,
    }
    if sizing.devices_per_pod > 1:
        config["distributed"] = True
    return config


def loader_args(sizing: Sizing) -> list[str]:
    """The server flags of the loader (none for FUSE or Hyperdisk ML: a local folder)."""
    if sizing.loader != "streamer":
        return []
    config = json.dumps(streamer_extra_config(sizing), separators=(",", ":"), sort_keys=True)
    return [f"--load-format={STREAMER_LOAD_FORMAT}", f"--model-loader-extra-config={config}"]


def loader_problems(spec: WorkloadSpec, nodes: int) -> list[Problem]:
    """Where the streamer cannot run (see the module doc)."""
    if spec.model is None or spec.model.loader != "streamer":
        return []
    if spec.accelerator_info.kind == "tpu":
        return [
            Problem(
                "model.loader",
                "'streamer' on TPUs needs vLLM TPU 0.18.0 or later (Google's "
                "documented minimum for the Run:ai Model Streamer); the pinned vllm-tpu is "
                "v0.11.1: use 'fuse' on TPUs",
            )
        ]
    if nodes > 1:
        return [
            Problem(
                "model.loader",
                f"'streamer' is for replicas on one node; this one spans {nodes} nodes "
                "(pipeline stages), which read their weights through 'fuse'",
            )
        ]
    return []


def checkpoint_gib(spec: WorkloadSpec, sizing: Sizing) -> float:
    """Size of the checkpoint in the bucket: the served weights when it is
    pre-quantized, else 16-bit weights (vLLM quantizes them while loading)."""
    # here, not at the top: spec imports this module, and fit imports spec
    from gke_inference.workloads.fit import BYTES_PER_PARAMETER

    assert spec.model is not None
    if spec.model.prequantized:
        return sizing.weights_gib
    return sizing.weights_gib * 2 / BYTES_PER_PARAMETER[spec.precision]


# Hyperdisk ML volumes are 4 GiB to 64 TiB; ext4's metadata and reserved blocks take
# about 5% of a disk, and the tokenizer and config files are small beside the shards.
HYPERDISK_MIN_GIB = 4


def hyperdisk_gib(spec: WorkloadSpec, sizing: Sizing) -> int:
    """The Hyperdisk ML volume's size: the checkpoint plus 10% and 2 GiB of headroom."""
    return max(HYPERDISK_MIN_GIB, math.ceil(checkpoint_gib(spec, sizing) * 1.1) + 2)
