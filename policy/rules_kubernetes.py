"""Rules for inference workloads: pod security, accelerators, images, Services.

Props are the engine's shapes of pulumi_kubernetes resources
(``{"apiVersion", "kind", "metadata", "spec"}``, camelCase, numbers as floats).
Every workload kind is reduced to its pod specs by :func:`pod_specs`, so the
same container rules cover Deployments, StatefulSets, Jobs, JobSets,
LeaderWorkerSets and bare Pods.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import ResourceValidationArgs

from gke_inference.policy.base import ADVISORY, Messages, Rules
from gke_inference.policy.config import image_allowed, param
from gke_inference.policy.pod_security import project_problems, restricted_problems
from gke_inference.policy.props import get, items, number, obj, short_type, truthy

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
REPLICA_SET = "kubernetes:apps/v1:ReplicaSet"
JOB = "kubernetes:batch/v1:Job"
CRON_JOB = "kubernetes:batch/v1:CronJob"
POD = "kubernetes:core/v1:Pod"
JOB_SET = "kubernetes:jobset.x-k8s.io/v1alpha2:JobSet"
LEADER_WORKER_SET = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
SERVICE = "kubernetes:core/v1:Service"

WORKLOADS = (
    DEPLOYMENT,
    STATEFUL_SET,
    DAEMON_SET,
    REPLICA_SET,
    JOB,
    CRON_JOB,
    POD,
    JOB_SET,
    LEADER_WORKER_SET,
)
ACCELERATORS = ("nvidia.com/gpu", "google.com/tpu")
NODE_SELECTOR_KEYS = (
    "cloud.google.com/compute-class",
    "cloud.google.com/gke-accelerator",
    "cloud.google.com/gke-tpu-accelerator",
)
INTERNAL_LB_ANNOTATIONS = (
    "networking.gke.io/load-balancer-type",
    "cloud.google.com/load-balancer-type",
)

RULES = Rules()


@dataclass(frozen=True)
class PodSpec:
    path: str  # where in the object, for messages: spec.template.spec
    spec: Mapping[str, Any]
    labels: Mapping[str, Any]


def pod_specs(resource_type: str, props: Mapping[str, Any]) -> list[PodSpec]:
    """Every pod spec inside a workload object."""
    spec = obj(props.get("spec"))

    def template(base: Mapping[str, Any], path: str) -> PodSpec:
        return PodSpec(f"{path}.spec", obj(base.get("spec")), obj(get(base, "metadata", "labels")))

    if resource_type == POD:
        return [PodSpec("spec", spec, obj(get(props, "metadata", "labels")))]
    if resource_type == CRON_JOB:
        return [
            template(
                obj(get(spec, "jobTemplate", "spec", "template")), "spec.jobTemplate.spec.template"
            )
        ]
    if resource_type == JOB_SET:
        return [
            template(
                obj(get(job, "template", "spec", "template")),
                f"spec.replicatedJobs[{i}].template.spec.template",
            )
            for i, job in enumerate(items(spec.get("replicatedJobs")))
        ]
    if resource_type == LEADER_WORKER_SET:
        lws = obj(spec.get("leaderWorkerTemplate"))
        found = [
            template(obj(lws.get("workerTemplate")), "spec.leaderWorkerTemplate.workerTemplate")
        ]
        if "leaderTemplate" in lws:
            found.append(
                template(obj(lws.get("leaderTemplate")), "spec.leaderWorkerTemplate.leaderTemplate")
            )
        return found
    return [template(obj(spec.get("template")), "spec.template")]


def containers(pod: PodSpec) -> list[tuple[str, Mapping[str, Any]]]:
    """(path, container) for init and app containers."""
    found = []
    for field in ("initContainers", "containers"):
        for i, container in enumerate(items(pod.spec.get(field))):
            found.append((f"{pod.path}.{field}[{i}]", obj(container)))
    return found


def container_name(path: str, container: Mapping[str, Any]) -> str:
    return str(container.get("name") or path)


def accelerator_counts(container: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{resource: (request, limit)} for accelerator resources the container mentions."""
    requests = obj(get(container, "resources", "requests"))
    limits = obj(get(container, "resources", "limits"))
    return {
        name: (requests.get(name), limits.get(name))
        for name in ACCELERATORS
        if name in requests or name in limits
    }


