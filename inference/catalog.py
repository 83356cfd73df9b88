"""The accelerator catalog: every GPU and TPU offering the platform supports.

This is data, not code paths. Node pools, node auto-provisioning limits,
compute classes and workload sizing are all generated from it, so an
accelerator fact is written here once and nowhere else.

Figures are per device. Memory is what the device reports, in MiB
(``nvidia-smi``'s "Total", which is what CUDA's ``cudaMemGetInfo`` total and
therefore vLLM's ``--gpu-memory-utilization`` start from, up to the few
hundred MiB the driver reserves): an "80 GB" H100 has 81559 MiB = 79.6 GiB,
not 80 GiB, and an L4 "24 GB" has 23034 MiB = 22.5 GiB. Each entry names its
source in ``memory_source``. Bandwidth is in GB/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gpu", "tpu"]


@dataclass(frozen=True)
class MachineShape:
    machine_type: str
    count: int  # devices (GPUs or TPU chips) per node
    topology: str | None = None  # TPU slice topology served by this shape


@dataclass(frozen=True)
class Accelerator:
    key: str  # short name used in settings, class names and specs
    kind: Kind
    display_name: str
    gke_label: str  # value of cloud.google.com/gke-accelerator / gke-tpu-accelerator
    nap_resource: str  # resource type in node auto-provisioning limits
    memory_mib: int  # as the device reports it (see the module doc)
    memory_source: str  # where memory_mib comes from
    bandwidth_gbps: int
    shapes: tuple[MachineShape, ...]
    fp8: bool  # native FP8 tensor cores / MXU support
    default_max_devices: int  # default NAP ceiling for this accelerator
    # CUDA compute capability (NVIDIA's "CUDA GPUs" table); None on TPUs. vLLM picks
    # its attention kernels by it (workloads.attention).
    compute_capability: tuple[int, int] | None = None

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024

    @property
    def resource_name(self) -> str:
        """The extended resource a container requests."""
        return "google.com/tpu" if self.kind == "tpu" else "nvidia.com/gpu"


def _shapes(prefix: str, counts: dict[str, int]) -> tuple[MachineShape, ...]:
    return tuple(MachineShape(f"{prefix}-{suffix}", n) for suffix, n in counts.items())


def _tpu(machine_type: str, chips: int, topology: str) -> MachineShape:
    return MachineShape(machine_type, chips, topology)


CATALOG: tuple[Accelerator, ...] = (
    Accelerator(
        key="l4",
        kind="gpu",
        display_name="NVIDIA L4 24 GB",
        gke_label="nvidia-l4",
        nap_resource="nvidia-l4",
        memory_mib=23034,
        memory_source="nvidia-smi on g2-standard-* (NVIDIA L4): 23034MiB total",
        bandwidth_gbps=300,
        shapes=_shapes(
            "g2-standard",
            # g2-standard-8 first: the 1-GPU shape with enough host memory to load weights
            {"8": 1, "4": 1, "12": 1, "16": 1, "32": 1, "24": 2, "48": 4, "96": 8},
        ),
        fp8=True,
        default_max_devices=64,
        compute_capability=(8, 9),
    ),
    Accelerator(
        key="a100-40gb",
        kind="gpu",
        display_name="NVIDIA A100 40 GB",
        gke_label="nvidia-tesla-a100",
        nap_resource="nvidia-tesla-a100",
        memory_mib=40960,
        memory_source="nvidia-smi on a2-highgpu-* (A100-SXM4-40GB): 40960MiB total",
        bandwidth_gbps=1555,
        shapes=_shapes("a2-highgpu", {"1g": 1, "2g": 2, "4g": 4, "8g": 8})
        + _shapes("a2-megagpu", {"16g": 16}),
        fp8=False,
        default_max_devices=32,
        compute_capability=(8, 0),
    ),
    Accelerator(
        key="a100-80gb",
        kind="gpu",
        display_name="NVIDIA A100 80 GB",
        gke_label="nvidia-a100-80gb",
        nap_resource="nvidia-a100-80gb",
        memory_mib=81920,
        memory_source="nvidia-smi on a2-ultragpu-* (A100-SXM4-80GB): 81920MiB total",
        bandwidth_gbps=2039,
        shapes=_shapes("a2-ultragpu", {"1g": 1, "2g": 2, "4g": 4, "8g": 8}),
        fp8=False,
        default_max_devices=32,
        compute_capability=(8, 0),
    ),
    Accelerator(
        key="h100-80gb",
        kind="gpu",
        display_name="NVIDIA H100 80 GB",
        gke_label="nvidia-h100-80gb",
        nap_resource="nvidia-h100-80gb",
        memory_mib=81559,
        memory_source="nvidia-smi on a3-highgpu-* (H100 80GB HBM3): 81559MiB total",
        bandwidth_gbps=3350,
        shapes=_shapes("a3-highgpu", {"1g": 1, "2g": 2, "4g": 4, "8g": 8}),
        fp8=True,
        default_max_devices=32,
        compute_capability=(9, 0),
    ),
    Accelerator(
        key="h100-mega-80gb",
        kind="gpu",
        display_name="NVIDIA H100 Mega 80 GB",
        gke_label="nvidia-h100-mega-80gb",
        nap_resource="nvidia-h100-mega-80gb",
        memory_mib=81559,
        memory_source="nvidia-smi on a3-megagpu-8g (H100 80GB HBM3): 81559MiB total",
        bandwidth_gbps=3350,
        shapes=_shapes("a3-megagpu", {"8g": 8}),
        fp8=True,
        default_max_devices=32,
        compute_capability=(9, 0),
    ),
    Accelerator(
        key="h200-141gb",
        kind="gpu",
        display_name="NVIDIA H200 141 GB",
        gke_label="nvidia-h200-141gb",
        nap_resource="nvidia-h200-141gb",
        memory_mib=143771,
        memory_source="nvidia-smi on a3-ultragpu-8g (H200): 143771MiB total",
        bandwidth_gbps=4800,
        shapes=_shapes("a3-ultragpu", {"8g": 8}),
        fp8=True,
        default_max_devices=32,
        compute_capability=(9, 0),
    ),
    Accelerator(
        key="rtx-pro-6000",
        kind="gpu",
        display_name="NVIDIA RTX PRO 6000 96 GB",
        gke_label="nvidia-rtx-pro-6000",
        nap_resource="nvidia-rtx-pro-6000",
        memory_mib=97887,
        memory_source="nvidia-smi on g4-standard-* (RTX PRO 6000 Blackwell Server Edition): 97887MiB total",
        bandwidth_gbps=1792,
        shapes=_shapes("g4-standard", {"48": 1, "96": 2, "192": 4, "384": 8}),
        fp8=True,
        default_max_devices=32,
        compute_capability=(12, 0),
    ),
    Accelerator(
        key="tpu-v5e",
        kind="tpu",
        display_name="TPU v5e (v5 lite)",
        gke_label="tpu-v5-lite-podslice",
        nap_resource="tpu-v5-lite-podslice",
        memory_mib=16384,
        memory_source="Cloud TPU v5e docs: 16 GB HBM2 per chip, built from binary-sized stacks (16 GiB)",
        bandwidth_gbps=819,
        shapes=(
            _tpu("ct5lp-hightpu-1t", 1, "1x1"),
            _tpu("ct5lp-hightpu-4t", 4, "2x2"),
            _tpu("ct5lp-hightpu-8t", 8, "2x4"),
        ),
        fp8=False,
        default_max_devices=64,
    ),
    Accelerator(
        key="tpu-v6e",
        kind="tpu",
        display_name="TPU v6e (Trillium)",
        gke_label="tpu-v6e-slice",
        nap_resource="tpu-v6e-slice",
        memory_mib=32768,
        memory_source="Cloud TPU v6e docs: 32 GB HBM per chip, built from binary-sized stacks (32 GiB)",
        bandwidth_gbps=1640,
        shapes=(
            _tpu("ct6e-standard-1t", 1, "1x1"),
            _tpu("ct6e-standard-4t", 4, "2x2"),
            _tpu("ct6e-standard-8t", 8, "2x4"),
        ),
        fp8=False,
        default_max_devices=64,
    ),
)

BY_KEY: dict[str, Accelerator] = {a.key: a for a in CATALOG}
BY_MACHINE_TYPE: dict[str, tuple[Accelerator, MachineShape]] = {
    shape.machine_type: (acc, shape) for acc in CATALOG for shape in acc.shapes
}


def machine_types() -> list[str]:
    return sorted(BY_MACHINE_TYPE)


def lookup(machine_type: str) -> tuple[Accelerator, MachineShape]:
    """The accelerator and shape of a machine type; KeyError if not in the catalog."""
    return BY_MACHINE_TYPE[machine_type]


def class_name(accelerator: Accelerator, shape: MachineShape) -> str:
    """Name of the compute class that provides ``shape`` (one per accelerator and size)."""
    if accelerator.kind == "tpu":
        return f"{accelerator.key}-{shape.topology}"
    return f"gpu-{accelerator.key}-x{shape.count}"
