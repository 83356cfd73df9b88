"""Queued capacity for batch Jobs: flex-start with queued provisioning, through a ProvisioningRequest.

With ``batch.capacity: queued`` a Job does not go through its compute class.
GKE adds nodes to a queued-provisioning ("DWS") pool only for a
ProvisioningRequest, all of them at once, for at most the request's
``maxRunDurationSeconds`` (GKE, "Run a large-scale workload with flex-start
with queued provisioning", Jobs without Kueue). So the workload creates:

- a PodTemplate ``<workload>`` holding the Job's own pod template, labelled
  ``cloud.google.com/apply-warden-policies: "true"`` so that GKE applies the
  validations and mutations of pods to it (it needs them to compute the nodes);
  one template for both keeps what the scheduler reads identical, as the
  request's CRD asks;
- a ProvisioningRequest ``<workload>`` (``autoscaling.x-k8s.io/v1``, class
  ``queued-provisioning.gke.io``) for the pods that run at once (the Job's
  parallelism, at most its shards), for the longest run flex-start allows;
- the Job, whose pods consume the request
  (``autoscaling.x-k8s.io/consume-provisioning-request: <workload>`` and
  ``autoscaling.x-k8s.io/provisioning-class-name``, the keys of the upstream
  API; GKE then schedules them only on the nodes it provisioned, and marks them
  not safe to evict), select the pool (``cloud.google.com/gke-nodepool``) and
  the accelerator, and tolerate the pool's ``cloud.google.com/gke-queued`` taint
  and the accelerator's own. The Job is created with the request, not after
  it is provisioned: its pods wait Pending and are there when the nodes come,
  because GKE removes provisioned nodes that nothing consumes within 10 minutes.

Which pool: the platform output ``queuedNodePools`` (machine type -> pools);
``kinds.require_queued_pool`` refuses a spec whose sized machine type has none
before anything is registered.

Online serving does not use queued pools: a ProvisioningRequest is a one-off,
atomic grant of a fixed number of nodes for a bounded time, while an endpoint
scales with its traffic and replaces nodes one at a time. Its compute class
already falls back to flex-start VMs (the class's ``flexStart`` rule) when
reservations and on-demand capacity run out.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from gke_inference.core.components import child_options
from gke_inference.inference.compute_classes import FLEX_START_MAX_RUN_SECONDS, QUEUED_TAINT
from gke_inference.workloads.pods import Placement, tpu_selector
from gke_inference.workloads.sizing import Sizing

PROVISIONING_API = "autoscaling.x-k8s.io/v1"
PROVISIONING_CLASS = "queued-provisioning.gke.io"
CONSUME_ANNOTATION = "autoscaling.x-k8s.io/consume-provisioning-request"
CLASS_ANNOTATION = "autoscaling.x-k8s.io/provisioning-class-name"
WARDEN_LABEL = "cloud.google.com/apply-warden-policies"
NODE_POOL_LABEL = "cloud.google.com/gke-nodepool"
GPU_LABEL = "cloud.google.com/gke-accelerator"


@dataclass(frozen=True)
class QueuedCapacity:
    """One ProvisioningRequest ``name`` for ``count`` pods on queued pool ``pool``."""

    name: str
    namespace: str
    pool: str
    count: int

    @classmethod
    def of(
        cls,
        name: str,
        namespace: str,
        sizing: Sizing,
        queued_pools: dict[str, list[str]],
        count: int,
    ) -> QueuedCapacity:
        """The request of a workload sized to ``sizing`` (its machine type's first pool;
        the deployability check guarantees there is one)."""
        return cls(name, namespace, queued_pools[sizing.shape.machine_type][0], count)

    def placement(self, sizing: Sizing) -> Placement:
        """What the pods need to consume the request on the pool's nodes."""
        acc = sizing.accelerator
        selector = {NODE_POOL_LABEL: self.pool, **tpu_selector(sizing)}
        if acc.kind == "gpu":
            selector[GPU_LABEL] = acc.gke_label
        key, value = QUEUED_TAINT
        return Placement(
            node_selector=selector,
            tolerations=[
                k8s.core.v1.TolerationArgs(
                    key=acc.resource_name, operator="Exists", effect="NoSchedule"
                ),
                k8s.core.v1.TolerationArgs(
                    key=key, operator="Equal", value=value, effect="NoSchedule"
                ),
            ],
            annotations={CONSUME_ANNOTATION: self.name, CLASS_ANNOTATION: PROVISIONING_CLASS},
        )

    def request(
        self,
        resource_name: str,
        template: k8s.core.v1.PodTemplateSpecArgs,
        labels: dict[str, str],
        parent: pulumi.Resource,
        opts: pulumi.ResourceOptions | None,
    ) -> k8s.apiextensions.CustomResource:
        """The PodTemplate of ``template`` and the ProvisioningRequest that names it."""
        pod_template = k8s.core.v1.PodTemplate(
            f"{resource_name}-pod-template",
            metadata=ObjectMetaArgs(
                name=self.name, namespace=self.namespace, labels={**labels, WARDEN_LABEL: "true"}
            ),
            template=template,
            opts=child_options(parent, opts),
        )
        return k8s.apiextensions.CustomResource(
            f"{resource_name}-provisioning-request",
            api_version=PROVISIONING_API,
            kind="ProvisioningRequest",
            metadata=ObjectMetaArgs(
                name=self.name,
                namespace=self.namespace,
                labels=labels,
                # Granted when capacity is found, possibly hours later: do not wait.
                annotations={"pulumi.com/skipAwait": "true"},
            ),
            spec={
                "provisioningClassName": PROVISIONING_CLASS,
                "parameters": {"maxRunDurationSeconds": str(FLEX_START_MAX_RUN_SECONDS)},
                "podSets": [{"count": self.count, "podTemplateRef": {"name": self.name}}],
            },
            opts=child_options(
                parent,
                opts,
                depends_on=[pod_template],
                # The request's spec is immutable (CEL self == oldSelf): a change is a new one.
                replace_on_changes=["spec"],
                delete_before_replace=True,
            ),
        )