def requests_accelerator(pod: PodSpec) -> bool:
    for _, container in containers(pod):
        for request, limit in accelerator_counts(container).values():
            if (number(request) or 0) > 0 or (number(limit) or 0) > 0:
                return True
    return False


def _workload(args: ResourceValidationArgs) -> str:
    return f"{args.props.get('kind') or short_type(args.resource_type)} {args.name}"


def _each_container(
    args: ResourceValidationArgs,
) -> Iterator[tuple[PodSpec, str, Mapping[str, Any], str]]:
    """(pod, path, container, how messages name it) for every container of a workload."""
    for pod in pod_specs(args.resource_type, args.props):
        for path, container in containers(pod):
            who = f"{_workload(args)}: container {container_name(path, container)}"
            yield pod, path, container, who


# --------------------------------------------------------------------------- security context


@RULES.resource(WORKLOADS, "k8s-containers-run-as-non-root")
def _run_as_non_root(args: ResourceValidationArgs) -> Messages:
    """Workload containers run as a non-root user (runAsNonRoot or a non-zero runAsUser)."""
    for pod, path, container, who in _each_container(args):
        pod_context = obj(pod.spec.get("securityContext"))
        context = obj(container.get("securityContext"))
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
        user = number(context.get("runAsUser", pod_context.get("runAsUser")))
        if user == 0:
            yield (
                f"{who} runs as root (runAsUser 0). Set {path}.securityContext.runAsUser "
                "to a non-zero UID and runAsNonRoot to true."
            )
        elif not truthy(non_root) and not (user and user > 0):
            yield (
                f"{who} may run as root. Set runAsNonRoot: true (and runAsUser) in "
                f"{pod.path}.securityContext or {path}.securityContext."
            )


def _turned_on(args: ResourceValidationArgs, flag: str) -> Iterator[tuple[str, str]]:
    """(container, field) wherever a container's ``securityContext.<flag>`` is true."""
    for _, path, container, who in _each_container(args):
        if truthy(get(container, "securityContext", flag)):
            yield who, f"{path}.securityContext.{flag}"


@RULES.resource(WORKLOADS, "k8s-privileged-containers-disallowed")
def _privileged(args: ResourceValidationArgs) -> Messages:
    """No workload container runs privileged."""
    for who, field in _turned_on(args, "privileged"):
        yield (
            f"{who} is privileged. Remove {field} (GPUs and TPUs are exposed through device "
            "plugins, not privileged mode)."
        )


@RULES.resource(WORKLOADS, "k8s-privilege-escalation-disallowed")
def _privilege_escalation(args: ResourceValidationArgs) -> Messages:
    """No workload container sets allowPrivilegeEscalation: true."""
    for who, field in _turned_on(args, "allowPrivilegeEscalation"):
        yield f"{who} allows privilege escalation. Set {field} to false."


# --------------------------------------------------------------------------- accelerators


@RULES.resource(WORKLOADS, "k8s-pod-security-restricted")
def _pod_security_restricted(args: ResourceValidationArgs) -> Messages:
    """Every pod meets the Pod Security Standards' restricted profile, which the workload
    namespace enforces: a pod that breaks it would be refused by the API server."""
    for pod in pod_specs(args.resource_type, args.props):
        for problem in restricted_problems(pod.spec):
            yield f"{_workload(args)} ({pod.path}): {problem}."


@RULES.resource(WORKLOADS, "k8s-high-uid-read-only-root")
def _high_uid(args: ResourceValidationArgs) -> Messages:
    """Every container runs as an explicit uid of at least 10000 on a read-only root
    filesystem."""
    for pod in pod_specs(args.resource_type, args.props):
        for problem in project_problems(pod.spec):
            yield f"{_workload(args)} ({pod.path}): {problem}."


def _same_quantity(a: Any, b: Any) -> bool:
    na, nb = number(a), number(b)
    if na is not None and nb is not None:
        return na == nb
    return str(a) == str(b)


