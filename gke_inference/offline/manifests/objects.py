"""Kubernetes objects from an offline plan: which resources are objects, and their clean manifests.

The offline plan (``gke_inference.offline.recording``) records the inputs Pulumi would
send for every ``pulumi_kubernetes`` resource. Those inputs are the manifest,
with three artefacts of the mock runtime that are undone here:

* Numbers come back as floats (``replicas: 2.0``). Every float with an
  integral value becomes an ``int``. That is safe for the kinds a platform
  registers: Kubernetes APIs have no float fields (quantities are strings or
  integers, ``IntOrString`` is integer-or-string), and the CRDs used here
  declare integers too. A non-integral float (``0.5``) is kept as it is.
* ``None`` values are dropped (the engine does not send them). Empty maps and
  lists are kept: ``emptyDir: {}`` and ``apiGroups: [""]`` mean something.
* Keys starting with ``__`` at the top level or in ``metadata`` are Pulumi
  internals and are dropped. Deeper keys are user data (ConfigMap keys may
  legally start with ``__``) and are kept.

Key order is made stable: ``apiVersion``, ``kind``, ``metadata`` (``name``,
``namespace`` first), then every other key in sorted order, recursively.

Providers, read-only lookups (``.get``) and components are not objects.
Provider-rendered charts and patches stand for objects but have no manifest
offline; :func:`omitted` names them.

Secrets: the plan masks every secret value as ``"[secret]"``. An object that
holds a masked value is an object like any other (so it can be reviewed and
validated), but it is not written: an applied ``"[secret]"`` would overwrite
the real value in the cluster. :func:`omitted` names such objects too.
"""

from __future__ import annotations

import re
from typing import Any

from gke_inference.core.contract import SECRET_MASK
from gke_inference.offline.manifests.kinds import display_name, in_apply_order
from gke_inference.offline.recording import Plan, RecordedResource

_PROVIDER_RENDERED = re.compile(
    r"^kubernetes:(helm\.sh/v\d+:Chart|helm\.sh/v\d+:Release|yaml(/v2)?:Config(File|Group)"
    r"|kustomize(/v2)?:Directory)$"
)
_PATCH = re.compile(r"^kubernetes:.*Patch$")


class ManifestError(ValueError):
    """A recorded resource cannot become a manifest, or manifests cannot be validated at all."""


def kubernetes_objects(plan: Plan) -> list[dict[str, Any]]:
    """Clean manifests of every Kubernetes object in ``plan``, in apply order.

    Raises :class:`ManifestError` for an object without ``apiVersion``,
    ``kind`` or ``metadata.name``.
    """
    return in_apply_order([_clean(res) for res in plan.resources if _is_object(res)])


def omitted(plan: Plan) -> list[str]:
    """What the written manifests leave out, and why (one line each)."""
    notes = [
        f"{res.type} {res.name!r}: {why}" for res in plan.resources if (why := _no_manifest(res))
    ]
    for obj in kubernetes_objects(plan):
        if holds_secret(obj):
            notes.append(
                f"{obj['kind']} {display_name(obj)}: holds secret values (masked in the plan); "
                "not written, create it with pulumi or kubectl from the real values"
            )
    return notes


def holds_secret(obj: dict[str, Any]) -> bool:
    return bool(without_secrets(obj) != obj)


def without_secrets(value: Any) -> Any:
    """``value`` without the map values and list items that are masked secrets."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if v != SECRET_MASK}
    if isinstance(value, list):
        return [without_secrets(v) for v in value if v != SECRET_MASK]
    return value


def _no_manifest(res: RecordedResource) -> str | None:
    """Why a resource that stands for objects has no manifest offline; None for the others."""
    if _PROVIDER_RENDERED.match(res.type):
        return (
            "its objects are rendered by the Kubernetes provider at deploy time "
            "and cannot be written offline"
        )
    if res.custom and _PATCH.match(res.type):
        return "a patch of an existing object, not a manifest"
    return None


def _is_object(res: RecordedResource) -> bool:
    if not res.type.startswith("kubernetes:") or not res.custom or res.read:
        return False
    return _no_manifest(res) is None and ("kind" in res.inputs or "apiVersion" in res.inputs)


def _without_internals(inputs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if not k.startswith("__")}


def _clean(res: RecordedResource) -> dict[str, Any]:
    inputs = _without_internals(res.inputs)
    where = f"{res.type} {res.name!r} ({res.urn})"
    for key in ("apiVersion", "kind"):
        if not isinstance(inputs.get(key), str) or not inputs[key]:
            raise ManifestError(f"{where} has no {key}")
    metadata = inputs.get("metadata")
    metadata = _without_internals(metadata) if isinstance(metadata, dict) else {}
    if not isinstance(metadata.get("name"), str) or not metadata["name"]:
        hint = " (generateName cannot be applied)" if metadata.get("generateName") else ""
        raise ManifestError(
            f"{where} has no metadata.name{hint}: the offline plan has no auto-naming, "
            "so set metadata.name explicitly in the program"
        )
    inputs["metadata"] = metadata
    return _ordered(_normalize(inputs))


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalize(value[k]) for k in sorted(value) if value[k] is not None}
    if isinstance(value, list):
        return [_normalize(v) for v in value if v is not None]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _ordered(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (keys sorted by :func:`_normalize`) with its head keys first."""
    meta = obj["metadata"]
    head = {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta} | meta,
    }
    return head | {k: v for k, v in obj.items() if k not in head}
