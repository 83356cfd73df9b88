"""Stack-level rules: labels, and what every online inference workload needs around it.

An *online workload* is a Deployment labelled ``gke-inference/kind: online``
(on the object or its pod template), or an unlabelled Deployment whose pods
request accelerators. Each needs an HPA with ``maxReplicas`` targeting it, a
PodDisruptionBudget selecting its pods and a readiness probe on its serving
container; HPA metric names must be ones the Deployment's vLLM version exports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import PolicyResource, ReportViolation, StackValidationArgs

from gke_inference.core.admission import admitted
from gke_inference.core.images import has_digest
from gke_inference.policy.base import Rules
from gke_inference.policy.config import is_prod, param
from gke_inference.policy.props import get, items, number, obj, short_type
from gke_inference.policy.rules_kubernetes import (
    DEPLOYMENT,
    LEADER_WORKER_SET,
    PodSpec,
    accelerator_counts,
    containers,
    pod_specs,
    requests_accelerator,
)
from gke_inference.workloads import vllm_metrics

HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
KIND_LABEL = "gke-inference/kind"

RULES = Rules()

# --------------------------------------------------------------------------- labels

#: Google Cloud types that take labels, and where (dotted path of the labels map).
LABEL_FIELDS: dict[str, str] = {
    "gcp:container/cluster:Cluster": "resourceLabels",
    "gcp:container/nodePool:NodePool": "nodeConfig.resourceLabels",
    "gcp:storage/bucket:Bucket": "labels",
    "gcp:artifactregistry/repository:Repository": "labels",
    "gcp:kms/cryptoKey:CryptoKey": "labels",
    "gcp:compute/instance:Instance": "labels",
    "gcp:compute/instanceTemplate:InstanceTemplate": "labels",
    "gcp:compute/disk:Disk": "labels",
    "gcp:pubsub/topic:Topic": "labels",
    "gcp:pubsub/subscription:Subscription": "labels",
    "gcp:secretmanager/secret:Secret": "labels",
    "gcp:filestore/instance:Instance": "labels",
    "gcp:redis/instance:Instance": "labels",
    "gcp:bigquery/dataset:Dataset": "labels",
    "gcp:cloudrunv2/service:Service": "labels",
    # Monitoring objects keep channel settings in `labels`; their own labels are userLabels.
    "gcp:monitoring/notificationChannel:NotificationChannel": "userLabels",
    "gcp:monitoring/alertPolicy:AlertPolicy": "userLabels",
}


def label_field(resource: PolicyResource) -> str | None:
    """Where a resource keeps its labels (known types, or any gcp type with labels set)."""
    if resource.resource_type in LABEL_FIELDS:
        return LABEL_FIELDS[resource.resource_type]
    if not resource.resource_type.startswith("gcp:"):
        return None
    for key in ("labels", "resourceLabels"):
        if key in resource.props:
            return key
    return None


def provider_default_labels(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """A gcp provider's ``defaultLabels`` (the engine passes provider maps as JSON strings)."""
    value = props.get("defaultLabels")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return obj(value)


