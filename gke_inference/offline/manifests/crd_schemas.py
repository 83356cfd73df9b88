"""The repo's JSON Schemas for custom resources (``crd-schemas/``; its README gives the format)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

#: Package and folder holding the schemas.
CRD_SCHEMA_PACKAGE = "gke_inference.inference"
CRD_SCHEMA_DIR = "crd-schemas"


@dataclass(frozen=True)
class CrdSchema:
    file: str
    scope: str
    schema: dict[str, Any]


@lru_cache(maxsize=1)
def repo_crd_schemas() -> dict[tuple[str, str, str], CrdSchema]:
    """(group, version, kind) -> its schema, for every kind a file in the folder declares."""
    found: dict[tuple[str, str, str], CrdSchema] = {}
    for entry in resources.files(CRD_SCHEMA_PACKAGE).joinpath(CRD_SCHEMA_DIR).iterdir():
        if not entry.name.endswith(".json"):
            continue
        schema = json.loads(entry.read_text(encoding="utf-8"))
        crd = CrdSchema(entry.name, str(schema.get("x-kubernetes-scope", "Namespaced")), schema)
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            found[(gvk["group"], gvk["version"], gvk["kind"])] = crd
    return found


def crd_schema_kinds() -> list[str]:
    """``<Kind> (<group>/<version>)`` for every custom resource schema kept in the repo."""
    return sorted(f"{k} ({g}/{v})" for g, v, k in repo_crd_schemas())
