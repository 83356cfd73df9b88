"""Custom compute classes generated from the catalog.

Each enabled machine shape gets a class whose priorities say where capacity
comes from, in order. First the environment's static pools that belong to the
class, one ``nodepools`` rule per kind of capacity (:func:`class_node_pools`;
the pools themselves are inference/capacity.py's), then the declarative chain. Default chain ("obtainability"): a matching reservation,
then on-demand, then DWS flex-start, then Spot. The cost-optimized variant
(suffix ``-co``) tries Spot first. Workloads pick a class with the node
selector ``cloud.google.com/compute-class: <name>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gke_inference.core.settings import AcceleratorPool, PlatformSettings
from gke_inference.inference.catalog import Accelerator, MachineShape, class_name, lookup

Capacity = Literal["reservation", "on-demand", "flex-start", "spot"]

DEFAULT_CHAIN: tuple[Capacity, ...] = ("reservation", "on-demand", "flex-start", "spot")
COST_OPTIMIZED_CHAIN: tuple[Capacity, ...] = ("spot", "flex-start", "reservation", "on-demand")
COST_OPTIMIZED_SUFFIX = "-co"
COMPUTE_CLASS_LABEL = "cloud.google.com/compute-class"

FLEX_START_MAX_RUN_SECONDS = 7 * 24 * 3600  # DWS flex-start nodes live at most 7 days
FLEX_START_RECYCLE_LEAD_SECONDS = 3600  # start a replacement an hour before expiry
MAX_PODS_PER_NODE = 32


def _device(acc: Accelerator, shape: MachineShape) -> dict[str, Any]:
    if acc.kind == "tpu":
        return {"tpu": {"type": acc.gke_label, "count": shape.count, "topology": shape.topology}}
    return {"gpu": {"type": acc.gke_label, "count": shape.count, "driverVersion": "latest"}}


def priority(acc: Accelerator, shape: MachineShape, capacity: Capacity) -> dict[str, Any]:
    rule: dict[str, Any] = {"machineType": shape.machine_type, **_device(acc, shape)}
    if capacity == "reservation":
        rule["reservations"] = {"affinity": "AnyBestEffort"}
        rule["spot"] = False
    elif capacity == "on-demand":
        rule["spot"] = False
    elif capacity == "flex-start":
        rule["flexStart"] = {
            "enabled": True,
            "nodeRecycling": {"leadTimeSeconds": FLEX_START_RECYCLE_LEAD_SECONDS},
        }
        rule["maxRunDurationSeconds"] = FLEX_START_MAX_RUN_SECONDS
    else:
        rule["spot"] = True
    rule["maxPodsPerNode"] = MAX_PODS_PER_NODE
    return rule


def chain_for(acc: Accelerator, cost_optimized: bool) -> tuple[Capacity, ...]:
    chain = COST_OPTIMIZED_CHAIN if cost_optimized else DEFAULT_CHAIN
    # TPU reservations are consumed by name only; AnyBestEffort does not apply.
    return tuple(c for c in chain if not (acc.kind == "tpu" and c == "reservation"))


def compute_class_spec(
    acc: Accelerator,
    shape: MachineShape,
    *,
    cost_optimized: bool,
    node_service_account: str,
    node_pools: Sequence[Sequence[str]] = (),
) -> dict[str, Any]:
    """The class's spec; ``node_pools`` are the static pools that belong to it, in groups
    tried in order before any declarative rule (a ``nodepools`` rule holds nothing else)."""
    pool_rules = [{"nodepools": list(group)} for group in node_pools if group]
    return {
        "priorities": [
            *pool_rules,
            *(priority(acc, shape, c) for c in chain_for(acc, cost_optimized)),
        ],
        "nodePoolAutoCreation": {"enabled": True},
        "nodePoolConfig": {
            "imageStreaming": {"enabled": True},
            "serviceAccount": node_service_account,
        },
        "activeMigration": {"optimizeRulePriority": True},
        "whenUnsatisfiable": "DoNotScaleUp",
    }


def class_names(acc: Accelerator, shape: MachineShape, cost_optimized: bool) -> list[str]:
    base = class_name(acc, shape)
    return [base, base + COST_OPTIMIZED_SUFFIX] if cost_optimized else [base]


@dataclass(frozen=True)
class EnabledClass:
    key: str  # the platform output computeClasses' key: the class name without "gpu-"
    name: str
    accelerator: Accelerator
    shape: MachineShape
    cost_optimized: bool


def enabled_classes(machine_types: list[str], cost_optimized_classes: bool) -> list[EnabledClass]:
    """The classes an environment creates for ``inference.accelerators``: a pure function
    of its settings, so a spec can be checked against an environment without its stack."""
    found = []
    for machine_type in machine_types:
        acc, shape = lookup(machine_type)
        for index, name in enumerate(class_names(acc, shape, cost_optimized_classes)):
            found.append(EnabledClass(name.removeprefix("gpu-"), name, acc, shape, index == 1))
    return found


# --------------------------------------------------------------------------- static pools
# Which class reaches which static pool (inference/capacity.py creates the pools
# with the label and taint of their class). Reservation and on-demand pools
# belong to the base class, reservation pools first. A Spot pool belongs to the
# Spot-first "-co" variant when inference.costOptimizedClasses is on (workloads
# that chose Spot get it before new Spot nodes), else to the base class, after
# its other pools. A queued pool belongs to none: only a ProvisioningRequest
# gets its nodes, so its machine type is exported as queuedNodePools instead.

#: The taint of a queued-provisioning pool (GKE, "Run a large-scale workload with
#: flex-start with queued provisioning"): only pods that tolerate it, the batch
#: Jobs that consume a ProvisioningRequest, run on its nodes.
QUEUED_TAINT = ("cloud.google.com/gke-queued", "true")

#: The order in which a class tries its static pools, one ``nodepools`` rule each
#: (GKE does not order the pools inside one rule).
POOL_ORDER = ("reservation", "on-demand", "spot")


def pool_class(pool: AcceleratorPool, cost_optimized_classes: bool) -> str | None:
    """The compute class a static pool belongs to (None: queued, reached by no class)."""
    if pool.provisioning == "queued":
        return None
    acc, shape = lookup(pool.machine_type)
    names = class_names(acc, shape, cost_optimized_classes)
    return names[-1] if pool.provisioning == "spot" else names[0]


def class_node_pools(settings: PlatformSettings) -> dict[str, list[list[str]]]:
    """Class name -> its static pools, one group per ``nodepools`` rule, in :data:`POOL_ORDER`."""
    if settings.autopilot:  # no static pools; GKE supports ``nodepools`` rules in Standard only
        return {}
    inf = settings.inference
    found: dict[str, list[list[str]]] = {}
    for provisioning in POOL_ORDER:
        groups: dict[str, list[str]] = {}
        for pool in inf.node_pools:
            name = pool_class(pool, inf.cost_optimized_classes)
            if pool.provisioning == provisioning and name is not None:
                groups.setdefault(name, []).append(pool.name)
        for name, pools in groups.items():
            found.setdefault(name, []).append(pools)
    return found


def queued_node_pools(settings: PlatformSettings) -> dict[str, list[str]]:
    """The platform output ``queuedNodePools``: machine type -> its queued pools' names."""
    found: dict[str, list[str]] = {}
    if settings.autopilot:
        return found
    for pool in settings.inference.node_pools:
        if pool.provisioning == "queued":
            found.setdefault(pool.machine_type, []).append(pool.name)
    return found
