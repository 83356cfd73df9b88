"""Kubernetes manifests from an offline plan: extracted, written in apply order, strictly validated.

One module per job; each states its own rules:

* ``objects`` -- which recorded resources are objects, their clean manifests,
  and what is left out (:func:`kubernetes_objects`, :func:`omitted`);
* ``kinds`` -- built-in or custom, scope, and the apply order;
* ``writer`` -- one YAML file per object (:func:`write_manifests`);
* ``validation`` -- strict schema checks (:func:`validate_manifests`);
* ``crd_schemas`` -- the repo's custom resource schemas (:func:`crd_schema_kinds`).

Callers outside the package import the names below from here.
"""

from gke_inference.offline.manifests.crd_schemas import crd_schema_kinds
from gke_inference.offline.manifests.objects import ManifestError, kubernetes_objects, omitted
from gke_inference.offline.manifests.validation import (
    KUBERNETES_VERSION,
    ManifestProblem,
    validate_manifests,
)
from gke_inference.offline.manifests.writer import write_manifests

__all__ = [
    "KUBERNETES_VERSION",
    "ManifestError",
    "ManifestProblem",
    "crd_schema_kinds",
    "kubernetes_objects",
    "omitted",
    "validate_manifests",
    "write_manifests",
]