@RULES.stack("gcp-required-labels", params=("requiredLabels",))
def _labels(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every labelable Google Cloud resource carries the required labels (environment)."""
    required = [str(label) for label in param(args, "requiredLabels")]
    for resource in args.resources:
        path = label_field(resource)
        if path is None:
            continue
        labels = dict(obj(get(resource.props, *path.split("."))))
        if resource.provider is not None:
            labels = {**provider_default_labels(resource.provider.props), **labels}
        missing = [label for label in required if not labels.get(label)]
        if missing:
            report(
                f"{resource.name} ({short_type(resource.resource_type)}) lacks the "
                f"label(s) {', '.join(missing)}. Add them to {path} (or to the provider's "
                "defaultLabels).",
                resource.urn,
            )


# --------------------------------------------------------------------------- online workloads


# Serving workload kinds -> the scaleTargetRef kind of their HPA. A LeaderWorkerSet
# runs one replica as a group of pods on several nodes; only its leaders serve.
SERVING_KINDS = {DEPLOYMENT: "Deployment", LEADER_WORKER_SET: "LeaderWorkerSet"}


@dataclass
class Workload:
    resource: PolicyResource
    name: str
    namespace: str | None
    pods: list[PodSpec]

    @property
    def kind(self) -> str:
        return SERVING_KINDS[self.resource.resource_type]

    @property
    def pod_labels(self) -> Mapping[str, Any]:
        return self.pods[0].labels if self.pods else {}

    @property
    def serving_pods(self) -> list[PodSpec]:
        """The pods that take traffic: all of a Deployment's, a LeaderWorkerSet's leaders."""
        if self.resource.resource_type == LEADER_WORKER_SET:
            return [p for p in self.pods if ".leaderTemplate." in p.path]
        return self.pods


def _meta(resource: PolicyResource) -> tuple[str, str | None]:
    name = get(resource.props, "metadata", "name") or resource.name
    namespace = get(resource.props, "metadata", "namespace")
    return str(name), (str(namespace) if namespace else None)


def _same_namespace(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a == b


def deployments(args: StackValidationArgs) -> list[Workload]:
    """Deployments and LeaderWorkerSets (the kinds a model server runs as)."""
    found = []
    for resource in args.resources:
        if resource.resource_type not in SERVING_KINDS:
            continue
        name, namespace = _meta(resource)
        pods = pod_specs(resource.resource_type, resource.props)
        found.append(Workload(resource, name, namespace, pods))
    return found


def is_online(workload: Workload) -> bool:
    kind = get(
        workload.resource.props, "metadata", "labels", KIND_LABEL
    ) or workload.pod_labels.get(KIND_LABEL)
    if kind is not None:
        return bool(kind == "online")
    return any(requests_accelerator(pod) for pod in workload.pods)


def online_workloads(args: StackValidationArgs) -> list[Workload]:
    return [w for w in deployments(args) if is_online(w)]


def _hpas_for(args: StackValidationArgs, workload: Workload) -> list[PolicyResource]:
    found = []
    for resource in args.resources:
        if resource.resource_type != HPA:
            continue
        target = obj(get(resource.props, "spec", "scaleTargetRef"))
        _, namespace = _meta(resource)
        if (
            target.get("kind") == workload.kind
            and target.get("name") == workload.name
            and _same_namespace(namespace, workload.namespace)
        ):
            found.append(resource)
    return found


@RULES.stack("k8s-online-workload-has-hpa")
def _hpa_coverage(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every online inference Deployment or LeaderWorkerSet has an HPA with maxReplicas targeting it."""
    for workload in online_workloads(args):
        hpas = _hpas_for(args, workload)
        if not hpas:
            report(
                f"Online workload {workload.name} has no HorizontalPodAutoscaler. Add an "
                f"autoscaling/v2 HPA with scaleTargetRef {{kind: {workload.kind}, name: "
                f"{workload.name}}} and a maxReplicas bound.",
                workload.resource.urn,
            )
        for hpa in hpas:
            if (number(get(hpa.props, "spec", "maxReplicas")) or 0) < 1:
                report(
                    f"HPA {hpa.name} for {workload.name} has no maxReplicas. Set "
                    "spec.maxReplicas to the most replicas the accelerator quota allows.",
                    hpa.urn,
                )


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool:
    """Kubernetes label-selector semantics (an empty selector selects everything)."""
    for label, value in obj(selector.get("matchLabels")).items():
        if labels.get(label) != value:
            return False
    for expression in items(selector.get("matchExpressions")):
        e = obj(expression)
        key, operator, values = str(e.get("key")), e.get("operator"), items(e.get("values"))
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


@RULES.stack("k8s-online-workload-has-pdb")
def _pdb_coverage(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every online inference Deployment or LeaderWorkerSet has a PodDisruptionBudget selecting its pods."""
    pdbs = [r for r in args.resources if r.resource_type == PDB]
    for workload in online_workloads(args):
        covered = any(
            _same_namespace(_meta(pdb)[1], workload.namespace)
            and isinstance(get(pdb.props, "spec", "selector"), Mapping)
            and selector_matches(obj(get(pdb.props, "spec", "selector")), workload.pod_labels)
            for pdb in pdbs
        )
        if not covered:
            labels = dict(workload.pod_labels)
            report(
                f"Online workload {workload.name} has no PodDisruptionBudget, so node "
                "upgrades can take all replicas down at once. Add a policy/v1 "
                f"PodDisruptionBudget whose spec.selector.matchLabels selects {labels} "
                "(e.g. maxUnavailable: 1).",
                workload.resource.urn,
            )


def serving_containers(pod: PodSpec) -> list[tuple[str, Mapping[str, Any]]]:
    app = [(p, c) for p, c in containers(pod) if ".containers[" in p]
    with_accelerators = [(p, c) for p, c in app if accelerator_counts(c)]
    if with_accelerators:
        return with_accelerators
    with_ports = [(p, c) for p, c in app if items(c.get("ports"))]
    return with_ports or app[:1]


@RULES.stack("k8s-online-workload-readiness-probe")
def _readiness(args: StackValidationArgs, report: ReportViolation) -> None:
    """The serving container of every online inference Deployment (LeaderWorkerSet: its leaders) has a readiness probe."""
    for workload in online_workloads(args):
        for pod in workload.serving_pods:
            for path, container in serving_containers(pod):
                if not isinstance(container.get("readinessProbe"), Mapping):
                    report(
                        f"Online workload {workload.name}: serving container "
                        f"{container.get('name') or path} has no readiness probe, so it gets "
                        "traffic while the model is still loading. Add "
                        f"{path}.readinessProbe (vLLM: httpGet /health on the serving port).",
                        workload.resource.urn,
                    )


# --------------------------------------------------------------------------- HPA metrics


def hpa_metric_names(hpa: PolicyResource) -> list[str]:
    names = []
    for metric in items(get(hpa.props, "spec", "metrics")):
        for source in ("external", "pods", "object"):
            name = get(metric, source, "metric", "name")
            if isinstance(name, str) and name:
                names.append(name)
    return names


def vllm_versions(workload: Workload) -> list[tuple[str, vllm_metrics.Version]]:
    found = []
    for pod in workload.pods:
        for _, container in containers(pod):
            image = container.get("image")
            version = vllm_metrics.version_of_image(image) if isinstance(image, str) else None
            if version is not None:
                found.append((str(image), version))
    return found


@RULES.stack("k8s-hpa-vllm-metrics-exported")
def _hpa_metrics(args: StackValidationArgs, report: ReportViolation) -> None:
    """HPA metrics on vLLM use names the Deployment's vLLM version actually exports."""
    workloads = deployments(args)
    everywhere = [v for w in workloads for v in vllm_versions(w)]
    for hpa in (r for r in args.resources if r.resource_type == HPA):
        names = [n for n in hpa_metric_names(hpa) if vllm_metrics.parse_metric_name(n)]
        if not names:
            continue
        target = next((w for w in workloads if hpa in _hpas_for(args, w)), None)
        versions = vllm_versions(target) if target is not None else everywhere
        for name in names:
            for image, version in dict.fromkeys(versions):
                why = vllm_metrics.problem(name, version)
                if why:
                    report(
                        f"HPA {hpa.name} scales on {name}, but {why} (image {image}). "
                        "Change the metric name or the vLLM version, or the HPA never scales.",
                        hpa.urn,
                    )


RULES_KINDS = (
    "kubernetes:monitoring.googleapis.com/v1:Rules",
    "kubernetes:monitoring.googleapis.com/v1:ClusterRules",
)
_VLLM_NAME = re.compile(r"vllm:[A-Za-z0-9_:]+")
_HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")


def recorded_by(args: StackValidationArgs, record: str, namespace: str | None) -> list[str]:
    """The expressions of the recording rules in the stack that write ``record``, in
    ``namespace`` (Rules) or cluster-wide (ClusterRules)."""
    found = []
    for resource in args.resources:
        if resource.resource_type not in RULES_KINDS:
            continue
        if resource.resource_type.endswith(":Rules") and not _same_namespace(
            _meta(resource)[1], namespace
        ):
            continue
        for group in items(get(resource.props, "spec", "groups")):
            for rule in items(get(group, "rules")):
                if get(rule, "record") == record and isinstance(get(rule, "expr"), str):
                    found.append(str(get(rule, "expr")))
    return found


def vllm_names_in(expr: str) -> list[str]:
    """The vLLM metrics an expression reads (a histogram by its base name)."""
    names = []
    for name in _VLLM_NAME.findall(expr):
        for suffix in _HISTOGRAM_SERIES:
            base = name.removesuffix(suffix)
            if base != name and base in vllm_metrics.METRICS:
                name = base
                break
        names.append(name)
    return list(dict.fromkeys(names))


@RULES.stack("k8s-hpa-recorded-metric-has-rule")
def _hpa_recorded_metrics(args: StackValidationArgs, report: ReportViolation) -> None:
    """An HPA on a recorded Managed Prometheus metric (a name with a colon that vLLM does
    not export) has the recording rule that writes it, on vLLM metrics its target exports."""
    workloads = deployments(args)
    for hpa in (r for r in args.resources if r.resource_type == HPA):
        _, namespace = _meta(hpa)
        target = next((w for w in workloads if hpa in _hpas_for(args, w)), None)
        versions = dict.fromkeys(vllm_versions(target)) if target is not None else {}
        for name in hpa_metric_names(hpa):
            parts = name.split("|")
            if len(parts) != 3 or parts[0] != "prometheus.googleapis.com":
                continue
            record = parts[1]
            if ":" not in record or vllm_metrics.parse_metric_name(name) is not None:
                continue
            expressions = recorded_by(args, record, namespace)
            if not expressions:
                report(
                    f"HPA {hpa.name} scales on {record}, but no Rules object in its namespace "
                    "(or ClusterRules) records it, so the metric never exists and the HPA "
                    f"never scales. Add a monitoring.googleapis.com/v1 Rules with record: {record}.",
                    hpa.urn,
                )
                continue
            for expr in expressions:
                for metric in vllm_names_in(expr):
                    for image, version in versions:
                        why = vllm_metrics.problem(metric, version)
                        if why:
                            report(
                                f"HPA {hpa.name} scales on {record}, recorded from {metric}, "
                                f"but {why} (image {image}). The rule records nothing and "
                                "the HPA never scales.",
                                hpa.urn,
                            )


POLICIES = RULES.policies


# --------------------------------------------------------------------------- admission

BINAUTHZ_POLICY = "gcp:binaryauthorization/policy:Policy"
STACK_REFERENCE = "pulumi:pulumi:StackReference"


@dataclass(frozen=True)
class Admission:
    """What the stack's cluster admits: Binary Authorization's allow-list (empty where it
    is not enforced) and whether every image must carry a digest."""

    patterns: list[str]
    digests_required: bool
    source: str


def admission_of(args: StackValidationArgs) -> Admission | None:
    """The platform stack: its own Binary Authorization policy, digests by ``prodStacks``.
    A workload stack: the platform outputs its StackReference read
    (``binaryAuthorizationAllowlist``, ``imageDigestsRequired``). None when neither is
    there (a stack of neither kind, or a platform stack older than those outputs)."""
    for r in args.resources:
        if r.resource_type == BINAUTHZ_POLICY:
            patterns = [
                str(obj(p).get("namePattern"))
                for p in items(r.props.get("admissionWhitelistPatterns"))
                if obj(p).get("namePattern")
            ]
            return Admission(patterns, is_prod(args, r.urn), "this stack's Binary Authorization")
    for r in args.resources:
        if r.resource_type == STACK_REFERENCE:
            outputs = obj(r.props.get("outputs"))
            if "binaryAuthorizationAllowlist" in outputs or "imageDigestsRequired" in outputs:
                required = outputs.get("imageDigestsRequired")
                return Admission(
                    [str(p) for p in items(outputs.get("binaryAuthorizationAllowlist"))],
                    required is True or str(required).lower() == "true",
                    f"platform stack {r.props.get('name') or r.name}",
                )
    return None


def stack_images(args: StackValidationArgs) -> list[tuple[PolicyResource, str, str]]:
    """(resource, container path, image) of every container in the stack."""
    found = []
    for r in args.resources:
        for pod in pod_specs(r.resource_type, r.props):
            for path, container in containers(pod):
                image = container.get("image")
                if isinstance(image, str) and image:
                    found.append((r, path, image))
    return found


@RULES.stack("images-admitted-by-binary-authorization")
def _admitted(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every container image is one the cluster's Binary Authorization policy admits (GKE
    system images excepted, as the policy's global evaluation mode exempts them)."""
    admission = admission_of(args)
    if admission is None or not admission.patterns:
        args.not_applicable("Binary Authorization is not enforced for this stack")
        return
    for r, path, image in stack_images(args):
        if not admitted(image, admission.patterns):
            report(
                f"{short_type(r.resource_type)} {r.name}: {path}.image {image} is outside the "
                f"allow-list of {admission.source} ({', '.join(admission.patterns)}); the "
                "cluster would refuse the pod. Pull it through the platform's Artifact "
                "Registry (a remote repository or the team repository).",
                r.urn,
            )


@RULES.stack("images-pinned-by-digest", params=("prodStacks",))
def _digests(args: StackValidationArgs, report: ReportViolation) -> None:
    """In production every container image is pinned by digest (image@sha256:...): a tag
    can be pushed again, a digest cannot."""
    admission = admission_of(args)
    if admission is None or not admission.digests_required:
        args.not_applicable("this stack's environment does not require digests")
        return
    for r, path, image in stack_images(args):
        if not has_digest(image):
            report(
                f"{short_type(r.resource_type)} {r.name}: {path}.image {image} has no digest; "
                "production pins every image as image@sha256:<64 hex> (pinned images: "
                "images.digests in the platform stack config, see scripts/pin_images.py; "
                "a spec's own image: give it with its digest).",
                r.urn,
            )