@RULES.resource(WORKLOADS, "k8s-accelerator-requests-equal-limits")
def _accelerator_limits(args: ResourceValidationArgs) -> Messages:
    """Accelerator resources (nvidia.com/gpu, google.com/tpu) have limits equal to requests."""
    for _, path, container, who in _each_container(args):
        for resource, (request, limit) in accelerator_counts(container).items():
            if limit is None:
                yield (
                    f"{who} requests {resource}={request} without a limit (Kubernetes rejects "
                    f"it). Set {path}.resources.limits['{resource}'] to {request}."
                )
            elif request is not None and not _same_quantity(request, limit):
                yield (
                    f"{who} requests {resource}={request} but limits it to {limit}; "
                    "accelerators cannot be overcommitted. Make requests equal limits."
                )


def _selects_accelerator_nodes(pod: PodSpec) -> bool:
    selector = obj(pod.spec.get("nodeSelector"))
    if any(key in selector for key in NODE_SELECTOR_KEYS):
        return True
    terms = items(
        get(
            pod.spec,
            "affinity",
            "nodeAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
            "nodeSelectorTerms",
        )
    )
    return bool(terms) and all(
        any(obj(e).get("key") in NODE_SELECTOR_KEYS for e in items(obj(t).get("matchExpressions")))
        for t in terms
    )


@RULES.resource(WORKLOADS, "k8s-accelerator-pods-select-nodes")
def _accelerator_nodes(args: ResourceValidationArgs) -> Messages:
    """Pods that request accelerators select a compute class or an accelerator node label."""
    for pod in pod_specs(args.resource_type, args.props):
        if requests_accelerator(pod) and not _selects_accelerator_nodes(pod):
            yield (
                f"{_workload(args)} requests accelerators but does not say which nodes. Set "
                f"{pod.path}.nodeSelector['cloud.google.com/compute-class'] to the platform's "
                "compute class (or 'cloud.google.com/gke-accelerator' / "
                "'cloud.google.com/gke-tpu-accelerator')."
            )


# --------------------------------------------------------------------------- images


def image_tag_problem(image: str) -> str | None:
    """Why an image reference is not pinned (None if it has a digest or a fixed tag)."""
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag (means :latest)"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses :latest"
    return None


def _images(args: ResourceValidationArgs) -> list[tuple[str, str, str]]:
    """(path, container, image) of every container that names an image."""
    found = []
    for _, path, container, who in _each_container(args):
        image = container.get("image")
        if isinstance(image, str) and image:
            found.append((path, who, image))
    return found


@RULES.resource(WORKLOADS, "k8s-image-tag-pinned")
def _image_pinned(args: ResourceValidationArgs) -> Messages:
    """Container images are pinned by digest or an explicit version tag (no :latest, no
    missing tag)."""
    for path, who, image in _images(args):
        why = image_tag_problem(image)
        if why:
            yield (
                f"{who} image {image} {why}, so a restart can silently change what runs. "
                f"Pin {path}.image to a version tag or a digest (@sha256:...)."
            )


@RULES.resource(
    WORKLOADS, "k8s-image-from-artifact-registry", level=ADVISORY, params=("allowedRegistries",)
)
def _image_registry(args: ResourceValidationArgs) -> Messages:
    """Container images should come from an allowed registry (Artifact Registry by default)."""
    allowed = [str(p) for p in param(args, "allowedRegistries")]
    for path, who, image in _images(args):
        if not image_allowed(image, allowed):
            yield (
                f"{who} pulls {image} from outside the allowed registries ({', '.join(allowed)}). "
                "Mirror it into Artifact Registry (a remote repository works) and point "
                f"{path}.image there."
            )


# --------------------------------------------------------------------------- services


@RULES.resource(SERVICE, "k8s-service-no-public-load-balancer", params=("allowPublicLoadBalancer",))
def _load_balancer(args: ResourceValidationArgs) -> Messages:
    """Services are not external LoadBalancers unless internal or explicitly allowed."""
    if get(args.props, "spec", "type") != "LoadBalancer":
        return
    annotations = obj(get(args.props, "metadata", "annotations"))
    if any(str(annotations.get(a, "")).lower() == "internal" for a in INTERNAL_LB_ANNOTATIONS):
        return
    if truthy(param(args, "allowPublicLoadBalancer")):
        return
    yield (
        f"Service {args.name} is an external LoadBalancer (a public IP in front of the model "
        "server). Expose it through the platform Gateway, or add the annotation "
        "networking.gke.io/load-balancer-type: Internal."
    )


POLICIES = RULES.policies
