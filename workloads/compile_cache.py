"""Compilation caches that outlive a pod (``server.compileCache``).

A vLLM server compiles before it serves, and both kinds cache what they
compile on disk:

- GPU: torch.compile (Dynamo + Inductor + Triton) writes its artifacts under
  ``$VLLM_CACHE_ROOT/torch_compile_cache/<hash>/rank_<r>_<dp>/``. The hash is
  vLLM's own (``VllmBackend.__call__``, v0.11.2): its config factors, the traced
  model code and the compiler's (torch) version, so a changed flag compiles
  into a new folder instead of loading a stale one. Per shape the index
  (``vllm_compile_cache.py``) is written after every artifact it names
  (``PiecewiseBackend``: ``save_to_file`` once the last shape compiled), so a
  reader sees either no index (and compiles) or a complete one. Published
  figure (Tensorfuse, Llama 3.1 8B on an L40S, Sept. 2025): graph compilation
  42 s cold, 13 s from the cache; Dynamo's bytecode pass (10 s) and CUDA graph
  capture run every start and are not cacheable.
- TPU: vLLM TPU compiles every padded batch/sequence shape with XLA into
  ``VLLM_XLA_CACHE_PATH``: tens of minutes for 30B-70B models on a cold cache.

``bucket`` (the default) keeps the cache in a prefix of the platform model
bucket, mounted read-write through Cloud Storage FUSE and writable by the
server's account on that prefix only, so only the first pod of a model, server
version and machine shape compiles. The prefix is keyed by what vLLM's hash
does not cover: the GPU's machine type (Triton kernels are built for its
compute capability, and vLLM's GPU P2P probe result, cached beside them, is the
machine's) and the devices per pod; on TPUs the slice topology. On GPUs the
whole ``VLLM_CACHE_ROOT`` is the mount: besides torch.compile it holds vLLM's
model-inspection cache (keyed by the model code's hash), DeepGEMM's JIT kernels
and that P2P result, all valid for the same key. ``pod`` keeps the caches in the
pod's /tmp: every pod compiles, nothing is shared.

Concurrent first pods both compile and both write: object writes are whole
(FUSE uploads a file when it is closed), artifact names are vLLM's
deterministic ``artifact_shape_<n>_subgraph_<i>``, and two writers of one name
write the same program, so the last write wins harmlessly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Mode = Literal["bucket", "pod"]

GPU_CACHE_MOUNT = "/vllm-cache"  # VLLM_CACHE_ROOT; torch.compile under torch_compile_cache/
GPU_CACHE_PREFIX = "vllm-cache"  # vllm-cache/<model>/<vllm>/<machine type>-tp<devices>
XLA_CACHE_MOUNT = "/xla-cache"  # VLLM_XLA_CACHE_PATH
XLA_CACHE_PREFIX = "xla-cache"  # xla-cache/<model>/<vllm>/<topology>


@dataclass(frozen=True)
class CompileCache:
    """Where one server's compilation cache lives, and how the server finds it."""

    volume: str  # the pod's volume name
    mount_path: str
    env: str  # the vLLM variable that points there
    root: str  # its top folder in the platform model bucket
    model_key: str
    shape: str  # what vLLM's own key does not cover

    def row(self) -> tuple[str, str]:
        """The `size` row."""
        return (
            "compile cache",
            f"gs://<model bucket>/{self.prefix('<vllm>')}/ at {self.mount_path} "
            f"({self.env}): the first pod of this shape compiles, the next ones load",
        )

    def prefix(self, vllm_version: str) -> str:
        """``<root>/<model>/<vllm version>/<shape>`` in the platform model bucket."""
        return f"{self.root}/{self.model_key}/{vllm_version}/{self.shape}"


def compile_cache(
    kind: str,
    mode: Mode,
    *,
    model_key: str,
    machine_type: str,
    devices_per_pod: int,
    topology: str | None,
) -> CompileCache | None:
    """The persisted cache of a server (None: ``pod``, the caches stay in its /tmp)."""
    if mode == "pod":
        return None
    if kind == "tpu":
        shape = topology or str(devices_per_pod)
        return CompileCache(
            "xla-cache", XLA_CACHE_MOUNT, "VLLM_XLA_CACHE_PATH", XLA_CACHE_PREFIX, model_key, shape
        )
    return CompileCache(
        "vllm-cache",
        GPU_CACHE_MOUNT,
        "VLLM_CACHE_ROOT",
        GPU_CACHE_PREFIX,
        model_key,
        f"{machine_type}-tp{devices_per_pod}",
    )
