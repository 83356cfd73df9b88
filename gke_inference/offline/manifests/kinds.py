"""What the manifests package knows about kinds: identity, built-in or custom, scope, apply order.

Everything here works on manifests (plain mappings), from a plan or loaded from
YAML, and needs neither kubernetes-validate nor jsonschema.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from gke_inference.offline.manifests.crd_schemas import repo_crd_schemas

Manifest = TypeVar("Manifest", bound=Mapping[str, Any])

# Groups served by kube-apiserver itself (everything else comes from a CRD or
# an aggregated API).
_BUILTIN_GROUPS = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)

# Built-in kinds without a namespace.
_CLUSTER_SCOPED_BUILTINS = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterTrustBundle",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "DeviceClass",
        "FlowSchema",
        "IngressClass",
        "IPAddress",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "ResourceSlice",
        "RuntimeClass",
        "ServiceCIDR",
        "StorageClass",
        "StorageVersionMigration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
        "VolumeAttributesClass",
    }
)

# Built-in kinds applied before all others: every other object may need them.
_FIRST_KINDS = frozenset({"CustomResourceDefinition", "Namespace"})

# Built-in kinds applied after all others, so that a webhook or aggregated API
# that is not ready yet cannot block the creation of the other objects.
_LAST_KINDS = frozenset(
    {
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    }
)

# Order of built-in kinds inside a tier of the apply order (Helm's install
# order, extended).
_KIND_ORDER = (
    "CustomResourceDefinition",
    "Namespace",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
    "RuntimeClass",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Ingress",
)
_KIND_RANK = {kind: i for i, kind in enumerate(_KIND_ORDER)}


# --------------------------------------------------------------------------
# Identity


def kind_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("kind", "") or "")


def api_version_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("apiVersion", "") or "")


def group_version(obj: Mapping[str, Any]) -> tuple[str, str]:
    group, _, version = api_version_of(obj).rpartition("/")
    return group, version


def name_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""


def namespace_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    return str(meta.get("namespace", "") or "") if isinstance(meta, dict) else ""


def where(namespace: str, name: str) -> str:
    """How messages name an object: ``namespace/name``, or ``name`` without a namespace."""
    return f"{namespace}/{name}" if namespace else name


def display_name(obj: Mapping[str, Any]) -> str:
    return where(namespace_of(obj), name_of(obj))


# --------------------------------------------------------------------------
# Built-in or custom, and scope


def is_builtin(obj: Mapping[str, Any]) -> bool:
    return group_version(obj)[0] in _BUILTIN_GROUPS


def plan_crds(objects: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """``(group, kind, spec)`` of every CustomResourceDefinition among ``objects``."""
    for obj in objects:
        if kind_of(obj) != "CustomResourceDefinition" or not is_builtin(obj):
            continue
        spec = obj.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        group = spec.get("group")
        if isinstance(kind, str) and isinstance(group, str):
            yield group, kind, spec


def custom_scopes(objects: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(group, kind) -> "Cluster" | "Namespaced", from the repo's schemas and the CRDs in ``objects``."""
    scopes = {(g, k): schema.scope for (g, _v, k), schema in repo_crd_schemas().items()}
    for group, kind, spec in plan_crds(objects):
        scopes[(group, kind)] = str(spec.get("scope", "Namespaced"))
    return scopes


def is_cluster_scoped(obj: Mapping[str, Any], scopes: Mapping[tuple[str, str], str]) -> bool:
    """Built-in kinds: :data:`_CLUSTER_SCOPED_BUILTINS`. Custom kinds: their scope in
    ``scopes`` (:func:`custom_scopes`); a kind with no known scope is cluster-scoped
    when it has no namespace."""
    kind = kind_of(obj)
    if is_builtin(obj):
        return kind in _CLUSTER_SCOPED_BUILTINS
    scope = scopes.get((group_version(obj)[0], kind))
    if scope is not None:
        return scope == "Cluster"
    return not namespace_of(obj)


# --------------------------------------------------------------------------
# Apply order


def in_apply_order(objects: Sequence[Manifest]) -> list[Manifest]:
    """``objects`` in the order they must be created in, tier by tier:

    0. built-in :data:`_FIRST_KINDS`;
    1. other cluster-scoped built-ins;
    2. namespaced built-ins;
    3. custom resources, cluster-scoped ones first;
    4. built-in :data:`_LAST_KINDS`.

    Built-ins of one tier follow :data:`_KIND_ORDER`, unlisted kinds after the
    listed ones; then group, kind, namespace and name decide.
    """
    scopes = custom_scopes(objects)

    def key(obj: Manifest) -> tuple[int, int, str, str, str, str]:
        kind = kind_of(obj)
        cluster = is_cluster_scoped(obj, scopes)
        if not is_builtin(obj):
            tier, rank = 3, (0 if cluster else 1)
        else:
            rank = _KIND_RANK.get(kind, len(_KIND_RANK))
            if kind in _FIRST_KINDS:
                tier = 0
            elif kind in _LAST_KINDS:
                tier = 4
            else:
                tier = 1 if cluster else 2
        return (tier, rank, group_version(obj)[0], kind, namespace_of(obj), name_of(obj))

    return sorted(objects, key=key)
